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
//!
//! # Layout
//!
//! - this file: the [`Ipmi`] source, its runner task and [`run_once`].
//! - `parse.rs`: the output rules above ([`parse()`]).
//! - `command.rs`: the command line: which [`Tool`], a
//!   [`password_argument`] on it, the [`Lanplus`] arguments
//!   ([`argv_with_lanplus`]).
//! - `tests.rs`: the tests, on the simulated BMC's fixtures and `sh` scripts.

use super::child::{self, RunError};
use super::{Source, SourceError, MAX_DOCUMENT};
use crate::thermal::Reading;
use futures::future::BoxFuture;
use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

mod command;
mod parse;

pub use command::{argv_with_lanplus, password_argument, tool, Lanplus, Tool};
pub use parse::parse;

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

#[cfg(test)]
mod tests;
