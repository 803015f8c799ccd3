//! The daemon's log lines as Prometheus' own binaries print them (Go's
//! `log/slog` through `prometheus/common/promslog`), so that Loki's
//! `| logfmt` / `| json`, Grafana's level detection and the log pipelines
//! an operator already has for Prometheus and node_exporter read ours too:
//!
//! ```text
//! time=2026-01-02T03:04:05.678Z level=INFO source=agent.rs:412 msg="serving HTTP" address=127.0.0.1:10027
//! {"time":"2026-01-02T03:04:05.678Z","level":"INFO","source":"agent.rs:412","msg":"serving HTTP","address":"127.0.0.1:10027"}
//! ```
//!
//! - Keys `time`, `level`, `source`, `msg` in that order, then the fields
//!   of the event's spans (outermost first), then the event's own fields,
//!   all flat. A field that would shadow one of the four is renamed
//!   `logged_<key>`, as promslog does.
//! - `time`: UTC, RFC 3339 with milliseconds (slog's text handler).
//! - `level`: `DEBUG`, `INFO`, `WARN`, `ERROR` as slog writes them
//!   (Prometheus 3 does not lower-case them), and `TRACE`, which slog lacks.
//! - `source`: the file's name and line (`agent.rs:412`); for `mod.rs`,
//!   `lib.rs` and `main.rs`, which say nothing alone, with their folder
//!   (`cluster/mod.rs:40`), and a dependency's with its crate
//!   (`libp2p-swarm-0.48.0/src/lib.rs:1005`).
//! - logfmt values are quoted when empty or when they hold a space, `=`,
//!   `"`, a control or other invisible character; inside quotes `"` and
//!   `\` are backslash-escaped, and newlines, tabs and other control or
//!   invisible characters are written `\n`, `\r`, `\t` or `\uXXXX`: the
//!   escapes that go-logfmt (Loki's parser) and JSON both read. Printable
//!   non-ASCII text is written as it is (UTF-8). One event is always one
//!   line.
//! - JSON keeps numbers and booleans typed; a float that JSON cannot hold
//!   (NaN, infinities) becomes a string.

