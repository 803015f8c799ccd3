//! Source `hwmon`: Linux hwmon sysfs (`<sysfs>/class/hwmon/hwmon*/temp*_*`).
//!
//! Chip ids follow node_exporter's `hwmonName` so that coolmesh series line
//! up with `node_hwmon_*` on the same dashboard:
//!
//! 1. `device` link resolves: `<parent dir name>_<device name>`, cleaned
//!    (`platform_coretemp_0`, `ieee80211_phy0`);
//! 2. else the `name` file, cleaned (`nct6779`);
//! 3. else the hwmon directory name (`hwmon4`).
//!
//! Where two hwmon directories map to the same id (one Wi-Fi chip with three
//! radios), node_exporter emits colliding series; we keep them apart by
//! appending the cleaned `name` (`ieee80211_phy0_mt7996_phy0_2`).
//!
//! Values are millidegrees Celsius. A sensor whose input is garbage is
//! skipped and logged; the source fails only if no sensor could be read
//! while some existed, or the hwmon class directory is unreadable.

use super::{blocking, read_capped, BusyGuard, Source, SourceError, MAX_SMALL_FILE};
use crate::thermal::Reading;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads every `temp*_input` under `<sysfs>/class/hwmon`.
#[derive(Debug, Clone)]
pub struct Hwmon {
    sysfs: PathBuf,
    busy: BusyGuard,
}

impl Hwmon {
    /// A reader rooted at `sysfs` (normally `/sys`).
    pub fn new(sysfs: impl Into<PathBuf>) -> Self {
        Hwmon {
            sysfs: sysfs.into(),
            busy: BusyGuard::default(),
        }
    }

    /// Read all chips synchronously.
    pub fn read_sync(&self) -> Result<Vec<Reading>, SourceError> {
        read_hwmon(&self.sysfs)
    }
}

impl Source for Hwmon {
    fn name(&self) -> &str {
        "hwmon"
    }

    fn read(self: Arc<Self>) -> BoxFuture<'static, Result<Vec<Reading>, SourceError>> {
        blocking(&self.busy.clone(), move || self.read_sync())
    }
}

/// node_exporter's `cleanMetricName`: lower case, `[^a-z0-9:_]` to `_`,
/// trimmed of `_`.
pub fn clean_name(s: &str) -> String {
    let lowered: String = s
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    lowered.trim_matches('_').to_string()
}

fn chip_id(dir: &Path) -> Option<String> {
    if let Ok(dev) = std::fs::canonicalize(dir.join("device")) {
        let name = dev
            .file_name()
            .map(|s| clean_name(&s.to_string_lossy()))
            .unwrap_or_default();
        let ty = dev
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| clean_name(&s.to_string_lossy()))
            .unwrap_or_default();
        if !ty.is_empty() && !name.is_empty() {
            return Some(format!("{ty}_{name}"));
        }
        if !name.is_empty() {
            return Some(name);
        }
    }
    if let Some(n) = chip_name(dir) {
        return Some(n);
    }
    let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    real.file_name()
        .map(|s| clean_name(&s.to_string_lossy()))
        .filter(|s| !s.is_empty())
}

fn chip_name(dir: &Path) -> Option<String> {
    read_capped(&dir.join("name"), MAX_SMALL_FILE)
        .ok()
        .map(|s| clean_name(&s))
        .filter(|s| !s.is_empty())
}

/// Parse a sysfs millidegree value (`"55000\n"`) into degrees.
pub fn parse_millidegrees(text: &str) -> Option<f64> {
    let t = text.trim();
    // Integers are the sysfs ABI; accept a float too, as node_exporter does.
    t.parse::<i64>()
        .ok()
        .map(|v| v as f64 / 1000.0)
        .or_else(|| {
            t.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(|v| v / 1000.0)
        })
}

