//! Tests of the lm_sensors source: text and JSON quirks, both formats of
//! the same machine, generated documents, and the source's modes.

use super::*;
use crate::sources::lm_sensors::json::*;
use crate::sources::lm_sensors::text::*;
use proptest::collection::vec;
use proptest::prelude::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/lm_sensors/",
            $name
        ))
    };
}

/// `(chip, sensor, label, celsius, max, crit)`
type Row = (
    &'static str,
    &'static str,
    Option<&'static str>,
    f64,
    Option<f64>,
    Option<f64>,
);

/// The dell_smm chip of a Dell laptop: `dell_smm.json` and the text of the
/// same laptop (`errors.txt`) give the same rows.
#[rustfmt::skip]
const DELL_SMM: &[Row] = &[
    ("dell_smm-virtual-0", "temp1", Some("CPU"), 56.0, None, None),
    ("dell_smm-virtual-0", "temp2", Some("Ambient"), 42.0, None, None),
    ("dell_smm-virtual-0", "temp3", Some("SODIMM"), 40.0, None, None),
    ("dell_smm-virtual-0", "temp5", Some("Other"), 38.0, None, None),
];

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => close(a, b),
        _ => false,
    }
}

fn show(readings: &[Reading]) -> String {
    readings
        .iter()
        .map(|r| {
            format!(
                "({:?}, {:?}, {:?}, {}, {:?}, {:?})",
                r.chip, r.sensor, r.label, r.celsius, r.max_celsius, r.critical_celsius
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
fn assert_rows(got: &[Reading], want: &[Row]) {
    assert_eq!(got.len(), want.len(), "got:\n{}", show(got));
    for (g, w) in got.iter().zip(want) {
        let same = g.chip == w.0
            && g.sensor == w.1
            && g.label.as_deref() == w.2
            && close(g.celsius, w.3)
            && close_opt(g.max_celsius, w.4)
            && close_opt(g.critical_celsius, w.5)
            && g.source == SOURCE_NAME;
        assert!(same, "want {w:?}\ngot:\n{}", show(got));
    }
}

#[track_caller]
fn text(input: &str) -> Vec<Reading> {
    parse_text(input).unwrap_or_else(|e| panic!("parse_text: {e}"))
}

#[track_caller]
fn json(input: &str) -> Vec<Reading> {
    parse_json(input).unwrap_or_else(|e| panic!("parse_json: {e}"))
}

mod both;
mod json;
mod modes;
mod props;
mod text;