use std::fmt::{self, Write as _};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The two encodings of `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Logfmt,
    Json,
}

/// The event formatter (a tracing-subscriber `FormatEvent`).
#[derive(Debug, Clone, Copy)]
pub struct PromFormat {
    pub encoding: Encoding,
}

/// A value of a field: tracing's recorded types map onto JSON's.
type Value = serde_json::Value;

/// The keys every line starts with; a field of the same name is renamed.
const RESERVED: [&str; 4] = ["time", "level", "source", "msg"];

/// One line: the four fixed keys, then the fields in order, unique keys.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Line {
    pub time: String,
    pub level: &'static str,
    pub source: Option<String>,
    pub msg: String,
    pub fields: Vec<(String, Value)>,
}

impl Line {
    /// Add a field; a later field of the same name (an event's field over
    /// its span's) replaces the earlier value in place.
    fn put(&mut self, key: &str, value: Value) {
        let key = if RESERVED.contains(&key) {
            format!("logged_{key}")
        } else {
            key.to_string()
        };
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key, value)),
        }
    }

    /// The logfmt line, without its newline. `colour` paints the level
    /// (only ever on a terminal: see `logging::log_colour`).
    pub fn logfmt(&self, colour: bool) -> String {
        let mut s = String::with_capacity(128);
        s.push_str("time=");
        s.push_str(&self.time);
        s.push_str(" level=");
        match (colour, level_colour(self.level)) {
            (true, Some(c)) => {
                let _ = write!(s, "\x1b[{c}m{}\x1b[0m", self.level);
            }
            _ => s.push_str(self.level),
        }
        if let Some(src) = &self.source {
            s.push_str(" source=");
            push_logfmt_value(&mut s, src);
        }
        s.push_str(" msg=");
        push_logfmt_value(&mut s, &self.msg);
        for (k, v) in &self.fields {
            s.push(' ');
            push_logfmt_key(&mut s, k);
            s.push('=');
            match v {
                Value::String(t) => push_logfmt_value(&mut s, t),
                Value::Null => s.push_str("\"\""),
                other => push_logfmt_value(&mut s, &other.to_string()),
            }
        }
        s
    }

    /// The JSON line, without its newline: one flat object, keys in order.
    pub fn json(&self) -> String {
        let mut s = String::with_capacity(160);
        let mut first = true;
        let mut pair = |s: &mut String, k: &str, v: &Value| {
            if !first {
                s.push(',');
            }
            first = false;
            // Strings and numbers serialise infallibly; the fallback keeps
            // the line valid JSON whatever happens.
            s.push_str(&serde_json::to_string(k).unwrap_or_else(|_| "\"_\"".into()));
            s.push(':');
            s.push_str(&serde_json::to_string(v).unwrap_or_else(|_| "null".into()));
        };
        s.push('{');
        pair(&mut s, "time", &Value::String(self.time.clone()));
        pair(&mut s, "level", &Value::String(self.level.into()));
        if let Some(src) = &self.source {
            pair(&mut s, "source", &Value::String(src.clone()));
        }
        pair(&mut s, "msg", &Value::String(self.msg.clone()));
        for (k, v) in &self.fields {
            pair(&mut s, k, v);
        }
        s.push('}');
        s
    }
}

/// slog's level names; TRACE, which slog has not, by the same pattern.
pub fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

fn level_colour(level: &str) -> Option<&'static str> {
    match level {
        "ERROR" => Some("1;31"),
        "WARN" => Some("33"),
        "INFO" => Some("32"),
        "DEBUG" => Some("34"),
        "TRACE" => Some("35"),
        _ => None,
    }
}

/// Characters that are neither controls nor whitespace but are invisible or
/// reorder text on a terminal (zero-width, bidi controls, BOM): escaped, so
/// that a log line shows what it holds (a peer's name could carry them).
fn invisible(c: char) -> bool {
    matches!(c, '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}')
}

/// A character that cannot stand in an unquoted logfmt value.
fn needs_quote(c: char) -> bool {
    c <= ' '
        || c == '='
        || c == '"'
        || c == '\u{7f}'
        || c.is_control()
        || c.is_whitespace()
        || invisible(c)
}

/// Append `v` as a logfmt value: bare when it can be, quoted and escaped
/// otherwise (see the module's rules).
pub fn push_logfmt_value(s: &mut String, v: &str) {
    if !v.is_empty() && !v.chars().any(needs_quote) {
        s.push_str(v);
        return;
    }
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            ' ' => s.push(' '),
            c if c.is_control() || c.is_whitespace() || invisible(c) => {
                // Every such character is in the Basic Multilingual Plane,
                // so one \uXXXX holds it.
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

/// Append a key: logfmt keys cannot be quoted, so a character that would
/// end or split the key becomes `_` (tracing's field names never have one;
/// this guards the format, not a real case).
pub fn push_logfmt_key(s: &mut String, k: &str) {
    if k.is_empty() {
        s.push('_');
        return;
    }
    for c in k.chars() {
        s.push(if needs_quote(c) { '_' } else { c });
    }
}

/// UTC time as RFC 3339 with milliseconds, `2026-01-02T03:04:05.678Z`.
pub fn rfc3339_millis(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`): no date crate for one line per event.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `source` from a file path and line: the file's name, with its folder
/// for the names that say nothing alone, and the crate's folder above a
/// `src` (`libp2p-swarm-0.48.0/src/lib.rs`: which dependency logged).
pub fn source(file: &str, line: Option<u32>) -> String {
    let mut parts = file.rsplit(['/', '\\']).filter(|p| !p.is_empty());
    let name = parts.next().unwrap_or(file);
    let mut s = match (name, parts.next(), parts.next()) {
        ("mod.rs" | "lib.rs" | "main.rs", Some("src"), Some(krate)) => {
            format!("{krate}/src/{name}")
        }
        ("mod.rs" | "lib.rs" | "main.rs", Some(dir), _) => format!("{dir}/{name}"),
        _ => name.to_string(),
    };
    if let Some(l) = line {
        let _ = write!(s, ":{l}");
    }
    s
}

