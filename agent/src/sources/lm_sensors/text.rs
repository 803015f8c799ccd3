//! Plain `sensors` output (see the rules in the parent module).

use super::*;

/// The value printed right after a feature's label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Head {
    /// A temperature, already in Celsius.
    Temp(f64),
    /// `N/A` or `FAULT`: no value, type unknown from the value alone.
    Missing,
    /// A fan, voltage, power, current, energy, intrusion or beep value.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Unit {
    Celsius,
    Fahrenheit,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Temp,
    Other,
    Unknown,
}

/// One feature line and its continuation lines.
pub(super) struct Feature<'a> {
    label: &'a str,
    head: Head,
    /// Everything after the value, continuation lines appended (empty for
    /// `Head::Other`, which is never looked at again).
    body: String,
}

pub(super) struct Chip<'a> {
    name: &'a str,
    features: Vec<Feature<'a>>,
}

/// Limits found in a feature's `( ... )` groups.
#[derive(Default)]
pub(super) struct Limits {
    pub(super) high: Option<f64>,
    pub(super) crit: Option<f64>,
    temp_unit: bool,
    other_unit: bool,
}

/// Parse plain `sensors` output. See the module documentation for the rules.
///
/// # Errors
///
/// [`SourceError::Parse`] when no chip header is found at all.
pub fn parse_text(text: &str) -> Result<Vec<Reading>, SourceError> {
    let mut out = Collector::default();
    let mut chips = 0usize;
    let mut chip: Option<Chip> = None;
    // Do indented lines continue the last feature of `chip`?
    let mut continues = false;
    let mut lines: Peekable<_> = strip_bom(text).lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            if let Some(done) = chip.take() {
                emit_chip(&done, &mut out);
            }
            continues = false;
            continue;
        }
        if trimmed.starts_with("ERROR:") || trimmed.starts_with("Can't get adapter name") {
            continue;
        }
        if trimmed.len() != line.len() {
            if continues {
                if let Some(f) = chip.as_mut().and_then(|c| c.features.last_mut()) {
                    if f.head != Head::Other {
                        f.body.push(' ');
                        f.body.push_str(trimmed.trim_end());
                    }
                }
            }
            continue;
        }
        let line = line.trim_end();
        continues = false;
        if let Some((label, head, rest)) = split_feature(line) {
            if let Some(c) = chip.as_mut() {
                let body = if head == Head::Other {
                    String::new()
                } else {
                    rest.to_string()
                };
                c.features.push(Feature { label, head, body });
                continues = true;
            }
            continue;
        }
        let next_is_adapter = lines.peek().is_some_and(|l| l.starts_with("Adapter:"));
        let no_space = !line.contains(char::is_whitespace) && !line.starts_with("Adapter:");
        if is_chip_name(line) || (next_is_adapter && no_space) {
            if let Some(done) = chip.take() {
                emit_chip(&done, &mut out);
            }
            chip = Some(Chip {
                name: line,
                features: Vec::new(),
            });
            chips += 1;
        }
        // Anything else (`Adapter:` lines, `sensors -u` labels, noise) is skipped.
    }
    if let Some(done) = chip.take() {
        emit_chip(&done, &mut out);
    }
    if chips == 0 {
        return Err(SourceError::Parse(
            "lm-sensors text: no chip header found (expected `sensors` output with lines like `coretemp-isa-0000`)"
                .to_string(),
        ));
    }
    Ok(out.out)
}

