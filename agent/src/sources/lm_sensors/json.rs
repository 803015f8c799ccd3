//! `sensors -j` output (see the rules in the parent module).

use super::*;

/// A JSON object as an ordered list of entries, keeping repeated keys.
pub(super) struct Entries<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, V>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// chip -> feature label -> feature (an object of subfeatures, or metadata).
pub(super) type Document = Entries<Entries<serde_json::Value>>;

/// The fields of one `tempN` feature that matter here.
#[derive(Default)]
pub(super) struct TempFields {
    input: Option<f64>,
    max: Option<f64>,
    crit: Option<f64>,
}

/// Parse `sensors -j` output. See the module documentation for the rules.
///
/// # Errors
///
/// [`SourceError::Parse`] when the text is not JSON (after the repairs) or
/// not an object of chip objects.
pub fn parse_json(text: &str) -> Result<Vec<Reading>, SourceError> {
    let repaired = repair_json(strip_bom(text));
    let doc: Document = serde_json::from_str(&repaired)
        .map_err(|e| SourceError::Parse(format!("lm-sensors JSON: {e}")))?;
    let mut out = Collector::default();
    for (chip, features) in doc.0 {
        for (label, value) in features.0 {
            let serde_json::Value::Object(subfeatures) = value else {
                continue;
            };
            // Normally one index per feature; a map keeps odd input linear.
            let mut temps: BTreeMap<u32, TempFields> = BTreeMap::new();
            for (name, value) in &subfeatures {
                let Some((index, suffix)) = temp_subfeature(name) else {
                    continue;
                };
                let fields = temps.entry(index).or_default();
                let number = value.as_f64();
                match suffix {
                    "input" => fields.input = fields.input.or(number),
                    "max" => fields.max = fields.max.or(number),
                    "crit" => fields.crit = fields.crit.or(number),
                    _ => {}
                }
            }
            for (index, fields) in temps {
                if let Some(celsius) = fields.input {
                    out.push(
                        &chip,
                        format!("temp{index}"),
                        &label,
                        celsius,
                        fields.max,
                        fields.crit,
                    );
                }
            }
        }
    }
    Ok(out.out)
}

/// `temp12_crit_alarm` -> `(12, "crit_alarm")`.
pub(super) fn temp_subfeature(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix("temp")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let index = rest[..digits].parse().ok()?;
    let suffix = rest[digits..].strip_prefix('_')?;
    Some((index, suffix))
}

/// Undo what lm-sensors gets wrong in its hand-printed JSON: bare
/// `nan`/`inf` values become `null`; stray commas (after `{`, `[` or another
/// comma, or before `}`/`]`) are dropped. Strings are copied untouched.
pub(super) fn repair_json(text: &str) -> String {
    const NON_FINITE: [&str; 6] = ["-nan", "+nan", "nan", "-inf", "+inf", "inf"];
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    // Last non-whitespace character written outside a string.
    let mut last: Option<char> = None;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
                last = Some(c);
            }
            ',' => {
                let after_open = matches!(last, Some('{' | '[' | ','));
                let next = text[i + 1..].trim_start().chars().next();
                let before_close = matches!(next, Some('}' | ']'));
                if !after_open && !before_close {
                    out.push(c);
                    last = Some(c);
                }
            }
            '-' | '+' | 'n' | 'N' | 'i' | 'I' => {
                let rest = &text.as_bytes()[i..];
                let token = NON_FINITE.iter().find(|t| {
                    rest.len() >= t.len()
                        && rest[..t.len()].eq_ignore_ascii_case(t.as_bytes())
                        && !rest.get(t.len()).is_some_and(u8::is_ascii_alphanumeric)
                });
                match token {
                    Some(t) => {
                        out.push_str("null");
                        // The token is ASCII: one char per byte.
                        for _ in 1..t.len() {
                            chars.next();
                        }
                        last = Some('l');
                    }
                    None => {
                        out.push(c);
                        last = Some(c);
                    }
                }
            }
            _ => {
                out.push(c);
                if !c.is_whitespace() {
                    last = Some(c);
                }
            }
        }
    }
    out
}
