//! Source `thermal_zone`: `<sysfs>/class/thermal/thermal_zone*/{type,temp}`.
//!
//! chip = `thermal_zone<N>`, sensor = the zone `type` (`cpu-thermal`, `x86_pkg_temp`),
//! critical = the first `trip_point_*_temp` whose type is `critical`, max = the
//! first `hot` trip point. Values are millidegrees.

use super::hwmon::parse_millidegrees;
use super::{blocking, read_capped, BusyGuard, Source, SourceError, MAX_SMALL_FILE};
use crate::thermal::Reading;
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads every thermal zone under `<sysfs>/class/thermal`.
#[derive(Debug, Clone)]
pub struct ThermalZone {
    sysfs: PathBuf,
    busy: BusyGuard,
}

impl ThermalZone {
    /// A reader rooted at `sysfs` (normally `/sys`).
    pub fn new(sysfs: impl Into<PathBuf>) -> Self {
        ThermalZone {
            sysfs: sysfs.into(),
            busy: BusyGuard::default(),
        }
    }
}

impl Source for ThermalZone {
    fn name(&self) -> &str {
        "thermal_zone"
    }

    fn read(self: Arc<Self>) -> BoxFuture<'static, Result<Vec<Reading>, SourceError>> {
        blocking(&self.busy.clone(), move || read_zones(&self.sysfs))
    }
}

fn trip(dir: &Path, kind: &str) -> Option<f64> {
    (0..32).find_map(|i| {
        let ty = read_capped(&dir.join(format!("trip_point_{i}_type")), MAX_SMALL_FILE).ok()?;
        if ty.trim() != kind {
            return None;
        }
        parse_millidegrees(
            &read_capped(&dir.join(format!("trip_point_{i}_temp")), MAX_SMALL_FILE).ok()?,
        )
    })
}

/// Read all zones under `sysfs`.
pub fn read_zones(sysfs: &Path) -> Result<Vec<Reading>, SourceError> {
    let class = sysfs.join("class/thermal");
    let rd = std::fs::read_dir(&class).map_err(|err| SourceError::Io {
        path: class.display().to_string(),
        err,
    })?;
    let mut zones: Vec<(u64, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            Some((
                e.file_name()
                    .to_string_lossy()
                    .strip_prefix("thermal_zone")?
                    .parse()
                    .ok()?,
                e.path(),
            ))
        })
        .collect();
    zones.sort();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (n, dir) in &zones {
        let temp_path = dir.join("temp");
        let celsius = match read_capped(&temp_path, MAX_SMALL_FILE) {
            Ok(t) => match parse_millidegrees(&t) {
                Some(v) => v,
                None => {
                    errors.push(format!(
                        "{}: not a number: {:?}",
                        temp_path.display(),
                        t.trim().chars().take(32).collect::<String>()
                    ));
                    continue;
                }
            },
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let ty = read_capped(&dir.join("type"), MAX_SMALL_FILE)
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        let r = Reading {
            chip: format!("thermal_zone{n}"),
            sensor: if ty.is_empty() { "temp".into() } else { ty },
            label: None,
            celsius,
            max_celsius: trip(dir, "hot"),
            critical_celsius: trip(dir, "critical"),
            source: "thermal_zone".into(),
            role: Default::default(),
        };
        match r.sanitized() {
            Some(r) => out.push(r),
            None => errors.push(format!(
                "{}: implausible value {celsius} C ignored",
                temp_path.display()
            )),
        }
    }
    if out.is_empty() && !errors.is_empty() {
        return Err(SourceError::Parse(errors.join("; ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_zone() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs");
        let rs = read_zones(&root).expect("read");
        assert_eq!(rs.len(), 1);
        assert_eq!(
            (rs[0].chip.as_str(), rs[0].sensor.as_str(), rs[0].celsius),
            ("thermal_zone0", "cpu-thermal", 12.376)
        );
    }

    #[test]
    fn trip_points_and_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let z = dir.path().join("class/thermal/thermal_zone3");
        std::fs::create_dir_all(&z).expect("mkdir");
        for (f, v) in [
            ("type", "x86_pkg_temp\n"),
            ("temp", "47000\n"),
            ("trip_point_0_type", "passive\n"),
            ("trip_point_0_temp", "90000\n"),
            ("trip_point_1_type", "critical\n"),
            ("trip_point_1_temp", "105000\n"),
        ] {
            std::fs::write(z.join(f), v).expect("w");
        }
        let rs = read_zones(dir.path()).expect("read");
        assert_eq!(rs[0].critical_celsius, Some(105.0));
        assert_eq!(rs[0].max_celsius, None);
        std::fs::write(z.join("temp"), "nonsense").expect("w");
        let e = read_zones(dir.path()).expect_err("garbage").to_string();
        assert!(e.contains("thermal_zone3/temp: not a number"), "{e}");
    }
}
