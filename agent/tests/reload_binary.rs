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

    // Rotating the token: same path, new contents. The reload says so, the
    // old token stops working at once and the new one works.
    const NEW: &str = "rotated-token-9876543210abcdef";
    std::fs::write(d.join("token"), NEW).expect("token");
    let (st, body) = http(a.addr, "POST", "/-/reload", Some(TOKEN));
    assert_eq!(st, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        report["applied"],
        serde_json::json!(["http.token_file (contents)"]),
        "{report}"
    );
    let (st, _) = http(a.addr, "POST", "/-/reload", Some(TOKEN));
    assert_eq!(st, 401, "the old token after its rotation");
    std::fs::write(d.join("token"), TOKEN).expect("token");
    let (st, body) = http(a.addr, "POST", "/-/reload", Some(NEW));
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("http.token_file (contents)"), "{body}");

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

/// Power targets are rebuilt on a reload while the agent has some: the new
/// target is probed, the removed one's series go, the policy changes; the
/// probe interval is reported as needing a restart.
#[test]
fn a_reload_swaps_the_power_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("token"), TOKEN).expect("token");
    let mut old = PowerTarget::new();
    old.on();
    let mut new = PowerTarget::new();
    new.on();
    let write = |port: u16, policy: &str, interval: &str| {
        let cfg = format!(
            r#"[node]
name = "reload-power"
state_dir = "{d}/state"
[http]
token_file = "{d}/token"
[sensors]
sysfs = "{sysfs}"
[power]
targets = ["tcp://127.0.0.1:{port}"]
policy = "{policy}"
interval = "{interval}"
timeout = "300ms"
[shutdown]
dry_run = true
dry_run_marker = "{d}/marker"
"#,
            d = d.display(),
            sysfs = fixtures().join("sysfs").display(),
        );
        std::fs::write(d.join("coolmesh.toml"), cfg).expect("config");
    };
    write(old.port, "any", "500ms");
    let path = d.join("coolmesh.toml");
    let a = start_agent(&["--config", path.to_str().expect("utf8")]);
    let old_target = format!("tcp://127.0.0.1:{}", old.port);
    let new_target = format!("tcp://127.0.0.1:{}", new.port);
    let targets = |a: &Agent| -> Vec<String> {
        get_json(a, "/v1/state")["power"]["targets"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| t["target"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for("the first target probed", Duration::from_secs(20), || {
        (targets(&a) == vec![old_target.clone()]).then_some(())
    });

    write(new.port, "all", "1s");
    let (st, body) = http(a.addr, "POST", "/-/reload", Some(TOKEN));
    assert_eq!(st, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        report["applied"],
        serde_json::json!(["power.targets", "power.policy"])
    );
    assert_eq!(
        report["needs_restart"],
        serde_json::json!(["power.interval"])
    );
    wait_for("the new target probed", Duration::from_secs(10), || {
        (targets(&a) == vec![new_target.clone()]).then_some(())
    });
    let s = get_json(&a, "/v1/state");
    assert_eq!(s["power"]["policy"], "all");
    assert_eq!(s["power"]["up"], true);
    let m = metrics(&a);
    assert!(
        m.contains(&format!("target=\"{new_target}\"")),
        "the new target's series"
    );
    assert!(
        !m.contains(&format!("target=\"{old_target}\"")),
        "the removed target's series are gone"
    );

    // A target that cannot be parsed: refused with the key, the probes stay.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .expect("read")
            .replace(&new_target, "tcp://"),
    )
    .expect("config");
    let (st, body) = http(a.addr, "POST", "/-/reload", Some(TOKEN));
    assert_eq!(st, 500, "{body}");
    assert!(body.contains("power.targets"), "{body}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(targets(&a), vec![new_target.clone()]);
}

/// `log.level` is live: after a reload to `warn`, the info line of the next
/// reload is not written, the warn line of one that needs a restart is.
#[test]
fn a_reload_applies_the_log_level() {
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
    let drain = |a: &mut Agent| -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(l) = a.logs.recv_timeout(Duration::from_millis(500)) {
            lines.push(l);
        }
        lines
    };
    let reloaded = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("\"msg\":\"config reloaded"))
            .count()
    };
    let (st, body) = http(a.addr, "POST", "/-/reload", Some(TOKEN));
    assert_eq!(st, 200, "{body}");
    assert_eq!(reloaded(&drain(&mut a)), 1, "info is logged at level info");

    let with_level = |cluster: &str| {
        write_config(d, "70.0", cluster);
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("[log]\nlevel = \"warn\"\n");
        std::fs::write(&path, text).expect("config");
    };
    with_level("room-a");
    let (st, body) = http(a.addr, "POST", "/-/reload", Some(TOKEN));
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("log.level"), "{body}");
    let (st, _) = http(a.addr, "POST", "/-/reload", Some(TOKEN));
    assert_eq!(st, 200);
    assert_eq!(reloaded(&drain(&mut a)), 0, "info is not logged at warn");

    with_level("room-b");
    let (st, _) = http(a.addr, "POST", "/-/reload", Some(TOKEN));
    assert_eq!(st, 200);
    let lines = drain(&mut a);
    assert_eq!(reloaded(&lines), 1, "the warning is: {lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("cluster.name")),
        "{lines:?}"
    );
}