/// Number a chip's temperature features and turn them into readings.
pub(super) fn emit_chip(chip: &Chip, out: &mut Collector) {
    let limits: Vec<Limits> = chip
        .features
        .iter()
        .map(|f| {
            if f.head == Head::Other {
                Limits::default()
            } else {
                parse_limits(&f.body)
            }
        })
        .collect();
    // Kind from the feature alone.
    let mut kinds: Vec<Kind> = chip
        .features
        .iter()
        .zip(&limits)
        .map(|(f, l)| match f.head {
            Head::Temp(_) => Kind::Temp,
            Head::Other => Kind::Other,
            Head::Missing if l.temp_unit => Kind::Temp,
            Head::Missing if l.other_unit => Kind::Other,
            Head::Missing if f.body.contains("sensor =") || temp_label_index(f.label).is_some() => {
                Kind::Temp
            }
            Head::Missing => Kind::Unknown,
        })
        .collect();
    // An unknown between two temperatures is a temperature: libsensors
    // prints features grouped by type.
    let mut previous = Vec::with_capacity(kinds.len());
    let mut last_known = None;
    for k in &kinds {
        previous.push(last_known);
        if *k != Kind::Unknown {
            last_known = Some(*k);
        }
    }
    let mut next_known = None;
    for i in (0..kinds.len()).rev() {
        if kinds[i] == Kind::Unknown {
            if previous[i] == Some(Kind::Temp) && next_known == Some(Kind::Temp) {
                kinds[i] = Kind::Temp;
            }
        } else {
            next_known = Some(kinds[i]);
        }
    }

    let mut counter: u32 = 0;
    for ((feature, limits), kind) in chip.features.iter().zip(&limits).zip(&kinds) {
        if *kind != Kind::Temp {
            continue;
        }
        let index = match temp_label_index(feature.label) {
            Some(n) if n > counter => n,
            _ => counter.saturating_add(1),
        };
        counter = index;
        if let Head::Temp(celsius) = feature.head {
            out.push(
                chip.name,
                format!("temp{index}"),
                feature.label,
                celsius,
                limits.high,
                limits.crit,
            );
        }
    }
}

/// `temp7` -> 7: the default label of an unlabelled temperature sensor.
pub(super) fn temp_label_index(label: &str) -> Option<u32> {
    let digits = label.strip_prefix("temp")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Is `s` a libsensors chip name, `prefix-bus-addr` or `prefix-bus-nr-addr`?
pub(super) fn is_chip_name(s: &str) -> bool {
    if s.is_empty() || s.contains(char::is_whitespace) {
        return false;
    }
    let parts: Vec<&str> = s.split('-').collect();
    (1..=2).any(|numbers| {
        if parts.len() < numbers + 2 {
            return false;
        }
        let bus = parts.len() - numbers - 1;
        let prefix_ok = parts[..bus].iter().any(|p| !p.is_empty());
        let numbers_ok = parts[bus + 1..]
            .iter()
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_hexdigit()));
        prefix_ok && numbers_ok && BUS_TYPES.contains(&parts[bus])
    })
}

/// Split `label: value rest` at the first colon followed by a value.
pub(super) fn split_feature(line: &str) -> Option<(&str, Head, &str)> {
    line.match_indices(':').find_map(|(pos, _)| {
        let (head, rest) = parse_head(&line[pos + 1..])?;
        Some((line[..pos].trim(), head, rest))
    })
}

/// The value at the start of `s` and what follows it.
pub(super) fn parse_head(s: &str) -> Option<(Head, &str)> {
    let s = s.trim_start();
    const WORDS: [(&str, Head); 6] = [
        ("N/A", Head::Missing),
        ("FAULT", Head::Missing),
        ("OK", Head::Other),
        ("ALARM", Head::Other),
        ("enabled", Head::Other),
        ("disabled", Head::Other),
    ];
    for (word, head) in WORDS {
        if let Some(rest) = s.strip_prefix(word) {
            if rest.is_empty() || rest.starts_with(char::is_whitespace) || rest.starts_with('(') {
                return Some((head, rest));
            }
        }
    }
    let (value, unit, rest) = quantity(s)?;
    let head = match unit {
        Unit::Celsius => Head::Temp(value),
        Unit::Fahrenheit => Head::Temp(fahrenheit_to_celsius(value)),
        Unit::Other => Head::Other,
    };
    Some((head, rest))
}

