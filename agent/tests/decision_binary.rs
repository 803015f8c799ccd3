//! The decision with real agents (the binary, real TCP power targets, file
//! sensors, `--dry-run`): the three situations of issue 13 that powered
//! rooms off, and the controls that show the agents still act.
//!
//! - a workload step on every node at once never shuts a node down, and a
//!   real cooling failure afterwards still does, before critical;
//! - a reboot after an unfinished shutdown does not power the machine off
//!   again while mains is back, and does when mains is still out;
//! - peers on another circuit are no votes (`cluster_binary.rs`).

mod common;
use common::*;
use coolmesh_agent::fsm::{Millis, State};
use coolmesh_agent::persist;
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "decision-token-0123456789abcdef";

fn state(a: &Agent) -> serde_json::Value {
    get_json(a, "/v1/state")
}

/// Write the CPU sensor file atomically (the agent may read mid-write).
fn write_cpu(dir: &Path, celsius: f64, critical: f64) {
    let tmp = dir.join("t.json.tmp");
    std::fs::write(
        &tmp,
        format!(
            r#"[{{"chip":"coretemp","sensor":"temp1","label":"Package id 0","celsius":{celsius:.1},"critical_celsius":{critical}}}]"#
        ),
    )
    .expect("readings");
    std::fs::rename(&tmp, dir.join("t.json")).expect("rename");
}

/// Four clustered dry-run agents on one power node, with production timers
/// for the cooling decision (sensors every second, cooling grace 2 min,
/// shutdown duration 60 s, the 15 s prediction floor); `cpu_load` as given.
/// Returns the power node with the agents: it must outlive them.
fn room(tmp: &Path, names: &[&str], critical: f64, cpu_load: &str) -> (PowerTarget, Vec<Agent>) {
    let power = PowerTarget::new();
    let power_port = power.port;
    let mut agents: Vec<Agent> = Vec::new();
    let mut seed: Option<u16> = None;
    for n in names {
        let dir = tmp.join(n);
        let cfg = write_cluster_config(&ClusterNodeConfig {
            dir: &dir,
            name: n,
            token: TOKEN,
            cluster: "decision",
            p2p: 0,
            seed,
            power_port,
            extra_cluster: "",
        });
        let mut text = std::fs::read_to_string(&cfg).expect("config");
        text = text.replace(
            "interval = \"1s\"\ntimeout = \"500ms\"",
            &format!("interval = \"1s\"\ntimeout = \"500ms\"\ncpu_load = \"{cpu_load}\""),
        );
        text = text.replace("grace = \"2s\"", "grace = \"5m\"\nduration = \"60s\"");
        text.push_str("\n[cooling]\ngrace = \"2m\"\n");
        std::fs::write(&cfg, text).expect("config");
        write_cpu(&dir, 45.0, critical);
        let mut a = start_agent(&[
            "--config",
            cfg.to_str().expect("p"),
            "--cluster.name",
            "decision",
        ]);
        if seed.is_none() {
            seed = Some(a.p2p_port());
        }
        agents.push(a);
    }
    wait_for("4-node convergence", Duration::from_secs(30), || {
        agents
            .iter()
            .all(|a| {
                get_json(a, "/v1/peers").as_array().is_some_and(|ps| {
                    ps.iter().filter(|p| p["liveness"] == "alive").count() == names.len() - 1
                })
            })
            .then_some(())
    });
    (power, agents)
}

