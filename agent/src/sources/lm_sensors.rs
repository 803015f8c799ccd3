//! Source `lm_sensors`: temperatures from lm-sensors' `sensors` program, as
//! JSON (`sensors -j`, lm-sensors 3.5 and later) or as the plain text that
//! every version prints.
//!
//! # Modes
//!
//! - [`LmSensors::command`] / [`LmSensors::command_with_args`] run the
//!   program (default [`DEFAULT_COMMAND`]) without a shell, with `LC_ALL=C`,
//!   stdin closed and `kill_on_drop`; stdout is capped at [`MAX_DOCUMENT`]
//!   and stderr kept only as a short excerpt. A non-zero exit
//!   is a [`SourceError::Command`] quoting that excerpt (`No sensors found!`).
//!   [`Format::Json`] passes `-j`, [`Format::Text`] passes nothing, and
//!   [`Format::Auto`] passes `-j` unless the program rejected it once before
//!   (lm-sensors 3.4 and older, e.g. RHEL 7/8) or printed JSON that could not
//!   be parsed while its text output could; then it uses text for the
//!   lifetime of the source. If text fails too, the JSON error is reported.
//! - [`LmSensors::file`] re-reads a file on every call (through
//!   [`read_capped`], so the file must be UTF-8 and at most `MAX_DOCUMENT`).
//!   [`Format::Auto`] picks JSON when the first non-blank character is `{`.
//!
//! Every reading has `source = "lm_sensors"`, `chip` = the libsensors chip
//! name (`coretemp-isa-0000`, `nvme-pci-0100`), and passes
//! [`Reading::sanitized`]: an implausible value drops the reading, an
//! implausible threshold (an NVMe `high` of 65261.8) drops the threshold.
//! `max_celsius` is the chip's `max`/`high` limit and `critical_celsius` its
//! `crit` limit; no other limit (`min`/`low`, `lcrit`/`crit low`, hysteresis,
//! `emergency`/`emerg`, `lowest`, `highest`) is ever used as either.
//!
//! # Sensor ids
//!
//! `sensor` is `tempN`, where N is the sysfs/libsensors index whenever the
//! output states it:
//!
//! - JSON: N comes from the `tempN_input` subfeature. Exact.
//! - Text: the text does not carry the index, so temperature features are
//!   numbered per chip in output order (libsensors prints them in index
//!   order). A feature whose label *is* `tempN` (the default label of an
//!   unlabelled sensor) takes N, and numbering continues after it; a number
//!   already used is never reused. Temperature lines without a value (`N/A`,
//!   `FAULT`) still take their number when they can be recognised as
//!   temperatures (rules below), so later ids do not shift. An `N/A` line
//!   with no such hint (say `CPU: N/A` right after a chip's fans) takes
//!   none, and the ids after it are one lower than in JSON.
//!   The ids equal the JSON ids when a chip's indices have no gaps (the usual
//!   case). They differ after a gap: k10temp `Tctl, Tccd1` is `temp1, temp3`
//!   in JSON and `temp1, temp2` in text, and so is coretemp on CPUs whose
//!   core ids are sparse. Prefer JSON when it is available.
//!
//! `label` is the human label (`Package id 0`, `Composite`); it is `None`
//! when the label is just the sensor id (`temp1`), as for hwmon.
//! Readings are unique per `(chip, sensor)`; a repeated pair keeps the first.
//!
//! # JSON rules (`sensors -j`)
//!
//! - The document must be an object of chips, each an object of features;
//!   anything else is a [`SourceError::Parse`]. Order and repeated labels
//!   (dell_smm prints several `Other`) are kept.
//! - A feature that is not an object (`"Adapter": "ISA adapter"`) is metadata
//!   and ignored, as are subfeatures that are not `tempN_*` (`in0_input`,
//!   `fan1_input`, `intrusion0_alarm`, `beep_enable`, ...).
//! - Only `tempN_input`, `tempN_max` and `tempN_crit` are read; a value that
//!   is not a JSON number (a string, `null`) counts as missing. A feature
//!   without a numeric `tempN_input` yields no reading.
//! - lm-sensors prints `%.3f` without checking for NaN, and 3.5.0 placed
//!   commas wrongly around unreadable subfeatures. Before parsing, bare
//!   `nan`/`inf` tokens (any sign) become `null`, and a comma right after `{`,
//!   `[` or another comma, or right before `}`/`]`, is dropped (never inside
//!   strings).
//!
//! # Text rules (plain `sensors`)
//!
//! - A chip starts at a line without leading whitespace that is a libsensors
//!   chip name (`prefix-bus-addr`, bus one of `isa pci i2c spi virtual acpi
//!   hid mdio scsi`; the prefix may contain `:`), or at any such line without
//!   whitespace that is followed by an `Adapter:` line. A blank line ends the
//!   chip. Features outside a chip are ignored; no chip at all is an error.
//! - A feature line is `label: value ...` without leading whitespace, split at
//!   the first `:` that is followed by a value. Values: a number (sign, digits,
//!   decimals; `nan`/`inf` are read and then fail the plausibility check) with
//!   a unit, or `N/A`, `FAULT`, `OK`, `ALARM`, `enabled`, `disabled`.
//! - The unit `C` is Celsius and `F` Fahrenheit (`sensors -f`, converted).
//!   Any non-ASCII characters or `?` right before the letter are ignored, so
//!   `°C`, ` C` (C locale), `Â°C` (UTF-8 read as Latin-1) and `\u{FFFD}C` (a
//!   Latin-1 degree sign decoded lossily) all count. Other units (`V`, `mV`,
//!   `RPM`, `W`, `A`, `J`, ...) and the words `OK`/`ALARM`/`enabled`/
//!   `disabled` mark fans, voltages, power, current, energy, intrusion and
//!   `beep_enable`, which are skipped.
//! - Indented lines continue the previous feature: limit groups that did not
//!   fit (`(crit = +84.8°C)` under an NVMe `Composite`) are read wherever they
//!   are. Limits are `name = value` items inside `( )`, separated by commas;
//!   only `high` and `crit` (exactly those words) are used. `ALARM`,
//!   `ALARM (CRIT)`, `ALARM (HIGH, CRIT)` and `sensor = thermistor` /
//!   `sensor = CPU diode` annotations are ignored.
//! - A temperature feature is one with a Celsius/Fahrenheit value. An `N/A`
//!   or `FAULT` line is one if a limit has a temperature unit, it has a
//!   `sensor =` annotation, its label is `tempN`, or it sits between two
//!   temperature features (libsensors prints features grouped by type); such
//!   a line takes an id but gives no reading.
//! - Lines starting with `ERROR:` or `Can't get adapter name` (stderr merged
//!   into the capture) are ignored wherever they appear, without ending the
//!   feature they interrupt. `Adapter:` lines and anything unrecognised are
//!   skipped. Note that sensors prints a limit it could not read as `+0.0`;
//!   text cannot tell that apart from a real zero.

use super::child::{self, Output, RunError};
use super::{blocking, read_capped, BusyGuard, Source, SourceError, MAX_DOCUMENT};
use crate::thermal::Reading;
use futures::future::BoxFuture;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::iter::Peekable;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The `source` label of every reading from this module.
pub const SOURCE_NAME: &str = "lm_sensors";
/// The program run by default in command mode.
pub const DEFAULT_COMMAND: &str = "sensors";

/// How much of the command's stderr is kept for error messages.
const STDERR_KEEP: u64 = 4096;
/// Longest stderr excerpt quoted in an error, in characters.
const EXCERPT_CHARS: usize = 300;
/// Longest unit token looked at (`Ã‚Â°C` is 6 characters).
const MAX_UNIT_CHARS: usize = 16;
/// Bus types libsensors prints in chip names (`sensors_snprintf_chip_name`).
const BUS_TYPES: &[&str] = &[
    "isa", "pci", "i2c", "spi", "virtual", "acpi", "hid", "mdio", "scsi",
];

/// Which output format to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `sensors -j`.
    Json,
    /// Plain `sensors`.
    Text,
    /// Command: JSON, falling back to text when `-j` is not supported or
    /// its output is unusable. File: JSON when the first non-blank
    /// character is `{`, else text.
    #[default]
    Auto,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "text" => Ok(Format::Text),
            "auto" => Ok(Format::Auto),
            other => Err(format!(
                "unknown lm-sensors format {other:?} (expected json, text or auto)"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "json",
            Format::Text => "text",
            Format::Auto => "auto",
        })
    }
}

