//! The `nut://` power target against a real `upsd` with the `dummy-ups`
//! driver (Debian `nut-server`). `.ci/nut.sh` starts both and sets:
//!
//! - `COOLMESH_NUT_ADDR`: upsd's `127.0.0.1:PORT`, serving one UPS `ups`;
//! - `COOLMESH_NUT_STATUS_FILE`: the file dummy-ups re-reads (`ups.status: OL`);
//! - `COOLMESH_NUT_RUN_DIR`: NUT's state directory with the pid files
//!   (`dummy-ups-ups.pid`, `upsd.pid`); the test stops the driver and upsd;
//! - `COOLMESH_NUT_CA` and `COOLMESH_NUT_OTHER_CA` (optional): upsd has a
//!   certificate for 127.0.0.1 signed by the first (an NSS database, as
//!   Debian's upsd reads it); the test then also reads the UPS over
//!   STARTTLS (`nuts://`) and checks that another CA is refused (unknown).
//!
//! Without them the test says so and passes (`cargo test --workspace` on a
//! machine without NUT). Alone: `bash .ci/nut.sh`.

use coolmesh_agent::fsm::Battery;
use coolmesh_agent::power::{
    build_probe, parse_target, run, Outcome, Policy, PowerMetrics, Probe, RunConfig, UpsReading,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(2);
/// dummy-ups re-reads its file about every second, upsd polls the driver:
/// a change shows within a few seconds; MAXAGE 5 makes data stale after 5 s.
const WAIT: Duration = Duration::from_secs(30);

struct Env {
    addr: String,
    status_file: PathBuf,
    run_dir: PathBuf,
    /// (CA of upsd's certificate, an unrelated CA), when upsd has one.
    tls: Option<(String, String)>,
}

fn env() -> Option<Env> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(Env {
        addr: var("COOLMESH_NUT_ADDR")?,
        status_file: var("COOLMESH_NUT_STATUS_FILE")?.into(),
        run_dir: var("COOLMESH_NUT_RUN_DIR")?.into(),
        tls: var("COOLMESH_NUT_CA").zip(var("COOLMESH_NUT_OTHER_CA")),
    })
}

fn probe(target: &str) -> Arc<dyn Probe> {
    let spec = parse_target(target).unwrap_or_else(|e| panic!("{target}: {e}"));
    build_probe(&spec, None).unwrap_or_else(|e| panic!("{target}: {e}"))
}

/// Write the dummy-ups file atomically (a rename: the driver never reads
/// half a file).
fn set_status(file: &Path, status: &str, runtime: u32) {
    let tmp = file.with_extension("tmp");
    std::fs::write(
        &tmp,
        format!("ups.status: {status}\nbattery.runtime: {runtime}\nbattery.charge: 50\n"),
    )
    .expect("write status file");
    std::fs::rename(&tmp, file).expect("rename status file");
}