/// Four clustered agents whose CPUs jump by 35 C within 3 s as a job
/// starts everywhere, then level off well below critical: nobody leaves
/// `normal`, nobody shuts down (before the fix three or four of four ran
/// the command 12-27 s after the step). No CPU load information at all
/// (`cpu_load = "none"`): the shape of the curve alone must tell.
#[test]
fn workload_step_on_every_node_at_once_moves_no_state_machine() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let names = ["w1", "w2", "w3", "w4"];
    let critical = 100.0;
    let (_power, agents) = room(tmp.path(), &names, critical, "none");
    // A flat history first.
    let settle = Instant::now();
    wait_for("a flat history", Duration::from_secs(20), || {
        (settle.elapsed() >= Duration::from_secs(8)).then_some(())
    });
    let mut seen: Vec<String> = Vec::new();
    let watch = |seen: &mut Vec<String>| {
        for (i, a) in agents.iter().enumerate() {
            let s = state(a);
            let st = s["fsm"]["state"].as_str().unwrap_or("?").to_string();
            let what = format!("{}: {st} ({})", names[i], s["fsm"]["detail"]);
            if st != "normal" && !seen.contains(&what) {
                seen.push(what);
            }
        }
    };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        let c = 45.0 + 35.0 * (t0.elapsed().as_secs_f64() / 3.0).min(1.0);
        for n in names {
            write_cpu(&tmp.path().join(n), c, critical);
        }
        watch(&mut seen);
    }
    for n in names {
        write_cpu(&tmp.path().join(n), 80.0, critical);
    }
    // The old agent shut down 12-27 s after the step; watch 45 s.
    while t0.elapsed() < Duration::from_secs(45) {
        watch(&mut seen);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        seen.is_empty(),
        "a workload step moved a state machine: {seen:?}"
    );
    for n in names {
        assert!(
            !tmp.path().join(n).join("marker").exists(),
            "{n} shut down on a workload step"
        );
    }
}

