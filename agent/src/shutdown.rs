//! The shutdown executor: runs the optional pre-command and the shutdown
//! command, or in dry-run logs what it would run.
//!
//! The executor runs one attempt at a time and counts; the decisions around
//! it (persist before spawning, exactly once across restarts, retry timing)
//! live in the [`supervisor`](crate::supervisor), which owns the persisted
//! [`ExecRecord`](crate::fsm::ExecRecord).
//!
//! # Processes
//!
//! Commands are argv vectors, never a shell string: no quoting surprises in
//! the one command that powers a machine off. Each child gets its own
//! process group so that a pre-command timeout kills everything it started
//! (a drain script and its `kubectl`), and stdin is closed. Its stdout and
//! stderr are inherited: under systemd they land in the journal next to the
//! agent's own log lines, and no pipe can fill up and hang the child.
//!
//! The child is waited for on tokio's blocking pool rather than with
//! `tokio::process`. In production both behave the same. Under a paused test
//! clock they do not: while a blocking task runs tokio does not auto-advance
//! time, so a real 2 ms `sh -c ...` cannot "take" minutes of virtual time and
//! trip a timeout; with `tokio::process` such tests are flaky.
//!
//! Each child gets `COOLMESH_REASON` (`power`, `cooling`, ...) and
//! `COOLMESH_DETAIL` in its environment, so a drain script can say why.
//!
//! # Dry-run
//!
//! `dry_run` logs the argv that would run and, when `dry_run_marker` is set,
//! appends one line per would-be shutdown to that file:
//! `<RFC 3339 time> reason=<reason> argv=<argv as JSON>`. Multi-host tests
//! count those lines. The state machine still persists `fsm.json` in dry-run:
//! it is the agent's own state, not an effect on the machine, and without it
//! a restarted dry-run agent would "shut down" a second time.

use crate::fsm::{Millis, Reason};
use serde::Serialize;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How shutdowns are carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShutdownConfig {
    /// The shutdown command (argv). Default `["systemctl", "poweroff"]`.
    pub command: Vec<String>,
    /// Optional command run first, e.g. to drain workloads. Default none.
    /// Its failure or timeout is logged and counted, and never blocks the
    /// shutdown: the room is heating either way.
    pub pre_command: Option<Vec<String>>,
    /// Timeout of the pre-command; its process group is killed after it.
    /// Default 1 min (the same as `shutdown.pre_command_timeout`). Longer gives a drain more time, out of the thermal and
    /// battery margin of the shutdown itself.
    pub pre_command_timeout: Duration,
    /// Timeout of one attempt of the shutdown command; its process group is
    /// killed after it and the attempt counts as failed (then retried with
    /// backoff). Default 2 min: `systemctl poweroff` returns within a
    /// second once the job is queued, so an attempt this slow is hung (on
    /// D-Bus, a stuck NFS mount). Longer waits more on a slow custom
    /// command; shorter may kill a custom command that was still working.
    pub command_timeout: Duration,
    /// First retry delay after a failed shutdown command. Default 5 s.
    pub retry_initial: Duration,
    /// Retry delay cap (delays double up to it). Default 5 min.
    pub retry_max: Duration,
    /// Log instead of running anything. Default false.
    pub dry_run: bool,
    /// In dry-run, append one line per would-be shutdown to this file.
    pub dry_run_marker: Option<PathBuf>,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            command: vec!["systemctl".to_string(), "poweroff".to_string()],
            pre_command: None,
            pre_command_timeout: Duration::from_secs(60),
            command_timeout: Duration::from_secs(120),
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            dry_run: false,
            dry_run_marker: None,
        }
    }
}

/// Counters of the executor (exported as metrics by the agent).
#[derive(Debug, Default)]
pub struct ExecStats {
    /// Shutdown command attempts started (dry-run included).
    pub command_runs: AtomicU64,
    /// Failed shutdown command attempts
    /// (`coolmesh_shutdown_command_failures_total`).
    pub command_failures: AtomicU64,
    /// Pre-command runs started.
    pub pre_command_runs: AtomicU64,
    /// Pre-command runs that failed or timed out.
    pub pre_command_failures: AtomicU64,
    /// Attempts of the shutdown command whose outcome is unknown: the agent
    /// restarted (same boot) while the attempt ran and found the machine
    /// still up (`coolmesh_shutdown_command_outcome_unknown_total`). Counted
    /// by the supervisor when it resumes; not a failure of the command.
    pub outcome_unknown: AtomicU64,
}

