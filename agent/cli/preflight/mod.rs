//! `coolmesh check-config` / `coolmesh preflight`: everything the agent
//! checks when it starts, and what would make it miss or fake a shutdown
//! later, reported all at once.
//!
//! Two layers:
//!
//! - **the file** ([`check_config`]): every key ([`coolmesh_agent::config::parse_report`]),
//!   the cluster's trust ([`coolmesh_agent::config::cluster_trust_error`]) and the
//!   durations that only make sense together ([`sanity`]);
//! - **this host** ([`check_host`], skipped with `--syntax-only`): the files
//!   the config names (token, cluster key, web config, the config itself)
//!   exist, parse with the agent's own parsers and follow the permission
//!   rule ([`coolmesh_agent::perms`]) for the service user; the programs it runs
//!   (shutdown command, pre-command, `exec:` probes, sensor commands) are
//!   found in the unit's `PATH`; and the shutdown is allowed for the
//!   service user (polkit or sudo).
//!
//! Every [`Problem`] names the config key and its line when the key is in
//! the file. Errors are what the agent refuses at start, or what would
//! make it miss or fake a shutdown; warnings are worth reading but do not
//! fail the check.

mod host;
#[cfg(test)]
mod tests;

use crate::args::CheckConfigArgs;
use coolmesh_agent::config::{self, Config, ConfigError, KeyLines, SourceKind};
use coolmesh_agent::perms::{self, Account, FileInfo};
use host::*;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The `PATH` systemd gives a system service that sets none
/// (`coolmesh.service` does not): programs are looked up there.
pub const SERVICE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The agent would refuse to start, or miss or fake a shutdown.
    Error,
    /// Worth a look; does not fail the check.
    Warning,
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The config key it comes from (dotted, `key[i]` for elements), or
    /// `(host)` for what is not in the config.
    pub key: String,
    /// 1-based line of the key in the config file; `None`: not in the file
    /// (the default applies).
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

impl From<ConfigError> for Problem {
    fn from(e: ConfigError) -> Problem {
        Problem {
            severity: Severity::Error,
            key: e.key,
            line: e.line,
            message: e.message,
        }
    }
}

/// Collects problems, with the lines of the config's keys at hand.
struct Report<'a> {
    lines: &'a KeyLines,
    problems: Vec<Problem>,
}

impl Report<'_> {
    fn push(&mut self, severity: Severity, key: &str, message: impl Into<String>) {
        let e = self.lines.error(key, message);
        self.problems.push(Problem {
            severity,
            ..Problem::from(e)
        });
    }
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, key, message);
    }
    fn warn(&mut self, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, key, message);
    }
}

/// What the host checks look at. [`Host::system`] is this machine; tests
/// point the directories elsewhere.
#[derive(Debug, Clone)]
pub struct Host {
    /// The user the agent runs as; `None` when the default user does not
    /// exist here (then only modes are judged, and a warning says so).
    pub user: Option<Account>,
    /// The name asked for (`--user`, default `coolmesh`).
    pub user_name: String,
    /// `PATH` in which bare program names are looked up.
    pub path: OsString,
    /// polkit JavaScript rule directories.
    pub polkit_rules: Vec<PathBuf>,
    /// polkit local-authority (`.pkla`) directories (older polkit).
    pub polkit_pkla: Vec<PathBuf>,
    /// Where polkitd may be installed; none existing: not installed.
    pub polkitd: Vec<PathBuf>,
    /// The unit file candidates, first existing wins.
    pub unit_files: Vec<PathBuf>,
    /// Drop-in directories of the unit (`*.conf`, in name order, later wins).
    pub unit_dropins: Vec<PathBuf>,
    /// Whether this process runs as root (can ask sudo about another user).
    pub as_root: bool,
}

