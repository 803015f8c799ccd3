//! The real binary with a TCP power target that the test opens and closes,
//! short timers and `--dry-run`: transitions seen through `/v1/state` and
//! `/metrics`, exactly one (logged) shutdown, and the operator API.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789abcdef";

fn write_config(dir: &Path, port: u16, grace: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("token"), TOKEN).expect("token");
    std::fs::write(
        dir.join("inlet.json"),
        r#"[{"chip":"inlet","sensor":"t","celsius":25,"critical_celsius":60}]"#,
    )
    .expect("readings");
    let cfg = dir.join("coolmesh.toml");
    let text = format!(
        r#"[node]
name = "it-node"
state_dir = "{dir}/state"
[http]
token_file = "{dir}/token"
[sensors]
sources = ["file"]
file = "{dir}/inlet.json"
interval = "500ms"
timeout = "200ms"
[power]
targets = ["tcp://127.0.0.1:{port}"]
interval = "300ms"
timeout = "200ms"
[shutdown]
grace = "{grace}"
command = ["sh", "-c", "echo REAL SHUTDOWN RAN >> {dir}/real"]
dry_run_marker = "{dir}/marker"
recovery_probes = 2
cancel_hold = "1h"
"#,
        dir = dir.display()
    );
    std::fs::write(&cfg, text).expect("config");
    cfg
}