impl ExecStats {
    /// Add one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Read a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The argv is empty.
    #[error("no command configured")]
    Empty,
    /// The program could not be started.
    #[error("{argv}: could not start: {source}")]
    Spawn {
        /// The argv, JSON-quoted.
        argv: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The program exited unsuccessfully.
    #[error("{argv}: {status}")]
    Failed {
        /// The argv, JSON-quoted.
        argv: String,
        /// Exit code or signal.
        status: ExitStatus,
    },
    /// The program ran past its timeout and was killed.
    #[error("{argv}: still running after {timeout:?}, killed")]
    Timeout {
        /// The argv, JSON-quoted.
        argv: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Waiting for the program failed.
    #[error("{argv}: waiting for it failed: {source}")]
    Wait {
        /// The argv, JSON-quoted.
        argv: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Dry-run: the marker file could not be written.
    #[error("dry-run marker {path}: {source}")]
    Marker {
        /// The marker file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Why and when a shutdown runs; passed to the commands' environment and to
/// the dry-run marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunContext {
    /// Reason of the shutdown decision.
    pub reason: Reason,
    /// Detail of the shutdown decision.
    pub detail: String,
    /// Wall-clock time of this attempt.
    pub at: Millis,
}

/// Runs the commands. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Executor {
    cfg: ShutdownConfig,
    stats: Arc<ExecStats>,
}

impl Executor {
    /// An executor with its own counters.
    pub fn new(cfg: ShutdownConfig) -> Self {
        Self::with_stats(cfg, Arc::new(ExecStats::default()))
    }

    /// An executor counting into `stats` (e.g. shared with the exporter).
    pub fn with_stats(cfg: ShutdownConfig, stats: Arc<ExecStats>) -> Self {
        Executor { cfg, stats }
    }

    /// The configuration.
    pub fn config(&self) -> &ShutdownConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<ExecStats> {
        &self.stats
    }

    /// Delay before the next attempt after `failures` failed ones:
    /// `retry_initial * 2^(failures - 1)`, at most `retry_max`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        self.cfg
            .retry_initial
            .saturating_mul(1u32 << exp)
            .min(self.cfg.retry_max)
    }

    /// Run the pre-command, if one is configured, under its timeout.
    /// `Ok` when there is none. Callers log the error and go on.
    pub async fn run_pre_command(&self, ctx: &RunContext) -> Result<(), ExecError> {
        let Some(argv) = &self.cfg.pre_command else {
            return Ok(());
        };
        ExecStats::inc(&self.stats.pre_command_runs);
        if self.cfg.dry_run {
            tracing::warn!(argv = %quote(argv), reason = %ctx.reason, "dry-run: would run the shutdown pre-command");
            return Ok(());
        }
        tracing::warn!(argv = %quote(argv), reason = %ctx.reason, timeout = ?self.cfg.pre_command_timeout, "running the shutdown pre-command");
        let result = run_argv(argv, Some(self.cfg.pre_command_timeout), ctx).await;
        if result.is_err() {
            ExecStats::inc(&self.stats.pre_command_failures);
        }
        result
    }

    /// One attempt of the shutdown command, under
    /// [`ShutdownConfig::command_timeout`]: a hung attempt is killed and
    /// counts as failed, and the supervisor retries.
    pub async fn run_command(&self, ctx: &RunContext) -> Result<(), ExecError> {
        ExecStats::inc(&self.stats.command_runs);
        let argv = &self.cfg.command;
        let result = if self.cfg.dry_run {
            tracing::error!(argv = %quote(argv), reason = %ctx.reason, detail = %ctx.detail, "dry-run: would run the shutdown command now");
            self.write_marker(ctx)
        } else {
            tracing::error!(argv = %quote(argv), reason = %ctx.reason, detail = %ctx.detail, "running the shutdown command");
            run_argv(argv, Some(self.cfg.command_timeout), ctx).await
        };
        if result.is_err() {
            ExecStats::inc(&self.stats.command_failures);
        }
        result
    }

    fn write_marker(&self, ctx: &RunContext) -> Result<(), ExecError> {
        let Some(path) = &self.cfg.dry_run_marker else {
            return Ok(());
        };
        let line = format!(
            "{} reason={} argv={}\n",
            ctx.at,
            ctx.reason,
            quote(&self.cfg.command)
        );
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            // One write call: concurrent agents appending to a shared marker
            // file (multi-host tests) do not interleave within a line.
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|source| ExecError::Marker {
                path: path.clone(),
                source,
            })
    }
}

/// The argv as a JSON array: unambiguous in logs whatever the arguments hold.
fn quote(argv: &[String]) -> String {
    serde_json::to_string(argv).unwrap_or_else(|_| format!("{argv:?}"))
}

/// Spawn `argv` and wait for it, killing its process group after `timeout`.
async fn run_argv(
    argv: &[String],
    timeout: Option<Duration>,
    ctx: &RunContext,
) -> Result<(), ExecError> {
    let (program, args) = argv.split_first().ok_or(ExecError::Empty)?;
    let shown = quote(argv);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .env("COOLMESH_REASON", ctx.reason.as_str())
        .env("COOLMESH_DETAIL", &ctx.detail);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Own process group, so the timeout can kill the whole tree.
        cmd.process_group(0);
    }
    let child = cmd.spawn().map_err(|source| ExecError::Spawn {
        argv: shown.clone(),
        source,
    })?;
    let kill = Arc::new(AtomicBool::new(false));
    let kill_flag = Arc::clone(&kill);
    let mut waiter = tokio::task::spawn_blocking(move || wait_child(child, &kill_flag));
    let joined = match timeout {
        None => (&mut waiter).await,
        Some(t) => match tokio::time::timeout(t, &mut waiter).await {
            Ok(joined) => joined,
            Err(_) => {
                kill.store(true, Ordering::Release);
                // Reap it, so no zombie is left behind.
                let _ = waiter.await;
                return Err(ExecError::Timeout {
                    argv: shown,
                    timeout: t,
                });
            }
        },
    };
    let status = joined
        .map_err(|e| ExecError::Wait {
            argv: shown.clone(),
            source: io::Error::other(e),
        })?
        .map_err(|source| ExecError::Wait {
            argv: shown.clone(),
            source,
        })?;
    if status.success() {
        tracing::info!(argv = %shown, "command succeeded");
        Ok(())
    } else {
        Err(ExecError::Failed {
            argv: shown,
            status,
        })
    }
}

