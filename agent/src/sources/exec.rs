//! Source `exec`: an external command that prints a JSON readings document
//! (schema in [`super::json`]) on stdout and exits 0. This is the plugin
//! interface for IPMI (`ipmitool sdr` wrapped in a script), BMCs and inlet
//! sensors.
//!
//! The command runs without a shell. Its output is capped; a non-zero exit,
//! garbage output or a hang is an error for this round. The sampler's
//! timeout drops the future, and `kill_on_drop` then kills the child, so a
//! hung plugin never piles up.

use super::{json::parse_readings, Source, SourceError, MAX_DOCUMENT};
use crate::thermal::Reading;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Runs `argv` and parses its stdout.
#[derive(Debug, Clone)]
pub struct ExecSource {
    argv: Vec<String>,
}

impl ExecSource {
    /// `argv[0]` is the program, the rest its arguments.
    pub fn new(argv: Vec<String>) -> Self {
        ExecSource { argv }
    }
}

/// Run `argv`, returning stdout (capped at `cap`) if it exits 0.
pub async fn run_capped(argv: &[String], cap: u64) -> Result<String, SourceError> {
    use super::child::{run, Limits, RunError};
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| SourceError::Command("empty command".into()))?;
    let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    let limits = Limits {
        stdout_cap: cap,
        stderr_keep: 4096,
    };
    let out = run(prog.as_ref(), &args, &[], limits).await.map_err(|e| {
        SourceError::Command(match e {
            RunError::Spawn(e) => format!("{prog}: cannot start: {e}"),
            RunError::Read(e) => format!("{prog}: reading output: {e}"),
            RunError::TooLarge => format!("{prog}: printed more than {cap} bytes"),
            RunError::Wait(e) => format!("{prog}: {e}"),
        })
    })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg: String = msg.trim().chars().take(200).collect();
        return Err(SourceError::Command(format!(
            "{prog}: {}{}",
            out.status,
            if msg.is_empty() {
                String::new()
            } else {
                format!(": {msg}")
            }
        )));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| SourceError::Command(format!("{prog}: output is not UTF-8")))
}

impl Source for ExecSource {
    fn name(&self) -> &str {
        "exec"
    }

    fn read(self: Arc<Self>) -> BoxFuture<'static, Result<Vec<Reading>, SourceError>> {
        Box::pin(async move {
            let text = run_capped(&self.argv, MAX_DOCUMENT).await?;
            let prog = self.argv.first().map(String::as_str).unwrap_or_default();
            parse_readings(&text, "exec").map_err(|e| SourceError::Parse(format!("{prog}: {e}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sh(script: &str) -> Arc<ExecSource> {
        Arc::new(ExecSource::new(vec![
            "sh".into(),
            "-c".into(),
            script.into(),
        ]))
    }

    #[tokio::test]
    async fn good_output() {
        let rs = sh(r#"echo '[{"chip":"ipmi","sensor":"inlet","celsius":23}]'"#)
            .read()
            .await
            .expect("ok");
        assert_eq!(
            (rs[0].chip.as_str(), rs[0].celsius, rs[0].source.as_str()),
            ("ipmi", 23.0, "exec")
        );
    }

    #[tokio::test]
    async fn garbage_nonzero_missing() {
        let e = sh("echo hello")
            .read()
            .await
            .expect_err("garbage")
            .to_string();
        assert!(e.contains("not a readings document"), "{e}");
        let e = sh("echo broken bus >&2; exit 3")
            .read()
            .await
            .expect_err("exit")
            .to_string();
        assert!(
            e.contains("exit status: 3") && e.contains("broken bus"),
            "{e}"
        );
        let e = Arc::new(ExecSource::new(vec!["/nonexistent/plugin".into()]))
            .read()
            .await
            .expect_err("missing")
            .to_string();
        assert!(e.contains("/nonexistent/plugin: cannot start"), "{e}");
        let e = sh("head -c 5000000 /dev/zero")
            .read()
            .await
            .expect_err("huge")
            .to_string();
        assert!(e.contains("more than"), "{e}");
    }

    #[tokio::test]
    async fn chatty_stderr_does_not_block_the_plugin() {
        // 200 KB on stderr, far beyond a pipe buffer, then valid output.
        let script = r#"head -c 200000 /dev/zero | tr '\0' x >&2; echo '[{"chip":"c","sensor":"s","celsius":30}]'"#;
        let r = tokio::time::timeout(Duration::from_secs(5), sh(script).read())
            .await
            .expect("must not hang");
        assert_eq!(r.expect("ok")[0].celsius, 30.0);
    }

    #[tokio::test]
    async fn hang_is_cut_off_and_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 600", pidfile.display());
        let mut fut = sh(&script).read();
        // Once it runs, it hangs: not done within 500 ms.
        let pid = crate::sources::child::test_support::until_pid(&mut fut, &pidfile).await;
        let r = tokio::time::timeout(Duration::from_millis(500), &mut fut).await;
        assert!(r.is_err(), "should time out");
        // kill_on_drop: the child must be gone shortly after the future is dropped.
        drop(fut);
        // Gone, or a zombie waiting for the reaper.
        let gone = crate::sources::child::test_support::gone_within(pid, 50).await;
        assert!(gone, "plugin {pid} still running");
    }
}