fn read_value(path: &Path) -> Result<Option<f64>, SourceError> {
    match read_capped(path, MAX_SMALL_FILE) {
        Ok(text) => match parse_millidegrees(&text) {
            Some(v) => Ok(Some(v)),
            None => Err(SourceError::Parse(format!(
                "{}: not a number: {:?}",
                path.display(),
                truncate(&text, 32)
            ))),
        },
        Err(SourceError::Io { err, .. }) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.trim().chars().take(n).collect()
}

/// Sensor indices `N` for which `tempN_input` exists, sorted numerically.
fn temp_indices(dir: &Path) -> Result<Vec<u32>, SourceError> {
    let rd = std::fs::read_dir(dir).map_err(|err| SourceError::Io {
        path: dir.display().to_string(),
        err,
    })?;
    let mut idx: Vec<u32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_prefix("temp")?
                .strip_suffix("_input")?
                .parse()
                .ok()
        })
        .collect();
    idx.sort_unstable();
    Ok(idx)
}

/// Read the whole hwmon class under `sysfs`.
pub fn read_hwmon(sysfs: &Path) -> Result<Vec<Reading>, SourceError> {
    let class = sysfs.join("class/hwmon");
    let rd = std::fs::read_dir(&class).map_err(|err| SourceError::Io {
        path: class.display().to_string(),
        err,
    })?;
    let mut dirs: Vec<(u64, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e
                .file_name()
                .to_string_lossy()
                .strip_prefix("hwmon")?
                .parse::<u64>()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    dirs.sort();

    // First pass: ids, so collisions can be told apart.
    let ids: Vec<(PathBuf, String)> = dirs
        .into_iter()
        .filter_map(|(_, d)| {
            // Some drivers keep attributes in `device/` (old ABI).
            let dir = if d.join("name").exists() || !d.join("device/name").exists() {
                d
            } else {
                d.join("device")
            };
            chip_id(&dir).map(|id| (dir, id))
        })
        .collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (_, id) in &ids {
        *seen.entry(id.as_str()).or_default() += 1;
    }

    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut attempted = 0usize;
    for (dir, id) in &ids {
        let chip = if seen.get(id.as_str()).copied().unwrap_or(0) > 1 {
            match chip_name(dir) {
                Some(n) => format!("{id}_{n}"),
                None => format!(
                    "{id}_{}",
                    dir.file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
            }
        } else {
            id.clone()
        };
        let indices = match temp_indices(dir) {
            Ok(i) => i,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        for i in indices {
            attempted += 1;
            let base = dir.join(format!("temp{i}"));
            let attr = |suffix: &str| PathBuf::from(format!("{}_{suffix}", base.display()));
            let celsius = match read_value(&attr("input")) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            // A broken threshold file loses the threshold, not the reading.
            let max = read_value(&attr("max")).ok().flatten();
            let crit = read_value(&attr("crit")).ok().flatten();
            let label = read_capped(&attr("label"), MAX_SMALL_FILE)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            let r = Reading {
                chip: chip.clone(),
                sensor: format!("temp{i}"),
                label,
                celsius,
                max_celsius: max,
                critical_celsius: crit,
                source: "hwmon".into(),
                role: Default::default(),
            };
            match r.sanitized() {
                Some(r) => out.push(r),
                None => errors.push(format!(
                    "{}: implausible value {celsius} C ignored",
                    attr("input").display()
                )),
            }
        }
    }
    for e in &errors {
        tracing::debug!(thermal_source = "hwmon", error = %e, "sensor skipped");
    }
    if out.is_empty() && attempted > 0 && !errors.is_empty() {
        return Err(SourceError::Parse(errors.join("; ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs")
    }

    #[test]
    fn clean_name_matches_node_exporter() {
        for (raw, want) in [
            ("coretemp.0", "coretemp_0"),
            ("applesmc.768", "applesmc_768"),
            ("Asus WMI\n", "asus_wmi"),
            ("__x__", "x"),
            ("", ""),
        ] {
            assert_eq!(clean_name(raw), want);
        }
    }

    #[test]
    fn millidegrees_table() {
        for (raw, want) in [
            ("55000\n", Some(55.0)),
            ("-5000", Some(-5.0)),
            ("12376", Some(12.376)),
            ("", None),
            ("abc", None),
            ("NaN", None),
            ("1e3", Some(1.0)),
        ] {
            assert_eq!(parse_millidegrees(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn fixture_chips_and_labels() {
        let rs = read_hwmon(&fixture()).expect("read");
        let find = |chip: &str, sensor: &str| {
            rs.iter()
                .find(|r| r.chip == chip && r.sensor == sensor)
                .cloned()
        };
        let core0 = find("platform_coretemp_0", "temp2").expect("coretemp temp2");
        assert_eq!(core0.label.as_deref(), Some("Core 0"));
        assert_eq!(
            (core0.celsius, core0.max_celsius, core0.critical_celsius),
            (54.0, Some(84.0), Some(100.0))
        );
        let no_name = find("hwmon4", "temp1").expect("hwmon4 without name file");
        assert_eq!(no_name.label.as_deref(), Some("foosensor"));
        // One Wi-Fi chip with three radios: kept apart, not collapsed.
        let wifi: Vec<_> = rs
            .iter()
            .filter(|r| r.chip.starts_with("ieee80211_phy0_"))
            .map(|r| r.celsius)
            .collect();
        assert_eq!(wifi, vec![55.0, 56.0, 57.0]);
        // The bogus chip has no temp* files and contributes nothing.
        assert!(rs.iter().all(|r| !r.chip.contains("bogus")));
        assert_eq!(rs.len(), 15);
    }

    #[test]
    fn garbage_sensor_is_skipped_and_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chip = dir.path().join("class/hwmon/hwmon0");
        std::fs::create_dir_all(&chip).expect("mkdir");
        std::fs::write(chip.join("name"), "test\n").expect("w");
        std::fs::write(chip.join("temp1_input"), "garbage\n").expect("w");
        let e = read_hwmon(dir.path())
            .expect_err("all sensors bad")
            .to_string();
        assert!(
            e.contains("temp1_input") && e.contains("not a number"),
            "{e}"
        );

        // One good sensor next to the bad one: the good one survives.
        std::fs::write(chip.join("temp2_input"), "41000\n").expect("w");
        std::fs::write(chip.join("temp2_crit"), "\u{0}\u{1}garbage").expect("w");
        let rs = read_hwmon(dir.path()).expect("partial");
        assert_eq!(rs.len(), 1);
        assert_eq!((rs[0].celsius, rs[0].critical_celsius), (41.0, None));
    }

    #[test]
    fn empty_huge_binary_and_implausible_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chip = dir.path().join("class/hwmon/hwmon0");
        std::fs::create_dir_all(&chip).expect("mkdir");
        std::fs::write(chip.join("temp1_input"), "").expect("w");
        std::fs::write(chip.join("temp2_input"), vec![b'9'; 100_000]).expect("w");
        std::fs::write(chip.join("temp3_input"), [0xff, 0xfe, 0x80]).expect("w");
        std::fs::write(chip.join("temp4_input"), "65261850\n").expect("w");
        let e = read_hwmon(dir.path())
            .expect_err("nothing usable")
            .to_string();
        assert!(e.contains("temp1_input: not a number"), "{e}");
        assert!(e.contains("larger than 4096"), "{e}");
        assert!(e.contains("not UTF-8"), "{e}");
        assert!(e.contains("implausible"), "{e}");
    }

    #[test]
    fn missing_root_is_an_error_naming_the_path() {
        let e = read_hwmon(Path::new("/nonexistent/sysfs"))
            .expect_err("missing")
            .to_string();
        assert!(e.contains("/nonexistent/sysfs/class/hwmon"), "{e}");
    }

    #[test]
    fn a_sensor_file_that_cannot_be_read_even_by_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chip = dir.path().join("class/hwmon/hwmon0");
        std::fs::create_dir_all(chip.join("temp1_input")).expect("mkdir");
        let e = read_hwmon(dir.path()).expect_err("EISDIR").to_string();
        assert!(e.contains("temp1_input") && e.contains("directory"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_file_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let chip = dir.path().join("class/hwmon/hwmon0");
        std::fs::create_dir_all(&chip).expect("mkdir");
        let f = chip.join("temp1_input");
        std::fs::write(&f, "40000").expect("w");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        // root reads through mode 000; only assert when the OS enforces it.
        if std::fs::read(&f).is_err() {
            let e = read_hwmon(dir.path()).expect_err("unreadable").to_string();
            assert!(e.contains("temp1_input") && e.contains("denied"), "{e}");
        } else {
            assert_eq!(read_hwmon(dir.path()).expect("root").len(), 1);
        }
    }
}
