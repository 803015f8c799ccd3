//! The real binary: `coolmesh demo` starts three dry-run agents; a power cut
//! typed on its stdin drives each of them through pre_fail to a (logged)
//! shutdown, and `q` stops the demo and every agent. Also: a port in use is
//! named with the flag to change, piped stdin ending does not stop the demo,
//! SIGTERM and `--for` do, and agents do not outlive a SIGKILLed demo.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `coolmesh demo`; on drop it gets SIGTERM (so it stops its
/// agents), then SIGKILL.
struct Demo {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
    base: u16,
    dir: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stdin = None;
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: plain kill(2) on our own child.
            unsafe { kill(self.child.id() as i32, 15) };
            let deadline = Instant::now() + Duration::from_secs(8);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Demo {
    fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// The output once it contains `needle` (or after 5 s): the reader
    /// threads may still be draining the pipes after the demo exited.
    fn output_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = self.output();
            if out.contains(needle) || Instant::now() >= deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn http_addr(&self, i: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.base + i))
    }

    fn node_dir(&self, i: u16) -> PathBuf {
        self.dir.join(format!("demo-{}", i + 1))
    }

    fn pid(&self, i: u16) -> i32 {
        std::fs::read_to_string(self.node_dir(i).join("agent.pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(line.as_bytes()).expect("write to the demo");
        stdin.flush().expect("flush");
    }

    fn state(&self, i: u16) -> serde_json::Value {
        let (st, body) = http(self.http_addr(i), "GET", "/v1/state", None);
        assert_eq!(st, 200, "{body}");
        serde_json::from_str(&body).expect("json")
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not exit; output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[allow(non_camel_case_types)]
type pid_t = i32;
extern "C" {
    fn kill(pid: pid_t, sig: i32) -> i32;
}

/// Is `pid` a live process (not gone, not a zombie)?
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A base port with `2 * nodes + 1` free ports after it, below the
/// ephemeral range (so outgoing connections cannot take them meanwhile),
/// spread by the process id and `salt` so parallel tests and test runs do
/// not pick the same range.
fn free_base(nodes: u16, salt: u32) -> u16 {
    let span = 2 * u32::from(nodes) + 1;
    for attempt in 0..500u32 {
        let slot = (std::process::id().wrapping_mul(7919) + salt * 1009 + attempt * 37) % 600;
        let base = 20000 + slot * 20;
        if (0..span).all(|o| port_free((base + o) as u16)) {
            return base as u16;
        }
    }
    panic!("no free port range found between 20000 and 32000");
}

fn spawn_demo(dir: &Path, base: u16, nodes: u16, extra: &[&str], stdin: Stdio) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .arg("demo")
        .args(["--nodes", &nodes.to_string()])
        .args(["--base-port", &base.to_string()])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .env("NO_COLOR", "1")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coolmesh demo");
    let output = Arc::new(Mutex::new(String::new()));
    let pipes: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("stdout")),
        Box::new(child.stderr.take().expect("stderr")),
    ];
    for pipe in pipes {
        let output = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(mut o) = output.lock() {
                    o.push_str(&line);
                    o.push('\n');
                }
            }
        });
    }
    Demo {
        stdin: child.stdin.take(),
        child,
        output,
        base,
        dir: dir.to_path_buf(),
    }
}

