//! The JSON readings schema shared by the `file` and `exec` sources (and
//! printed by `coolmesh sensors --format json`).
//!
//! A document is either an array of readings or an object
//! `{"readings": [...]}`. One reading:
//!
//! ```json
//! {"chip": "inlet", "sensor": "temp1", "label": "Front inlet",
//!  "celsius": 24.5, "max_celsius": 35.0, "critical_celsius": 45.0}
//! ```
//!
//! `chip`, `sensor` and `celsius` are required; `label`, `max_celsius` and
//! `critical_celsius` are optional or null. Unknown fields are ignored so
//! that plugins can carry extra data. Implausible values are dropped like
//! any other source's. An entry that does not fit is skipped and reported;
//! the document fails only when nothing in it is usable.

use super::SourceError;
use crate::thermal::Reading;
use serde::Deserialize;

/// At most this many readings per document: a plugin gone wild must not
/// blow up the exporter's series count.
pub const MAX_READINGS: usize = 4096;
/// Longest chip/sensor/label string kept.
pub const MAX_NAME: usize = 128;

#[derive(Deserialize)]
#[serde(untagged)]
enum Doc {
    List(Vec<serde_json::Value>),
    Wrapped { readings: Vec<serde_json::Value> },
}

#[derive(Deserialize)]
struct Entry {
    chip: String,
    sensor: String,
    #[serde(default)]
    label: Option<String>,
    celsius: f64,
    #[serde(default)]
    max_celsius: Option<f64>,
    #[serde(default)]
    critical_celsius: Option<f64>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && !s.chars().any(char::is_control)
}

/// Parse a readings document, tagging each reading with `source`.
pub fn parse_readings(text: &str, source: &str) -> Result<Vec<Reading>, SourceError> {
    let doc: Doc = serde_json::from_str(text).map_err(|e| {
        SourceError::Parse(format!("not a readings document (want an array of {{chip, sensor, celsius}} or {{\"readings\": [...]}}): {e}"))
    })?;
    let values = match doc {
        Doc::List(v) | Doc::Wrapped { readings: v } => v,
    };
    if values.len() > MAX_READINGS {
        return Err(SourceError::Parse(format!(
            "{} readings, more than the limit of {MAX_READINGS}",
            values.len()
        )));
    }
    let mut out = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        let e: Entry = match serde_json::from_value(v) {
            Ok(e) => e,
            Err(err) => {
                errors.push(format!("reading {i}: {err}"));
                continue;
            }
        };
        if !valid_name(&e.chip) || !valid_name(&e.sensor) {
            errors.push(format!(
                "reading {i}: chip and sensor must be 1..{MAX_NAME} printable characters"
            ));
            continue;
        }
        let r = Reading {
            chip: e.chip,
            sensor: e.sensor,
            label: e.label.filter(|l| valid_name(l)),
            celsius: e.celsius,
            max_celsius: e.max_celsius,
            critical_celsius: e.critical_celsius,
            source: source.to_string(),
            role: Default::default(),
        };
        match r.sanitized() {
            Some(r) => out.push(r),
            None => errors.push(format!(
                "reading {i}: implausible value {} C ignored",
                e.celsius
            )),
        }
    }
    if !errors.is_empty() {
        if out.is_empty() {
            return Err(SourceError::Parse(errors.join("; ")));
        }
        tracing::debug!(source, errors = %errors.join("; "), "readings skipped");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_and_optional_fields() {
        let a = parse_readings(
            r#"[{"chip":"inlet","sensor":"t1","celsius":24.5,"critical_celsius":45,"extra":1}]"#,
            "file",
        )
        .expect("array");
        let b = parse_readings(r#"{"readings":[{"chip":"inlet","sensor":"t1","celsius":24.5,"label":null,"max_celsius":null,"critical_celsius":45}]}"#, "file")
            .expect("object");
        assert_eq!(a, b);
        assert_eq!(a[0].critical_celsius, Some(45.0));
        assert_eq!(a[0].source, "file");
    }

    #[test]
    fn bad_documents_are_clear_errors() {
        for (doc, needle) in [
            ("", "not a readings document"),
            ("garbage", "not a readings document"),
            ("{\"readings\": 3}", "not a readings document"),
            (
                "[{\"chip\":\"a\",\"sensor\":\"b\"}]",
                "missing field `celsius`",
            ),
            (
                "[{\"chip\":\"a\",\"sensor\":\"b\",\"celsius\":\"hot\"}]",
                "invalid type",
            ),
            (
                "[{\"chip\":\"a\",\"sensor\":\"b\",\"celsius\":9000}]",
                "implausible",
            ),
            (
                "[{\"chip\":\"\",\"sensor\":\"b\",\"celsius\":20}]",
                "printable",
            ),
        ] {
            let e = parse_readings(doc, "file").expect_err(doc).to_string();
            assert!(e.contains(needle), "{doc}: {e}");
        }
    }

    #[test]
    fn good_entries_survive_bad_neighbours() {
        let rs = parse_readings(r#"[{"chip":"a","sensor":"b","celsius":20},{"chip":"a"},{"chip":"a","sensor":"c","celsius":1e9}]"#, "exec").expect("partial");
        assert_eq!(rs.len(), 1);
    }

    #[test]
    fn too_many_readings() {
        let one = r#"{"chip":"a","sensor":"b","celsius":20}"#;
        let doc = format!("[{}]", vec![one; MAX_READINGS + 1].join(","));
        assert!(parse_readings(&doc, "file")
            .expect_err("limit")
            .to_string()
            .contains("limit"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".*") {
            let _ = parse_readings(&s, "file");
        }
    }
}
