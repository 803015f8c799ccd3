//! The one child-process runner of the sources that run programs (`exec`,
//! `lm_sensors`): no shell, stdin closed, stdout capped, stderr drained and
//! only its start kept, and `kill_on_drop` so that the sampler's timeout
//! (which drops the future) kills a hung child.
//!
//! Why one runner: a child that fills its stderr pipe blocks forever unless
//! someone drains it, a runaway producer must be stopped at the cap, not when
//! the sampler times out, and both sources need the same guarantees.

use std::ffi::{OsStr, OsString};
use std::process::{ExitStatus, Stdio};

use tokio::io::AsyncReadExt;

/// What a finished child left behind.
#[derive(Debug)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its stdout, at most the cap.
    pub stdout: Vec<u8>,
    /// The first bytes of its stderr (see [`Limits::stderr_keep`]).
    pub stderr: Vec<u8>,
}

/// Why a child produced no [`Output`].
#[derive(Debug)]
pub enum RunError {
    /// It could not be started (not found, not executable, ...).
    Spawn(std::io::Error),
    /// Reading its stdout failed.
    Read(std::io::Error),
    /// It printed more than the cap on stdout; it was killed.
    TooLarge,
    /// Waiting for its exit failed.
    Wait(std::io::Error),
}

/// Bounds of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most stdout bytes read; one more is [`RunError::TooLarge`].
    pub stdout_cap: u64,
    /// Stderr bytes kept for the error message; the rest is read and
    /// dropped (a child blocked on a full stderr pipe would look hung).
    pub stderr_keep: u64,
}

/// Run `program args` with `env` added to the environment.
pub async fn run(
    program: &OsStr,
    args: &[OsString],
    env: &[(&str, &str)],
    limits: Limits,
) -> Result<Output, RunError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;

    let stderr = child.stderr.take();
    let keep = limits.stderr_keep;
    let stderr_task = tokio::spawn(async move {
        let mut kept = Vec::new();
        if let Some(mut pipe) = stderr {
            // Read errors only shorten the excerpt.
            let _ = (&mut pipe).take(keep).read_to_end(&mut kept).await;
            let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
        }
        kept
    });

    let mut stdout = Vec::new();
    if let Some(pipe) = child.stdout.take() {
        pipe.take(limits.stdout_cap + 1)
            .read_to_end(&mut stdout)
            .await
            .map_err(RunError::Read)?;
    }
    if stdout.len() as u64 > limits.stdout_cap {
        // Stop a runaway producer now rather than when the sampler times out.
        let _ = child.start_kill();
        let _ = child.wait().await;
        stderr_task.abort();
        return Err(RunError::TooLarge);
    }
    let status = child.wait().await.map_err(RunError::Wait)?;
    let stderr = stderr_task.await.unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// How much of a failed command's stderr goes into its error.
pub(crate) const EXCERPT_CHARS: usize = 300;

/// A one-line, bounded excerpt of a command's stderr (at most
/// [`EXCERPT_CHARS`] characters), for the error of a source that failed.
pub(crate) fn stderr_excerpt(stderr: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> (OsString, Vec<OsString>) {
        ("/bin/sh".into(), vec!["-c".into(), script.into()])
    }

    const LIMITS: Limits = Limits {
        stdout_cap: 1000,
        stderr_keep: 16,
    };

    #[tokio::test]
    async fn output_status_and_the_start_of_stderr() {
        let (p, a) = sh("echo out; echo 0123456789abcdefghij >&2; exit 3");
        let o = run(&p, &a, &[], LIMITS).await.expect("ran");
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"0123456789abcdef");
        assert_eq!(o.status.code(), Some(3));
    }

    #[tokio::test]
    async fn the_environment_is_passed() {
        let (p, a) = sh("printf %s \"$LC_ALL\"");
        let o = run(&p, &a, &[("LC_ALL", "C")], LIMITS).await.expect("ran");
        assert_eq!(o.stdout, b"C");
    }

    #[tokio::test]
    async fn over_the_cap_is_an_error_and_a_missing_program_too() {
        let (p, a) = sh("yes");
        assert!(matches!(
            run(&p, &a, &[], LIMITS).await,
            Err(RunError::TooLarge)
        ));
        assert!(matches!(
            run(OsStr::new("/nonexistent/x"), &[], &[], LIMITS).await,
            Err(RunError::Spawn(_))
        ));
    }

    #[tokio::test]
    async fn a_flood_on_stderr_does_not_block_the_child() {
        // 1 MiB on stderr: more than a pipe holds.
        let (p, a) = sh("head -c 1048576 /dev/zero >&2; echo done");
        let o = run(&p, &a, &[], LIMITS).await.expect("ran");
        assert_eq!(o.stdout, b"done\n");
        assert_eq!(o.stderr.len(), 16);
    }
}

/// For the tests of the programs run through here (exec sources and
/// probes): wait for a child to write its pid, and for it to be gone.
#[cfg(test)]
pub(crate) mod test_support {
    use std::time::Duration;

    /// Poll `fut` until the command it started wrote its pid (`echo $$ >
    /// pidfile`), at most 10 s; a future that ends first is a failure.
    pub(crate) async fn until_pid<F: std::future::Future + Unpin>(
        fut: &mut F,
        pidfile: &std::path::Path,
    ) -> u32 {
        let pid = async {
            loop {
                let written = std::fs::read_to_string(pidfile).unwrap_or_default();
                if let Some(pid) = written.strip_suffix('\n').and_then(|p| p.parse().ok()) {
                    return pid;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let raced = async {
            tokio::select! {
                _ = fut => panic!("ended before the command wrote its pid"),
                pid = pid => pid,
            }
        };
        tokio::time::timeout(Duration::from_secs(10), raced)
            .await
            .expect("the command wrote its pid within 10 s")
    }

    /// Whether `pid` is still a live (not zombie) process.
    pub(crate) fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => false,
            Ok(stat) => {
                // "pid (comm) S ..." – the state follows the last ')'.
                let state = stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .chars()
                    .next();
                state != Some('Z')
            }
        }
    }

    /// Whether `pid` is gone (or a zombie waiting for the reaper) within
    /// `tries` looks 20 ms apart.
    pub(crate) async fn gone_within(pid: u32, tries: u32) -> bool {
        for _ in 0..tries {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}
