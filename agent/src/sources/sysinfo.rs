//! Source `sysinfo`: the portable fallback through the `sysinfo` crate
//! (hwmon on Linux, SMC on macOS, WMI on Windows). chip and sensor come from
//! the component label, split at the first space when it has one
//! (`coretemp Package id 0` -> chip `coretemp`, sensor `Package id 0`).

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
            let mut out = Vec::new();
            for c in comps.iter() {
                let Some(t) = c.temperature() else { continue };
                let (chip, sensor) = split_label(c.label());
                let r = Reading {
                    chip,
                    sensor,
                    label: Some(c.label().to_string()),
                    celsius: f64::from(t),
                    max_celsius: c.max().map(f64::from),
                    critical_celsius: c.critical().map(f64::from),
                    source: "sysinfo".into(),
                    role: Default::default(),
                };
                if let Some(r) = r.sanitized() {
                    out.push(r);
                }
            }
            Ok(out)
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
