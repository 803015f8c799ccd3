//! The generic part of reading a TOML config: a walker over a
//! `toml_edit` document that records the line of every key it meets,
//! collects every problem (key, line, message) instead of stopping at the
//! first, and suggests the closest known key for a misspelt one. Nothing
//! here knows coolmesh's keys; `read` does.

use std::fmt;
use std::time::Duration;
use toml_edit::{Item, Table, Value};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Dotted key, e.g. `sensors.interval`.
    pub key: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// All problems of a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where each key of a config file is: dotted key (array elements as
/// `key[i]`) to its 1-based line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyLines(pub std::collections::BTreeMap<String, usize>);

impl KeyLines {
    /// The line of `key`, or of the nearest enclosing key or element that
    /// is in the file (`shutdown.command[0]` falls back to
    /// `shutdown.command`, then to `shutdown`). `None`: not in the file
    /// (the default applies).
    pub fn line(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(l) = self.0.get(k) {
                return Some(*l);
            }
            k = match k.rfind(['.', '[']) {
                Some(i) => &k[..i],
                None => return None,
            };
        }
    }

    /// A [`ConfigError`] for `key` with its line.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_string(),
            line: self.line(key),
            message: message.into(),
        }
    }
}

/// Walks a document, collecting errors.
pub(super) struct Walker<'a> {
    pub(super) src: &'a str,
    pub(super) errors: Vec<ConfigError>,
    /// The line of every key and array element met.
    pub(super) lines: KeyLines,
}

impl<'a> Walker<'a> {
    pub(super) fn line(&self, span: Option<std::ops::Range<usize>>) -> Option<usize> {
        span.map(|s| {
            self.src[..s.start.min(self.src.len())]
                .bytes()
                .filter(|b| *b == b'\n')
                .count()
                + 1
        })
    }

    pub(super) fn err(
        &mut self,
        key: &str,
        span: Option<std::ops::Range<usize>>,
        msg: impl Into<String>,
    ) {
        let line = self.line(span);
        self.errors.push(ConfigError {
            key: key.to_string(),
            line,
            message: msg.into(),
        });
    }

