//! `exec:COMMAND [ARGS...]`: up when the command exits with status 0.
//!
//! The command line is split like a POSIX shell would (quotes and
//! backslashes, no expansion, no pipes): `exec:/usr/local/bin/mains-ok
//! --feed A`. For pipes, run a shell explicitly.
//!
//! **NUT users:** `upsc ups@host ups.status` exits 0 whenever the UPS data
//! can be read, also while the UPS runs on battery. To see mains, test the
//! status itself:
//!
//! ```text
//! exec:sh -c 's=$(upsc ups@localhost ups.status 2>/dev/null) || exit 127; case " $s " in *" OL "*) exit 0;; esac; exit 1'
//! ```
//!
//! Exit status 126 or 127 (the shell's "cannot run" and "not found", and
//! the example's answer when `upsc` cannot read the UPS) is *unknown*, a
//! local problem, never a "down" vote: a script broken the same way on
//! every server must not say "mains lost" for the whole room.
//!
//! The command runs without a shell unless one is named, with stdin and
//! stdout on /dev/null, in its own process group. On timeout (or when the
//! probe is cancelled) the whole process group is killed with SIGKILL, so a
//! hung `sh -c '...'` leaves no grandchildren behind. The first bytes of
//! stderr are kept for the failure reason.

use super::{Probe, ProbeError};
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Bytes of stderr kept for the failure reason.
const STDERR_KEEP: usize = 512;
/// After the command exits, how long to wait for the rest of its stderr (a
/// background grandchild may hold the pipe open forever).
const STDERR_LINGER: Duration = Duration::from_millis(100);

/// External command probe.
pub struct ExecProbe {
    label: String,
    program: String,
    args: Vec<String>,
}

impl ExecProbe {
    /// A probe running `program args...`, reported as `label`. Use
    /// [`check_program`] at startup to reject a missing program.
    pub fn new(label: &str, program: &str, args: Vec<String>) -> Self {
        Self {
            label: label.to_string(),
            program: program.to_string(),
            args,
        }
    }

    async fn run(&self, timeout: Duration) -> Result<(), ProbeError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| ProbeError::Local(format!("cannot run {}: {e}", self.program)))?;
        // Declared after `child`, so dropped before it: the group is killed
        // while the leader is still unreaped, so its pid (= the group id)
        // cannot have been reused.
        let mut group = GroupKiller(child.id());
        let mut stderr = child.stderr.take();
        let mut kept = Vec::new();

        let deadline = tokio::time::Instant::now() + timeout;
        let status = loop {
            let mut chunk = [0u8; 256];
            tokio::select! {
                s = child.wait() => {
                    // Reaped: from here on the group id may be reused.
                    group.disarm();
                    break s.map_err(|e| ProbeError::Local(format!("waiting for {}: {e}", self.program)))?;
                }
                n = read_some(&mut stderr, &mut chunk) => keep(&mut stderr, &mut kept, &chunk, n),
                () = tokio::time::sleep_until(deadline) => return Err(ProbeError::Timeout(timeout)),
            }
        };
        if !status.success() {
            let linger = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(STDERR_LINGER);
            let _ = tokio::time::timeout(linger, async {
                while stderr.is_some() {
                    let mut chunk = [0u8; 256];
                    let n = read_some(&mut stderr, &mut chunk).await;
                    keep(&mut stderr, &mut kept, &chunk, n);
                }
            })
            .await;
        }
        outcome(status, &kept)
    }
}

/// Read from the pipe if there is one; pending forever once it is gone.
async fn read_some(
    pipe: &mut Option<tokio::process::ChildStderr>,
    chunk: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(p) => p.read(chunk).await,
        None => futures::future::pending().await,
    }
}

/// Keep the first [`STDERR_KEEP`] bytes; drop the pipe at EOF or error.
fn keep(
    pipe: &mut Option<tokio::process::ChildStderr>,
    kept: &mut Vec<u8>,
    chunk: &[u8],
    n: std::io::Result<usize>,
) {
    match n {
        Ok(0) | Err(_) => *pipe = None,
        Ok(n) => {
            let room = STDERR_KEEP.saturating_sub(kept.len());
            kept.extend_from_slice(chunk.get(..n.min(room)).unwrap_or_default());
        }
    }
}