/// Start a demo and wait until it is ready; a port taken between the
/// check and the start means another range.
fn start_demo(dir: &Path, nodes: u16, salt: u32, extra: &[&str], stdin: fn() -> Stdio) -> Demo {
    for attempt in 0..5 {
        let base = free_base(nodes, salt + attempt * 101);
        let mut d = spawn_demo(dir, base, nodes, extra, stdin());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = d.child.try_wait().expect("wait") {
                let out = d.output();
                if out.contains("in use") {
                    break; // another range
                }
                panic!("the demo exited with {st}:\n{out}");
            }
            let ready = (0..nodes).all(|i| http_ok(d.http_addr(i), "/-/ready"));
            if ready && d.output().contains("keys (type one") {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "the demo never got ready:\n{}",
                d.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("every port range was taken");
}

fn http_ok(addr: SocketAddr, path: &str) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        && http(addr, "GET", path, None).0 == 200
}

#[test]
fn power_cut_shuts_every_node_down_and_quit_stops_every_agent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let mut d = start_demo(&dir, 3, 1, &["--grace", "5s"], Stdio::piped);
    let out = d.output();
    for i in 0..3 {
        let url = format!("http://127.0.0.1:{}", d.base + i);
        for page in ["/", "/metrics", "/v1/state"] {
            assert!(out.contains(&format!("{url}{page}")), "{url}{page}:\n{out}");
        }
    }
    assert!(out.contains("token  "), "{out}");
    let pids: Vec<i32> = (0..3).map(|i| d.pid(i)).collect();
    assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");
    for i in 0..3 {
        let s = d.state(i);
        assert_eq!(s["node"], format!("demo-{}", i + 1));
        assert_eq!(s["fsm"]["state"], "normal", "{s}");
        assert_eq!(s["fsm"]["dry_run"], true, "{s}");
        assert_eq!(s["power"]["up"], true, "{s}");
    }

    let cut = Instant::now();
    d.send("p\n");
    // Every node reaches pre_fail (power). With the cluster, the first node
    // to see the target dark may sit in local_fault until its peers agree.
    let mut seen: Vec<Option<serde_json::Value>> = vec![None; 3];
    wait_for("every node in pre_fail", Duration::from_secs(10), || {
        for (i, slot) in seen.iter_mut().enumerate() {
            if slot.is_none() {
                let s = d.state(i as u16);
                assert_ne!(s["fsm"]["state"], "shutdown", "pre_fail was skipped: {s}");
                if s["fsm"]["state"] == "pre_fail" {
                    *slot = Some(s);
                }
            }
        }
        seen.iter().all(Option::is_some).then_some(())
    });
    for s in seen.iter().flatten() {
        assert_eq!(s["fsm"]["reason"], "power", "{s}");
        let since = s["fsm"]["since_ms"].as_u64().expect("since");
        let deadline = s["fsm"]["deadline_ms"].as_u64().expect("deadline");
        assert_eq!(deadline - since, 5000, "--grace 5s: {s}");
    }
    for i in 0..3 {
        wait_for(
            &format!("demo-{} shutdown", i + 1),
            Duration::from_secs(15),
            || {
                let s = d.state(i);
                (s["fsm"]["state"] == "shutdown" && s["fsm"]["executed"] == true).then_some(())
            },
        );
    }
    let took = cut.elapsed();
    assert!(
        took >= Duration::from_millis(4500),
        "shutdown after {took:?}"
    );
    for i in 0..3 {
        let m = http(d.http_addr(i), "GET", "/metrics", None).1;
        let into = |to: &str| -> Vec<(String, f64)> {
            m.lines()
                .filter(|l| l.starts_with("coolmesh_fsm_transitions_total{"))
                .filter(|l| l.contains(&format!("to=\"{to}\"")))
                .filter_map(|l| l.rsplit_once(' '))
                .map(|(k, v)| (k.to_string(), v.parse().expect("value")))
                .collect()
        };
        let pre_fail = into("pre_fail");
        assert!(
            pre_fail.iter().all(|(k, _)| k.contains("reason=\"power\"")),
            "demo-{}: {pre_fail:?}",
            i + 1
        );
        assert_eq!(
            pre_fail.iter().map(|(_, v)| v).sum::<f64>(),
            1.0,
            "{pre_fail:?}"
        );
        let shutdown = into("shutdown");
        assert_eq!(
            shutdown,
            vec![(
                "coolmesh_fsm_transitions_total{from=\"pre_fail\",reason=\"power\",to=\"shutdown\"}".to_string(),
                1.0
            )],
            "demo-{}",
            i + 1
        );
        assert_eq!(metric(&m, "coolmesh_shutdown_dry_run"), Some(1.0), "{m}");
        assert_eq!(metric(&m, "coolmesh_shutdown_executed"), Some(1.0), "{m}");
        let marker = wait_for("marker", Duration::from_secs(5), || {
            std::fs::read_to_string(d.node_dir(i).join("dry-run-shutdowns"))
                .ok()
                .filter(|m| !m.is_empty())
        });
        assert_eq!(marker.lines().count(), 1, "{marker}");
        assert!(marker.contains("reason=power"), "{marker}");
    }
    // The user saw it happen: an event line per node and transition.
    wait_for("events", Duration::from_secs(5), || {
        let out = d.output();
        (out.matches("pre_fail -> shutdown (power)").count() == 3).then_some(())
    });
    let out = d.output();
    for i in 1..=3 {
        let name = format!("demo-{i} ");
        let has = |what: &str| out.lines().any(|l| l.contains(&name) && l.contains(what));
        assert!(has("-> pre_fail (power)"), "demo-{i}:\n{out}");
        assert!(has("pre_fail -> shutdown (power)"), "demo-{i}:\n{out}");
    }
    assert!(
        out.contains("SHUTDOWN IN") && out.contains("done (dry-run)"),
        "{out}"
    );

    let quit = Instant::now();
    d.send("q\n");
    let st = d.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}:\n{}", d.output());
    assert!(
        quit.elapsed() < Duration::from_secs(5),
        "quit took {:?}",
        quit.elapsed()
    );
    for (i, pid) in pids.iter().enumerate() {
        assert!(!alive(*pid), "demo-{} (pid {pid}) outlived the demo", i + 1);
    }
    for port in (0..7).map(|o| d.base + o) {
        assert!(
            TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1))
                .is_err(),
            "port {port} still answers"
        );
    }
    let out = d.output_with("files kept in");
    assert!(out.contains("files kept in"), "{out}");
    // --dir keeps the files: configs the agent accepts, logs, markers.
    let cfg = d.node_dir(0).join("coolmesh.toml");
    // The whole preflight, as the user the demo ran as: its token, key,
    // programs and directories are what the agents used.
    let me = current_user();
    let check = Command::new(env!("CARGO_BIN_EXE_coolmesh"))
        .args(["preflight", "--user", &me, "--config"])
        .arg(&cfg)
        .output()
        .expect("check-config");
    assert!(check.status.success(), "{check:?}");
}

