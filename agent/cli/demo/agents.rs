//! The agents: real `coolmesh agent` child processes, started, watched and
//! always stopped, and their logs made readable.

use super::*;

/// The agent processes. Dropping this stops them (SIGTERM, then SIGKILL).
pub(super) struct Agents {
    pub(super) procs: Vec<Option<Child>>,
    pub(super) exited: Vec<Option<ExitStatus>>,
}

impl Agents {
    pub(super) fn none() -> Agents {
        Agents {
            procs: Vec::new(),
            exited: Vec::new(),
        }
    }

    /// Start one agent per node. On error the ones already started are
    /// stopped when `self` is dropped.
    pub(super) fn spawn(&mut self, exe: &Path, nodes: &[NodeSpec]) -> anyhow::Result<()> {
        self.stop();
        self.procs.clear();
        self.exited = vec![None; nodes.len()];
        for n in nodes {
            let child = spawn_agent(exe, n)?;
            let _ = std::fs::write(n.pid_file(), format!("{}\n", child.id()));
            self.procs.push(Some(child));
        }
        Ok(())
    }

    pub(super) fn pid(&self, i: usize) -> Option<u32> {
        self.procs.get(i).and_then(|c| c.as_ref()).map(Child::id)
    }

    /// Agents that exited since the last call, by index.
    pub(super) fn reap(&mut self) -> Vec<(usize, ExitStatus)> {
        let mut v = Vec::new();
        for (i, c) in self.procs.iter_mut().enumerate() {
            let Some(child) = c else { continue };
            if let Ok(Some(st)) = child.try_wait() {
                v.push((i, st));
                if let Some(slot) = self.exited.get_mut(i) {
                    *slot = Some(st);
                }
                *c = None;
            }
        }
        v
    }

    pub(super) fn exit_status(&self, i: usize) -> Option<ExitStatus> {
        self.exited.get(i).copied().flatten()
    }

    /// SIGTERM to every agent, SIGKILL to those still running after
    /// [`STOP_TIMEOUT`]; waits for all of them.
    pub(super) fn stop(&mut self) {
        let mut running: Vec<Child> = self.procs.iter_mut().filter_map(Option::take).collect();
        for c in &mut running {
            if matches!(c.try_wait(), Ok(None)) {
                terminate(c);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            running.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            if running.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for c in &mut running {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(super) fn terminate(c: &Child) {
    #[cfg(unix)]
    {
        let pid = rustix::process::Pid::from_child(c);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    #[cfg(not(unix))]
    {
        let _ = c;
    }
}

pub(super) fn spawn_agent(exe: &Path, n: &NodeSpec) -> anyhow::Result<Child> {
    let log = std::fs::File::create(n.log())
        .with_context(|| format!("cannot create the log {}", n.log().display()))?;
    let log2 = log
        .try_clone()
        .with_context(|| format!("cannot open the log {}", n.log().display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("agent")
        .arg("--config")
        .arg(n.config())
        .args(["--log.format", "json", "--dry-run"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        // The agents are not this service: keep them off a supervisor's
        // notify socket and watchdog.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("COOLMESH_CONFIG");
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Own process group: a terminal's Ctrl-C reaches only the demo,
        // which then stops the agents in order.
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let parent = rustix::process::getpid();
            // SAFETY: runs in the forked child before exec; it only makes
            // two system calls (prctl, getppid), which are async-signal-safe,
            // and allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    rustix::process::set_parent_process_death_signal(Some(
                        rustix::process::Signal::TERM,
                    ))?;
                    // The demo died between fork and prctl: do not outlive it.
                    if rustix::process::getppid() != Some(parent) {
                        return Err(std::io::Error::from(std::io::ErrorKind::Interrupted));
                    }
                    Ok(())
                });
            }
        }
    }
    cmd.spawn().with_context(|| {
        format!(
            "cannot start {} for {} ({}); is the binary still there?",
            exe.display(),
            n.name,
            n.config().display()
        )
    })
}

/// The last `lines` lines of an agent's JSON log, made readable.
pub(super) fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| readable_log_line(l))
        .collect()
}

/// An agent's JSON log line (`time`, `level`, `source`, `msg`, then the
/// event's fields, flat) as `LEVEL msg key=value ...` for the screen: the
/// time and source say nothing in a demo's last-lines report.
pub(super) fn readable_log_line(line: &str) -> String {
    let Ok(serde_json::Value::Object(v)) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_string();
    };
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    let mut s = format!("{} {}", text("level"), text("msg"));
    for (k, val) in &v {
        if !matches!(k.as_str(), "time" | "level" | "source" | "msg") {
            let val = val
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| val.to_string());
            s.push_str(&format!(" {k}={val}"));
        }
    }
    s.trim().to_string()
}

/// What to tell the user about an agent that exited.
pub(super) fn exit_report(n: &NodeSpec, st: ExitStatus) -> String {
    let tail = log_tail(&n.log(), 5);
    let mut s = format!(
        "{} (pid file {}) exited: {st}.",
        n.name,
        n.pid_file().display()
    );
    if !tail.is_empty() {
        s.push_str(" Last lines of its log:");
        for l in &tail {
            s.push_str("\n    ");
            s.push_str(l);
        }
    }
    let joined = tail.join("\n");
    if joined.contains("in use") || joined.contains("cannot listen") {
        s.push_str("\n  A port is taken: choose another range with --base-port.");
    }
    s.push_str(&format!("\n  Full log: {}", n.log().display()));
    s
}

// ---------------------------------------------------------------------------
// Keyboard
// ---------------------------------------------------------------------------