    /// Visit every key of `table`, calling `f(walker, key, full_key, item)`;
    /// `f` returns false for an unknown key.
    pub(super) fn table(
        &mut self,
        prefix: &str,
        table: &Table,
        known: &[&str],
        mut f: impl FnMut(&mut Self, &str, &str, &Item),
    ) {
        for (k, item) in table.iter() {
            let full = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            if known.contains(&k) {
                let span = table
                    .key(k)
                    .and_then(|key| key.span())
                    .or_else(|| item.span());
                if let Some(l) = self.line(span) {
                    self.lines.0.insert(full.clone(), l);
                }
                f(self, k, &full, item);
            } else {
                let span = table
                    .key(k)
                    .and_then(|key| key.span())
                    .or_else(|| item.span());
                let hint = suggest(k, known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.err(
                    &full,
                    span,
                    format!("unknown key{hint}; known keys here: {}", known.join(", ")),
                );
            }
        }
    }

    pub(super) fn string(&mut self, key: &str, item: &Item) -> Option<String> {
        match item.as_value() {
            Some(Value::String(s)) => Some(s.value().to_string()),
            _ => {
                self.err(
                    key,
                    item.span(),
                    format!("expected a string, found {}", type_name(item)),
                );
                None
            }
        }
    }

    pub(super) fn nonempty_string(&mut self, key: &str, item: &Item) -> Option<String> {
        let s = self.string(key, item)?;
        if s.trim().is_empty() {
            self.err(key, item.span(), "must not be empty");
            return None;
        }
        Some(s)
    }

    pub(super) fn bool(&mut self, key: &str, item: &Item) -> Option<bool> {
        match item.as_value().and_then(Value::as_bool) {
            Some(b) => Some(b),
            None => {
                self.err(
                    key,
                    item.span(),
                    format!("expected true or false, found {}", type_name(item)),
                );
                None
            }
        }
    }

    pub(super) fn float(
        &mut self,
        key: &str,
        item: &Item,
        range: std::ops::RangeInclusive<f64>,
    ) -> Option<f64> {
        let v = match item.as_value() {
            Some(Value::Float(f)) => *f.value(),
            Some(Value::Integer(i)) => *i.value() as f64,
            _ => {
                self.err(
                    key,
                    item.span(),
                    format!("expected a number, found {}", type_name(item)),
                );
                return None;
            }
        };
        if !range.contains(&v) {
            self.err(
                key,
                item.span(),
                format!("{v} is out of range {}..={}", range.start(), range.end()),
            );
            return None;
        }
        Some(v)
    }

    pub(super) fn int(
        &mut self,
        key: &str,
        item: &Item,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let Some(v) = item.as_value().and_then(Value::as_integer) else {
            self.err(
                key,
                item.span(),
                format!("expected an integer, found {}", type_name(item)),
            );
            return None;
        };
        if !range.contains(&v) {
            self.err(
                key,
                item.span(),
                format!("{v} is out of range {}..={}", range.start(), range.end()),
            );
            return None;
        }
        Some(v)
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        item: &Item,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let s = self.string(key, item)?;
        match humantime::parse_duration(&s) {
            Ok(d) if d < min || d > max => {
                self.err(
                    key,
                    item.span(),
                    format!(
                        "{s:?} is out of range {}..={}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    key,
                    item.span(),
                    format!("{s:?} is not a duration ({e}); write e.g. \"10s\", \"5m\", \"1h30m\""),
                );
                None
            }
        }
    }

    /// A grace or sustain time: zero is refused with `why` (what a zero
    /// would do to the room).
    pub(super) fn nonzero_duration(
        &mut self,
        key: &str,
        item: &Item,
        max: Duration,
        why: &str,
    ) -> Option<Duration> {
        let d = self.duration(key, item, Duration::ZERO, max)?;
        if d.is_zero() {
            self.err(key, item.span(), format!("must not be zero: {why}"));
            return None;
        }
        Some(d)
    }

    pub(super) fn strings(&mut self, key: &str, item: &Item) -> Option<Vec<String>> {
        let Some(arr) = item.as_value().and_then(Value::as_array) else {
            self.err(
                key,
                item.span(),
                format!("expected an array of strings, found {}", type_name(item)),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in arr.iter().enumerate() {
            if let Some(l) = self.line(v.span()) {
                self.lines.0.insert(format!("{key}[{i}]"), l);
            }
            match v.as_str() {
                Some(s) => out.push(s.to_string()),
                None => {
                    ok = false;
                    self.err(
                        &format!("{key}[{i}]"),
                        v.span(),
                        format!("expected a string, found {}", v.type_name()),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    pub(super) fn argv(&mut self, key: &str, item: &Item) -> Option<Vec<String>> {
        let v = self.strings(key, item)?;
        if v.first().is_none_or(|p| p.trim().is_empty()) {
            self.err(
                key,
                item.span(),
                "expected a command as an array, program first, e.g. [\"systemctl\", \"poweroff\"]",
            );
            return None;
        }
        Some(v)
    }

    pub(super) fn one_of(&mut self, key: &str, item: &Item, allowed: &[&str]) -> Option<String> {
        let s = self.string(key, item)?;
        if allowed.contains(&s.as_str()) {
            Some(s)
        } else {
            self.err(
                key,
                item.span(),
                format!("{s:?} is not one of {}", allowed.join(", ")),
            );
            None
        }
    }

    pub(super) fn sub_table<'t>(&mut self, key: &str, item: &'t Item) -> Option<&'t Table> {
        match item.as_table() {
            Some(t) => Some(t),
            None => {
                self.err(
                    key,
                    item.span(),
                    format!("expected a table [{key}], found {}", type_name(item)),
                );
                None
            }
        }
    }
}

pub(super) fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => v.type_name(),
        Item::Table(_) => "table",
        Item::ArrayOfTables(_) => "array of tables",
    }
}

/// Closest known key by edit distance, for "did you mean".
pub(super) fn suggest<'k>(k: &str, known: &[&'k str]) -> Option<&'k str> {
    pub(super) fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .iter()
        .map(|c| (dist(k, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}
