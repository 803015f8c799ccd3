//! The `ipmi` thermal source against a simulated BMC: `ipmi_sim` (OpenIPMI)
//! serving `agent/tests/fixtures/ipmi/sim/coolmesh.emu` on loopback over
//! IPMI 2.0 (lanplus), started by `.ci/ipmi.sh`, which sets:
//!
//! - `COOLMESH_IPMI_SIM`: `127.0.0.1:PORT` of the simulated BMC;
//! - `COOLMESH_IPMI_SIM_CONSOLE`: `127.0.0.1:PORT` of its emulator console;
//! - `COOLMESH_IPMI_SIM_DIR`: its directory (`password`, `freeipmi.conf`,
//!   `sdrcache/`, and `inlet.val`, which the simulator polls for "Inlet Temp").
//!
//! Without them the test prints why and passes: it needs the simulator.
//! The source is built from a config file as the agent builds it, and read
//! with ipmitool and with freeipmi's ipmi-sensors; then the values change
//! (the polled file and a console command) and the simulator is stopped,
//! which must put the source down, nothing more.

use coolmesh_agent::heating::{assign_roles, Role};
use coolmesh_agent::sources::ipmi::Ipmi;
use coolmesh_agent::sources::Source;
use coolmesh_agent::thermal::Reading;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Sim {
    addr: String,
    console: String,
    dir: PathBuf,
}

fn sim() -> Option<Sim> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        get("COOLMESH_IPMI_SIM"),
        get("COOLMESH_IPMI_SIM_CONSOLE"),
        get("COOLMESH_IPMI_SIM_DIR"),
    ) {
        (Some(addr), Some(console), Some(dir)) => Some(Sim {
            addr,
            console,
            dir: dir.into(),
        }),
        _ => {
            eprintln!(
                "ipmi_sim: skipped: COOLMESH_IPMI_SIM, COOLMESH_IPMI_SIM_CONSOLE and COOLMESH_IPMI_SIM_DIR are not set (run bash .ci/ipmi.sh)"
            );
            None
        }
    }
}

/// Build the source from `[sensors]` lines, as the agent does.
fn source(sensors: &str) -> Arc<Ipmi> {
    let src = format!(
        "[sensors]\nsources = [\"ipmi\"]\nipmi_interval = \"1s\"\nipmi_timeout = \"5s\"\n{sensors}"
    );
    let c = coolmesh_agent::config::parse(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let cfg = c.sensors.ipmi.source_config().expect("source config");
    Arc::new(Ipmi::new(cfg))
}

async fn read(s: &Arc<Ipmi>) -> Result<Vec<Reading>, String> {
    let mut rs = tokio::time::timeout(Duration::from_secs(8), s.clone().read())
        .await
        .map_err(|_| "read timed out".to_string())?
        .map_err(|e| e.to_string())?;
    assign_roles(&[], &mut rs);
    Ok(rs)
}

fn by<'a>(rs: &'a [Reading], sensor: &str) -> &'a Reading {
    rs.iter()
        .find(|r| r.sensor == sensor)
        .unwrap_or_else(|| panic!("no {sensor} in {rs:#?}"))
}

