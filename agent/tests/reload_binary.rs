//! Config reload on the real binary: SIGHUP (`systemctl reload`) and
//! `POST /-/reload` apply a changed threshold to the running agent, report
//! a changed key that takes a restart, and keep the old config in force
//! when the new file is broken.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const TOKEN: &str = "reload-test-token-0123456789";

/// A config with `critical` as the inlet sensor's threshold rule, a
/// cluster named `cluster`, and `extra` appended.
fn write_config(d: &Path, critical: &str, cluster: &str) {
    let cfg = format!(
        r#"[node]
name = "reload-1"
state_dir = "{d}/state"
[http]
token_file = "{d}/token"
[sensors]
sources = ["file"]
file = "{d}/t.json"
interval = "1s"
timeout = "500ms"
[[sensors.thresholds]]
chip = "inlet"
critical = {critical}
[shutdown]
dry_run = true
dry_run_marker = "{d}/marker"
[cluster]
name = "{cluster}"
"#,
        d = d.display(),
    );
    std::fs::write(d.join("coolmesh.toml"), cfg).expect("config");
}

/// The inlet sensor's critical threshold as `/v1/state` shows it.
fn critical(a: &Agent) -> Option<f64> {
    let s = get_json(a, "/v1/state");
    s["readings"]
        .as_array()?
        .iter()
        .find(|r| r["chip"] == "inlet")?["critical_celsius"]
        .as_f64()
}

fn metrics(a: &Agent) -> String {
    let (st, body) = http(a.addr, "GET", "/metrics", None);
    assert_eq!(st, 200);
    body
}

#[test]
fn sighup_and_post_reload_apply_the_new_config_and_a_broken_one_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("token"), TOKEN).expect("token");
    std::fs::write(
        d.join("t.json"),
        r#"[{"chip":"inlet","sensor":"t","celsius":30,"critical_celsius":95}]"#,
    )
    .expect("readings");
    write_config(d, "70.0", "room-a");
    let path = d.join("coolmesh.toml");
    let mut a = start_agent(&["--config", path.to_str().expect("utf8")]);
    wait_for("the first threshold", Duration::from_secs(20), || {
        (critical(&a) == Some(70.0)).then_some(())
    });
    assert_eq!(
        metric(&metrics(&a), "coolmesh_config_last_reload_successful"),
        Some(1.0)
    );

    // SIGHUP: the threshold is live; the cluster name takes a restart and
    // is reported, not applied.
    write_config(d, "60.0", "room-b");
    hangup(&a);
    let line = a.wait_log(
        &[
            "config reloaded",
            "config reloaded; changed keys that need a restart keep their old value until `systemctl restart coolmesh`",
            "config reload failed; the agent keeps running with its current config",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(line["applied"], "sensors.thresholds", "{line}");
    assert_eq!(line["needs_restart"], "cluster.name", "{line}");
    wait_for("the reloaded threshold", Duration::from_secs(10), || {
        (critical(&a) == Some(60.0)).then_some(())
    });
    let m = metrics(&a);
    assert_eq!(
        metric(&m, "coolmesh_config_last_reload_successful"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "coolmesh_config_restart_pending"), Some(1.0));
    assert_eq!(
        get_json(&a, "/v1/state")["cluster"]["name"],
        "room-a",
        "the cluster name is not changed while running"
    );

    // The token guards /-/reload like every mutating endpoint.
    let (st, _) = http(a.addr, "POST", "/-/reload", None);
    assert_eq!(st, 401);
    let (st, _) = http(a.addr, "POST", "/-/reload", Some("wrong-token-0123456789"));
    assert_eq!(st, 401);
    let (st, _) = http(a.addr, "GET", "/-/reload", Some(TOKEN));
    assert_eq!(st, 405);

    // POST /-/reload: applied, and the answer says what needs a restart.
    write_config(d, "65.0", "room-b");
    let (st, body) = http(a.addr, "POST", "/-/reload", Some(TOKEN));
    assert_eq!(st, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(report["applied"], serde_json::json!(["sensors.thresholds"]));
    assert_eq!(report["needs_restart"], serde_json::json!(["cluster.name"]));
    assert!(
        report["message"]
            .as_str()
            .is_some_and(|m| m.contains("needs restart: cluster.name")),
        "{report}"
    );
    wait_for("the threshold of the POST", Duration::from_secs(10), || {
        (critical(&a) == Some(65.0)).then_some(())
    });

    // A broken file: the error names the key and the line, the old config
    // stays in force, and the failure is counted.
    write_config(d, "\"hot\"", "room-b");
    let (st, body) = http(a.addr, "POST", "/-/reload", Some(TOKEN));
    assert_eq!(st, 500, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).expect("json");
    let msg = err["error"].as_str().expect("error text");
    assert!(
        msg.contains("line 13: sensors.thresholds[0].critical"),
        "{msg}"
    );
    assert_eq!(
        metric(&metrics(&a), "coolmesh_config_last_reload_successful"),
        Some(0.0)
    );
    // Two more sensor rounds: still the old threshold.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(critical(&a), Some(65.0));
    // SIGHUP with the broken file: logged, the agent keeps running.
    hangup(&a);
    let line = a.wait_log(
        &["config reload failed; the agent keeps running with its current config"],
        Duration::from_secs(10),
    );
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("sensors.thresholds[0].critical")),
        "{line}"
    );
    assert!(a.child.try_wait().expect("wait").is_none(), "still running");
    assert_eq!(critical(&a), Some(65.0));
}

#[test]
fn reload_without_a_token_file_is_forbidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start_agent(&[
        "--path.sysfs",
        fixtures().join("sysfs").to_str().expect("utf8"),
        "--state-dir",
        dir.path().to_str().expect("utf8"),
    ]);
    let (st, body) = http(a.addr, "POST", "/-/reload", Some(TOKEN));
    assert_eq!(st, 403, "{body}");
}
