//! Tests of `ipmi`.

use super::*;
use crate::heating::{default_role, Role};

const SIM_IPMITOOL: &str = include_str!("../../../tests/fixtures/ipmi/sim-ipmitool-sensor.txt");
const SIM_IPMITOOL_CSV: &str =
    include_str!("../../../tests/fixtures/ipmi/sim-ipmitool-sensor-c.txt");
const SIM_FREEIPMI: &str = include_str!("../../../tests/fixtures/ipmi/sim-ipmi-sensors.txt");
const SIM_SDR_CSV: &str = include_str!("../../../tests/fixtures/ipmi/sim-ipmitool-sdr-c.txt");

fn by(rs: &[Reading], sensor: &str) -> Reading {
    rs.iter()
        .find(|r| r.sensor == sensor)
        .cloned()
        .unwrap_or_else(|| panic!("no {sensor} in {rs:#?}"))
}

/// The same BMC read three ways gives the same readings.
#[test]
fn simulated_bmc_in_every_format() {
    for (what, text, thresholds) in [
        ("ipmitool sensor", SIM_IPMITOOL, true),
        ("ipmitool -c sensor", SIM_IPMITOOL_CSV, true),
        ("ipmi-sensors", SIM_FREEIPMI, true),
        ("ipmitool -c sdr", SIM_SDR_CSV, false),
    ] {
        let rs = parse(text).unwrap_or_else(|e| panic!("{what}: {e}"));
        let names: Vec<&str> = rs.iter().map(|r| r.sensor.as_str()).collect();
        assert_eq!(
            names,
            ["Inlet Temp", "Exhaust Temp", "Temp", "Temp #2", "DIMM Temp"],
            "{what}"
        );
        let inlet = by(&rs, "Inlet Temp");
        assert_eq!(inlet.celsius, 23.0, "{what}");
        assert_eq!(
            (inlet.chip.as_str(), inlet.source.as_str()),
            ("ipmi", "ipmi")
        );
        assert_eq!(inlet.label.as_deref(), Some("Inlet Temp"));
        assert_eq!(by(&rs, "Temp #2").celsius, 47.0);
        assert_eq!(by(&rs, "DIMM Temp").max_celsius, None);
        assert_eq!(by(&rs, "DIMM Temp").critical_celsius, None);
        if thresholds {
            assert_eq!(inlet.max_celsius, Some(42.0), "{what}");
            assert_eq!(inlet.critical_celsius, Some(47.0), "{what}");
            assert_eq!(by(&rs, "Exhaust Temp").critical_celsius, Some(75.0));
        } else {
            assert_eq!(inlet.critical_celsius, None);
        }
        assert_eq!(default_role(&inlet), Role::Inlet);
        assert_eq!(default_role(&by(&rs, "Exhaust Temp")), Role::Exhaust);
        assert_eq!(default_role(&by(&rs, "Temp")), Role::Component);
    }
}

#[test]
fn no_reading_is_skipped_never_zero() {
    let text = "\
Inlet Temp       | 21.000     | degrees C  | ok    | na        | na        | na        | 42.000    | 47.000    | na
PSU1 Temp        | na         |            | na    | na        | na        | na        | 60.000    | 65.000    | na
PSU2 Temp        | 0.000      | degrees C  | ns    | na        | na        | na        | 60.000    | 65.000    | na
CPU2 Temp        | disabled   | degrees C  | ok    | na        | na        | na        | na        | na        | na
CPU3 Temp        | 0x1f       | degrees C  | ok    | na        | na        | na        | na        | na        | na
Fan1             | 4800.000   | RPM        | ok    | na        | 600.000   | na        | na        | na        | na
";
    let rs = parse(text).expect("one reading");
    assert_eq!(rs.len(), 1, "{rs:#?}");
    assert_eq!(rs[0].sensor, "Inlet Temp");
}

#[test]
fn fahrenheit_and_implausible_values() {
    let text = "\
Ambient          | 77.000     | degrees F  | ok    | na        | na        | na        | 104.000   | 113.000   | na
Broken           | 900.000    | degrees C  | ok    | na        | na        | na        | 60.000    | 65.000    | na
Odd limit        | 30.000     | degrees C  | ok    | na        | na        | na        | 65261.8   | 1e308     | na
";
    let rs = parse(text).expect("ok");
    assert_eq!(rs.len(), 2, "{rs:#?}");
    assert_eq!(rs[0].celsius, 25.0);
    assert_eq!(rs[0].max_celsius, Some(40.0));
    assert_eq!(rs[0].critical_celsius, Some(45.0));
    assert_eq!(rs[1].sensor, "Odd limit");
    assert_eq!((rs[1].max_celsius, rs[1].critical_celsius), (None, None));
}