/// Parse `sensors` output in the given format ([`Format::Auto`]: JSON when
/// the first non-blank character is `{`).
///
/// # Errors
///
/// [`SourceError::Parse`] when the text is not usable output of that format.
pub fn parse(text: &str, format: Format) -> Result<Vec<Reading>, SourceError> {
    match format {
        Format::Json => parse_json(text),
        Format::Text => parse_text(text),
        Format::Auto => {
            if strip_bom(text).trim_start().starts_with('{') {
                parse_json(text)
            } else {
                parse_text(text)
            }
        }
    }
}

/// Where the output comes from.
#[derive(Debug)]
enum Mode {
    Command {
        program: PathBuf,
        /// Extra arguments, before `-j`.
        args: Vec<OsString>,
        format: Format,
        /// Set once `-j` was rejected or gave unusable JSON while text
        /// worked (only used with `Format::Auto`).
        no_json: AtomicBool,
    },
    File {
        path: PathBuf,
        format: Format,
        busy: BusyGuard,
    },
}

/// The lm-sensors source: runs `sensors` or reads a saved copy of its output.
#[derive(Debug)]
pub struct LmSensors {
    mode: Mode,
}

impl LmSensors {
    /// Run `program` (e.g. [`DEFAULT_COMMAND`] or `/usr/bin/sensors`) on every read.
    pub fn command(program: impl Into<PathBuf>, format: Format) -> Self {
        LmSensors::command_with_args(program, Vec::<OsString>::new(), format)
    }

    /// Like [`LmSensors::command`], with extra arguments placed before `-j`
    /// (`["-c", "/etc/sensors3.conf"]`, or a wrapper: program `ssh`, args
    /// `["bmc1", "sensors"]`).
    pub fn command_with_args<I, S>(program: impl Into<PathBuf>, args: I, format: Format) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        LmSensors {
            mode: Mode::Command {
                program: program.into(),
                args: args.into_iter().map(Into::into).collect(),
                format,
                no_json: AtomicBool::new(false),
            },
        }
    }

    /// Re-read `path` (output of `sensors` or `sensors -j`) on every read.
    pub fn file(path: impl Into<PathBuf>, format: Format) -> Self {
        LmSensors {
            mode: Mode::File {
                path: path.into(),
                format,
                busy: BusyGuard::default(),
            },
        }
    }
}

impl Default for LmSensors {
    /// `sensors`, JSON with a fallback to text.
    fn default() -> Self {
        LmSensors::command(DEFAULT_COMMAND, Format::Auto)
    }
}

impl Source for LmSensors {
    fn name(&self) -> &str {
        SOURCE_NAME
    }

    fn read(self: Arc<Self>) -> BoxFuture<'static, Result<Vec<Reading>, SourceError>> {
        match &self.mode {
            Mode::File { path, format, busy } => {
                let (path, format) = (path.clone(), *format);
                blocking(busy, move || read_file(&path, format))
            }
            Mode::Command { .. } => Box::pin(async move { self.read_command().await }),
        }
    }
}

fn read_file(path: &Path, format: Format) -> Result<Vec<Reading>, SourceError> {
    let text = read_capped(path, MAX_DOCUMENT)?;
    parse(&text, format).map_err(|e| with_context(e, &path.display().to_string()))
}

