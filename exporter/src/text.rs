//! A small writer for the Prometheus text exposition format (version 0.0.4).
//!
//! The snapshot families are written with it straight into the response
//! buffer, without building the `prometheus` crate's protobuf values first
//! (BENCHMARKS.md, section 2: that intermediate cost about 300 ns of CPU per
//! series). Its output must be byte-identical to the crate's `TextEncoder`,
//! because `/metrics` interleaves both (the registered metrics still go
//! through `TextEncoder`) and the golden file pins the bytes:
//!
//! - label values escape backslash, double quote and line feed, nothing else
//!   (`escape_string(v, true)` in the crate);
//! - help text escapes backslash and line feed only, and an empty help text
//!   writes no `# HELP` line;
//! - sample values are formatted as Rust's `f64` `Display`, which is what the
//!   crate's `value.to_string()` does: `NaN`, `inf`, `-inf`, `-0`, integers
//!   without a fraction, never an exponent. (`inf` is not the `+Inf` of the
//!   format's documentation, but Prometheus parses values with Go's
//!   `ParseFloat`, which accepts it; matching the crate keeps one page
//!   format whichever encoder wrote a family.)

use std::io::Write;

/// Append `v` escaped as a label value (backslash, double quote, line feed).
pub fn write_label_value(out: &mut Vec<u8>, v: &str) {
    write_escaped(out, v, true);
}

/// Append `help` escaped as help text (backslash and line feed).
pub fn write_help_text(out: &mut Vec<u8>, help: &str) {
    write_escaped(out, help, false);
}

// The three escaped characters are ASCII, and no byte of a multi-byte UTF-8
// sequence is ASCII, so escaping byte by byte gives exactly the crate's
// char-by-char result. memchr (as the crate uses) finds the next one a word
// at a time; most values have none and are copied in one go.
fn write_escaped(out: &mut Vec<u8>, v: &str, quote: bool) {
    let mut rest = v.as_bytes();
    loop {
        let next = if quote {
            memchr::memchr3(b'\\', b'\n', b'"', rest)
        } else {
            memchr::memchr2(b'\\', b'\n', rest)
        };
        let Some(i) = next else {
            out.extend_from_slice(rest);
            return;
        };
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(match rest[i] {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            _ => b"\\\"",
        });
        rest = &rest[i + 1..];
    }
}

/// Append the `# HELP` (unless `help` is empty) and `# TYPE` lines of a
/// family.
pub fn write_header(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    if !help.is_empty() {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        write_help_text(out, help);
        out.push(b'\n');
    }
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
}

/// Append one sample line: `name{n1="v1",...} value`. `values` pair up
/// with `names` (missing ones are written as empty, extra ones ignored).
/// Names are written
/// as they are (they come from the exporter's own definitions).
pub fn write_sample(out: &mut Vec<u8>, name: &str, names: &[&str], values: &[&str], value: f64) {
    SampleLine::new(name, names).write(out, values, value);
}

/// The constant parts of a family's sample lines, built once per family so
/// that writing a sample is a few copies (`name{a="`, value, `",b="`, value,
/// `"} `, number) rather than one per syntax element.
pub struct SampleLine {
    // `name{first="` with labels, `name ` without.
    open: Vec<u8>,
    // `",next="` for each further label.
    seps: Vec<Vec<u8>>,
    labelled: bool,
}

impl SampleLine {
    /// The template for family `name` with label names `names`.
    pub fn new(name: &str, names: &[&str]) -> Self {
        let mut open = name.as_bytes().to_vec();
        let mut seps = Vec::new();
        match names.split_first() {
            None => open.push(b' '),
            Some((first, rest)) => {
                open.push(b'{');
                open.extend_from_slice(first.as_bytes());
                open.extend_from_slice(b"=\"");
                seps = rest
                    .iter()
                    .map(|n| [b"\",", n.as_bytes(), b"=\""].concat())
                    .collect();
            }
        }
        SampleLine {
            open,
            seps,
            labelled: !names.is_empty(),
        }
    }

    /// Append one sample; `values` pair up with the label names (missing
    /// ones are written as empty, extra ones ignored).
    pub fn write(&self, out: &mut Vec<u8>, values: &[&str], value: f64) {
        out.extend_from_slice(&self.open);
        if self.labelled {
            let mut values = values.iter();
            write_label_value(out, values.next().copied().unwrap_or(""));
            for (sep, v) in self.seps.iter().zip(values.chain(std::iter::repeat(&""))) {
                out.extend_from_slice(sep);
                write_label_value(out, v);
            }
            out.extend_from_slice(b"\"} ");
        }
        write_value(out, value);
        out.push(b'\n');
    }
}

/// Append `v` exactly as `v.to_string()` would.
pub fn write_value(out: &mut Vec<u8>, v: f64) {
    // Fast path for integral values, most of a page (flags, counts, whole
    // degrees): below 1e15 an integral f64 is an exact integer whose
    // shortest round-trip digits are its own digits (neighbouring floats are
    // at most 1/8 apart there), so writing the integer gives the same bytes
    // as `Display` without its float-to-decimal search. -0.0 is excluded:
    // `Display` writes it as `-0`.
    if v.fract() == 0.0 && v.abs() < 1e15 && !(v == 0.0 && v.is_sign_negative()) {
        write_int(out, v as i64);
    } else {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{v}");
    }
}

fn write_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: f64) -> String {
        let mut out = Vec::new();
        write_value(&mut out, v);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn values_match_display() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            40.5,
            1e15,
            1e15 - 1.0,
            -(1e15 - 1.0),
            1e21,
            1e300,
            -1e-300,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            9_007_199_254_740_993.0,
            1_700_000_000.123,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_eq!(value(v), v.to_string(), "{v:?}");
        }
        for i in -2000..2000 {
            let v = f64::from(i) * 0.25;
            assert_eq!(value(v), v.to_string(), "{v:?}");
        }
    }

    #[test]
    fn escaping() {
        let mut out = Vec::new();
        write_label_value(&mut out, "a\\b\"c\nd é \t\r");
        assert_eq!(out, "a\\\\b\\\"c\\nd é \t\r".as_bytes());
        out.clear();
        write_help_text(&mut out, "a\\b\"c\nd");
        assert_eq!(out, b"a\\\\b\"c\\nd");
    }

    #[test]
    fn sample_lines() {
        let mut out = Vec::new();
        write_sample(&mut out, "m", &[], &[], 1.0);
        write_sample(&mut out, "m", &["a", "b"], &["x", ""], f64::NAN);
        write_header(&mut out, "m", "", "gauge");
        assert_eq!(out, b"m 1\nm{a=\"x\",b=\"\"} NaN\n# TYPE m gauge\n");
    }
}
