//! The tool's output: sensor rows in any of the three formats, the
//! temperatures among them, as readings (see the module documentation of
//! `ipmi` for the rules).

use super::{MAX_LINE, MAX_NAME, MAX_SENSORS, SOURCE_NAME};
use crate::sources::SourceError;
use crate::thermal::Reading;
use std::collections::HashMap;

/// One sensor row, before the temperature filter.
#[derive(Debug, PartialEq)]
struct Row<'a> {
    name: &'a str,
    reading: &'a str,
    unit: &'a str,
    /// ipmitool's status column (`ok`, `ns`, `cr`...), empty for freeipmi.
    status: &'a str,
    unc: Option<&'a str>,
    ucr: Option<&'a str>,
}

fn row(line: &str) -> Option<Row<'_>> {
    if line.len() > MAX_LINE {
        return None;
    }
    let sep = if line.contains('|') { '|' } else { ',' };
    let f: Vec<&str> = line.split(sep).map(str::trim).collect();
    let r = match f.len() {
        10 => Row {
            name: f[0],
            reading: f[1],
            unit: f[2],
            status: f[3],
            unc: Some(f[7]),
            ucr: Some(f[8]),
        },
        12 => {
            // freeipmi: a numeric record id first; the header has "ID".
            f[0].parse::<u32>().ok()?;
            Row {
                name: f[1],
                reading: f[3],
                unit: f[4],
                status: "",
                unc: Some(f[8]),
                ucr: Some(f[9]),
            }
        }
        4 => Row {
            name: f[0],
            reading: f[1],
            unit: f[2],
            status: f[3],
            unc: None,
            ucr: None,
        },
        _ => return None,
    };
    (!r.name.is_empty()).then_some(r)
}

/// Temperature unit of a row: `Some(true)` Fahrenheit, `Some(false)`
/// Celsius, `None` not a temperature (or no unit printed: no reading).
fn fahrenheit(unit: &str) -> Option<bool> {
    match unit.to_ascii_lowercase().as_str() {
        "degrees c" | "c" => Some(false),
        "degrees f" | "f" => Some(true),
        _ => None,
    }
}

/// A number, or `None` for `na`, `N/A`, `ns`, `disabled`, empty and any
/// other text (`0x1f`, `nan`, `inf`).
fn number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !ok {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Parse the tool's output. See the module documentation for the rules.
///
/// # Errors
///
/// [`SourceError::Parse`] when the output has no sensor row, too many, or
/// temperature rows none of which has a reading.
pub fn parse(text: &str) -> Result<Vec<Reading>, SourceError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // A last line without its newline was cut off: never use half a row.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut rows = 0usize;
    let mut temps = 0usize;
    // Rows without a unit: ipmitool prints none when there is no reading,
    // so their type is unknown.
    let mut unknown = 0usize;
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in complete.lines() {
        let Some(r) = row(line) else { continue };
        rows += 1;
        if rows > MAX_SENSORS {
            return Err(SourceError::Parse(format!(
                "more than {MAX_SENSORS} sensor rows, not a BMC's sensor list"
            )));
        }
        let Some(f) = fahrenheit(r.unit) else {
            if r.unit.is_empty() {
                unknown += 1;
            }
            continue;
        };
        temps += 1;
        if matches!(
            r.status.to_ascii_lowercase().as_str(),
            "ns" | "na" | "disabled"
        ) {
            continue;
        }
        let convert = |v: f64| if f { (v - 32.0) * 5.0 / 9.0 } else { v };
        let Some(celsius) = number(r.reading).map(convert) else {
            continue;
        };
        let name = clean_name(r.name);
        if name.is_empty() {
            continue;
        }
        let n = seen.entry(name.clone()).or_insert(0);
        *n += 1;
        let sensor = if *n == 1 {
            name.clone()
        } else {
            format!("{name} #{n}")
        };
        let reading = Reading {
            chip: SOURCE_NAME.to_string(),
            sensor,
            label: Some(name),
            celsius,
            max_celsius: r.unc.and_then(number).map(convert),
            critical_celsius: r.ucr.and_then(number).map(convert),
            source: SOURCE_NAME.to_string(),
            role: Default::default(),
        };
        if let Some(r) = reading.sanitized() {
            out.push(r);
        }
    }
    if rows == 0 {
        return Err(SourceError::Parse(
            "no sensor rows (expected `ipmitool sensor` or `ipmi-sensors --output-sensor-thresholds` output)"
                .into(),
        ));
    }
    if temps == 0 && unknown > 0 {
        return Err(SourceError::Parse(format!(
            "{rows} sensor rows, none with a reading (BMC busy or resetting?)"
        )));
    }
    if temps == 0 {
        return Err(SourceError::Parse(format!(
            "{rows} sensor rows, none a temperature"
        )));
    }
    if out.is_empty() {
        return Err(SourceError::Parse(format!(
            "{temps} temperature sensors, none with a plausible reading (BMC busy or resetting?)"
        )));
    }
    Ok(out)
}