/// The control: cooling fails in a dense rack. Every node heats at
/// 20 C/min from 80 C with critical at 100 C, a minute away; the load is
/// known and flat. Every node's command runs before its sensor reaches
/// critical.
#[test]
fn dense_rack_cooling_failure_shuts_every_node_down_before_critical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let names = ["d1", "d2", "d3", "d4"];
    let critical = 100.0;
    let load = tmp.path().join("load");
    std::fs::write(&load, "0.6").expect("load");
    let (_power, agents) = room(
        tmp.path(),
        &names,
        critical,
        &format!("file:{}", load.display()),
    );
    for n in names {
        write_cpu(&tmp.path().join(n), 80.0, critical);
    }
    let settle = Instant::now();
    wait_for("a flat history", Duration::from_secs(20), || {
        (settle.elapsed() >= Duration::from_secs(8)).then_some(())
    });
    let t1 = Instant::now();
    let rate = 20.0 / 60.0; // C per second
    let mut done: Vec<Option<f64>> = vec![None; names.len()];
    while done.iter().any(Option::is_none) && t1.elapsed() < Duration::from_secs(90) {
        let c = 80.0 + rate * t1.elapsed().as_secs_f64();
        for (i, n) in names.iter().enumerate() {
            let dir = tmp.path().join(n);
            if done[i].is_none() && dir.join("marker").exists() {
                done[i] = Some(c);
            }
            if done[i].is_none() {
                write_cpu(&dir, c, critical);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (i, n) in names.iter().enumerate() {
        let at = done[i].unwrap_or_else(|| panic!("{n} never shut down in a real cooling failure"));
        eprintln!("{n}: command at {at:.1} C");
        assert!(
            at < critical,
            "{n} shut down at {at:.1} C, not before critical"
        );
        let s = state(&agents[i]);
        assert_eq!(s["fsm"]["state"], "shutdown", "{n}: {s}");
    }
}

fn single_config(dir: &Path, port: u16) -> std::path::PathBuf {
    std::fs::write(dir.join("token"), TOKEN).expect("token");
    write_cpu(dir, 45.0, 100.0);
    let cfg = dir.join("coolmesh.toml");
    let text = format!(
        r#"[node]
name = "reboot-node"
state_dir = "{dir}/state"
[http]
token_file = "{dir}/token"
[sensors]
sources = ["file"]
file = "{dir}/t.json"
interval = "500ms"
timeout = "200ms"
[power]
targets = ["tcp://127.0.0.1:{port}"]
interval = "300ms"
timeout = "200ms"
[shutdown]
grace = "3s"
command = ["sh", "-c", "echo REAL SHUTDOWN RAN >> {dir}/real"]
dry_run_marker = "{dir}/marker"
[cluster]
enabled = false
"#,
        dir = dir.display()
    );
    std::fs::write(&cfg, text).expect("config");
    cfg
}

/// The agent was in `pre_fail(power)` when the machine went down (its UPS
/// ran out before the grace ended); now it boots again. The saved state
/// says another boot and a deadline long past.
fn simulate_reboot(dir: &Path) {
    let state_dir = dir.join("state");
    let mut rec = persist::load(&state_dir)
        .expect("load")
        .expect("a saved state machine");
    assert_eq!(rec.machine.state, State::PreFail, "{:?}", rec.machine);
    rec.boot_id = Some("a-previous-boot".into());
    rec.machine.deadline = Some(Millis(rec.written_at.0.saturating_sub(60_000)));
    persist::store(&state_dir, &rec).expect("store");
}

fn pre_fail_then_reboot(dir: &Path, target: &mut PowerTarget, cfg: &Path) {
    let args = ["--config", cfg.to_str().expect("p"), "--dry-run"];
    let mut a = start_agent(&args);
    wait_for("power up", Duration::from_secs(10), || {
        (metric(
            &http(a.addr, "GET", "/metrics", None).1,
            "coolmesh_power_up ",
        ) == Some(1.0))
        .then_some(())
    });
    target.off();
    wait_for("pre_fail", Duration::from_secs(10), || {
        (state(&a)["fsm"]["state"] == "pre_fail").then_some(())
    });
    // The machine loses power before the grace ends.
    a.child.kill().expect("kill");
    let _ = a.child.wait();
    simulate_reboot(dir);
}

#[test]
fn reboot_after_an_unfinished_shutdown_with_mains_back_stays_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut target = PowerTarget::new();
    let cfg = single_config(tmp.path(), target.port);
    pre_fail_then_reboot(tmp.path(), &mut target, &cfg);
    // Mains is back: the BIOS powered the server on.
    target.on();
    let a = start_agent(&["--config", cfg.to_str().expect("p"), "--dry-run"]);
    // (Until the state machine has published, the snapshot is the empty
    // default: wait for its own word.)
    let s = wait_for(
        "the restored pre_fail, then normal",
        Duration::from_secs(10),
        || {
            let s = state(&a);
            let st = &s["fsm"]["state"];
            assert!(st == "pre_fail" || st == "normal", "{s}");
            (st == "normal" && s["fsm"]["reason"] == "power").then_some(s)
        },
    );
    assert!(
        s["fsm"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("recovered"),
        "{s}"
    );
    // Several more probe rounds: still up, never a shutdown.
    let m0 = metric(
        &http(a.addr, "GET", "/metrics", None).1,
        "coolmesh_power_probe_duration_seconds_count",
    );
    wait_for("more probe rounds", Duration::from_secs(10), || {
        let m = metric(
            &http(a.addr, "GET", "/metrics", None).1,
            "coolmesh_power_probe_duration_seconds_count",
        );
        (m.unwrap_or(0.0) >= m0.unwrap_or(0.0) + 6.0).then_some(())
    });
    assert_eq!(state(&a)["fsm"]["state"], "normal");
    assert!(
        !tmp.path().join("marker").exists(),
        "powered off again after the reboot"
    );
    assert!(!tmp.path().join("real").exists());
}

#[test]
fn reboot_after_an_unfinished_shutdown_with_mains_still_out_shuts_down_once_confirmed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut target = PowerTarget::new();
    let cfg = single_config(tmp.path(), target.port);
    pre_fail_then_reboot(tmp.path(), &mut target, &cfg);
    // Mains is still out (the server runs on a UPS that came back).
    let started = Instant::now();
    let a = start_agent(&["--config", cfg.to_str().expect("p"), "--dry-run"]);
    let s = wait_for("shutdown", Duration::from_secs(10), || {
        let s = state(&a);
        (s["fsm"]["state"] == "shutdown").then_some(s)
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(s["fsm"]["reason"], "power", "{s}");
    let marker = std::fs::read_to_string(tmp.path().join("marker")).expect("marker");
    assert_eq!(marker.lines().count(), 1, "{marker}");
    assert!(!tmp.path().join("real").exists(), "dry run");
}