/// Probe until `want` holds, or panic with the last result after [`WAIT`].
async fn until(
    p: &dyn Probe,
    what: &str,
    want: impl Fn(Outcome, Option<UpsReading>, &str) -> bool,
) -> (Outcome, Option<UpsReading>, String) {
    let started = Instant::now();
    loop {
        let (res, ups) = p.probe_ups(TIMEOUT).await;
        let outcome = Outcome::of(&res);
        let msg = res.err().map(|e| e.to_string()).unwrap_or_default();
        if want(outcome, ups, &msg) {
            println!(
                "nut_upsd: {what}: {outcome:?} {ups:?} {msg:?} after {:?}",
                started.elapsed()
            );
            return (outcome, ups, msg);
        }
        assert!(
            started.elapsed() < WAIT,
            "{what}: still {outcome:?} {ups:?} {msg:?} after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn signal(run_dir: &Path, pidfile: &str, sig: &str) {
    let pid =
        std::fs::read_to_string(run_dir.join(pidfile)).unwrap_or_else(|e| panic!("{pidfile}: {e}"));
    let ok = std::process::Command::new("kill")
        .args([sig, pid.trim()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pidfile}");
}

#[tokio::test]
async fn nut_target_against_a_real_upsd() {
    let Some(env) = env() else {
        println!(
            "skipped: COOLMESH_NUT_ADDR, COOLMESH_NUT_STATUS_FILE, COOLMESH_NUT_RUN_DIR not set \
             (bash .ci/nut.sh runs this test against a real upsd)"
        );
        return;
    };
    let target = format!("nut://{}/ups", env.addr);
    let p = probe(&target);
    let secs = |s| Some(Duration::from_secs(s));

    // On mains.
    set_status(&env.status_file, "OL CHRG", 1800);
    let (_, ups, _) = until(p.as_ref(), "OL", |o, u, _| {
        o == Outcome::Up && u.and_then(|u| u.runtime) == secs(1800)
    })
    .await;
    assert_eq!(ups.map(|u| (u.on_battery, u.urgent)), Some((false, false)));

    // Mains lost: on battery.
    set_status(&env.status_file, "OB DISCHRG", 600);
    let (_, ups, msg) = until(p.as_ref(), "OB", |o, u, _| {
        o == Outcome::Down && u.and_then(|u| u.runtime) == secs(600)
    })
    .await;
    assert_eq!(ups.map(|u| (u.on_battery, u.urgent)), Some((true, false)));
    assert!(msg.contains("UPS on battery"), "{msg}");

    // Low battery: down and urgent.
    set_status(&env.status_file, "OB DISCHRG LB", 90);
    let (_, ups, msg) = until(p.as_ref(), "OB LB", |o, u, _| {
        o == Outcome::Down && u.is_some_and(|u| u.urgent)
    })
    .await;
    assert_eq!(ups.and_then(|u| u.runtime), secs(90));
    assert!(msg.contains("low battery"), "{msg}");

    // The runner hands that to the state machine as an urgent battery.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let runner = tokio::spawn(run(
        vec![p.clone()],
        Policy::Any,
        RunConfig {
            timeout: TIMEOUT,
            ..RunConfig::default()
        },
        PowerMetrics::new().expect("metrics"),
        tx,
        futures::future::pending(),
    ));
    let obs = rx.recv().await.expect("a round");
    runner.abort();
    assert_eq!(obs.up, Some(false));
    assert_eq!(
        obs.battery,
        Some(Battery {
            urgent: true,
            runtime: secs(90)
        })
    );

    // Low battery on mains (recharging after the outage): up.
    set_status(&env.status_file, "OL CHRG LB", 90);
    until(p.as_ref(), "OL LB", |o, _, _| o == Outcome::Up).await;

    // Over STARTTLS: the same readings, and a certificate from another CA
    // is refused (unknown, never down).
    if let Some((ca, other_ca)) = &env.tls {
        let tls = probe(&format!("nuts://monitor@{}/ups?ca={ca}", env.addr));
        set_status(&env.status_file, "OB DISCHRG", 600);
        let (_, ups, msg) = until(tls.as_ref(), "OB over TLS", |o, u, _| {
            o == Outcome::Down && u.and_then(|u| u.runtime) == secs(600)
        })
        .await;
        assert!(msg.contains("UPS on battery"), "{msg}");
        assert_eq!(ups.map(|u| u.on_battery), Some(true));
        set_status(&env.status_file, "OL CHRG LB", 90);
        until(tls.as_ref(), "OL over TLS", |o, _, _| o == Outcome::Up).await;
        let wrong = probe(&format!("nuts://{}/ups?ca={other_ca}", env.addr));
        let (_, ups, msg) = until(wrong.as_ref(), "another CA", |o, _, _| {
            o == Outcome::Unknown
        })
        .await;
        assert!(msg.contains("TLS with upsd failed"), "{msg}");
        assert_eq!(ups, None);
    } else {
        println!("TLS part skipped: COOLMESH_NUT_CA, COOLMESH_NUT_OTHER_CA not set");
    }

    // A user name is sent and taken.
    let with_user = probe(&format!("nut://monitor@{}/ups", env.addr));
    until(with_user.as_ref(), "USERNAME", |o, _, _| o == Outcome::Up).await;

    // A UPS this upsd does not have: unknown, never down.
    let other = probe(&format!("nut://{}/nosuchups", env.addr));
    until(other.as_ref(), "unknown UPS", |o, _, m| {
        o == Outcome::Unknown && m.contains("UNKNOWN-UPS")
    })
    .await;

    // The driver hangs while the UPS is on battery: upsd says DATA-STALE
    // after MAXAGE. Unknown, not down.
    set_status(&env.status_file, "OB DISCHRG", 600);
    until(p.as_ref(), "OB again", |o, _, _| o == Outcome::Down).await;
    signal(&env.run_dir, "dummy-ups-ups.pid", "-STOP");
    let (_, ups, _) = until(p.as_ref(), "driver stopped", |o, _, m| {
        o == Outcome::Unknown && m.contains("DATA-STALE")
    })
    .await;
    assert_eq!(ups, None, "a stale UPS gives no battery reading");
    signal(&env.run_dir, "dummy-ups-ups.pid", "-CONT");
    until(p.as_ref(), "driver back", |o, _, _| o == Outcome::Down).await;

    // The driver gone: DRIVER-NOT-CONNECTED, unknown.
    signal(&env.run_dir, "dummy-ups-ups.pid", "-TERM");
    until(p.as_ref(), "driver gone", |o, _, m| {
        o == Outcome::Unknown && m.contains("DRIVER-NOT-CONNECTED")
    })
    .await;

    // upsd gone: connection refused, unknown.
    signal(&env.run_dir, "upsd.pid", "-TERM");
    let (_, _, msg) = until(p.as_ref(), "upsd gone", |o, _, m| {
        o == Outcome::Unknown && m.contains("refused")
    })
    .await;
    assert!(msg.starts_with("upsd: "), "{msg}");
}
