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
                    super::child::stderr_excerpt(&out.stderr)
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

mod json;
#[cfg(test)]
mod tests;
mod text;

pub use json::parse_json;
pub use text::parse_text;