/// A number and its unit at the start of `s`, and what follows them.
pub(super) fn quantity(s: &str) -> Option<(f64, Unit, &str)> {
    let (value, len) = number(s)?;
    let after = s[len..].trim_start();
    // Units are short; looking further would make a long line with many
    // colons quadratic.
    let mut end = None;
    for (n, (i, c)) in after.char_indices().enumerate() {
        if c.is_whitespace() || matches!(c, '(' | ')' | ',') {
            end = Some(i);
            break;
        }
        if n == MAX_UNIT_CHARS {
            return None;
        }
    }
    let end = end.unwrap_or(after.len());
    let unit = classify_unit(&after[..end])?;
    Some((value, unit, &after[end..]))
}

/// `°C`, `C`, `Â°C`, `\u{FFFD}C` -> Celsius; `V`, `RPM`, `mW`... -> Other.
pub(super) fn classify_unit(token: &str) -> Option<Unit> {
    let letter = token.trim_start_matches(|c: char| !c.is_ascii() || c == '?');
    match letter {
        "C" => Some(Unit::Celsius),
        "F" => Some(Unit::Fahrenheit),
        _ if !token.is_empty() && token.chars().all(|c| c.is_ascii_alphabetic() || c == '%') => {
            Some(Unit::Other)
        }
        _ => None,
    }
}

/// A decimal number (`+45.0`, `-5`, `.5`) or `nan`/`inf` with an optional
/// sign, at the start of `s`: its value and length in bytes.
pub(super) fn number(s: &str) -> Option<(f64, usize)> {
    let b = s.as_bytes();
    let (negative, start) = match b.first() {
        Some(b'+') => (false, 1),
        Some(b'-') => (true, 1),
        _ => (false, 0),
    };
    let rest = &b[start..];
    for (word, value) in [(&b"nan"[..], f64::NAN), (&b"inf"[..], f64::INFINITY)] {
        if rest.len() >= word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word)
            && !rest.get(word.len()).is_some_and(u8::is_ascii_alphanumeric)
        {
            return Some((if negative { -value } else { value }, start + word.len()));
        }
    }
    let int = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut end = start + int;
    let mut frac = 0;
    if b.get(end) == Some(&b'.') {
        frac = b[end + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if int + frac > 0 {
            end += 1 + frac;
        }
    }
    if int + frac == 0 {
        return None;
    }
    // `s[..end]` is ASCII, so `end` is a char boundary.
    let value = s[..end].parse().ok()?;
    Some((value, end))
}

pub(super) fn fahrenheit_to_celsius(f: f64) -> f64 {
    (f - 32.0) * 5.0 / 9.0
}

/// Read `high` and `crit` from the `( name = value, ... )` groups in `body`.
pub(super) fn parse_limits(body: &str) -> Limits {
    let mut limits = Limits::default();
    let mut rest = body;
    while let Some(open) = rest.find('(') {
        let inside = &rest[open + 1..];
        let (group, after) = match inside.find(')') {
            Some(close) => (&inside[..close], &inside[close + 1..]),
            None => (inside, ""),
        };
        for item in group.split(',') {
            let Some((name, value)) = item.split_once('=') else {
                continue; // alarm names: `ALARM (HIGH, CRIT)`
            };
            let Some((value, unit, _)) = quantity(value.trim_start()) else {
                continue;
            };
            let celsius = match unit {
                Unit::Celsius => value,
                Unit::Fahrenheit => fahrenheit_to_celsius(value),
                Unit::Other => {
                    limits.other_unit = true;
                    continue;
                }
            };
            limits.temp_unit = true;
            let mut words = name.split_whitespace();
            match (words.next(), words.next()) {
                (Some("high"), None) => limits.high = limits.high.or(Some(celsius)),
                (Some("crit"), None) => limits.crit = limits.crit.or(Some(celsius)),
                _ => {}
            }
        }
        rest = after;
    }
    limits
}