/// Collects an event's or a span's fields as typed values.
struct Collect<'a> {
    line: &'a mut Line,
    /// Whether `message` is the line's `msg` (events) or a plain field.
    message_is_msg: bool,
}

impl Collect<'_> {
    fn record(&mut self, field: &Field, value: Value) {
        let name = field.name();
        // tracing-log's copies of a `log` record's metadata: already in
        // the normalized metadata (source, level), not fields of the event.
        if name.starts_with("log.") {
            return;
        }
        if name == "message" && self.message_is_msg {
            self.line.msg = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            return;
        }
        self.line.put(name, value);
    }
}

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, Value::Bool(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(go_float(value)));
        self.record(field, v);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole chain, as anyhow's `{:#}` writes it: the cause is
        // usually the useful part.
        let mut s = value.to_string();
        let mut src = value.source();
        while let Some(e) = src {
            let _ = write!(s, ": {e}");
            src = e.source();
        }
        self.record(field, Value::String(s));
    }
}

/// NaN and the infinities as Go prints them.
fn go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// Spans' fields, stored by the fmt layer when a span opens as JSON (typed,
/// so both encodings can write them); merged when a span records more.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanFields;

impl SpanFields {
    fn collect(fields: impl tracing_subscriber::field::RecordFields, into: &mut Line) {
        let mut c = Collect {
            line: into,
            message_is_msg: false,
        };
        fields.record(&mut c);
    }

    /// `[["key", value], ...]`: a list, not an object, to keep the
    /// fields in the order the span declares them.
    fn encode(line: &Line) -> String {
        let pairs: Vec<Value> = line
            .fields
            .iter()
            .map(|(k, v)| Value::Array(vec![Value::String(k.clone()), v.clone()]))
            .collect();
        Value::Array(pairs).to_string()
    }

    fn decode(s: &str, into: &mut Line) {
        let Ok(Value::Array(pairs)) = serde_json::from_str::<Value>(s) else {
            return;
        };
        for p in pairs {
            if let Value::Array(mut kv) = p {
                if let (Some(v), Some(Value::String(k))) = (kv.pop(), kv.pop()) {
                    into.put(&k, v);
                }
            }
        }
    }
}

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut line = Line::default();
        Self::collect(fields, &mut line);
        writer.write_str(&Self::encode(&line))
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut line = Line::default();
        Self::decode(&current.fields, &mut line);
        Self::collect(fields, &mut line);
        current.fields = Self::encode(&line);
        Ok(())
    }
}