/// Exit status (and stderr) to a probe result.
fn outcome(status: ExitStatus, stderr: &[u8]) -> Result<(), ProbeError> {
    use std::os::unix::process::ExitStatusExt;
    if status.success() {
        return Ok(());
    }
    let what = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    };
    let text = String::from_utf8_lossy(stderr);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let msg = if text.is_empty() {
        what
    } else {
        format!("{what}: {text}")
    };
    // 126 and 127 are the shell's "cannot run" and "not found": the script
    // could not run a command of its own (a tool missing after an upgrade,
    // a typo), which says nothing about mains. Every server with the same
    // script would otherwise vote "down" at once.
    if matches!(status.code(), Some(126 | 127)) {
        return Err(ProbeError::Local(format!(
            "{msg} (a command the probe runs could not be run or found: a local problem, not a power verdict)"
        )));
    }
    Err(ProbeError::Down(msg))
}

/// Kills a process group on drop unless disarmed.
struct GroupKiller(Option<u32>);

impl GroupKiller {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        let pid = self
            .0
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // ESRCH (already gone) is fine; nothing else can be done here.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Check at startup that `program` can be run: an absolute path must be an
/// executable file; a bare name must be found in `PATH`. The error says
/// what is wrong and what to do.
pub fn check_program(program: &str) -> Result<PathBuf, String> {
    check_program_in(program, &std::env::var_os("PATH").unwrap_or_default())
}

/// [`check_program`] with the given `PATH` (`coolmesh preflight` resolves
/// programs in the one the unit gives the agent).
pub fn check_program_in(program: &str, path_var: &std::ffi::OsStr) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = Path::new(program);
        return check_executable(path).map(|()| path.to_path_buf());
    }
    for dir in std::env::split_paths(path_var) {
        let candidate = dir.join(program);
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "program {program} not found in PATH ({}); install it or give its absolute path",
        path_var.to_string_lossy()
    ))
}

fn check_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("program {} does not exist", path.display()))
        }
        Err(e) => Err(format!("program {}: {e}", path.display())),
        Ok(m) if !m.is_file() => Err(format!("program {} is not a file", path.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(format!(
            "program {} is not executable (chmod +x it)",
            path.display()
        )),
        Ok(_) => Ok(()),
    }
}

