//! Source `ipmi`: the BMC's temperature sensors and their thresholds, read
//! with `ipmitool sensor` (default) or freeipmi's `ipmi-sensors
//! --output-sensor-thresholds`, on this server's BMC (`/dev/ipmi0`) or over
//! the network (`-I lanplus`).
//!
//! # Cadence
//!
//! A BMC is slow: `ipmitool sensor` asks for every sensor's reading and
//! thresholds one command at a time (a second or several on a real server,
//! plus a session handshake over lanplus), far beyond the sampler's 1 s
//! timeout, and a BMC polled every 2 s by every tool on the host gets
//! slower still. So the tool runs in a task of its own, one run at a time,
//! every [`IpmiConfig::interval`] (default 5 s) under
//! [`IpmiConfig::timeout`] (default 10 s, the child is killed then), and
//! [`Source::read`] hands the sampler the outcome of the latest finished run:
//! its readings, or its error. Nothing older is ever handed out: a run that
//! fails replaces the readings with its error, and an outcome older than
//! `interval + timeout + 2 s` (the task is gone) is an error too. Until the
//! first run finishes, a read waits for it (the sampler's timeout cuts that
//! wait; the run goes on).
//!
//! # Output rules
//!
//! Lines are split at `|` when they contain one, else at `,` (`ipmitool -c`,
//! `ipmi-sensors --comma-separated-output`). By field count:
//!
//! - 10 fields, `ipmitool sensor`: name, reading, unit, status, lnr, lcr,
//!   lnc, **unc**, **ucr**, unr.
//! - 12 fields, `ipmi-sensors --output-sensor-thresholds`: record id, name,
//!   type, reading, unit, lower nr, lower c, lower nc, **upper nc**, **upper
//!   c**, upper nr, event. A header line (`ID,Name,...`) is skipped.
//! - 4 fields, `ipmitool -c sdr`: name, reading, unit, status (no
//!   thresholds).
//!
//! Anything else (progress lines such as freeipmi's `Caching SDR ...`,
//! stderr merged in, a line longer than [`MAX_LINE`]) is not a sensor row
//! and is skipped. Of the rows, only temperatures are used: unit `degrees C`
//! or `C`, and `degrees F` or `F` (converted). A reading of `na`, `N/A`,
//! `ns`, `disabled`, empty, or anything that is not a finite number, or an
//! ipmitool status of `ns`/`na`/`disabled` means *no reading*: the sensor is
//! skipped, never read as zero. `max_celsius` is the upper non-critical
//! threshold and `critical_celsius` the upper critical one; `na` or an
//! unparsable threshold is none; the non-recoverable and lower thresholds
//! are never used. Every reading passes [`Reading::sanitized`] (implausible
//! values are dropped).
//!
//! The source is *down* (an error, no readings at all) when the tool cannot
//! start, exits non-zero, prints more than [`super::MAX_DOCUMENT`], does not
//! finish within the timeout, prints no sensor row at all (garbage, an empty
//! answer), more than [`MAX_SENSORS`] rows, or temperature rows none of
//! which has a reading (a BMC that is resetting answers `na` everywhere). A
//! last line without its newline is cut off and not used.
//!
//! # Sensor ids
//!
//! `chip` is `ipmi`; `sensor` is the BMC's sensor name (`Inlet Temp`),
//! control characters removed and at most [`MAX_NAME`] characters; a name
//! seen again gets ` #2`, ` #3` in output order (servers that name both
//! CPU sensors `Temp`). `label` is the name as well, which is what gives
//! `Inlet Temp` the inlet role and `Exhaust Temp` the exhaust role
//! ([`crate::heating::default_role`]).

use super::child::{self, RunError};
use super::{Source, SourceError, MAX_DOCUMENT};
use crate::thermal::Reading;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The `source` label, and the `chip` of every reading.
pub const SOURCE_NAME: &str = "ipmi";
/// The command run by default: `ipmitool sensor` on the local BMC.
pub const DEFAULT_COMMAND: &[&str] = &["ipmitool", "sensor"];
/// Longest line looked at; a longer one is not a sensor row.
pub const MAX_LINE: usize = 1024;
/// Longest sensor name kept (IPMI names are at most 16 bytes).
pub const MAX_NAME: usize = 64;
/// At most this many sensor rows: more is not a BMC's answer.
pub const MAX_SENSORS: usize = 4096;
/// Stderr bytes kept for the error message.
const STDERR_KEEP: u64 = 4096;