impl<S> FormatEvent<S, SpanFields> for PromFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` record (a dependency that logs through the `log` crate)
        // carries its real level, file and line in its normalized metadata.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut line = Line {
            time: rfc3339_millis(std::time::SystemTime::now()),
            level: level_name(meta.level()),
            source: meta
                .file()
                .map(|f| source(f, meta.line()))
                .or_else(|| Some(meta.target().to_string())),
            ..Line::default()
        };
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<FormattedFields<SpanFields>>() {
                    SpanFields::decode(&f.fields, &mut line);
                }
            }
        }
        event.record(&mut Collect {
            line: &mut line,
            message_is_msg: true,
        });
        let text = match self.encoding {
            Encoding::Logfmt => line.logfmt(writer.has_ansi_escapes()),
            Encoding::Json => line.json(),
        };
        writer.write_str(&text)?;
        writer.write_char('\n')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> String {
        let mut out = String::new();
        push_logfmt_value(&mut out, s);
        out
    }

    #[test]
    fn logfmt_values_are_bare_only_when_safe() {
        let table = [
            ("plain", "plain"),
            ("127.0.0.1:10027", "127.0.0.1:10027"),
            ("/ip4/10.0.0.12/tcp/9877", "/ip4/10.0.0.12/tcp/9877"),
            ("", "\"\""),
            ("two words", "\"two words\""),
            ("a=b", "\"a=b\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("line1\nline2", "\"line1\\nline2\""),
            ("cr\rtab\t", "\"cr\\rtab\\t\""),
            // A backslash alone needs no quotes (slog and go-logfmt agree).
            ("C:\\x", "C:\\x"),
            // ...but inside quotes it is escaped, so it reads back.
            ("a \\ b", "\"a \\\\ b\""),
            ("température", "température"),
            ("机房 三", "\"机房 三\""),
            ("bell\u{7}", "\"bell\\u0007\""),
            ("esc\u{1b}[31m", "\"esc\\u001b[31m\""),
            ("del\u{7f}", "\"del\\u007f\""),
            ("nbsp\u{a0}x", "\"nbsp\\u00a0x\""),
            ("zw\u{200b}j", "\"zw\\u200bj\""),
            ("rtl\u{202e}txt", "\"rtl\\u202etxt\""),
            ("ls\u{2028}", "\"ls\\u2028\""),
        ];
        for (input, want) in table {
            assert_eq!(v(input), want, "{input:?}");
        }
    }

    #[test]
    fn logfmt_escapes_read_back_as_json_strings() {
        // Every escape written inside quotes is a JSON escape too, so a
        // quoted value is a valid JSON string holding the original text.
        for s in [
            "a \"q\" \\ b",
            "x\ny\r\tz",
            "\u{1}\u{1f}\u{7f}\u{85}",
            "é 温度 \u{feff}",
            "",
        ] {
            let q = v(s);
            let back: String = serde_json::from_str(&q).expect("json string");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn keys_never_break_the_line() {
        let mut s = String::new();
        push_logfmt_key(&mut s, "a b=\"c\"\n");
        assert_eq!(s, "a_b__c__");
        s.clear();
        push_logfmt_key(&mut s, "");
        assert_eq!(s, "_");
        s.clear();
        push_logfmt_key(&mut s, "peer.id");
        assert_eq!(s, "peer.id");
    }

    fn line() -> Line {
        let mut l = Line {
            time: "2026-01-02T03:04:05.678Z".into(),
            level: "INFO",
            source: Some("agent.rs:12".into()),
            msg: "serving HTTP".into(),
            fields: vec![],
        };
        l.put("address", Value::String("127.0.0.1:10027".into()));
        l.put("peers", Value::from(3u64));
        l.put("ok", Value::Bool(true));
        l.put("note", Value::String("has \"quotes\" and = signs".into()));
        l.put("msg", Value::String("an event field named msg".into()));
        l
    }

    #[test]
    fn a_logfmt_line_has_promslog_keys_in_order() {
        assert_eq!(
            line().logfmt(false),
            "time=2026-01-02T03:04:05.678Z level=INFO source=agent.rs:12 msg=\"serving HTTP\" \
             address=127.0.0.1:10027 peers=3 ok=true note=\"has \\\"quotes\\\" and = signs\" \
             logged_msg=\"an event field named msg\""
        );
        assert_eq!(
            line().logfmt(true).split(' ').nth(1),
            Some("level=\x1b[32mINFO\x1b[0m")
        );
    }

    #[test]
    fn a_json_line_is_flat_and_typed() {
        let s = line().json();
        assert!(s.starts_with(r#"{"time":"2026-01-02T03:04:05.678Z","level":"INFO","source":"agent.rs:12","msg":"serving HTTP","#), "{s}");
        let v: Value = serde_json::from_str(&s).expect("json");
        assert_eq!(v["address"], "127.0.0.1:10027");
        assert_eq!(v["peers"], 3);
        assert_eq!(v["ok"], true);
        assert_eq!(v["logged_msg"], "an event field named msg");
        assert!(v.get("fields").is_none() && v.get("timestamp").is_none());
    }

    #[test]
    fn a_later_field_replaces_an_earlier_one() {
        let mut l = Line::default();
        l.put("peer", Value::from("span"));
        l.put("n", Value::from(1));
        l.put("peer", Value::from("event"));
        assert_eq!(
            l.fields,
            vec![
                ("peer".into(), Value::from("event")),
                ("n".into(), Value::from(1))
            ]
        );
    }

    #[test]
    fn time_is_utc_rfc3339_with_milliseconds() {
        use std::time::{Duration, UNIX_EPOCH};
        let table = [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.005Z"),
            (1_767_323_045, 678, "2026-01-02T03:04:05.678Z"),
            (4_107_542_399, 999, "2100-02-28T23:59:59.999Z"),
        ];
        for (secs, ms, want) in table {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms);
            assert_eq!(rfc3339_millis(t), want);
        }
    }

    #[test]
    fn source_is_the_file_name_and_line() {
        assert_eq!(source("agent/src/agent.rs", Some(412)), "agent.rs:412");
        assert_eq!(
            source("agent/src/cluster/mod.rs", Some(40)),
            "cluster/mod.rs:40"
        );
        assert_eq!(
            source(
                "/root/.cargo/registry/src/x/libp2p-swarm-0.48.0/src/lib.rs",
                Some(7)
            ),
            "libp2p-swarm-0.48.0/src/lib.rs:7"
        );
        assert_eq!(source("agent/cli/main.rs", Some(3)), "cli/main.rs:3");
        assert_eq!(source("main.rs", None), "main.rs");
    }

    /// Through a real subscriber: the fields of an event and of its span,
    /// typed values, the message, a `message` field of a span.
    #[test]
    fn events_and_spans_through_a_subscriber() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        for encoding in [Encoding::Logfmt, Encoding::Json] {
            let buf = Buf::default();
            let w = buf.clone();
            let sub = tracing_subscriber::fmt()
                .with_max_level(Level::TRACE)
                .with_ansi(false)
                .with_writer(move || w.clone())
                .fmt_fields(SpanFields)
                .event_format(PromFormat { encoding })
                .finish();
            tracing::subscriber::with_default(sub, || {
                let span = tracing::info_span!("conn", peer = "12D3KooW", id = 7u64);
                let _g = span.enter();
                let err = std::io::Error::other("refused");
                tracing::warn!(
                    error = &err as &dyn std::error::Error,
                    attempts = 3,
                    ratio = 0.5,
                    "dial failed: \"x\"\nretry"
                );
                tracing::debug!(peer = "override", "debug line");
            });
            let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines.len(), 2, "{out}");
            match encoding {
                Encoding::Logfmt => {
                    let rest = lines[0]
                        .split_once(" level=WARN source=logformat.rs:")
                        .expect("head")
                        .1;
                    assert!(
                        rest.ends_with(r#" msg="dial failed: \"x\"\nretry" peer=12D3KooW id=7 error=refused attempts=3 ratio=0.5"#),
                        "{}",
                        lines[0]
                    );
                    assert!(
                        lines[1].contains(" level=DEBUG ")
                            && lines[1].ends_with("msg=\"debug line\" peer=override id=7"),
                        "{}",
                        lines[1]
                    );
                }
                Encoding::Json => {
                    let v: Value = serde_json::from_str(lines[0]).expect("json");
                    assert_eq!(v["level"], "WARN");
                    assert_eq!(v["msg"], "dial failed: \"x\"\nretry");
                    assert_eq!(v["peer"], "12D3KooW");
                    assert_eq!(v["id"], 7);
                    assert_eq!(v["attempts"], 3);
                    assert_eq!(v["ratio"], 0.5);
                    assert_eq!(v["error"], "refused");
                    assert!(v["source"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("logformat.rs:")));
                    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
                    assert_eq!(keys.len(), 9, "{keys:?}");
                }
            }
        }
    }
}