impl Host {
    /// This machine, for the service user `user_name`.
    pub fn system(user_name: &str) -> Host {
        Host {
            user: Account::lookup(user_name),
            user_name: user_name.to_string(),
            path: OsString::from(SERVICE_PATH),
            polkit_rules: vec![
                "/etc/polkit-1/rules.d".into(),
                "/usr/share/polkit-1/rules.d".into(),
                "/usr/local/share/polkit-1/rules.d".into(),
            ],
            polkit_pkla: vec![
                "/etc/polkit-1/localauthority".into(),
                "/var/lib/polkit-1/localauthority".into(),
            ],
            polkitd: vec![
                "/usr/lib/polkit-1/polkitd".into(),
                "/usr/libexec/polkitd".into(),
                "/usr/lib/policykit-1/polkitd".into(),
            ],
            unit_files: vec![
                "/etc/systemd/system/coolmesh.service".into(),
                "/usr/lib/systemd/system/coolmesh.service".into(),
                "/lib/systemd/system/coolmesh.service".into(),
            ],
            unit_dropins: vec![
                "/usr/lib/systemd/system/coolmesh.service.d".into(),
                "/lib/systemd/system/coolmesh.service.d".into(),
                "/run/systemd/system/coolmesh.service.d".into(),
                "/etc/systemd/system/coolmesh.service.d".into(),
            ],
            as_root: rustix::process::geteuid().is_root(),
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Errors first, then warnings, each in the order found.
    pub problems: Vec<Problem>,
}

impl Outcome {
    /// How many errors.
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
    /// How many warnings.
    pub fn warnings(&self) -> usize {
        self.problems.len() - self.errors()
    }
}

/// Check a config file's text (`file` is its path, for the host checks
/// of the file itself); `host: None` checks the file alone.
pub fn check_config(file: &Path, src: &str, host: Option<&Host>) -> Outcome {
    let parsed = match config::parse_report(src) {
        Ok(p) => p,
        Err(errs) => {
            return Outcome {
                problems: errs.0.into_iter().map(Problem::from).collect(),
            }
        }
    };
    let mut r = Report {
        lines: &parsed.lines,
        problems: parsed.errors.into_iter().map(Problem::from).collect(),
    };
    let cfg = &parsed.config;
    if let Some(e) = config::cluster_trust_error(cfg) {
        r.error("cluster.psk_file", e);
    }
    for w in config::trust_warnings(cfg) {
        let key = if w.starts_with("cluster.insecure_no_psk") {
            "cluster.insecure_no_psk"
        } else {
            "cluster"
        };
        r.warn(key, w);
    }
    sanity(&mut r, cfg);
    if let Some(h) = host {
        check_host(&mut r, file, cfg, h);
    }
    let mut problems = r.problems;
    // Stable: errors first, each group in the order found.
    problems.sort_by_key(|p| p.severity);
    Outcome { problems }
}

fn fmt_d(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Durations and settings that parse but would make a false or missed
/// shutdown (errors) or are worth a second look (warnings).
fn sanity(r: &mut Report<'_>, c: &Config) {
    let s = &c.shutdown;
    if !c.power.targets.is_empty() {
        // Recovery needs recovery_probes good rounds in a row; if that
        // takes the whole grace, mains that returns is never seen back in
        // time and the server powers off anyway.
        let rounds = c.power.interval.mul_f64(1.0 + c.power.jitter) * s.recovery_probes;
        if rounds >= s.grace {
            r.error(
                "shutdown.grace",
                format!(
                    "{} is not longer than the time a recovery takes (shutdown.recovery_probes {} x power.interval {} with its jitter = {}): mains that comes back during the grace is not seen in time and the server powers off anyway; make the grace longer or the interval shorter",
                    fmt_d(s.grace),
                    s.recovery_probes,
                    fmt_d(c.power.interval),
                    fmt_d(rounds)
                ),
            );
        }
    } else {
        r.warn(
            "power.targets",
            "no power targets: mains power is not watched, only overheating and a room-wide cooling failure can shut this server down (operator guide, section 2)",
        );
    }
    if s.duration >= s.grace {
        r.warn(
            "shutdown.duration",
            format!(
                "{} is not shorter than shutdown.grace ({}): the UPS must carry this server for grace + duration ({}); check its runtime covers that, or whether one of the two is mistyped",
                fmt_d(s.duration),
                fmt_d(s.grace),
                fmt_d(s.grace + s.duration)
            ),
        );
    }
    if !s.pre_command.is_empty() && s.duration < s.pre_command_timeout {
        r.warn(
            "shutdown.duration",
            format!(
                "{} is shorter than shutdown.pre_command_timeout ({}): the pre-command runs before the power-off, so a shutdown predicted from the temperature trend may start too late; make duration at least pre_command_timeout plus the power-off itself",
                fmt_d(s.duration),
                fmt_d(s.pre_command_timeout)
            ),
        );
    }
    if s.cancel_hold.is_zero() {
        r.warn(
            "shutdown.cancel_hold",
            "zero: an operator's cancel holds nothing, the trigger starts a new grace at once (default 30m)",
        );
    }
    if c.sensors.interval > Duration::from_secs(3) {
        r.warn(
            "sensors.interval",
            format!(
                "{}: the cooling detector needs ten samples in its 30 s window, and dense racks reach critical about a minute after cooling stops; 2s (the default) detects in time",
                fmt_d(c.sensors.interval)
            ),
        );
    }
    if s.dry_run {
        r.warn(
            "shutdown.dry_run",
            "true: nothing is powered off; run the drill, then go live with dry_run = false (operator guide, \"Room quick-start\")",
        );
    }
    for (i, t) in c.power.targets.iter().enumerate() {
        if let Ok(spec) = coolmesh_agent::power::parse_target(t) {
            if let coolmesh_agent::power::TargetKind::Exec { program, .. } = &spec.kind {
                if basename(program) == "upsc" {
                    r.error(
                        &format!("power.targets[{i}]"),
                        format!(
                            "{t}: upsc exits 0 whenever it can read the UPS, on battery too, so this target never sees mains fail; test the status: exec:sh -c 's=$(upsc ups@localhost ups.status 2>/dev/null) || exit 127; case \" $s \" in *\" OL \"*) exit 0;; esac; exit 1'"
                        ),
                    );
                }
            }
        }
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// `coolmesh check-config` / `coolmesh preflight`: exit 0 when there is
/// no error (warnings are printed), 1 otherwise.
pub fn main(args: &CheckConfigArgs) -> ExitCode {
    let file = args.path();
    let file = file.as_path();
    // A web config file (YAML) can be checked on its own, like
    // `promtool check web-config`.
    if matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    ) {
        return match coolmesh_exporter::WebConfig::load(file) {
            Ok(w) => {
                println!("{}: OK ({})", file.display(), w.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("1 problem found; deploy/web-config.example.yml documents the format");
                ExitCode::FAILURE
            }
        };
    }
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "{}: {e} (is the path right? the Debian package installs /etc/coolmesh/coolmesh.toml)",
                file.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let host = if args.syntax_only {
        None
    } else {
        let name = args
            .user
            .as_deref()
            .unwrap_or(coolmesh_agent::perms::DEFAULT_SERVICE_USER);
        let host = Host::system(name);
        if host.user.is_none() && args.user.is_some() {
            eprintln!("coolmesh: --user {name}: no such user on this host");
            return ExitCode::FAILURE;
        }
        Some(host)
    };
    let out = check_config(file, &text, host.as_ref());
    for p in &out.problems {
        eprintln!("{}: {p}", file.display());
    }
    let (errors, warnings) = (out.errors(), out.warnings());
    let checked = match &host {
        None => "the file alone (--syntax-only)".to_string(),
        Some(h) => format!(
            "the file and this host for user {}",
            h.user
                .as_ref()
                .map(|u| u.name.as_str())
                .unwrap_or(&h.user_name)
        ),
    };
    if errors > 0 {
        eprintln!(
            "{}: {errors} error(s), {warnings} warning(s) in {checked}; fix them (deploy/coolmesh.example.toml documents every key, docs/operator-guide.md the install) and run `coolmesh preflight --config {}` again",
            file.display(),
            file.display()
        );
        ExitCode::FAILURE
    } else {
        println!(
            "{}: OK, {warnings} warning(s); checked {checked}",
            file.display()
        );
        ExitCode::SUCCESS
    }
}