/// How and how often to run the tool.
#[derive(Debug, Clone, PartialEq)]
pub struct IpmiConfig {
    /// Program and arguments, without a shell (lanplus arguments already in).
    pub argv: Vec<String>,
    /// Time from the start of one run to the start of the next. Default 5 s.
    pub interval: Duration,
    /// A run still going after this is killed and the source is down.
    /// Default 10 s.
    pub timeout: Duration,
}

impl Default for IpmiConfig {
    fn default() -> Self {
        IpmiConfig {
            argv: DEFAULT_COMMAND.iter().map(|s| s.to_string()).collect(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The outcome of one finished run.
type Outcome = Option<(Instant, Result<Vec<Reading>, String>)>;

/// The IPMI source. Its runner task starts with the first read and ends
/// when the source is dropped (which kills a running tool).
#[derive(Debug)]
pub struct Ipmi {
    cfg: IpmiConfig,
    latest: watch::Sender<Outcome>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Ipmi {
    /// A source running `cfg.argv`.
    pub fn new(cfg: IpmiConfig) -> Self {
        Ipmi {
            cfg,
            latest: watch::Sender::new(None),
            task: Mutex::new(None),
        }
    }

    /// The command line shown in errors.
    fn shown(&self) -> String {
        self.cfg.argv.join(" ")
    }

    fn ensure_runner(&self) {
        let Ok(mut task) = self.task.lock() else {
            return;
        };
        if task.is_some() {
            return;
        }
        let (argv, interval, timeout) =
            (self.cfg.argv.clone(), self.cfg.interval, self.cfg.timeout);
        let tx = self.latest.clone();
        *task = Some(tokio::spawn(async move {
            loop {
                let started = Instant::now();
                let r = match tokio::time::timeout(timeout, run_once(&argv)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!(
                        "`{}` did not answer within {timeout:?} (killed)",
                        argv.join(" ")
                    )),
                };
                tx.send_replace(Some((Instant::now(), r)));
                tokio::time::sleep_until(started + interval).await;
            }
        }));
    }
}

impl Drop for Ipmi {
    fn drop(&mut self) {
        if let Ok(mut t) = self.task.lock() {
            if let Some(t) = t.take() {
                t.abort();
            }
        }
    }
}

impl Source for Ipmi {
    fn name(&self) -> &str {
        SOURCE_NAME
    }

    fn read(self: Arc<Self>) -> BoxFuture<'static, Result<Vec<Reading>, SourceError>> {
        Box::pin(async move {
            self.ensure_runner();
            let mut rx = self.latest.subscribe();
            let outcome = rx
                .wait_for(Option::is_some)
                .await
                .map_err(|_| SourceError::Command("ipmi: the runner stopped".into()))?
                .clone();
            let Some((at, r)) = outcome else {
                return Err(SourceError::Command("ipmi: no run finished yet".into()));
            };
            let limit = self.cfg.interval + self.cfg.timeout + Duration::from_secs(2);
            let age = at.elapsed();
            if age > limit {
                return Err(SourceError::Command(format!(
                    "`{}`: last answer {}s ago, older than {}s",
                    self.shown(),
                    age.as_secs(),
                    limit.as_secs()
                )));
            }
            r.map_err(SourceError::Command)
        })
    }
}

/// Run the tool once (`LC_ALL=C`, capped output) and parse what it printed.
pub async fn run_once(argv: &[String]) -> Result<Vec<Reading>, SourceError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| SourceError::Command("ipmi: empty command".into()))?;
    let shown = argv.join(" ");
    let args: Vec<OsString> = args.iter().map(Into::into).collect();
    let limits = child::Limits {
        stdout_cap: MAX_DOCUMENT,
        stderr_keep: STDERR_KEEP,
    };
    let out = child::run(program.as_ref(), &args, &[("LC_ALL", "C")], limits)
        .await
        .map_err(|e| {
            SourceError::Command(match e {
                RunError::Spawn(e) => format!("`{shown}`: cannot run: {e}"),
                RunError::Read(e) => format!("`{shown}`: reading output: {e}"),
                RunError::TooLarge => {
                    format!("`{shown}`: printed more than {MAX_DOCUMENT} bytes, not a BMC's sensor list")
                }
                RunError::Wait(e) => format!("`{shown}`: waiting for exit: {e}"),
            })
        })?;
    if !out.status.success() {
        return Err(SourceError::Command(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            super::child::stderr_excerpt(&out.stderr)
        )));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
        .map_err(|e| SourceError::Parse(format!("`{shown}`: {e}")))
}

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

/// The tool a command runs, by the file name of `argv[0]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `ipmitool`.
    Ipmitool,
    /// freeipmi's `ipmi-sensors`.
    Freeipmi,
    /// Something else (a wrapper script): printed in one of the formats above.
    Other,
}