#[test]
fn a_port_in_use_is_named_with_the_flag_to_change() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let base = free_base(3, 2);
    let _taken = TcpListener::bind((Ipv4Addr::LOCALHOST, base + 1)).expect("bind");
    let mut d = spawn_demo(&dir, base, 3, &["--for", "30s"], Stdio::null());
    let st = d.wait_exit(Duration::from_secs(10));
    let out = d.output_with("--base-port");
    assert_eq!(st.code(), Some(2), "{out}");
    assert!(
        out.contains(&format!("port {} ", base + 1)) && out.contains("HTTP of demo-2"),
        "{out}"
    );
    assert!(out.contains("--base-port"), "{out}");
    assert!(!dir.join("demo-1").exists(), "no agent may start");
}

#[test]
fn piped_stdin_ending_keeps_it_running_until_sigterm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let mut d = start_demo(&dir, 1, 3, &[], Stdio::null);
    let pid = d.pid(0);
    wait_for("stdin closed note", Duration::from_secs(5), || {
        d.output().contains("stdin closed").then_some(())
    });
    // Still running two power probes (1 s apart) later.
    let rounds = probe_rounds(d.http_addr(0));
    wait_probe_rounds(d.http_addr(0), rounds, 2, Duration::from_secs(10));
    assert!(
        d.child.try_wait().expect("wait").is_none(),
        "{}",
        d.output()
    );
    assert!(http_ok(d.http_addr(0), "/-/ready"));
    // SAFETY: plain kill(2) on our own child.
    unsafe { kill(d.child.id() as i32, 15) };
    let st = d.wait_exit(Duration::from_secs(8));
    assert!(st.success(), "{st}:\n{}", d.output());
    let out = d.output_with("SIGTERM received");
    assert!(out.contains("SIGTERM received"), "{out}");
    assert!(!alive(pid), "the agent outlived the demo");
}

#[test]
fn for_duration_stops_the_demo_by_itself() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let mut d = start_demo(&dir, 1, 4, &["--for", "2s"], Stdio::null);
    let pid = d.pid(0);
    let st = d.wait_exit(Duration::from_secs(15));
    assert!(st.success(), "{st}:\n{}", d.output());
    let out = d.output_with("--for elapsed");
    assert!(out.contains("--for elapsed"), "{out}");
    assert!(!alive(pid), "the agent outlived the demo");
}

#[cfg(target_os = "linux")]
#[test]
fn agents_do_not_outlive_a_killed_demo() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let mut d = start_demo(&dir, 1, 5, &[], Stdio::piped);
    let pid = d.pid(0);
    assert!(alive(pid));
    // SIGKILL: no handler, no Drop; only the parent-death signal is left.
    let _ = d.child.kill();
    let _ = d.child.wait();
    wait_for(
        "the orphaned agent to stop",
        Duration::from_secs(10),
        || (!alive(pid)).then_some(()),
    );
}
