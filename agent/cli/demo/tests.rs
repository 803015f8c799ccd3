//! The demo's unit tests: setup, simulation, key parsing and rendering.

use super::*;

fn strip_ansi(s: &str) -> String {
    let mut o = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            for d in it.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            o.push(c);
        }
    }
    o
}

#[test]
fn port_layout() {
    let p = Ports::new(9876, 3).expect("ports");
    assert_eq!(p.http, vec![9876, 9877, 9878]);
    assert_eq!(p.p2p, vec![9879, 9880, 9881]);
    assert_eq!(p.power, 9882);
    assert_eq!(p.all().len(), 7);
    let e = Ports::new(65530, 3).expect_err("past 65535");
    assert!(e.contains("--base-port"), "{e}");
    assert_eq!(Ports::new(65529, 3).expect("fits").power, 65535);
}

#[test]
fn port_in_use_names_the_port_and_the_flag() {
    let e = std::io::Error::from(std::io::ErrorKind::AddrInUse);
    let m = port_problem(9877, "HTTP of demo-2", &e, 9876, 3);
    assert!(
        m.contains("port 9877") && m.contains("HTTP of demo-2"),
        "{m}"
    );
    assert!(m.contains("--base-port 10876"), "{m}");
}

#[test]
fn generated_config_is_valid_and_always_dry_run() {
    let dir = Path::new("/tmp/x \"quoted\" \\dir");
    let ports = Ports::new(20000, 3).expect("ports");
    let nodes = node_specs(dir, &ports);
    let text = config_text(
        &nodes[1],
        &nodes,
        ports.power,
        Duration::from_secs(30),
        &dir.join("token"),
        &dir.join("swarm.key"),
    )
    .expect("text");
    let c = coolmesh_agent::config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(c.node.name, "demo-2");
    assert_eq!(c.node.state_dir, dir.join("demo-2/state"));
    assert_eq!(c.http.listen_address, "127.0.0.1:20001");
    assert_eq!(c.http.token_file, Some(dir.join("token")));
    assert_eq!(c.sensors.file, Some(dir.join("demo-2/readings.json")));
    assert_eq!(c.power.targets, vec!["tcp://127.0.0.1:20006".to_string()]);
    assert!(c.shutdown.dry_run);
    assert_eq!(c.shutdown.command, vec!["true".to_string()]);
    assert_eq!(
        c.shutdown.dry_run_marker,
        Some(dir.join("demo-2/dry-run-shutdowns"))
    );
    assert_eq!(c.shutdown.grace, Duration::from_secs(30));
    assert_eq!(c.shutdown.cooling_grace, Duration::from_secs(60));
    assert_eq!(c.shutdown.overheat_grace, Duration::from_secs(30));
    assert_eq!(c.cluster.name, "demo");
    assert!(!c.cluster.mdns);
    assert_eq!(c.cluster.psk_file, Some(dir.join("swarm.key")));
    assert_eq!(coolmesh_agent::config::cluster_trust_error(&c), None);
    assert_eq!(
        c.cluster.listen,
        vec!["/ip4/127.0.0.1/tcp/20004".to_string()]
    );
    assert_eq!(
        c.cluster.peers,
        vec![
            "/ip4/127.0.0.1/tcp/20003".to_string(),
            "/ip4/127.0.0.1/tcp/20005".to_string()
        ]
    );
}

#[test]
fn readings_follow_the_file_schema() {
    let sim = Sim::new(3);
    let doc = sim.readings_json(0);
    let v: serde_json::Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(v[0]["chip"], "demo");
    assert_eq!(v[0]["critical_celsius"], CRITICAL_C);
    let c = v[0]["celsius"].as_f64().expect("celsius");
    assert!((35.0..=45.0).contains(&c), "{c}");
    let parsed = coolmesh_agent::sources::json::parse_readings(&doc, "file");
    assert!(parsed.is_ok(), "{parsed:?}");
}

#[test]
fn a_node_at_rest_never_looks_like_heating_fast() {
    let mut s = Sim::new(5);
    let read = |s: &Sim, i: usize| -> f64 {
        let v: serde_json::Value = serde_json::from_str(&s.readings_json(i)).expect("json");
        v[0]["celsius"].as_f64().expect("celsius")
    };
    let mut last: Vec<f64> = (0..5).map(|i| read(&s, i)).collect();
    for _ in 0..200 {
        s.step(1.0);
        for (i, prev) in last.iter_mut().enumerate() {
            let now = read(&s, i);
            // Two samples a second apart: the steepest trend the agent can see.
            assert!(((now - *prev) * 60.0).abs() < 2.5, "{now} after {prev}");
            *prev = now;
        }
    }
}