/// Which tool `program` is.
pub fn tool(program: &str) -> Tool {
    match program.rsplit('/').next().unwrap_or(program) {
        "ipmitool" => Tool::Ipmitool,
        "ipmi-sensors" => Tool::Freeipmi,
        _ => Tool::Other,
    }
}

/// An argument that puts a password on the command line, where `ps` shows
/// it to every user: ipmitool's `-P`, freeipmi's `-p`/`--password`.
pub fn password_argument(argv: &[String]) -> Option<&str> {
    let t = argv.first().map_or(Tool::Other, |p| tool(p));
    argv.iter().skip(1).map(String::as_str).find(|a| match t {
        Tool::Ipmitool => a.starts_with("-P"),
        Tool::Freeipmi => {
            a.starts_with("--password") && !a.starts_with("--password-prompt")
                || (a.starts_with("-p") && !a.starts_with("--"))
        }
        Tool::Other => false,
    })
}

/// The network BMC settings of `[sensors]` (`ipmi_host` and friends).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lanplus {
    /// `HOST` or `HOST:PORT`.
    pub host: String,
    /// User name; none: ipmitool's default (`ADMIN` on most BMCs is wrong; set it).
    pub user: Option<String>,
    /// File holding the password (ipmitool `-f`): never on the command line.
    pub password_file: Option<std::path::PathBuf>,
}