impl Probe for ExecProbe {
    fn target(&self) -> &str {
        &self.label
    }

    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Result<(), ProbeError>> {
        Box::pin(self.run(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::times_out_at_300ms;
    use super::*;
    use crate::sources::child::test_support::gone_within;
    use tokio::time::Instant;

    const T: Duration = Duration::from_secs(5);

    fn sh(script: &str) -> ExecProbe {
        ExecProbe::new("exec:test", "/bin/sh", vec!["-c".into(), script.into()])
    }

    #[tokio::test]
    async fn exit_zero_is_up() {
        ExecProbe::new("t", "true", vec![]).probe(T).await.unwrap();
        sh("exit 0").probe(T).await.unwrap();
        // Output on stdout is discarded, lots of it does not block.
        sh("head -c 1000000 /dev/zero; exit 0")
            .probe(T)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn nonzero_exit_is_down_with_stderr() {
        let e = ExecProbe::new("t", "false", vec![])
            .probe(T)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "exit status 1");
        let e = sh("echo 'Error: Data stale' >&2; echo noise; exit 3")
            .probe(T)
            .await
            .unwrap_err();
        assert!(matches!(e, ProbeError::Down(_)));
        assert_eq!(e.to_string(), "exit status 3: Error: Data stale");
        // Long stderr is cut.
        let e = sh("head -c 100000 /dev/zero | tr '\\0' x >&2; exit 2")
            .probe(T)
            .await
            .unwrap_err();
        assert_eq!(e.to_string().len(), "exit status 2: ".len() + STDERR_KEEP);
        let e = sh("kill -9 $$").probe(T).await.unwrap_err();
        assert_eq!(e.to_string(), "killed by signal 9");
    }

    #[tokio::test]
    async fn arguments_are_passed_verbatim() {
        let spec =
            super::super::parse_target("exec:/bin/sh -c 'test \"$1\" = \"a b\"' sh 'a b'").unwrap();
        let super::super::TargetKind::Exec { program, args } = spec.kind else {
            panic!()
        };
        ExecProbe::new("t", &program, args).probe(T).await.unwrap();
        sh("test \"$*\" = \"\"").probe(T).await.unwrap(); // no stray args
        sh("test -z \"$1\" && ! read x").probe(T).await.unwrap(); // stdin is /dev/null
    }

    #[tokio::test]
    async fn hang_is_killed_at_timeout_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let took = times_out_at_300ms(&sh(&script)).await;
        assert!(took < Duration::from_secs(2), "{took:?}");
        let grandchild: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL is delivered at once; allow the reaper a moment.
        let gone = gone_within(grandchild, 50).await;
        assert!(gone, "grandchild {grandchild} survived the timeout");
    }

    #[tokio::test]
    async fn cancelled_probe_kills_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let probe = sh(&format!("echo $$ > {}; exec sleep 30", pidfile.display()));
        let mut fut = probe.probe(T);
        // Drop the probe future once the command runs (runner shutdown).
        let pid = crate::sources::child::test_support::until_pid(&mut fut, &pidfile).await;
        drop(fut);
        let gone = gone_within(pid, 50).await;
        assert!(gone, "command {pid} survived cancellation");
    }

    #[tokio::test]
    async fn background_child_holding_stderr_does_not_stall_the_verdict() {
        let started = Instant::now();
        // Exit 1 at once, but a background sleep keeps stderr open.
        let e = sh("echo bad >&2; sleep 5 & exit 1")
            .probe(T)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "exit status 1: bad");
        assert!(started.elapsed() < Duration::from_secs(1));
        sh("sleep 5 & exit 0").probe(T).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// A script that cannot run a command of its own (126, 127) is a local
    /// problem, never "down": the same broken script on every server would
    /// otherwise vote mains lost everywhere at once.
    #[tokio::test]
    async fn a_script_whose_own_command_is_missing_is_unknown_not_down() {
        for script in [
            "exit 127",
            "exit 126",
            "no-such-command-coolmesh-test",
            "s=$(no-such-command-coolmesh-test) || exit 127; exit 1",
        ] {
            let e = sh(script).probe(T).await.unwrap_err();
            assert!(matches!(e, ProbeError::Local(_)), "{script}: {e:?}");
            assert!(e.to_string().contains("not a power verdict"), "{e}");
        }
        // Other non-zero statuses stay "down".
        for script in ["exit 1", "exit 2", "exit 125", "exit 128"] {
            let e = sh(script).probe(T).await.unwrap_err();
            assert!(matches!(e, ProbeError::Down(_)), "{script}: {e:?}");
        }
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_error() {
        let e = ExecProbe::new("t", "/nonexistent/upsc", vec![])
            .probe(T)
            .await
            .unwrap_err();
        assert!(matches!(e, ProbeError::Local(_)));
        assert!(
            e.to_string().starts_with("cannot run /nonexistent/upsc: "),
            "{e}"
        );
        assert!(e.to_string().contains("No such file"), "{e}");
    }

    #[test]
    fn check_program_at_startup() {
        assert_eq!(check_program("/bin/sh"), Ok(PathBuf::from("/bin/sh")));
        assert!(check_program("sh").is_ok());
        let e = check_program("/nonexistent/upsc").unwrap_err();
        assert_eq!(e, "program /nonexistent/upsc does not exist");
        let e = check_program("coolmesh-no-such-program").unwrap_err();
        assert!(
            e.starts_with("program coolmesh-no-such-program not found in PATH ("),
            "{e}"
        );
        assert!(e.ends_with("install it or give its absolute path"), "{e}");
        let e = check_program("/tmp").unwrap_err();
        assert_eq!(e, "program /tmp is not a file");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("script");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let e = check_program(f.to_str().unwrap()).unwrap_err();
        assert!(e.ends_with("is not executable (chmod +x it)"), "{e}");
    }
}