fn state(a: &Agent) -> serde_json::Value {
    let (st, body) = http(a.addr, "GET", "/v1/state", None);
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

fn wait_state(a: &Agent, want: &str, within: Duration) -> serde_json::Value {
    wait_for(&format!("state {want}"), within, || {
        let s = state(a);
        (s["fsm"]["state"] == want).then_some(s)
    })
}

fn metrics(a: &Agent) -> String {
    http(a.addr, "GET", "/metrics", None).1
}

#[test]
fn flap_recovers_then_outage_shuts_down_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut target = PowerTarget::new();
    let cfg = write_config(dir.path(), target.port, "3s");
    let args = ["--config", cfg.to_str().expect("p"), "--dry-run"];
    let mut a = start_agent(&args);
    wait_for("power up", Duration::from_secs(10), || {
        (metric(&metrics(&a), "coolmesh_power_up ") == Some(1.0)).then_some(())
    });
    assert_eq!(state(&a)["fsm"]["state"], "normal");

    // A flap shorter than the grace: pre_fail, then back to normal, no shutdown.
    target.off();
    let s = wait_state(&a, "pre_fail", Duration::from_secs(5));
    assert_eq!(s["fsm"]["reason"], "power");
    assert!(s["fsm"]["deadline_ms"].as_u64().is_some());
    let m = metrics(&a);
    assert!(
        metric(&m, "coolmesh_shutdown_deadline_timestamp_seconds").is_some(),
        "{m}"
    );
    assert_eq!(
        metric(&m, "coolmesh_fsm_state{state=\"pre_fail\"}"),
        Some(1.0)
    );
    target.on();
    wait_state(&a, "normal", Duration::from_secs(3));
    assert!(metric(&metrics(&a), "coolmesh_shutdown_deadline_timestamp_seconds").is_none());

    // An outage that lasts the grace: one shutdown, logged not run.
    target.off();
    let s = wait_state(&a, "pre_fail", Duration::from_secs(5));
    let entered = Instant::now();
    // The deadline is the first failed probe plus the grace.
    let deadline_ms = s["fsm"]["deadline_ms"].as_u64().expect("deadline");
    let since_ms = s["fsm"]["since_ms"].as_u64().expect("since");
    assert_eq!(deadline_ms - since_ms, 3000);
    let s = wait_state(&a, "shutdown", Duration::from_secs(10));
    let took = entered.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
        "shutdown after {took:?}"
    );
    let _ = s;
    wait_for("executed", Duration::from_secs(5), || {
        (state(&a)["fsm"]["executed"] == true).then_some(())
    });
    let marker = wait_for("marker", Duration::from_secs(5), || {
        std::fs::read_to_string(dir.path().join("marker"))
            .ok()
            .filter(|m| !m.is_empty())
    });
    assert_eq!(marker.lines().count(), 1, "{marker}");
    assert!(marker.contains("reason=power"), "{marker}");
    assert!(
        !dir.path().join("real").exists(),
        "dry-run must not run the command"
    );

    let m = metrics(&a);
    assert_eq!(
        metric(
            &m,
            "coolmesh_fsm_transitions_total{from=\"normal\",reason=\"power\",to=\"pre_fail\"}"
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "coolmesh_fsm_transitions_total{from=\"pre_fail\",reason=\"power\",to=\"shutdown\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "coolmesh_shutdown_executed"), Some(1.0));
    assert_eq!(metric(&m, "coolmesh_shutdown_dry_run"), Some(1.0));
    // A closed port is the target's answer, not a local error.
    let failures = metric(
        &m,
        "coolmesh_power_probe_failures_total{kind=\"target\",target=",
    )
    .expect("failures");
    assert!(failures >= 2.0, "{failures}");
    let local = metric(
        &m,
        "coolmesh_power_probe_failures_total{kind=\"local\",target=",
    )
    .expect("local failures");
    assert_eq!(local, 0.0, "{m}");
    let (_, _) = terminate(&mut a);

    // A restart (same boot) stays in shutdown and does not run it again.
    let a = start_agent(&args);
    let s = wait_state(&a, "shutdown", Duration::from_secs(5));
    assert_eq!(s["fsm"]["executed"], true);
    // Five probe rounds (1.5 s at 300 ms) later it still has not run it again.
    let rounds = probe_rounds(a.addr);
    wait_probe_rounds(a.addr, rounds, 5, Duration::from_secs(10));
    let marker = std::fs::read_to_string(dir.path().join("marker")).expect("marker");
    assert_eq!(
        marker.lines().count(),
        1,
        "a restarted agent must not shut down twice: {marker}"
    );
}

#[test]
fn operator_cancel_and_maintenance_need_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut target = PowerTarget::new();
    let cfg = write_config(dir.path(), target.port, "1h");
    let a = start_agent(&["--config", cfg.to_str().expect("p"), "--dry-run"]);
    wait_for("power up", Duration::from_secs(10), || {
        (metric(&metrics(&a), "coolmesh_power_up ") == Some(1.0)).then_some(())
    });

    let (st, body) = http(a.addr, "POST", "/v1/shutdown/cancel", Some(TOKEN));
    assert_eq!(st, 409, "nothing to cancel yet: {body}");
    target.off();
    wait_state(&a, "pre_fail", Duration::from_secs(5));

    // Wrong token: 401 and no state change.
    let (st, _) = http(
        a.addr,
        "POST",
        "/v1/shutdown/cancel",
        Some("not-the-token-at-all"),
    );
    assert_eq!(st, 401);
    assert_eq!(http(a.addr, "POST", "/v1/shutdown/cancel", None).0, 401);
    assert_eq!(state(&a)["fsm"]["state"], "pre_fail");
    // Bad query values.
    assert_eq!(
        http(a.addr, "POST", "/v1/maintenance?for=forever", Some(TOKEN)).0,
        400
    );

    let (st, body) = http(a.addr, "POST", "/v1/shutdown/cancel", Some(TOKEN));
    assert_eq!(st, 200, "{body}");
    let s = wait_state(&a, "normal", Duration::from_secs(3));
    assert!(s["fsm"]["deadline_ms"].is_null());
    // The hold keeps it out of pre_fail although the target is still dark:
    // five more (failed) probes (1.5 s at 300 ms).
    let rounds = probe_rounds(a.addr);
    wait_probe_rounds(a.addr, rounds, 5, Duration::from_secs(10));
    assert_eq!(state(&a)["fsm"]["state"], "normal");

    let (st, body) = http(a.addr, "POST", "/v1/maintenance?for=30m", Some(TOKEN));
    assert_eq!(st, 200, "{body}");
    let s = wait_state(&a, "maintenance", Duration::from_secs(3));
    let until = s["fsm"]["maintenance_until_ms"].as_u64().expect("until");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as u64;
    assert!(
        until > now + 29 * 60_000 && until < now + 31 * 60_000,
        "{until} vs {now}"
    );
    let m = metrics(&a);
    assert!(
        metric(&m, "coolmesh_maintenance_until_timestamp_seconds").is_some(),
        "{m}"
    );
    let (st, _) = http(a.addr, "POST", "/v1/maintenance?for=0s", Some(TOKEN));
    assert_eq!(st, 200);
    wait_state(&a, "normal", Duration::from_secs(3));
    assert!(!dir.path().join("marker").exists());
}