/// Wait until `check` holds for a read (at most 15 s).
async fn until(s: &Arc<Ipmi>, what: &str, check: impl Fn(&Result<Vec<Reading>, String>) -> bool) {
    let start = Instant::now();
    loop {
        let r = read(s).await;
        if check(&r) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: still {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Send one emulator command to the simulator's console and wait for the
/// prompt after its echo. Closing earlier kills ipmi_sim: it writes the
/// echo and the prompt to the closed socket and dies of SIGPIPE.
fn console(addr: &str, cmd: &str) {
    let mut c = std::net::TcpStream::connect(addr).expect("console");
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    c.write_all(format!("{cmd}\n").as_bytes()).expect("write");
    if cmd == "quit" {
        return;
    }
    // Telnet options, the prompt, the echo, the next prompt.
    let mut seen = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let mut buf = [0u8; 4096];
        if let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&seen);
        if text
            .find(cmd)
            .is_some_and(|i| text[i + cmd.len()..].contains("> "))
        {
            return;
        }
    }
    panic!(
        "console {addr}: no prompt after {cmd:?}: {:?}",
        String::from_utf8_lossy(&seen)
    );
}

fn check_values(rs: &[Reading], what: &str) {
    let names: Vec<&str> = rs.iter().map(|r| r.sensor.as_str()).collect();
    assert_eq!(
        names,
        ["Inlet Temp", "Exhaust Temp", "Temp", "Temp #2", "DIMM Temp"],
        "{what}: PSU1 Temp has no reading and Fan1 is no temperature"
    );
    let inlet = by(rs, "Inlet Temp");
    assert_eq!(
        (inlet.celsius, inlet.max_celsius, inlet.critical_celsius),
        (23.0, Some(42.0), Some(47.0)),
        "{what}"
    );
    assert_eq!(inlet.role, Role::Inlet, "{what}");
    let exhaust = by(rs, "Exhaust Temp");
    assert_eq!(
        (exhaust.celsius, exhaust.critical_celsius, exhaust.role),
        (35.0, Some(75.0), Role::Exhaust),
        "{what}"
    );
    assert_eq!(by(rs, "Temp #2").celsius, 47.0, "{what}");
    assert_eq!(by(rs, "Temp").role, Role::Component, "{what}");
    assert_eq!(by(rs, "DIMM Temp").critical_celsius, None, "{what}");
}

#[tokio::test]
async fn ipmi_source_against_ipmi_sim() {
    let Some(sim) = sim() else { return };
    let dir = sim.dir.display();
    let ipmitool = source(&format!(
        "ipmi_command = [\"ipmitool\", \"-C\", \"3\", \"sensor\"]\nipmi_host = \"{}\"\nipmi_user = \"coolmesh\"\nipmi_password_file = \"{dir}/password\"\n",
        sim.addr
    ));
    let rs = read(&ipmitool)
        .await
        .expect("ipmitool reads the simulated BMC");
    check_values(&rs, "ipmitool");

    let freeipmi = source(&format!(
        "ipmi_command = [\"ipmi-sensors\", \"-h\", \"{}\", \"-D\", \"LAN_2_0\", \"-I\", \"3\", \"-l\", \"ADMIN\", \"-W\", \"opensesspriv\", \"--config-file\", \"{dir}/freeipmi.conf\", \"--sdr-cache-directory\", \"{dir}/sdrcache\", \"--output-sensor-thresholds\", \"--comma-separated-output\"]\n",
        sim.addr
    ));
    let rs = read(&freeipmi)
        .await
        .expect("ipmi-sensors reads the simulated BMC");
    check_values(&rs, "ipmi-sensors");

    // The simulator polls inlet.val: the room warms up.
    std::fs::write(sim.dir.join("inlet.val"), "31\n").expect("write inlet.val");
    until(&ipmitool, "Inlet Temp 31", |r| {
        r.as_ref()
            .is_ok_and(|rs| by(rs, "Inlet Temp").celsius == 31.0)
    })
    .await;
    // A console command sets a value directly.
    console(&sim.console, "sensor_set_value 0x20 0 2 52 0");
    until(&ipmitool, "Exhaust Temp 52", |r| {
        r.as_ref()
            .is_ok_and(|rs| by(rs, "Exhaust Temp").celsius == 52.0)
    })
    .await;
    until(&freeipmi, "ipmi-sensors sees both", |r| {
        r.as_ref().is_ok_and(|rs| {
            by(rs, "Inlet Temp").celsius == 31.0 && by(rs, "Exhaust Temp").celsius == 52.0
        })
    })
    .await;

    // A wrong password is a down source with the tool's message.
    let wrong = source(&format!(
        "ipmi_command = [\"ipmitool\", \"-C\", \"3\", \"-N\", \"1\", \"-R\", \"1\", \"sensor\"]\nipmi_host = \"{}\"\nipmi_user = \"coolmesh\"\nipmi_password_file = \"{dir}/freeipmi.conf\"\n",
        sim.addr
    ));
    let e = read(&wrong).await.expect_err("wrong password");
    assert!(e.contains("failed"), "{e}");

    // The BMC goes away: the source is down within interval + timeout, and
    // says so; no reading is invented.
    console(&sim.console, "quit");
    until(&ipmitool, "down after the simulator stopped", |r| {
        r.is_err()
    })
    .await;
    let e = read(&ipmitool).await.expect_err("down");
    eprintln!("ipmi_sim: stopped simulator: {e}");
    until(&freeipmi, "ipmi-sensors down too", |r| r.is_err()).await;
}
