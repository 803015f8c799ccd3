//! Source `sysinfo`: the portable fallback through the `sysinfo` crate
//! (hwmon on Linux, SMC on macOS, WMI on Windows). chip and sensor come from
//! the component label, split at the first space when it has one
//! (`coretemp Package id 0` -> chip `coretemp`, sensor `Package id 0`).
//!
//! Thresholds: only the critical limit (`tempN_crit` on Linux) is a limit.
//! `Component::max()` is the highest temperature *seen* (sysinfo raises it
//! to the current reading on every refresh), not `tempN_max`: mapped to the
//! high threshold it equalled the reading at every new peak and fired
//! `CoolmeshTemperatureHigh` on every host using this source. sysinfo does
//! not expose `tempN_max`; the `hwmon` source reads it.

use super::{blocking, BusyGuard, Source, SourceError};
use crate::thermal::Reading;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};

/// Reads `sysinfo::Components`.
pub struct SysinfoSource {
    // Refreshing an existing list is cheaper than rebuilding it; the mutex
    // is only ever taken on the blocking pool, one read at a time.
    components: Mutex<Option<sysinfo::Components>>,
    busy: BusyGuard,
}

impl Default for SysinfoSource {
    fn default() -> Self {
        SysinfoSource {
            components: Mutex::new(None),
            busy: BusyGuard::default(),
        }
    }
}

/// Split a component label into (chip, sensor).
pub fn split_label(label: &str) -> (String, String) {
    let label = label.trim();
    match label.split_once(' ') {
        Some((chip, rest)) if !rest.trim().is_empty() => {
            (chip.to_string(), rest.trim().to_string())
        }
        _ => (label.to_string(), "temp".to_string()),
    }
}

/// What sysinfo reports for one component.
struct Values<'a> {
    label: &'a str,
    temperature: Option<f32>,
    /// `Component::max()`: the highest temperature seen so far. Never a
    /// threshold (see the module documentation); kept here so that the
    /// mapping below visibly leaves it out.
    #[allow(dead_code)]
    highest_seen: Option<f32>,
    /// `Component::critical()`: the critical limit the platform reports.
    critical: Option<f32>,
}

/// One reading from a component: the critical limit is the only threshold.
fn reading(v: &Values<'_>) -> Option<Reading> {
    let t = v.temperature?;
    let (chip, sensor) = split_label(v.label);
    Reading {
        chip,
        sensor,
        label: Some(v.label.to_string()),
        celsius: f64::from(t),
        max_celsius: None,
        critical_celsius: v.critical.map(f64::from),
        source: "sysinfo".into(),
        role: Default::default(),
    }
    .sanitized()
}

impl Source for SysinfoSource {
    fn name(&self) -> &str {
        "sysinfo"
    }

    fn read(self: Arc<Self>) -> BoxFuture<'static, Result<Vec<Reading>, SourceError>> {
        blocking(&self.busy.clone(), move || {
            let mut guard = self
                .components
                .lock()
                .map_err(|_| SourceError::Parse("sysinfo state poisoned".into()))?;
            let comps =
                match guard.as_mut() {
                    Some(c) => {
                        c.refresh(true);
                        c
                    }
                    None => guard.insert(sysinfo::Components::new_with_refreshed_list().map_err(
                        |e| SourceError::Parse(format!("sysinfo: cannot list components: {e}")),
                    )?),
                };
            Ok(comps
                .iter()
                .filter_map(|c| {
                    reading(&Values {
                        label: c.label(),
                        temperature: c.temperature(),
                        highest_seen: c.max(),
                        critical: c.critical(),
                    })
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_table() {
        assert_eq!(
            split_label("coretemp Package id 0"),
            ("coretemp".into(), "Package id 0".into())
        );
        assert_eq!(split_label("acpitz"), ("acpitz".into(), "temp".into()));
        assert_eq!(split_label(" nvme  "), ("nvme".into(), "temp".into()));
    }

    /// sysinfo raises `max()` to the reading at every new peak: taken as
    /// the high threshold, every peak would read "at the high threshold".
    #[test]
    fn the_highest_temperature_seen_is_not_a_threshold() {
        let r = reading(&Values {
            label: "coretemp Package id 0",
            temperature: Some(71.0),
            highest_seen: Some(71.0),
            critical: Some(100.0),
        })
        .expect("reading");
        assert_eq!(r.celsius, 71.0);
        assert_eq!(r.max_celsius, None);
        assert_eq!(r.critical_celsius, Some(100.0));
        // No temperature, no reading; no critical limit, no threshold.
        assert!(reading(&Values {
            label: "x",
            temperature: None,
            highest_seen: Some(50.0),
            critical: None,
        })
        .is_none());
        let r = reading(&Values {
            label: "acpitz",
            temperature: Some(40.0),
            highest_seen: Some(90.0),
            critical: None,
        })
        .expect("reading");
        assert_eq!((r.max_celsius, r.critical_celsius), (None, None));
    }

    #[tokio::test]
    async fn reads_without_panicking() {
        // A VM or container may have no sensors at all; the call must still work.
        let rs = Arc::new(SysinfoSource::default())
            .read()
            .await
            .expect("sysinfo read");
        assert!(rs.iter().all(|r| crate::thermal::plausible(r.celsius)));
    }
}