/// Wait for `child` on a blocking thread; kill its process group when `kill`
/// is raised. Kill and wait happen on this one thread, so the pid cannot be
/// reaped (and reused) between the check and the kill.
fn wait_child(mut child: Child, kill: &AtomicBool) -> io::Result<ExitStatus> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if kill.load(Ordering::Acquire) {
            #[cfg(unix)]
            {
                // The group id is the child's pid (process_group(0)). The
                // child is not reaped yet, so the group still exists.
                let pid = rustix::process::Pid::from_child(&child);
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            return child.wait();
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RunContext {
        RunContext {
            reason: Reason::Power,
            detail: "test".into(),
            at: Millis(1_700_000_000_000),
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ex = Executor::new(ShutdownConfig::default());
        let secs: Vec<u64> = (1..=9).map(|f| ex.backoff(f).as_secs()).collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(ex.backoff(0), Duration::from_secs(5));
        assert_eq!(ex.backoff(u32::MAX), Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn command_success_failure_and_counters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let script = format!("echo \"$COOLMESH_REASON\" >> '{}'", log.display());
        let ex = Executor::new(ShutdownConfig {
            command: sh(&script),
            ..ShutdownConfig::default()
        });
        ex.run_command(&ctx()).await.expect("runs");
        assert_eq!(std::fs::read_to_string(&log).expect("log"), "power\n");

        let ex = Executor::new(ShutdownConfig {
            command: sh("exit 3"),
            ..ShutdownConfig::default()
        });
        let err = ex.run_command(&ctx()).await.expect_err("fails");
        assert!(matches!(err, ExecError::Failed { .. }), "{err}");
        assert!(err.to_string().contains("exit 3"), "{err}");
        assert_eq!(ExecStats::get(&ex.stats().command_runs), 1);
        assert_eq!(ExecStats::get(&ex.stats().command_failures), 1);

        let ex = Executor::new(ShutdownConfig {
            command: vec!["/nonexistent/coolmesh-poweroff".into()],
            ..ShutdownConfig::default()
        });
        assert!(matches!(
            ex.run_command(&ctx()).await,
            Err(ExecError::Spawn { .. })
        ));
        let ex = Executor::new(ShutdownConfig {
            command: vec![],
            ..ShutdownConfig::default()
        });
        assert!(matches!(
            ex.run_command(&ctx()).await,
            Err(ExecError::Empty)
        ));
        assert_eq!(ExecStats::get(&ex.stats().command_failures), 1);
    }

    /// Is `pid` still a live (not zombie) process?
    fn alive(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the ")" that closes the command name.
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z')),
            Err(_) => false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pre_command_timeout_kills_the_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        // A grandchild in the background, as a drain script would start.
        let script = format!("sleep 600 & echo $! > '{}'; wait", pidfile.display());
        let ex = Arc::new(Executor::new(ShutdownConfig {
            pre_command: Some(sh(&script)),
            pre_command_timeout: Duration::from_secs(10),
            ..ShutdownConfig::default()
        }));
        let ex2 = Arc::clone(&ex);
        let task = tokio::spawn(async move { ex2.run_pre_command(&ctx()).await });
        tokio::task::yield_now().await;
        // Let the script start its grandchild (real time, bounded) before
        // the timeout can fire.
        for _ in 0..400 {
            if std::fs::metadata(&pidfile).is_ok_and(|m| m.len() > 0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // The blocking wait stops auto-advance; push virtual time past the
        // timeout until the task has registered its timer and finished.
        for _ in 0..1000 {
            if task.is_finished() {
                break;
            }
            tokio::time::advance(Duration::from_secs(1)).await;
            tokio::task::yield_now().await;
        }
        let err = task.await.expect("join").expect_err("timed out");
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        assert_eq!(ExecStats::get(&ex.stats().pre_command_failures), 1);
        let pid = std::fs::read_to_string(&pidfile).expect("pid written");
        let pid = pid.trim();
        assert!(!pid.is_empty());
        // SIGKILL was sent before the wait returned; delivery is
        // asynchronous, so wait (bounded) for the grandchild to be gone.
        let gone = (0..400).any(|_| {
            let dead = !alive(pid);
            if !dead {
                std::thread::sleep(Duration::from_millis(5));
            }
            dead
        });
        assert!(
            gone,
            "the pre-command's grandchild {pid} survived the timeout"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_pre_command_is_ok() {
        let ex = Executor::new(ShutdownConfig::default());
        ex.run_pre_command(&ctx()).await.expect("none configured");
        assert_eq!(ExecStats::get(&ex.stats().pre_command_runs), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn dry_run_writes_only_the_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ran = dir.path().join("ran");
        let marker = dir.path().join("marker");
        let ex = Executor::new(ShutdownConfig {
            command: sh(&format!("touch '{}'", ran.display())),
            pre_command: Some(sh(&format!("touch '{}'", ran.display()))),
            dry_run: true,
            dry_run_marker: Some(marker.clone()),
            ..ShutdownConfig::default()
        });
        ex.run_pre_command(&ctx()).await.expect("dry");
        ex.run_command(&ctx()).await.expect("dry");
        ex.run_command(&ctx()).await.expect("dry");
        assert!(!ran.exists());
        let text = std::fs::read_to_string(&marker).expect("marker");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("2023-11-14T22:13:20.000Z reason=power argv=[\"sh\",\"-c\""),
            "{}",
            lines[0]
        );

        // Dry-run without a marker writes nothing at all.
        let ex = Executor::new(ShutdownConfig {
            dry_run: true,
            ..ShutdownConfig::default()
        });
        ex.run_command(&ctx()).await.expect("dry");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