#[test]
fn down_for_garbage_empty_truncated_and_all_na() {
    let cases = [
        ("", "no sensor rows"),
        ("hello world\n", "no sensor rows"),
        ("Error: Unable to establish IPMI v2 / RMCP+ session\n", "no sensor rows"),
        (
            "Fan1             | 4800.000   | RPM        | ok    | na | na | na | na | na | na\n",
            "none a temperature",
        ),
        (
            "Inlet Temp       | na         |            | na    | na | na | na | 42.000 | 47.000 | na\n",
            "none with a reading",
        ),
        (
            "Inlet Temp       | na         | degrees C  | ns    | na | na | na | 42.000 | 47.000 | na\n",
            "none with a plausible reading",
        ),
        // Cut off in the middle of the only row.
        (
            "Inlet Temp       | 21.000     | degrees C  | ok    | na | na | na | 42.000 | 47",
            "no sensor rows",
        ),
    ];
    for (text, want) in cases {
        let e = parse(text).expect_err(text).to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
    // A cut-off last row is not used; the complete ones are.
    let rs =
        parse("Inlet Temp | 21 | degrees C | ok | na | na | na | 42 | 47 | na\nExhaust Temp | 3")
            .expect("first row");
    assert_eq!(rs.len(), 1);
}

#[test]
fn hostile_input_never_panics() {
    let long = format!(
        "{}| 21 | degrees C | ok | na | na | na | 42 | 47 | na\n",
        "A".repeat(5000)
    );
    assert!(parse(&long).is_err());
    let huge = "X | 99999999999999999999999999999999999999999 | degrees C | ok | na | na | na | 1e999 | -1e999 | na\n";
    assert!(parse(huge).is_err());
    let many = "T | 20 | degrees C | ok | na | na | na | na | na | na\n".repeat(MAX_SENSORS + 1);
    assert!(parse(&many)
        .expect_err("too many")
        .to_string()
        .contains("more than"));
    // Pseudo-random bytes, split anywhere: errors or readings, never a panic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let good = SIM_IPMITOOL.as_bytes();
    for round in 0..2000 {
        let mut bytes = good.to_vec();
        for _ in 0..(round % 40) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % bytes.len();
            bytes[i] = (x >> 32) as u8;
        }
        let cut = (x as usize) % (bytes.len() + 1);
        let text = String::from_utf8_lossy(&bytes[..cut]);
        if let Ok(rs) = parse(&text) {
            for r in rs {
                assert!(crate::thermal::plausible(r.celsius));
                assert!(r.sensor.chars().count() <= MAX_NAME + 8);
            }
        }
    }
    // Control characters in names are removed; a name of only those is skipped.
    let rs = parse("In\u{7}let\u{1b}[31m Temp | 20 | degrees C | ok | na | na | na | na | na | na\n\u{1} | 20 | degrees C | ok | na | na | na | na | na | na\n")
        .expect("one");
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].sensor, "Inlet[31m Temp");
}

#[test]
fn freeipmi_header_and_progress_lines_are_skipped() {
    let text =
        "Caching SDR repository information: /root/.freeipmi/sdr-cache/sdr-cache-host.localhost\n\
ID,Name,Type,Reading,Units,Lower NR,Lower C,Lower NC,Upper NC,Upper C,Upper NR,Event\n\
1,Inlet Temp,Temperature,23.00,C,N/A,N/A,N/A,42.00,47.00,N/A,'OK'\n\
6,PSU1 Temp,Temperature,N/A,C,N/A,N/A,N/A,60.00,65.00,N/A,N/A\n";
    let rs = parse(text).expect("ok");
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].critical_celsius, Some(47.0));
}