impl LmSensors {
    async fn read_command(&self) -> Result<Vec<Reading>, SourceError> {
        let Mode::Command {
            program,
            args,
            format,
            no_json,
        } = &self.mode
        else {
            return Err(SourceError::Parse(
                "lm_sensors: not in command mode".to_string(),
            ));
        };
        let auto = *format == Format::Auto;
        // Set when `-j` output could not be parsed and this call retries
        // with text; returned if text does no better.
        let mut json_failure: Option<SourceError> = None;
        loop {
            let json = match format {
                Format::Json => true,
                Format::Text => false,
                Format::Auto => json_failure.is_none() && !no_json.load(Ordering::Relaxed),
            };
            let mut argv = args.clone();
            if json {
                argv.push("-j".into());
            }
            let shown = shown_command(program, &argv);
            let out = match run(program, &argv, &shown).await {
                Ok(out) => out,
                Err(e) => return Err(json_failure.unwrap_or(e)),
            };
            if !out.status.success() {
                if auto && json && rejects_json_flag(&out.stderr) {
                    tracing::info!(command = %shown, "sensors does not support -j (lm-sensors < 3.5), using text output");
                    no_json.store(true, Ordering::Relaxed);
                    continue;
                }
                let failed = SourceError::Command(format!(
                    "`{shown}` failed ({}): {}",
                    out.status,
                    excerpt(&out.stderr)
                ));
                return Err(json_failure.unwrap_or(failed));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let parsed = if json {
                parse_json(&text)
            } else {
                parse_text(&text)
            };
            match parsed.map_err(|e| with_context(e, &format!("`{shown}`"))) {
                Err(e) if auto && json => json_failure = Some(e),
                Ok(readings) => {
                    if let Some(e) = json_failure {
                        tracing::warn!(error = %e, "unusable JSON from sensors -j, using text output from now on");
                        no_json.store(true, Ordering::Relaxed);
                    }
                    return Ok(readings);
                }
                Err(e) => return Err(json_failure.unwrap_or(e)),
            }
        }
    }
}

/// Run `program args` with `LC_ALL=C` through the sources' child runner:
/// at most `MAX_DOCUMENT` bytes of stdout, the first `STDERR_KEEP` bytes of
/// stderr.
async fn run(program: &Path, args: &[OsString], shown: &str) -> Result<Output, SourceError> {
    let limits = child::Limits {
        stdout_cap: MAX_DOCUMENT,
        stderr_keep: STDERR_KEEP,
    };
    child::run(program.as_os_str(), args, &[("LC_ALL", "C")], limits)
        .await
        .map_err(|e| match e {
            RunError::Spawn(e) => SourceError::Command(format!("`{shown}`: cannot run: {e}")),
            RunError::Read(e) => SourceError::Command(format!("`{shown}`: reading output: {e}")),
            RunError::TooLarge => SourceError::Parse(format!(
                "`{shown}`: output larger than {MAX_DOCUMENT} bytes, not sensors output"
            )),
            RunError::Wait(e) => SourceError::Command(format!("`{shown}`: waiting for exit: {e}")),
        })
}

fn shown_command(program: &Path, args: &[OsString]) -> String {
    let mut s = program.display().to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Did getopt reject `-j`? (glibc: "invalid option -- 'j'", musl:
/// "unrecognized option: j".)
fn rejects_json_flag(stderr: &[u8]) -> bool {
    let s = String::from_utf8_lossy(stderr);
    s.contains("invalid option") || s.contains("unrecognized option")
}

/// A one-line, bounded excerpt of a command's stderr.
fn excerpt(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.is_empty() {
        return "no message on stderr".to_string();
    }
    let mut cut: String = joined.chars().take(EXCERPT_CHARS).collect();
    if cut.len() < joined.len() {
        cut.push_str("...");
    }
    cut
}

/// Prefix a parse error with where the text came from.
fn with_context(e: SourceError, what: &str) -> SourceError {
    match e {
        SourceError::Parse(m) => SourceError::Parse(format!("{what}: {m}")),
        other => other,
    }
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Collects sanitized, de-duplicated readings.
#[derive(Default)]
struct Collector {
    out: Vec<Reading>,
    seen: HashSet<(String, String)>,
}

impl Collector {
    fn push(
        &mut self,
        chip: &str,
        sensor: String,
        label: &str,
        celsius: f64,
        max: Option<f64>,
        crit: Option<f64>,
    ) {
        let label = label.trim();
        let label = (!label.is_empty() && label != sensor).then(|| label.to_string());
        let reading = Reading {
            chip: chip.to_string(),
            sensor,
            label,
            celsius,
            max_celsius: max,
            critical_celsius: crit,
            source: SOURCE_NAME.to_string(),
            role: Default::default(),
        };
        let Some(reading) = reading.sanitized() else {
            return;
        };
        if self
            .seen
            .insert((reading.chip.clone(), reading.sensor.clone()))
        {
            self.out.push(reading);
        }
    }
}

// ---------------------------------------------------------------- JSON ----

/// A JSON object as an ordered list of entries, keeping repeated keys.
struct Entries<V>(Vec<(String, V)>);

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
type Document = Entries<Entries<serde_json::Value>>;

/// The fields of one `tempN` feature that matter here.
#[derive(Default)]
struct TempFields {
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
fn temp_subfeature(name: &str) -> Option<(u32, &str)> {
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
fn repair_json(text: &str) -> String {
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

// ---------------------------------------------------------------- text ----

/// The value printed right after a feature's label.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Head {
    /// A temperature, already in Celsius.
    Temp(f64),
    /// `N/A` or `FAULT`: no value, type unknown from the value alone.
    Missing,
    /// A fan, voltage, power, current, energy, intrusion or beep value.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Celsius,
    Fahrenheit,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Temp,
    Other,
    Unknown,
}

/// One feature line and its continuation lines.
struct Feature<'a> {
    label: &'a str,
    head: Head,
    /// Everything after the value, continuation lines appended (empty for
    /// `Head::Other`, which is never looked at again).
    body: String,
}

struct Chip<'a> {
    name: &'a str,
    features: Vec<Feature<'a>>,
}

/// Limits found in a feature's `( ... )` groups.
#[derive(Default)]
struct Limits {
    high: Option<f64>,
    crit: Option<f64>,
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
fn emit_chip(chip: &Chip, out: &mut Collector) {
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
fn temp_label_index(label: &str) -> Option<u32> {
    let digits = label.strip_prefix("temp")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Is `s` a libsensors chip name, `prefix-bus-addr` or `prefix-bus-nr-addr`?
fn is_chip_name(s: &str) -> bool {
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
fn split_feature(line: &str) -> Option<(&str, Head, &str)> {
    line.match_indices(':').find_map(|(pos, _)| {
        let (head, rest) = parse_head(&line[pos + 1..])?;
        Some((line[..pos].trim(), head, rest))
    })
}

/// The value at the start of `s` and what follows it.
fn parse_head(s: &str) -> Option<(Head, &str)> {
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
fn quantity(s: &str) -> Option<(f64, Unit, &str)> {
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
fn classify_unit(token: &str) -> Option<Unit> {
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
fn number(s: &str) -> Option<(f64, usize)> {
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

fn fahrenheit_to_celsius(f: f64) -> f64 {
    (f - 32.0) * 5.0 / 9.0
}

/// Read `high` and `crit` from the `( name = value, ... )` groups in `body`.
fn parse_limits(body: &str) -> Limits {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/lm_sensors/", $name))
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

    // ------------------------------------------------------ text quirks --

    #[test]
    fn text_thresholds_on_continuation_lines() {
        assert_rows(
            &text(fixture!("wrapped.txt")),
            &[
                (
                    "nvme-pci-0400",
                    "temp1",
                    Some("Composite"),
                    44.9,
                    Some(83.8),
                    Some(87.8),
                ),
                // high = +65261.8 is implausible: dropped, the reading stays.
                ("nvme-pci-0400", "temp2", Some("Sensor 1"), 44.9, None, None),
                ("nvme-pci-0400", "temp3", Some("Sensor 2"), 47.9, None, None),
                // high and crit on the second and third line, after `low`.
                ("jc42-i2c-0-18", "temp1", None, 36.2, Some(85.0), Some(95.0)),
            ],
        );
    }

    #[test]
    fn text_alarm_flags_are_ignored() {
        assert_rows(
            &text(fixture!("alarm.txt")),
            &[
                (
                    "coretemp-isa-0000",
                    "temp1",
                    Some("Package id 0"),
                    101.0,
                    Some(80.0),
                    Some(100.0),
                ),
                (
                    "coretemp-isa-0000",
                    "temp2",
                    Some("Core 0"),
                    99.0,
                    Some(80.0),
                    Some(100.0),
                ),
                // `ALARM (CRIT)`
                (
                    "coretemp-isa-0000",
                    "temp3",
                    Some("Core 1"),
                    101.0,
                    Some(80.0),
                    Some(100.0),
                ),
                (
                    "nct6776-isa-0290",
                    "temp1",
                    Some("SYSTIN"),
                    41.0,
                    Some(80.0),
                    None,
                ),
                // `ALARM  sensor = thermistor`
                (
                    "nct6776-isa-0290",
                    "temp2",
                    Some("CPUTIN"),
                    85.5,
                    Some(80.0),
                    None,
                ),
                // `ALARM (HIGH)` between the first and the wrapped limit groups.
                ("jc42-i2c-0-1a", "temp1", None, 91.2, Some(85.0), Some(95.0)),
                ("it8721-isa-0290", "temp1", None, 33.0, Some(70.0), None),
                // A bare `ALARM` far right; the label `temp3` gives the id.
                ("it8721-isa-0290", "temp3", None, 95.0, None, None),
            ],
        );
    }

    #[test]
    fn text_sensor_type_annotations_are_ignored() {
        assert_rows(
            &text(fixture!("sensor_type.txt")),
            &[
                ("it8728-isa-0a30", "temp1", None, 35.0, Some(127.0), None),
                ("it8728-isa-0a30", "temp2", None, 38.0, Some(127.0), None),
                // temp3 (`sensor = disabled`, -128.0) is implausible.
                (
                    "w83627ehf-isa-0290",
                    "temp1",
                    Some("SYSTIN"),
                    30.0,
                    Some(0.0),
                    None,
                ),
                (
                    "w83627ehf-isa-0290",
                    "temp2",
                    Some("CPUTIN"),
                    36.5,
                    Some(80.0),
                    None,
                ),
                (
                    "w83627ehf-isa-0290",
                    "temp3",
                    Some("AUXTIN"),
                    34.0,
                    Some(80.0),
                    None,
                ),
            ],
        );
    }

    #[test]
    fn text_not_available_and_fault_keep_their_ids() {
        assert_rows(
            &text(fixture!("not_available.txt")),
            &[
                ("thinkpad-isa-0000", "temp1", Some("CPU"), 52.0, None, None),
                // `GPU: N/A` sits between two temperatures: it is temp2.
                ("thinkpad-isa-0000", "temp3", None, 49.0, None, None),
                ("thinkpad-isa-0000", "temp4", None, 0.0, None, None),
                ("thinkpad-isa-0000", "temp5", None, 43.0, None, None),
                ("thinkpad-isa-0000", "temp6", None, 50.0, None, None),
                ("thinkpad-isa-0000", "temp7", None, 50.0, None, None),
                // iwlwifi `temp1: N/A`: nothing.
                (
                    "lm90-i2c-2-4c",
                    "temp1",
                    Some("local"),
                    38.0,
                    Some(70.0),
                    Some(85.0),
                ),
                // `remote: FAULT` with °C limits is temp2.
                (
                    "lm90-i2c-2-4c",
                    "temp3",
                    Some("remote 2"),
                    44.0,
                    Some(85.0),
                    Some(100.0),
                ),
                (
                    "nct6775-isa-0290",
                    "temp1",
                    Some("SYSTIN"),
                    29.0,
                    Some(80.0),
                    None,
                ),
            ],
        );
    }

    #[test]
    fn text_hysteresis_is_not_a_threshold() {
        assert_rows(
            &text(fixture!("hysteresis.txt")),
            &[
                ("lm75-i2c-1-48", "temp1", None, 24.5, Some(80.0), None),
                ("jc42-i2c-0-18", "temp1", None, 33.8, Some(85.0), Some(95.0)),
                // `hyst = +104.0`, `crit hyst = +115.0` (older lm-sensors).
                (
                    "w83795g-i2c-0-2f",
                    "temp1",
                    Some("CPU"),
                    40.0,
                    Some(109.0),
                    Some(110.0),
                ),
                // `hyst = -273.1`, `emerg = +105.0`.
                (
                    "amdgpu-pci-0a00",
                    "temp1",
                    Some("edge"),
                    38.0,
                    None,
                    Some(100.0),
                ),
            ],
        );
    }

    #[test]
    fn text_low_and_crit_low_are_not_crit() {
        assert_rows(
            &text(fixture!("drivetemp.txt")),
            &[
                (
                    "drivetemp-scsi-0-0",
                    "temp1",
                    None,
                    29.0,
                    Some(55.0),
                    Some(60.0),
                ),
                (
                    "drivetemp-scsi-1-0",
                    "temp1",
                    None,
                    33.0,
                    Some(60.0),
                    Some(65.0),
                ),
            ],
        );
    }

    const PLAIN_COMPUTER: &[Row] = &[
        (
            "coretemp-isa-0000",
            "temp1",
            Some("Package id 0"),
            41.0,
            Some(80.0),
            Some(100.0),
        ),
        (
            "coretemp-isa-0000",
            "temp2",
            Some("Core 0"),
            39.0,
            Some(80.0),
            Some(100.0),
        ),
        (
            "coretemp-isa-0000",
            "temp3",
            Some("Core 1"),
            40.0,
            Some(80.0),
            Some(100.0),
        ),
        ("acpitz-acpi-0", "temp1", None, 25.0, None, Some(107.0)),
        ("acpitz-acpi-0", "temp2", None, 27.8, None, Some(105.0)),
    ];

    #[test]
    fn text_without_degree_sign() {
        assert_rows(&text(fixture!("c_locale.txt")), PLAIN_COMPUTER);
    }

    #[test]
    fn text_with_mangled_degree_sign() {
        assert_rows(&text(fixture!("mojibake.txt")), PLAIN_COMPUTER);
        assert_rows(&text(fixture!("latin1_lossy.txt")), &PLAIN_COMPUTER[..3]);
        // Also with a space before the mangled sign.
        assert_rows(
            &text("acpitz-acpi-0\nAdapter: ACPI interface\ntemp1:        +28.0 Â°C  (crit = +105.0 Â°C)\n"),
            &[("acpitz-acpi-0", "temp1", None, 28.0, None, Some(105.0))],
        );
    }

    #[test]
    fn text_negative_temperatures() {
        assert_rows(
            &text(fixture!("negative.txt")),
            &[
                ("w1_slave_temp-virtual-0", "temp1", None, -5.0, None, None),
                ("lm75-i2c-1-49", "temp1", None, -0.5, Some(80.0), None),
                // -55.0 is below the plausible range: dropped.
            ],
        );
    }

    #[test]
    fn text_fans_voltages_power_current_intrusion_are_skipped() {
        assert_rows(
            &text(fixture!("non_thermal.txt")),
            &[
                ("it8686-isa-0a40", "temp1", None, 36.0, Some(127.0), None),
                ("it8686-isa-0a40", "temp2", None, 41.0, Some(127.0), None),
                // The ucsi chip name contains a colon and is still a header:
                // its lines do not leak into it8686.
                ("amdgpu-pci-0800", "temp1", Some("edge"), 43.0, None, None),
            ],
        );
    }

    #[test]
    fn text_error_lines_are_ignored() {
        assert_rows(
            &text(fixture!("errors.txt")),
            &[
                ("dell_smm-virtual-0", "temp1", Some("CPU"), 56.0, None, None),
                (
                    "dell_smm-virtual-0",
                    "temp2",
                    Some("Ambient"),
                    42.0,
                    None,
                    None,
                ),
                (
                    "dell_smm-virtual-0",
                    "temp3",
                    Some("SODIMM"),
                    40.0,
                    None,
                    None,
                ),
                // The first `Other` is N/A (the ERROR line at the top).
                (
                    "dell_smm-virtual-0",
                    "temp5",
                    Some("Other"),
                    38.0,
                    None,
                    None,
                ),
                (
                    "coretemp-isa-0000",
                    "temp1",
                    Some("Package id 0"),
                    58.0,
                    Some(100.0),
                    Some(100.0),
                ),
                (
                    "coretemp-isa-0000",
                    "temp2",
                    Some("Core 0"),
                    55.0,
                    Some(100.0),
                    Some(100.0),
                ),
                (
                    "coretemp-isa-0000",
                    "temp3",
                    Some("Core 1"),
                    57.0,
                    Some(100.0),
                    Some(100.0),
                ),
                // An ERROR line between the value and its continuation line.
                (
                    "nvme-pci-0200",
                    "temp1",
                    Some("Composite"),
                    36.9,
                    Some(80.8),
                    Some(84.8),
                ),
            ],
        );
    }

    #[test]
    fn text_fahrenheit_is_converted() {
        assert_rows(
            &text(fixture!("fahrenheit.txt")),
            &[(
                "coretemp-isa-0000",
                "temp1",
                Some("Package id 0"),
                45.0,
                Some(80.0),
                Some(100.0),
            )],
        );
    }

    #[test]
    fn text_adapter_lines_optional_and_chips_need_no_blank_line() {
        // `sensors -A` (no Adapter lines), CRLF, and a chip glued to the previous one.
        let input =
            "coretemp-isa-0000\r\nPackage id 0:  +48.0°C  (high = +80.0°C, crit = +100.0°C)\r\n\
                     acpitz-acpi-0\r\ntemp1:        +27.8°C  (crit = +119.0°C)\r\n";
        assert_rows(
            &text(input),
            &[
                (
                    "coretemp-isa-0000",
                    "temp1",
                    Some("Package id 0"),
                    48.0,
                    Some(80.0),
                    Some(100.0),
                ),
                ("acpitz-acpi-0", "temp1", None, 27.8, None, Some(119.0)),
            ],
        );
        // An unknown bus type is still a chip when an Adapter line follows.
        assert_rows(
            &text("foo-platform-0\nAdapter: Platform\ntemp1: +30.0°C\n"),
            &[("foo-platform-0", "temp1", None, 30.0, None, None)],
        );
    }

    #[test]
    fn text_ids_continue_after_a_literal_temp_label() {
        // Labels `temp3` then two labelled sensors: ids never go back.
        let input = "it87-isa-0290\ntemp3: +30.0°C\nCPU: +31.0°C\nGPU: +32.0°C\ntemp2: +33.0°C\n";
        assert_rows(
            &text(input),
            &[
                ("it87-isa-0290", "temp3", None, 30.0, None, None),
                ("it87-isa-0290", "temp4", Some("CPU"), 31.0, None, None),
                ("it87-isa-0290", "temp5", Some("GPU"), 32.0, None, None),
                ("it87-isa-0290", "temp6", Some("temp2"), 33.0, None, None),
            ],
        );
    }

    #[test]
    fn text_unrecognisable_not_available_takes_no_id() {
        // Documented limit: nothing says `CPU: N/A` is a temperature (it
        // follows a fan), so `GPU` becomes temp1 where JSON would say temp2.
        assert_rows(
            &text("it87-isa-0290\nfan1: 1200 RPM\nCPU: N/A\nGPU: +40.0°C\n"),
            &[("it87-isa-0290", "temp1", Some("GPU"), 40.0, None, None)],
        );
    }

    // ----------------------------------------------------- text helpers --

    #[test]
    fn unit_table() {
        for (token, want) in [
            ("°C", Some(Unit::Celsius)),
            ("C", Some(Unit::Celsius)),
            ("Â°C", Some(Unit::Celsius)),
            ("\u{fffd}C", Some(Unit::Celsius)),
            ("?C", Some(Unit::Celsius)),
            ("°F", Some(Unit::Fahrenheit)),
            ("V", Some(Unit::Other)),
            ("mV", Some(Unit::Other)),
            ("RPM", Some(Unit::Other)),
            ("W", Some(Unit::Other)),
            ("kJ", Some(Unit::Other)),
            ("A", Some(Unit::Other)),
            ("", None),
            ("°", None),
            ("-isa-0000", None),
            ("°CC", None),
        ] {
            assert_eq!(classify_unit(token), want, "{token:?}");
        }
    }

    #[test]
    fn number_table() {
        for (input, want) in [
            ("+45.0°C", Some((45.0, 5))),
            ("-5.0 C", Some((-5.0, 4))),
            ("  1200 RPM", None),
            ("1200 RPM", Some((1200.0, 4))),
            (".5", Some((0.5, 2))),
            ("5.", Some((5.0, 2))),
            ("+", None),
            (".", None),
            ("N/A", None),
            ("nano", None),
        ] {
            assert_eq!(number(input), want, "{input:?}");
        }
        assert!(number("-nan°C").is_some_and(|(v, n)| v.is_nan() && n == 4));
        assert!(number("+inf").is_some_and(|(v, _)| v == f64::INFINITY));
    }

    #[test]
    fn chip_name_table() {
        for (name, want) in [
            ("coretemp-isa-0000", true),
            ("nvme-pci-0100", true),
            ("jc42-i2c-0-18", true),
            ("drivetemp-scsi-0-0", true),
            ("iwlwifi_1-virtual-0", true),
            ("acpitz-acpi-0", true),
            ("hidpp_battery_0-hid-3-5", true),
            ("ucsi_source_psy_USBC000:001-isa-0000", true),
            ("-isa-0000", false),
            ("coretemp-isa-", false),
            ("coretemp-isa-zz", false),
            ("coretemp-bus-0000", false),
            ("core temp-isa-0000", false),
            ("Adapter: ISA adapter", false),
            ("coretemp", false),
        ] {
            assert_eq!(is_chip_name(name), want, "{name:?}");
        }
    }

    #[test]
    fn feature_line_table() {
        for (line, want) in [
            (
                "Core 0:        +45.0°C  (high",
                Some(("Core 0", Head::Temp(45.0), "  (high")),
            ),
            ("fan1:        2426 RPM", Some(("fan1", Head::Other, ""))),
            (
                "GPU:              N/A  ",
                Some(("GPU", Head::Missing, "  ")),
            ),
            (
                "remote:         FAULT  (low",
                Some(("remote", Head::Missing, "  (low")),
            ),
            ("intrusion0:  ALARM", Some(("intrusion0", Head::Other, ""))),
            (
                "beep_enable: disabled",
                Some(("beep_enable", Head::Other, "")),
            ),
            ("CPU:1:  +40.0°C", Some(("CPU:1", Head::Temp(40.0), ""))),
            ("Adapter: ISA adapter", None),
            ("ucsi_source_psy_USBC000:001-isa-0000", None),
            ("Package id 0:", None),
        ] {
            assert_eq!(split_feature(line), want, "{line:?}");
        }
    }

    #[test]
    fn limits_table() {
        // (body, high, crit)
        for (body, high, crit) in [
            (
                "  (high = +80.0°C, crit = +100.0°C)",
                Some(80.0),
                Some(100.0),
            ),
            (
                "  (crit = +100.0°C, hyst = -273.1°C) (emerg = +105.0°C)",
                None,
                Some(100.0),
            ),
            (
                "  (low  =  +0.0°C, high = +60.0°C) (crit low =  -5.0°C, crit = +65.0°C)",
                Some(60.0),
                Some(65.0),
            ),
            ("  (crit low = -5.0°C)", None, None),
            (
                "  (high = +80.0°C, hyst = +75.0°C)  ALARM (HIGH, CRIT)  sensor = thermistor",
                Some(80.0),
                None,
            ),
            (
                "  (crit = +110.0°C, crit hyst = +115.0°C)",
                None,
                Some(110.0),
            ),
            ("  (high = +176.0°F", Some(80.0), None),
            ("  (min =    0 RPM)", None, None),
            ("  (high = junk, crit = )", None, None),
        ] {
            let l = parse_limits(body);
            assert!(
                close_opt(l.high, high) && close_opt(l.crit, crit),
                "{body:?}: {:?} {:?}",
                l.high,
                l.crit
            );
        }
    }

    // ------------------------------------------------------ JSON quirks --

    #[test]
    fn json_quirks() {
        assert_rows(
            &json(fixture!("quirks.json")),
            &[
                (
                    "nvme-pci-0100",
                    "temp1",
                    Some("Composite"),
                    38.85,
                    Some(81.85),
                    Some(84.85),
                ),
                // temp2_max 65261.850 dropped, the reading kept.
                (
                    "nvme-pci-0100",
                    "temp2",
                    Some("Sensor 1"),
                    41.85,
                    None,
                    None,
                ),
                // No Adapter key (`sensors -A -j`); `Core 0` has no input.
                (
                    "coretemp-isa-0000",
                    "temp1",
                    Some("Package id 0"),
                    52.0,
                    Some(84.0),
                    Some(100.0),
                ),
                (
                    "coretemp-isa-0000",
                    "temp3",
                    Some("Core 1"),
                    50.0,
                    None,
                    None,
                ),
                // in0/fan1/intrusion0/beep_enable skipped; hyst, min, lcrit ignored.
                (
                    "nct6775-isa-0290",
                    "temp1",
                    Some("SYSTIN"),
                    31.0,
                    Some(80.0),
                    None,
                ),
                (
                    "nct6775-isa-0290",
                    "temp2",
                    Some("CPUTIN"),
                    33.5,
                    Some(80.0),
                    Some(100.0),
                ),
                // AUXTIN at -128.0 is implausible.
                ("acpitz-acpi-0", "temp1", None, 27.8, None, Some(119.0)),
            ],
        );
    }

    #[test]
    fn json_from_lm_sensors_3_5_with_stray_commas_and_nan() {
        assert_rows(
            &json(fixture!("sensors_3.5_stray_comma.json")),
            &[
                // Package id 0: input unreadable. Core 1: nan.
                (
                    "coretemp-isa-0000",
                    "temp2",
                    Some("Core 0"),
                    41.0,
                    Some(80.0),
                    None,
                ),
                (
                    "coretemp-isa-0000",
                    "temp4",
                    Some("Core 2"),
                    43.0,
                    Some(80.0),
                    Some(100.0),
                ),
            ],
        );
    }

    #[test]
    fn json_keeps_repeated_labels_and_empty_features() {
        let want: &[Row] = &[
            ("dell_smm-virtual-0", "temp1", Some("CPU"), 56.0, None, None),
            (
                "dell_smm-virtual-0",
                "temp2",
                Some("Ambient"),
                42.0,
                None,
                None,
            ),
            (
                "dell_smm-virtual-0",
                "temp3",
                Some("SODIMM"),
                40.0,
                None,
                None,
            ),
            (
                "dell_smm-virtual-0",
                "temp5",
                Some("Other"),
                38.0,
                None,
                None,
            ),
        ];
        assert_rows(&json(fixture!("dell_smm.json")), want);
        // The text of the same laptop (errors.txt) numbers it the same way.
        let from_text: Vec<Reading> = text(fixture!("errors.txt"))
            .into_iter()
            .filter(|r| r.chip == "dell_smm-virtual-0")
            .collect();
        assert_rows(&from_text, want);
    }

    #[test]
    fn json_leaves_of_the_wrong_type_are_missing_values() {
        let doc = r#"{"coretemp-isa-0000": {"Adapter": "ISA adapter",
            "Core 0": {"temp2_input": "45.0", "temp2_max": 80.0},
            "Core 1": {"temp3_input": 46.0, "temp3_crit": "100"},
            "Core 2": {"temp4_input": null},
            "Core 3": [1, 2],
            "Core 4": {"temp6_input": true, "temp6_crit": 100.0},
            "Core 5": {"temp7_input": 47.0, "temp7_max": {"nested": 1}},
            "Core 6": 48.0}}"#;
        assert_rows(
            &json(doc),
            &[
                (
                    "coretemp-isa-0000",
                    "temp3",
                    Some("Core 1"),
                    46.0,
                    None,
                    None,
                ),
                (
                    "coretemp-isa-0000",
                    "temp7",
                    Some("Core 5"),
                    47.0,
                    None,
                    None,
                ),
            ],
        );
    }

    #[test]
    fn json_garbage_is_a_clear_parse_error() {
        let full = fixture!("workstation.json");
        let truncated = &full[..full.len() / 2];
        let deep = format!(
            "{{\"c\": {{\"f\": {}{}}}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let cases: Vec<(&str, &str)> = vec![
            ("", "EOF while parsing"),
            ("   \n", "EOF while parsing"),
            ("[1, 2, 3]", "expected a JSON object"),
            ("\"coretemp-isa-0000\"", "expected a JSON object"),
            ("{\"coretemp-isa-0000\": [45.0]}", "expected a JSON object"),
            ("{\"coretemp-isa-0000\": 45}", "expected a JSON object"),
            (truncated, "EOF while parsing"),
            (
                "{\"c\": {\"f\": {\"temp1_input\": 1e999}}}",
                "number out of range",
            ),
            (&deep, "recursion limit exceeded"),
            ("{\"c\": {}} trailing", "trailing characters"),
        ];
        for (input, needle) in cases {
            match parse_json(input) {
                Err(SourceError::Parse(m)) => {
                    assert!(
                        m.starts_with("lm-sensors JSON: ") && m.contains(needle),
                        "{m}"
                    )
                }
                other => panic!("{:?}: {other:?}", &input[..input.len().min(40)]),
            }
        }
        // Many indices in one feature stay linear.
        let many: Vec<String> = (1..=100_000)
            .map(|i| format!("\"temp{i}_max\": 1.0"))
            .collect();
        let doc = format!("{{\"c-isa-0000\": {{\"f\": {{{}}}}}}}", many.join(","));
        let started = std::time::Instant::now();
        assert!(json(&doc).is_empty());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // Absurd but finite numbers are read and then dropped.
        assert!(json(r#"{"c": {"f": {"temp1_input": 1e300, "temp1_crit": -1e300}}}"#).is_empty());
        // No chips at all is not an error.
        assert!(json("{}").is_empty());
    }

    #[test]
    fn json_repair_table() {
        for (input, want) in [
            (
                "{\"a\": nan, \"b\": -nan, \"c\": +inf}",
                "{\"a\": null, \"b\": null, \"c\": null}",
            ),
            ("{\n,\n\"a\": 1}", "{\n\n\"a\": 1}"),
            ("{\"a\": 1,\n,\n\"b\": 2,\n}", "{\"a\": 1,\n\n\"b\": 2\n}"),
            ("{\"nan, inf\": \"a,}\"}", "{\"nan, inf\": \"a,}\"}"),
            (
                "{\"esc\\\"aped, nan\": null}",
                "{\"esc\\\"aped, nan\": null}",
            ),
            ("{\"x\": -1.5, \"y\": info}", "{\"x\": -1.5, \"y\": info}"),
        ] {
            assert_eq!(repair_json(input), want, "{input:?}");
        }
    }

    #[test]
    fn text_garbage_is_an_error_or_skipped() {
        for input in [
            "",
            "\n\n   \n",
            "hello world\nthis is not sensors output\n",
            "{\"truncated\": ",
        ] {
            match parse_text(input) {
                Err(SourceError::Parse(m)) => assert!(m.contains("no chip header"), "{m}"),
                other => panic!("{input:?}: {other:?}"),
            }
        }
        // 1 MB lines: an absurd value, an endless limit group, a colon storm.
        let huge = format!(
            "coretemp-isa-0000\nCore 0: +{}°C\nCore 1: +40.0°C {}\nCore 2: {}\nCore 3: +41.0°C\n",
            "9".repeat(1 << 20),
            "(".repeat(1 << 20),
            ": ".repeat(1 << 19),
        );
        assert_rows(
            &text(&huge),
            &[
                (
                    "coretemp-isa-0000",
                    "temp2",
                    Some("Core 1"),
                    40.0,
                    None,
                    None,
                ),
                (
                    "coretemp-isa-0000",
                    "temp3",
                    Some("Core 3"),
                    41.0,
                    None,
                    None,
                ),
            ],
        );
        // Many colons on one long line stay linear.
        let colons = format!(
            "coretemp-isa-0000\nx{}\nCore 1: +40.0°C\n",
            ":1x".repeat(400_000)
        );
        let started = std::time::Instant::now();
        assert_eq!(text(&colons).len(), 1);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // nan in text takes an id and gives no reading.
        assert_rows(
            &text("k10temp-pci-00c3\nTctl:  -nan°C\nTdie:  +40.0°C\n"),
            &[("k10temp-pci-00c3", "temp2", Some("Tdie"), 40.0, None, None)],
        );
    }

    #[test]
    fn format_names() {
        for (s, f) in [
            ("json", Format::Json),
            ("text", Format::Text),
            ("auto", Format::Auto),
            (" JSON ", Format::Json),
        ] {
            assert_eq!(s.parse::<Format>(), Ok(f));
        }
        assert_eq!(Format::Auto.to_string(), "auto");
        assert!("xml".parse::<Format>().is_err_and(|e| e.contains("xml")));
        assert_eq!(Format::default(), Format::Auto);
    }

    #[test]
    fn auto_detects_json_by_first_character() {
        let from_json = parse(fixture!("workstation.json"), Format::Auto).expect("json");
        assert_eq!(from_json, json(fixture!("workstation.json")));
        let from_text = parse(fixture!("workstation.txt"), Format::Auto).expect("text");
        assert_eq!(from_text, text(fixture!("workstation.txt")));
        // A byte-order mark does not hide the brace.
        let bom = format!("\u{feff}{}", fixture!("dell_smm.json"));
        assert_eq!(parse(&bom, Format::Auto).expect("bom").len(), 4);
    }

    // ------------------------------------------------ same machine, both --

    /// Text prints one decimal where JSON prints three.
    fn close_1dp(a: f64, b: f64) -> bool {
        (a - b).abs() <= 0.05 + 1e-9
    }

    fn close_1dp_opt(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => close_1dp(a, b),
            _ => false,
        }
    }

    #[track_caller]
    fn assert_same_temperatures(t: &[Reading], j: &[Reading]) {
        assert_eq!(t.len(), j.len(), "text:\n{}\njson:\n{}", show(t), show(j));
        for (t, j) in t.iter().zip(j) {
            let same = t.chip == j.chip
                && t.label == j.label
                && close_1dp(t.celsius, j.celsius)
                && close_1dp_opt(t.max_celsius, j.max_celsius)
                && close_1dp_opt(t.critical_celsius, j.critical_celsius);
            assert!(same, "text {t:?}\njson {j:?}");
        }
    }

    #[test]
    fn text_and_json_of_the_same_machine_agree() {
        let t = text(fixture!("workstation.txt"));
        let j = json(fixture!("workstation.json"));
        assert_eq!(j.len(), 21, "{}", show(&j));
        assert_same_temperatures(&t, &j);
        // No gaps in this machine's indices: the ids agree too.
        let ids = |rs: &[Reading]| {
            rs.iter()
                .map(|r| (r.chip.clone(), r.sensor.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&t), ids(&j));
        // Spot checks of the interesting ones.
        let find = |rs: &[Reading], chip: &str, sensor: &str| {
            rs.iter()
                .find(|r| r.chip == chip && r.sensor == sensor)
                .cloned()
        };
        assert!(
            find(&j, "nct6798-isa-0290", "temp3").is_none(),
            "AUXTIN0 -128 must be dropped"
        );
        let sensor1 = find(&j, "nvme-pci-0100", "temp2").expect("nvme Sensor 1");
        assert_eq!(
            (sensor1.max_celsius, sensor1.critical_celsius),
            (None, None)
        );
        let edge = find(&t, "amdgpu-pci-0300", "temp1").expect("amdgpu edge");
        assert_eq!(
            (edge.max_celsius, edge.critical_celsius),
            (None, Some(100.0))
        );
    }

    #[test]
    fn text_ids_differ_from_json_after_an_index_gap() {
        let t = text(fixture!("epyc_server.txt"));
        let j = json(fixture!("epyc_server.json"));
        assert_same_temperatures(&t, &j);
        let ids = |rs: &[Reading]| {
            rs.iter()
                .filter(|r| r.chip == "k10temp-pci-00c3")
                .map(|r| r.sensor.clone())
                .collect::<Vec<_>>()
        };
        // k10temp has no temp2 on this CPU; text cannot know.
        assert_eq!(ids(&j), ["temp1", "temp3", "temp4", "temp5", "temp6"]);
        assert_eq!(ids(&t), ["temp1", "temp2", "temp3", "temp4", "temp5"]);
    }

    // --------------------------------------------------------- proptest --

    const NOISE: &[&str] = &[
        "\n",
        "\n\n",
        "  ",
        "\t",
        ":",
        ": ",
        "(",
        ")",
        ",",
        "=",
        " = ",
        "+45.0°C",
        "-128.0",
        "+65261.8°C",
        "°",
        "Â",
        "\u{fffd}",
        " C",
        "N/A",
        "FAULT",
        "ALARM",
        " ALARM (CRIT)",
        "(high = ",
        "crit = +100.0°C)",
        "hyst = ",
        "crit low = ",
        "sensor = thermistor",
        "temp1",
        "temp4294967295",
        "temp99999999999",
        "Core 0",
        "1200 RPM",
        "+1.02 V",
        "coretemp-isa-0000",
        "x-isa-",
        "Adapter: ISA adapter",
        "ERROR: Can't",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "\\",
        "\"temp1_input\"",
        "\"temp1_crit\"",
        "\"Adapter\"",
        "nan",
        "-nan",
        "inf",
        "1e999",
        "65261.850",
        "99999999999999999999",
        ",\n",
        "null",
        "true",
        "é",
        "\u{0}",
    ];

    proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_strings(s in any::<String>()) {
            let _ = parse_text(&s);
            let _ = parse_json(&s);
            let _ = parse(&s, Format::Auto);
        }

        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..512)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse_text(&s);
            let _ = parse_json(&s);
        }

        #[test]
        fn parsers_never_panic_on_sensors_like_noise(parts in vec(prop::sample::select(NOISE), 0..80)) {
            let s = parts.concat();
            for r in parse_text(&s).into_iter().chain(parse_json(&s)).flatten() {
                prop_assert!(crate::thermal::plausible(r.celsius));
                prop_assert!(r.max_celsius.is_none_or(crate::thermal::plausible));
                prop_assert!(r.critical_celsius.is_none_or(crate::thermal::plausible));
            }
        }

        #[test]
        fn generated_output_round_trips(
            chips in vec(gen_chip(), 1..4),
            degree in prop::sample::select(&["°C", " C", "Â°C", "\u{fffd}C"][..]),
        ) {
            let (text_doc, json_doc, want) = render(&chips, degree);
            let from_text = parse_text(&text_doc);
            prop_assert_eq!(from_text.as_ref().ok(), Some(&want), "text:\n{}", text_doc);
            let from_json = parse_json(&json_doc);
            prop_assert_eq!(from_json.as_ref().ok(), Some(&want), "json:\n{}", json_doc);
        }
    }

    #[derive(Debug, Clone)]
    struct GenTemp {
        label: Option<String>,
        tenths: i32,
        low: Option<i32>,
        high: Option<i32>,
        hyst: Option<i32>,
        crit: Option<i32>,
        alarm: bool,
        thermistor: bool,
    }

    #[derive(Debug, Clone)]
    struct GenChip {
        prefix: &'static str,
        volts: Vec<i16>,
        fans: Vec<u16>,
        temps: Vec<GenTemp>,
    }

    fn gen_temp() -> impl Strategy<Value = GenTemp> {
        let t = -400i32..2000;
        (
            proptest::option::of("[A-Z][a-z]{0,6}( [0-9]{1,2})?"),
            t.clone(),
            proptest::option::of(t.clone()),
            proptest::option::of(t.clone()),
            proptest::option::of(t.clone()),
            proptest::option::of(t),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(label, tenths, low, high, hyst, crit, alarm, thermistor)| GenTemp {
                    label,
                    tenths,
                    low,
                    high,
                    hyst,
                    crit,
                    alarm,
                    thermistor,
                },
            )
    }

    fn gen_chip() -> impl Strategy<Value = GenChip> {
        (
            prop::sample::select(
                &[
                    "coretemp",
                    "nct6775",
                    "k10temp",
                    "it87",
                    "acpitz",
                    "w83627ehf",
                ][..],
            ),
            vec(-1500i16..1500, 0..3),
            vec(any::<u16>(), 0..3),
            vec(gen_temp(), 0..6),
        )
            .prop_map(|(prefix, volts, fans, temps)| GenChip {
                prefix,
                volts,
                fans,
                temps,
            })
    }

    /// Render generated chips the way `sensors` and `sensors -j` would, and
    /// the readings both must parse to.
    fn render(chips: &[GenChip], degree: &str) -> (String, String, Vec<Reading>) {
        let mut text = String::new();
        let mut json_chips = Vec::new();
        let mut want = Vec::new();
        for (n, chip) in chips.iter().enumerate() {
            let name = format!("{}-isa-{n:04x}", chip.prefix);
            text.push_str(&format!("{name}\nAdapter: ISA adapter\n"));
            let temp_labels: Vec<String> = chip
                .temps
                .iter()
                .enumerate()
                .map(|(i, t)| t.label.clone().unwrap_or_else(|| format!("temp{}", i + 1)))
                .collect();
            let width = temp_labels
                .iter()
                .map(String::len)
                .chain([11])
                .max()
                .unwrap_or(11)
                + 2;
            let pad = |label: &str| format!("{label}:{}", " ".repeat(width - label.len() - 1));
            let mut features = vec![r#""Adapter": "ISA adapter""#.to_string()];
            for (i, v) in chip.volts.iter().enumerate() {
                let v = f64::from(*v) / 100.0;
                text.push_str(&format!(
                    "{}{v:+6.2} V  (min =  +0.00 V, max = +15.00 V)\n",
                    pad(&format!("in{i}"))
                ));
                features.push(format!(
                    r#""in{i}": {{"in{i}_input": {v:.3}, "in{i}_min": 0.000}}"#
                ));
            }
            for (i, rpm) in chip.fans.iter().enumerate() {
                let label = format!("fan{}", i + 1);
                text.push_str(&format!("{}{rpm:4} RPM  (min =    0 RPM)\n", pad(&label)));
                features.push(format!(r#""{label}": {{"{label}_input": {rpm}.000}}"#));
            }
            for (i, (t, label)) in chip.temps.iter().zip(&temp_labels).enumerate() {
                let k = i + 1;
                let c = |tenths: i32| f64::from(tenths) / 10.0;
                let mut line = format!("{}{:+6.1}{degree}  ", pad(label), c(t.tenths));
                let mut limits = Vec::new();
                let mut subs = vec![format!(r#""temp{k}_input": {:.3}"#, c(t.tenths))];
                if let Some(v) = t.low {
                    limits.push(format!("low  = {:+5.1}{degree}", c(v)));
                    subs.push(format!(r#""temp{k}_min": {:.3}"#, c(v)));
                }
                if let Some(v) = t.high {
                    limits.push(format!("high = {:+5.1}{degree}", c(v)));
                    subs.push(format!(r#""temp{k}_max": {:.3}"#, c(v)));
                    if let Some(h) = t.hyst {
                        limits.push(format!("hyst = {:+5.1}{degree}", c(h)));
                        subs.push(format!(r#""temp{k}_max_hyst": {:.3}"#, c(h)));
                    }
                }
                if let Some(v) = t.crit {
                    limits.push(format!("crit = {:+5.1}{degree}", c(v)));
                    subs.push(format!(r#""temp{k}_crit": {:.3}"#, c(v)));
                }
                for (g, group) in limits.chunks(2).enumerate() {
                    if g > 0 {
                        line.push('\n');
                        line.push_str(&" ".repeat(width + 10));
                    }
                    line.push_str(&format!("({})", group.join(", ")));
                    if g == 0 && t.alarm {
                        line.push_str("  ALARM (CRIT)");
                    }
                }
                if limits.is_empty() && t.alarm {
                    line.push_str(&format!("{:>39}", "ALARM"));
                }
                if t.thermistor {
                    line.push_str("  sensor = thermistor");
                    subs.push(format!(r#""temp{k}_type": 4.000"#));
                }
                text.push_str(&line);
                text.push('\n');
                features.push(format!(r#""{label}": {{{}}}"#, subs.join(",\n ")));
                want.push(Reading {
                    chip: name.clone(),
                    sensor: format!("temp{k}"),
                    label: t.label.clone(),
                    celsius: c(t.tenths),
                    max_celsius: t.high.map(c),
                    critical_celsius: t.crit.map(c),
                    source: SOURCE_NAME.to_string(),
                    role: Default::default(),
                });
            }
            text.push('\n');
            json_chips.push(format!("\"{name}\": {{\n{}\n}}", features.join(",\n")));
        }
        (text, format!("{{\n{}\n}}\n", json_chips.join(",\n")), want)
    }

    // ----------------------------------------------------- source modes --

    #[cfg(unix)]
    mod modes {
        use super::*;
        use std::os::unix::fs::PermissionsExt;
        use std::time::Duration;

        /// Write an executable `sensors` stand-in into `dir`.
        fn script(dir: &Path, body: &str) -> PathBuf {
            let path = dir.join("sensors");
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            path
        }

        /// Read once, bounded in time. A script written a moment ago can be
        /// briefly "busy" (ETXTBSY) while another test thread forks: retry.
        async fn read(src: &Arc<LmSensors>) -> Result<Vec<Reading>, SourceError> {
            for _ in 0..50 {
                let res = tokio::time::timeout(Duration::from_secs(30), Arc::clone(src).read())
                    .await
                    .expect("read finished in time");
                match res {
                    Err(SourceError::Command(m)) if m.contains("Text file busy") => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    other => return other,
                }
            }
            panic!("script stayed busy");
        }

        fn fixtures_in(dir: &Path) {
            std::fs::write(dir.join("ws.txt"), fixture!("workstation.txt")).expect("write");
            std::fs::write(dir.join("ws.json"), fixture!("workstation.json")).expect("write");
        }

        #[tokio::test]
        async fn command_prints_fixture() {
            let dir = tempfile::tempdir().expect("tempdir");
            fixtures_in(dir.path());
            let d = dir.path().display();
            let program = script(
                dir.path(),
                &format!(
                    "echo \"$LC_ALL $*\" >> '{d}/calls'\n\
                     if [ \"$1\" = \"-j\" ]; then cat '{d}/ws.json'; else cat '{d}/ws.txt'; fi"
                ),
            );
            let want_json = json(fixture!("workstation.json"));
            let want_text = text(fixture!("workstation.txt"));
            for (format, want) in [
                (Format::Json, &want_json),
                (Format::Text, &want_text),
                (Format::Auto, &want_json),
            ] {
                let src = Arc::new(LmSensors::command(&program, format));
                assert_eq!(src.name(), "lm_sensors");
                assert_eq!(&read(&src).await.expect("read"), want, "{format}");
            }
            let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
            assert_eq!(calls, "C -j\nC \nC -j\n");
        }

        #[tokio::test]
        async fn command_extra_args_come_before_json_flag() {
            let dir = tempfile::tempdir().expect("tempdir");
            fixtures_in(dir.path());
            let d = dir.path().display();
            let program = script(
                dir.path(),
                &format!("echo \"$*\" > '{d}/calls'\ncat '{d}/ws.json'"),
            );
            let src = Arc::new(LmSensors::command_with_args(
                &program,
                ["-c", "/etc/sensors3.conf", "coretemp-*"],
                Format::Auto,
            ));
            assert_eq!(read(&src).await.expect("read").len(), 21);
            let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
            assert_eq!(calls, "-c /etc/sensors3.conf coretemp-* -j\n");
        }

        #[tokio::test]
        async fn command_exit_status_is_an_error_with_stderr() {
            let dir = tempfile::tempdir().expect("tempdir");
            let program = script(
                dir.path(),
                "echo 'No sensors found!' >&2\n\
                 echo 'Make sure you loaded all the kernel drivers you need.' >&2\n\
                 exit 1",
            );
            let src = Arc::new(LmSensors::command(&program, Format::Auto));
            match read(&src).await {
                Err(SourceError::Command(m)) => {
                    assert!(m.contains("exit status: 1"), "{m}");
                    assert!(m.contains("No sensors found! Make sure you loaded"), "{m}");
                    assert!(m.contains(&program.display().to_string()), "{m}");
                }
                other => panic!("{other:?}"),
            }
        }

        #[tokio::test]
        async fn command_garbage_is_a_parse_error() {
            let dir = tempfile::tempdir().expect("tempdir");
            let program = script(dir.path(), "printf '\\377\\376 garbage {{{\\n'");
            for (format, needle) in [
                (Format::Json, "lm-sensors JSON"),
                (Format::Auto, "lm-sensors JSON"),
                (Format::Text, "no chip header"),
            ] {
                let src = Arc::new(LmSensors::command(&program, format));
                match read(&src).await {
                    Err(SourceError::Parse(m)) => {
                        assert!(m.contains(needle) && m.contains("sensors"), "{m}")
                    }
                    other => panic!("{format}: {other:?}"),
                }
            }
        }

        #[tokio::test]
        async fn command_auto_falls_back_to_text_without_json_support() {
            let dir = tempfile::tempdir().expect("tempdir");
            fixtures_in(dir.path());
            let d = dir.path().display();
            let program = script(
                dir.path(),
                &format!(
                    "echo \"$*\" >> '{d}/calls'\n\
                     if [ \"$1\" = \"-j\" ]; then\n\
                       echo \"sensors: invalid option -- 'j'\" >&2\n\
                       echo \"Try \\`sensors -h' for more information\"\n\
                       exit 1\n\
                     fi\n\
                     cat '{d}/ws.txt'"
                ),
            );
            let src = Arc::new(LmSensors::command(&program, Format::Auto));
            let want = text(fixture!("workstation.txt"));
            assert_eq!(read(&src).await.expect("first"), want);
            assert_eq!(read(&src).await.expect("second"), want);
            // -j is tried once, then remembered.
            let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
            assert_eq!(calls, "-j\n\n\n");
            // An explicit JSON source reports the failure instead.
            let strict = Arc::new(LmSensors::command(&program, Format::Json));
            assert!(
                matches!(read(&strict).await, Err(SourceError::Command(m)) if m.contains("invalid option"))
            );
        }

        #[tokio::test]
        async fn command_auto_falls_back_to_text_on_broken_json() {
            let dir = tempfile::tempdir().expect("tempdir");
            fixtures_in(dir.path());
            let d = dir.path().display();
            // sensors prints labels unescaped: a `"` in a label breaks the JSON.
            let program = script(
                dir.path(),
                &format!(
                    "echo \"$*\" >> '{d}/calls'\n\
                     if [ \"$1\" = \"-j\" ]; then\n\
                       printf '{{\"it87-isa-0290\":{{\"CPU \"big\" core\":{{\"temp1_input\": 40.000}}}}}}\\n'\n\
                       exit 0\n\
                     fi\n\
                     cat '{d}/ws.txt'"
                ),
            );
            let src = Arc::new(LmSensors::command(&program, Format::Auto));
            let want = text(fixture!("workstation.txt"));
            assert_eq!(read(&src).await.expect("first"), want);
            assert_eq!(read(&src).await.expect("second"), want);
            let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
            assert_eq!(calls, "-j\n\n\n");
        }

        #[tokio::test]
        async fn command_output_is_capped() {
            let dir = tempfile::tempdir().expect("tempdir");
            let program = script(dir.path(), "exec yes coretemp-isa-0000");
            let src = Arc::new(LmSensors::command(&program, Format::Text));
            match read(&src).await {
                Err(SourceError::Parse(m)) => {
                    assert!(m.contains("larger than 4194304 bytes"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }

        #[tokio::test]
        async fn command_large_stderr_is_drained_and_excerpted() {
            let dir = tempfile::tempdir().expect("tempdir");
            // ~150 KB of stderr: more than a pipe buffer.
            let program = script(
                dir.path(),
                "i=0\n\
                 while [ $i -lt 2000 ]; do\n\
                   echo \"ERROR: Can't get value of subfeature temp${i}_input: Kernel interface error\" >&2\n\
                   i=$((i+1))\n\
                 done\n\
                 exit 2",
            );
            let src = Arc::new(LmSensors::command(&program, Format::Json));
            match read(&src).await {
                Err(SourceError::Command(m)) => {
                    assert!(
                        m.contains("exit status: 2") && m.contains("temp0_input"),
                        "{m}"
                    );
                    assert!(m.len() < 600, "{} bytes", m.len());
                }
                other => panic!("{other:?}"),
            }
        }

        #[tokio::test]
        async fn command_missing_program() {
            let src = Arc::new(LmSensors::command(
                "/nonexistent/coolmesh-test/sensors",
                Format::Auto,
            ));
            match read(&src).await {
                Err(SourceError::Command(m)) => assert!(
                    m.contains("cannot run") && m.contains("/nonexistent"),
                    "{m}"
                ),
                other => panic!("{other:?}"),
            }
        }

        #[tokio::test]
        async fn file_is_reread_every_call() {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("sensors.out");
            let src = Arc::new(LmSensors::file(&path, Format::Auto));
            std::fs::write(&path, fixture!("workstation.txt")).expect("write");
            assert_eq!(
                read(&src).await.expect("text"),
                text(fixture!("workstation.txt"))
            );
            std::fs::write(&path, fixture!("dell_smm.json")).expect("write");
            assert_eq!(read(&src).await.expect("json").len(), 4);
            // Garbage names the file.
            std::fs::write(&path, "{\"truncated\": {").expect("write");
            match read(&src).await {
                Err(SourceError::Parse(m)) => {
                    assert!(m.contains("sensors.out") && m.contains("EOF"), "{m}")
                }
                other => panic!("{other:?}"),
            }
            // A forced format is honoured.
            let as_text = Arc::new(LmSensors::file(&path, Format::Text));
            assert!(
                matches!(read(&as_text).await, Err(SourceError::Parse(m)) if m.contains("no chip header"))
            );
            std::fs::remove_file(&path).expect("rm");
            match read(&src).await {
                Err(e @ SourceError::Io { .. }) => {
                    assert!(e.to_string().contains("sensors.out"), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