#[test]
fn heating_and_cooling() {
    let mut s = Sim::new(3);
    let t0: Vec<f64> = (0..3).map(|i| s.temp(i)).collect();
    assert!(t0.iter().all(|t| (35.0..=45.0).contains(t)), "{t0:?}");
    assert!(s.settled());
    s.heat(1);
    for _ in 0..60 {
        s.step(1.0);
    }
    assert!((s.temp(1) - (t0[1] + HEAT_RATE_C_PER_MIN)).abs() < 1e-6);
    assert!((s.temp(0) - t0[0]).abs() < 1e-6, "only node 2 heats");
    s.restore_cooling();
    s.fail_cooling();
    for _ in 0..600 {
        s.step(1.0);
    }
    assert!((0..3).all(|i| s.temp(i) == CAP_C));
    s.restore_cooling();
    assert!(!s.settled());
    for _ in 0..300 {
        s.step(1.0);
    }
    assert!(s.settled());
    s.fail_cooling();
    s.step(10.0);
    s.reset();
    assert!(s.settled());
}

#[test]
fn keys() {
    assert_eq!(parse_key("p\n", 3), Ok(Key::CutPower));
    assert_eq!(parse_key(" P ", 3), Ok(Key::RestorePower));
    assert_eq!(parse_key("c", 3), Ok(Key::FailCooling));
    assert_eq!(parse_key("C", 3), Ok(Key::RestoreCooling));
    assert_eq!(parse_key("h 2", 3), Ok(Key::Heat(2)));
    assert_eq!(parse_key("h3", 3), Ok(Key::Heat(3)));
    assert_eq!(parse_key("", 3), Ok(Key::Nothing));
    assert_eq!(parse_key("q", 3), Ok(Key::Quit));
    assert_eq!(parse_key("?", 3), Ok(Key::Help));
    assert_eq!(parse_key("r", 3), Ok(Key::Reset));
    assert_eq!(parse_key("s", 3), Ok(Key::Status));
    let e = parse_key("h 4", 3).expect_err("no node 4");
    assert!(e.contains("1 to 3"), "{e}");
    let e = parse_key("h", 3).expect_err("which node");
    assert!(e.contains("h 2"), "{e}");
    let e = parse_key("x", 3).expect_err("unknown");
    assert!(e.contains("?"), "{e}");
    assert!(parse_key("p p p", 3).is_err());
}

#[test]
fn table_aligns_with_and_without_colour() {
    let mut s = Snapshot {
        node: "demo-1".into(),
        ..Default::default()
    };
    s.fsm.state = "pre_fail".into();
    s.fsm.reason = "power".into();
    s.fsm.deadline_ms = Some(1_000 + 27_000);
    s.thermal.hottest_celsius = Some(41.3);
    s.thermal.headroom_celsius = Some(48.75);
    s.thermal.trend_celsius_per_minute = Some(0.1);
    s.power.up = Some(false);
    s.cluster.name = "demo".into();
    let r1 = row("demo-1", &s, 1_000, 2);
    assert_eq!(r1[3], "27s");
    assert_eq!(r1[7], "DOWN");
    assert_eq!(r1[8], "0/2");
    let r2 = row_unreachable("demo-2", "unreachable", "connection refused");
    let plain = render_table(&[r1.clone(), r2.clone()], Style { colour: false });
    let coloured = render_table(&[r1, r2], Style { colour: true });
    assert!(coloured.contains("\x1b["));
    assert!(!plain.contains('\x1b'));
    assert_eq!(strip_ansi(&coloured), plain);
    let widths: Vec<usize> = plain
        .lines()
        .map(|l| l.find("POWER").unwrap_or(0))
        .collect();
    let lines: Vec<&str> = plain.lines().collect();
    // Every column starts at the same offset on every line.
    let col = lines[0].find("HOTTEST").expect("header");
    assert_eq!(&lines[1][col..col + 9], "     41.3");
    assert!(widths[0] > 0);
    assert_eq!(fmt_left(61_000), "1m01s");
    assert_eq!(fmt_left(500), "1s");
}

#[test]
fn toml_strings_escape() {
    assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    assert_eq!(toml_str("x\ny"), "\"x\\u000Ay\"");
}

#[test]
fn agent_log_lines_read_as_level_message_fields() {
    let line = r#"{"time":"2026-01-02T03:04:05.678Z","level":"WARN","source":"agent.rs:9","msg":"dial failed","peer":"b","attempts":3}"#;
    assert_eq!(
        agents::readable_log_line(line),
        "WARN dial failed attempts=3 peer=b"
    );
    // Not JSON (a panic message, say): shown as it is.
    assert_eq!(
        agents::readable_log_line("thread main panicked"),
        "thread main panicked"
    );
}