/// The full command: `command[0]`, then the lanplus arguments (ipmitool
/// only), then the rest of `command`.
///
/// # Errors
///
/// A message for `sensors.ipmi_host` when the command is not ipmitool.
pub fn argv_with_lanplus(command: &[String], lan: Option<&Lanplus>) -> Result<Vec<String>, String> {
    let Some(lan) = lan else {
        return Ok(command.to_vec());
    };
    let Some((program, rest)) = command.split_first() else {
        return Err("ipmi_command is empty".into());
    };
    if tool(program) != Tool::Ipmitool {
        return Err(format!(
            "works with ipmitool only; for {program} put the host, user and a config file holding the password into ipmi_command"
        ));
    }
    let mut argv = vec![program.clone(), "-I".into(), "lanplus".into()];
    let (host, port) = match lan.host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, Some(p)),
        _ => (lan.host.as_str(), None),
    };
    argv.push("-H".into());
    argv.push(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    );
    if let Some(p) = port {
        argv.push("-p".into());
        argv.push(p.to_string());
    }
    if let Some(u) = &lan.user {
        argv.push("-U".into());
        argv.push(u.clone());
    }
    if let Some(f) = &lan.password_file {
        argv.push("-f".into());
        argv.push(f.display().to_string());
    }
    argv.extend(rest.iter().cloned());
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heating::{default_role, Role};

    const SIM_IPMITOOL: &str = include_str!("../../tests/fixtures/ipmi/sim-ipmitool-sensor.txt");
    const SIM_IPMITOOL_CSV: &str =
        include_str!("../../tests/fixtures/ipmi/sim-ipmitool-sensor-c.txt");
    const SIM_FREEIPMI: &str = include_str!("../../tests/fixtures/ipmi/sim-ipmi-sensors.txt");
    const SIM_SDR_CSV: &str = include_str!("../../tests/fixtures/ipmi/sim-ipmitool-sdr-c.txt");

    fn by(rs: &[Reading], sensor: &str) -> Reading {
        rs.iter()
            .find(|r| r.sensor == sensor)
            .cloned()
            .unwrap_or_else(|| panic!("no {sensor} in {rs:#?}"))
    }

    /// The same BMC read three ways gives the same readings.
    #[test]
    fn simulated_bmc_in_every_format() {
        for (what, text, thresholds) in [
            ("ipmitool sensor", SIM_IPMITOOL, true),
            ("ipmitool -c sensor", SIM_IPMITOOL_CSV, true),
            ("ipmi-sensors", SIM_FREEIPMI, true),
            ("ipmitool -c sdr", SIM_SDR_CSV, false),
        ] {
            let rs = parse(text).unwrap_or_else(|e| panic!("{what}: {e}"));
            let names: Vec<&str> = rs.iter().map(|r| r.sensor.as_str()).collect();
            assert_eq!(
                names,
                ["Inlet Temp", "Exhaust Temp", "Temp", "Temp #2", "DIMM Temp"],
                "{what}"
            );
            let inlet = by(&rs, "Inlet Temp");
            assert_eq!(inlet.celsius, 23.0, "{what}");
            assert_eq!(
                (inlet.chip.as_str(), inlet.source.as_str()),
                ("ipmi", "ipmi")
            );
            assert_eq!(inlet.label.as_deref(), Some("Inlet Temp"));
            assert_eq!(by(&rs, "Temp #2").celsius, 47.0);
            assert_eq!(by(&rs, "DIMM Temp").max_celsius, None);
            assert_eq!(by(&rs, "DIMM Temp").critical_celsius, None);
            if thresholds {
                assert_eq!(inlet.max_celsius, Some(42.0), "{what}");
                assert_eq!(inlet.critical_celsius, Some(47.0), "{what}");
                assert_eq!(by(&rs, "Exhaust Temp").critical_celsius, Some(75.0));
            } else {
                assert_eq!(inlet.critical_celsius, None);
            }
            assert_eq!(default_role(&inlet), Role::Inlet);
            assert_eq!(default_role(&by(&rs, "Exhaust Temp")), Role::Exhaust);
            assert_eq!(default_role(&by(&rs, "Temp")), Role::Component);
        }
    }

    #[test]
    fn no_reading_is_skipped_never_zero() {
        let text = "\
Inlet Temp       | 21.000     | degrees C  | ok    | na        | na        | na        | 42.000    | 47.000    | na
PSU1 Temp        | na         |            | na    | na        | na        | na        | 60.000    | 65.000    | na
PSU2 Temp        | 0.000      | degrees C  | ns    | na        | na        | na        | 60.000    | 65.000    | na
CPU2 Temp        | disabled   | degrees C  | ok    | na        | na        | na        | na        | na        | na
CPU3 Temp        | 0x1f       | degrees C  | ok    | na        | na        | na        | na        | na        | na
Fan1             | 4800.000   | RPM        | ok    | na        | 600.000   | na        | na        | na        | na
";
        let rs = parse(text).expect("one reading");
        assert_eq!(rs.len(), 1, "{rs:#?}");
        assert_eq!(rs[0].sensor, "Inlet Temp");
    }

    #[test]
    fn fahrenheit_and_implausible_values() {
        let text = "\
Ambient          | 77.000     | degrees F  | ok    | na        | na        | na        | 104.000   | 113.000   | na
Broken           | 900.000    | degrees C  | ok    | na        | na        | na        | 60.000    | 65.000    | na
Odd limit        | 30.000     | degrees C  | ok    | na        | na        | na        | 65261.8   | 1e308     | na
";
        let rs = parse(text).expect("ok");
        assert_eq!(rs.len(), 2, "{rs:#?}");
        assert_eq!(rs[0].celsius, 25.0);
        assert_eq!(rs[0].max_celsius, Some(40.0));
        assert_eq!(rs[0].critical_celsius, Some(45.0));
        assert_eq!(rs[1].sensor, "Odd limit");
        assert_eq!((rs[1].max_celsius, rs[1].critical_celsius), (None, None));
    }

    #[test]
    fn down_for_garbage_empty_truncated_and_all_na() {
        let cases = [
            ("", "no sensor rows"),
            ("hello world\n", "no sensor rows"),
            ("Error: Unable to establish IPMI v2 / RMCP+ session\n", "no sensor rows"),
            (
                "Fan1             | 4800.000   | RPM        | ok    | na | na | na | na | na | na\n",
                "none a temperature",
            ),
            (
                "Inlet Temp       | na         |            | na    | na | na | na | 42.000 | 47.000 | na\n",
                "none with a reading",
            ),
            (
                "Inlet Temp       | na         | degrees C  | ns    | na | na | na | 42.000 | 47.000 | na\n",
                "none with a plausible reading",
            ),
            // Cut off in the middle of the only row.
            (
                "Inlet Temp       | 21.000     | degrees C  | ok    | na | na | na | 42.000 | 47",
                "no sensor rows",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // A cut-off last row is not used; the complete ones are.
        let rs = parse(
            "Inlet Temp | 21 | degrees C | ok | na | na | na | 42 | 47 | na\nExhaust Temp | 3",
        )
        .expect("first row");
        assert_eq!(rs.len(), 1);
    }

    #[test]
    fn hostile_input_never_panics() {
        let long = format!(
            "{}| 21 | degrees C | ok | na | na | na | 42 | 47 | na\n",
            "A".repeat(5000)
        );
        assert!(parse(&long).is_err());
        let huge = "X | 99999999999999999999999999999999999999999 | degrees C | ok | na | na | na | 1e999 | -1e999 | na\n";
        assert!(parse(huge).is_err());
        let many =
            "T | 20 | degrees C | ok | na | na | na | na | na | na\n".repeat(MAX_SENSORS + 1);
        assert!(parse(&many)
            .expect_err("too many")
            .to_string()
            .contains("more than"));
        // Pseudo-random bytes, split anywhere: errors or readings, never a panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let good = SIM_IPMITOOL.as_bytes();
        for round in 0..2000 {
            let mut bytes = good.to_vec();
            for _ in 0..(round % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % bytes.len();
                bytes[i] = (x >> 32) as u8;
            }
            let cut = (x as usize) % (bytes.len() + 1);
            let text = String::from_utf8_lossy(&bytes[..cut]);
            if let Ok(rs) = parse(&text) {
                for r in rs {
                    assert!(crate::thermal::plausible(r.celsius));
                    assert!(r.sensor.chars().count() <= MAX_NAME + 8);
                }
            }
        }
        // Control characters in names are removed; a name of only those is skipped.
        let rs = parse("In\u{7}let\u{1b}[31m Temp | 20 | degrees C | ok | na | na | na | na | na | na\n\u{1} | 20 | degrees C | ok | na | na | na | na | na | na\n")
            .expect("one");
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].sensor, "Inlet[31m Temp");
    }

    #[test]
    fn freeipmi_header_and_progress_lines_are_skipped() {
        let text = "Caching SDR repository information: /root/.freeipmi/sdr-cache/sdr-cache-host.localhost\n\
ID,Name,Type,Reading,Units,Lower NR,Lower C,Lower NC,Upper NC,Upper C,Upper NR,Event\n\
1,Inlet Temp,Temperature,23.00,C,N/A,N/A,N/A,42.00,47.00,N/A,'OK'\n\
6,PSU1 Temp,Temperature,N/A,C,N/A,N/A,N/A,60.00,65.00,N/A,N/A\n";
        let rs = parse(text).expect("ok");
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].critical_celsius, Some(47.0));
    }

    #[test]
    fn password_arguments_are_found() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            password_argument(&v(&["ipmitool", "-P", "x", "sensor"])),
            Some("-P")
        );
        assert_eq!(
            password_argument(&v(&["/usr/bin/ipmitool", "-Psecret"])),
            Some("-Psecret")
        );
        assert_eq!(
            password_argument(&v(&["ipmitool", "-p", "623", "-f", "/f"])),
            None
        );
        assert_eq!(
            password_argument(&v(&["ipmi-sensors", "-p", "x"])),
            Some("-p")
        );
        assert_eq!(
            password_argument(&v(&["ipmi-sensors", "--password=x"])),
            Some("--password=x")
        );
        assert_eq!(
            password_argument(&v(&["ipmi-sensors", "--config-file=/f"])),
            None
        );
    }

    #[test]
    fn lanplus_arguments_go_after_the_program() {
        let cmd: Vec<String> = ["ipmitool", "-C", "3", "sensor"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let lan = Lanplus {
            host: "127.0.0.1:9623".into(),
            user: Some("coolmesh".into()),
            password_file: Some("/etc/coolmesh/bmc.pass".into()),
        };
        assert_eq!(
            argv_with_lanplus(&cmd, Some(&lan)).expect("ok").join(" "),
            "ipmitool -I lanplus -H 127.0.0.1 -p 9623 -U coolmesh -f /etc/coolmesh/bmc.pass -C 3 sensor"
        );
        let lan = Lanplus {
            host: "bmc1.example".into(),
            ..Default::default()
        };
        assert_eq!(
            argv_with_lanplus(&cmd, Some(&lan)).expect("ok").join(" "),
            "ipmitool -I lanplus -H bmc1.example -C 3 sensor"
        );
        let lan = Lanplus {
            host: "[fd00::1]:623".into(),
            ..Default::default()
        };
        assert!(argv_with_lanplus(&cmd, Some(&lan))
            .expect("ok")
            .join(" ")
            .contains("-H fd00::1 -p 623"));
        assert_eq!(argv_with_lanplus(&cmd, None).expect("ok"), cmd);
        let fi: Vec<String> = vec!["ipmi-sensors".into()];
        assert!(argv_with_lanplus(&fi, Some(&lan)).is_err());
    }

    fn sh(script: &str, interval_ms: u64, timeout_ms: u64) -> Arc<Ipmi> {
        Arc::new(Ipmi::new(IpmiConfig {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
        }))
    }

    #[tokio::test]
    async fn a_command_that_fails_hangs_or_vanishes_is_down() {
        let e = sh(
            "echo 'Error: Unable to establish IPMI v2 / RMCP+ session' >&2; exit 1",
            1000,
            1000,
        )
        .read()
        .await
        .expect_err("exit 1")
        .to_string();
        assert!(e.contains("exit status: 1") && e.contains("RMCP+"), "{e}");
        let e = sh("exec sleep 30", 1000, 200)
            .read()
            .await
            .expect_err("hang")
            .to_string();
        assert!(e.contains("did not answer within"), "{e}");
        let src = Arc::new(Ipmi::new(IpmiConfig {
            argv: vec!["/nonexistent/ipmitool".into()],
            ..IpmiConfig::default()
        }));
        let e = src.read().await.expect_err("missing").to_string();
        assert!(e.contains("cannot run"), "{e}");
    }

    #[tokio::test]
    async fn the_latest_run_is_what_a_read_sees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("out");
        std::fs::write(&f, SIM_IPMITOOL).expect("write");
        let src = sh(&format!("cat {}", f.display()), 50, 1000);
        let rs = src.clone().read().await.expect("first run");
        assert_eq!(rs.len(), 5);
        // The BMC starts answering garbage: within a few runs the source is down.
        std::fs::write(&f, "garbage\n").expect("write");
        let mut down = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if src.clone().read().await.is_err() {
                down = true;
                break;
            }
        }
        assert!(down, "garbage must put the source down");
        // And back.
        std::fs::write(&f, SIM_IPMITOOL).expect("write");
        let mut up = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if src.clone().read().await.is_ok() {
                up = true;
                break;
            }
        }
        assert!(up);
    }

    #[tokio::test]
    async fn dropping_the_source_kills_a_running_tool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let src = sh(
            &format!("echo $$ > {}; exec sleep 600", pidfile.display()),
            1000,
            60_000,
        );
        let _ = tokio::time::timeout(Duration::from_millis(300), src.clone().read()).await;
        let mut pid = None;
        for _ in 0..100 {
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                pid = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = pid.expect("the tool started");
        drop(src);
        let mut gone = false;
        for _ in 0..100 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "tool {pid} still running");
    }
}