#[test]
fn password_arguments_are_found() {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        password_argument(&v(&["ipmitool", "-P", "x", "sensor"])),
        Some("-P")
    );
    assert_eq!(
        password_argument(&v(&["/usr/bin/ipmitool", "-Psecret"])),
        Some("-Psecret")
    );
    assert_eq!(
        password_argument(&v(&["ipmitool", "-p", "623", "-f", "/f"])),
        None
    );
    assert_eq!(
        password_argument(&v(&["ipmi-sensors", "-p", "x"])),
        Some("-p")
    );
    assert_eq!(
        password_argument(&v(&["ipmi-sensors", "--password=x"])),
        Some("--password=x")
    );
    assert_eq!(
        password_argument(&v(&["ipmi-sensors", "--config-file=/f"])),
        None
    );
}

#[test]
fn lanplus_arguments_go_after_the_program() {
    let cmd: Vec<String> = ["ipmitool", "-C", "3", "sensor"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let lan = Lanplus {
        host: "127.0.0.1:9623".into(),
        user: Some("coolmesh".into()),
        password_file: Some("/etc/coolmesh/bmc.pass".into()),
    };
    assert_eq!(
        argv_with_lanplus(&cmd, Some(&lan)).expect("ok").join(" "),
        "ipmitool -I lanplus -H 127.0.0.1 -p 9623 -U coolmesh -f /etc/coolmesh/bmc.pass -C 3 sensor"
    );
    let lan = Lanplus {
        host: "bmc1.example".into(),
        ..Default::default()
    };
    assert_eq!(
        argv_with_lanplus(&cmd, Some(&lan)).expect("ok").join(" "),
        "ipmitool -I lanplus -H bmc1.example -C 3 sensor"
    );
    let lan = Lanplus {
        host: "[fd00::1]:623".into(),
        ..Default::default()
    };
    assert!(argv_with_lanplus(&cmd, Some(&lan))
        .expect("ok")
        .join(" ")
        .contains("-H fd00::1 -p 623"));
    assert_eq!(argv_with_lanplus(&cmd, None).expect("ok"), cmd);
    let fi: Vec<String> = vec!["ipmi-sensors".into()];
    assert!(argv_with_lanplus(&fi, Some(&lan)).is_err());
}

fn sh(script: &str, interval_ms: u64, timeout_ms: u64) -> Arc<Ipmi> {
    Arc::new(Ipmi::new(IpmiConfig {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
    }))
}

#[tokio::test]
async fn a_command_that_fails_hangs_or_vanishes_is_down() {
    let e = sh(
        "echo 'Error: Unable to establish IPMI v2 / RMCP+ session' >&2; exit 1",
        1000,
        1000,
    )
    .read()
    .await
    .expect_err("exit 1")
    .to_string();
    assert!(e.contains("exit status: 1") && e.contains("RMCP+"), "{e}");
    let e = sh("exec sleep 30", 1000, 200)
        .read()
        .await
        .expect_err("hang")
        .to_string();
    assert!(e.contains("did not answer within"), "{e}");
    let src = Arc::new(Ipmi::new(IpmiConfig {
        argv: vec!["/nonexistent/ipmitool".into()],
        ..IpmiConfig::default()
    }));
    let e = src.read().await.expect_err("missing").to_string();
    assert!(e.contains("cannot run"), "{e}");
}

#[tokio::test]
async fn the_latest_run_is_what_a_read_sees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("out");
    std::fs::write(&f, SIM_IPMITOOL).expect("write");
    let src = sh(&format!("cat {}", f.display()), 50, 1000);
    let rs = src.clone().read().await.expect("first run");
    assert_eq!(rs.len(), 5);
    // The BMC starts answering garbage: within a few runs the source is down.
    std::fs::write(&f, "garbage\n").expect("write");
    let mut down = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if src.clone().read().await.is_err() {
            down = true;
            break;
        }
    }
    assert!(down, "garbage must put the source down");
    // And back.
    std::fs::write(&f, SIM_IPMITOOL).expect("write");
    let mut up = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if src.clone().read().await.is_ok() {
            up = true;
            break;
        }
    }
    assert!(up);
}

#[tokio::test]
async fn dropping_the_source_kills_a_running_tool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let src = sh(
        &format!("echo $$ > {}; exec sleep 600", pidfile.display()),
        1000,
        60_000,
    );
    let _ = tokio::time::timeout(Duration::from_millis(300), src.clone().read()).await;
    let mut pid = None;
    for _ in 0..100 {
        if let Some(p) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            pid = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = pid.expect("the tool started");
    drop(src);
    // Gone, or a zombie waiting for the reaper.
    let gone = crate::sources::child::test_support::gone_within(pid, 100).await;
    assert!(gone, "tool {pid} still running");
}
