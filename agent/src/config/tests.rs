//! Tests of the config: every key, its errors with key and line, and the
//! defaults.

use super::*;
use crate::thermal::apply_thresholds;

#[test]
fn check_config_warns_about_an_open_cluster() {
    let mut c = Config::default();
    // No key and no opt-in: an error, not a warning.
    let e = cluster_trust_error(&c).expect("refused");
    assert!(e.contains("cluster.psk_file is not set"), "{e}");
    assert!(e.contains("cluster.insecure_no_psk = true"), "{e}");
    c.cluster.insecure_no_psk = true;
    assert_eq!(cluster_trust_error(&c), None);
    let w = trust_warnings(&c);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("cluster.insecure_no_psk = true"), "{w:?}");
    assert!(
        w[1].contains("cluster.allowlist nor cluster.operator_key"),
        "{w:?}"
    );
    c.cluster.insecure_no_psk = false;
    c.cluster.psk_file = Some("/etc/coolmesh/swarm.key".into());
    assert_eq!(cluster_trust_error(&c), None);
    c.cluster.allowlist = vec!["12D3KooWA".into()];
    assert!(trust_warnings(&c).is_empty());
    c.cluster.allowlist.clear();
    c.cluster.operator_key = Some("ed25519:x".into());
    assert!(trust_warnings(&c).is_empty(), "a roster closes the room");
    c.cluster.psk_file = None;
    c.cluster.enabled = false;
    assert_eq!(cluster_trust_error(&c), None, "a lone agent needs no key");
    assert!(
        trust_warnings(&c).is_empty(),
        "a lone agent has nothing to join"
    );
}

#[test]
fn empty_file_is_all_defaults() {
    assert_eq!(parse("").expect("empty"), Config::default());
}

#[test]
fn design_example_parses() {
    let src = r#"
[node]
name = "rack3-srv12"
state_dir = "/var/lib/coolmesh"

[http]
token_file = "/etc/coolmesh/token"
web_config_file = "/etc/coolmesh/web-config.yml"

[sensors]
interval = "10s"
sources = ["hwmon", "thermal_zone"]

[power]
targets = ["icmp://10.0.0.254", "tcp://10.0.0.253:22", "http://pdu.local/status"]
policy = "any"
interval = "5s"
timeout = "1s"

[shutdown]
grace = "5m"
command = ["systemctl", "poweroff"]
"#;
    let c = parse(src).expect("valid");
    assert_eq!(c.node.name, "rack3-srv12");
    assert_eq!(c.power.targets.len(), 3);
    assert_eq!(c.shutdown.grace, Duration::from_secs(300));
    assert_eq!(
        c.http.token_file,
        Some(PathBuf::from("/etc/coolmesh/token"))
    );
    assert_eq!(
        c.http.web_config_file,
        Some(PathBuf::from("/etc/coolmesh/web-config.yml"))
    );
}

#[test]
fn every_problem_is_reported_with_key_and_line() {
    let src = "[sensors]\nintervall = \"10s\"\ninterval = \"ten seconds\"\nsources = [\"hwmon\", \"ipmii\"]\n\n[power]\npolicy = \"most\"\njitter = 2.0\n[bogus]\nx = 1\n[shutdown]\ncommand = []\nrecovery_probes = \"2\"\n";
    let errs = parse(src).expect_err("invalid").0;
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let want = [
        ("sensors.intervall", 2, "did you mean `interval`"),
        ("sensors.interval", 3, "not a duration"),
        ("sensors.sources", 4, "unknown source \"ipmii\""),
        ("power.policy", 7, "not one of any, all, majority"),
        ("power.jitter", 8, "out of range"),
        ("bogus", 9, "unknown key"),
        ("shutdown.command", 12, "expected a command"),
        ("shutdown.recovery_probes", 13, "expected an integer"),
    ];
    for (key, line, needle) in want {
        assert!(
            errs.iter()
                .any(|e| e.key == key && e.line == Some(line) && e.message.contains(needle)),
            "missing {key} line {line} {needle:?} in {shown:#?}"
        );
    }
    assert_eq!(errs.len(), want.len(), "{shown:#?}");
}

#[test]
fn bad_power_targets_are_named_with_their_line() {
    let src = "[power]\ntargets = [\n  \"icmp://10.0.0.254\",\n  \"tcp://10.0.0.253\",\n  \"https://pdu/status\",\n  \"icmp://10.0.0.254\",\n]\n";
    let errs = parse(src).expect_err("invalid").0;
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), 3, "{shown:#?}");
    assert!(
        shown[0].starts_with("line 4: power.targets[1]")
            && shown[0].contains("tcp://10.0.0.253:22"),
        "{shown:#?}"
    );
    assert!(
        shown[1].starts_with("line 5: power.targets[2]") && shown[1].contains("exec"),
        "{shown:#?}"
    );
    assert!(
        shown[2].starts_with("line 6: power.targets[3]") && shown[2].contains("twice"),
        "{shown:#?}"
    );
}

#[test]
fn cluster_section() {
    let c = parse("[cluster]\nname = \"room-1\"\nlisten = [\"/ip4/0.0.0.0/tcp/9877\"]\npeers = [\"/ip4/10.0.0.12/tcp/9877\"]\nmdns = false\n").expect("valid");
    assert_eq!(c.cluster.name, "room-1");
    assert!(!c.cluster.mdns);
    let c = parse("[cluster]\nhandshake_timeout = \"3s\"\nmax_pending_incoming = 8\nmax_incoming = 100\nmax_connections_per_peer = 3\nmax_streams_per_connection = 16\nmax_members = 200\n").expect("valid");
    let l = c.cluster.limits;
    assert_eq!(
        (
            l.handshake_timeout,
            l.max_pending_incoming,
            l.max_incoming,
            l.max_connections_per_peer,
            l.max_streams_per_connection,
            l.max_members
        ),
        (Duration::from_secs(3), 8, 100, 3, 16, 200)
    );
    let errs = parse("[cluster]\nmax_connections_per_peer = 1\nmax_incoming = 0\nhandshake_timeout = \"1ms\"\nmax_streams_per_connection = 100000\nmax_members = 3\n").expect_err("bad").to_string();
    for want in [
        "line 2: cluster.max_connections_per_peer",
        "line 3: cluster.max_incoming",
        "line 4: cluster.handshake_timeout",
        "line 5: cluster.max_streams_per_connection",
        "line 6: cluster.max_members",
    ] {
        assert!(errs.contains(want), "{want}: {errs}");
    }
    let errs = parse("[cluster]\nlisten = [\"0.0.0.0:9877\"]\nallowlist = [\"nope\"]\nsuspect_after = \"10s\"\nname = \"bad name\"\n").expect_err("bad").to_string();
    for needle in [
        "line 2: cluster.listen[0]",
        "line 3: cluster.allowlist[0]",
        "line 5: cluster.name",
        "cluster.dead_after: must be longer",
    ] {
        assert!(errs.contains(needle), "{needle} in {errs}");
    }
}

#[test]
fn syntax_error_has_a_line() {
    let e = parse("[node]\nname = \"x\"\nstate_dir = \n").expect_err("syntax");
    assert_eq!(e.0[0].line, Some(3), "{e}");
}

#[test]
fn cross_checks() {
    let e = parse("[sensors]\nsources = [\"file\"]\ninterval = \"1s\"\ntimeout = \"2s\"\n")
        .expect_err("bad")
        .to_string();
    assert!(
        e.contains("sensors.file") && e.contains("sensors.timeout"),
        "{e}"
    );
}

#[test]
fn zero_graces_and_overlapping_probes_are_refused_with_their_lines() {
    let src = "[shutdown]\ngrace = \"0s\"\n[overheat]\nsustain = \"0s\"\ngrace = \"0ms\"\n[cooling]\ngrace = \"0s\"\n[power]\ninterval = \"1s\"\ntimeout = \"1s\"\n";
    let errs = parse(src).expect_err("bad").to_string();
    for want in [
        "line 2: shutdown.grace: must not be zero",
        "line 4: overheat.sustain: must not be zero",
        "line 5: overheat.grace: must not be zero",
        "line 7: cooling.grace: must not be zero",
        "line 10: power.timeout: 1s must be shorter than power.interval (1s)",
    ] {
        assert!(errs.contains(want), "{want}\n{errs}");
    }
    assert_eq!(errs.lines().count(), 5, "{errs}");
    // A cross-check on a key not in the file names its section's line.
    let e = parse("[node]\nname = \"x\"\n[sensors]\nsources = [\"file\"]\n")
        .expect_err("bad")
        .to_string();
    assert!(e.contains("line 3: sensors.file: the `file` source"), "{e}");
}

#[test]
fn log_levels() {
    for ok in [
        "info",
        "DEBUG",
        "warn",
        "off",
        "coolmesh_agent=debug,info",
        "info,libp2p_swarm=trace",
        "coolmesh_agent::cluster=debug",
    ] {
        assert_eq!(check_log_level(ok), Ok(()), "{ok}");
        assert!(parse(&format!("[log]\nlevel = {ok:?}\n")).is_ok(), "{ok}");
    }
    for (bad, needle) in [
        ("verbose", "\"verbose\" is not a log level"),
        ("warning", "\"warning\" is not a log level"),
        ("info,coolmesh_agent=loud", "\"loud\" is not a log level"),
    ] {
        let e = check_log_level(bad).expect_err(bad);
        assert!(
            e.contains(needle) && e.contains("allowed: trace, debug, info, warn, error, off"),
            "{bad}: {e}"
        );
    }
    let e = parse("[log]\nformat = \"json\"\nlevel = \"verbose\"\n")
        .expect_err("bad")
        .to_string();
    assert!(e.starts_with("line 3: log.level: \"verbose\""), "{e}");
}

#[test]
fn key_lines_fall_back_to_the_enclosing_key() {
    let p =
        parse_report("[shutdown]\ncommand = [\n  \"systemctl\",\n  \"poweroff\",\n]\n[power]\n")
            .expect("syntax");
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.lines.line("shutdown.command[0]"), Some(3));
    assert_eq!(p.lines.line("shutdown.command[1]"), Some(4));
    assert_eq!(p.lines.line("shutdown.command"), Some(2));
    assert_eq!(p.lines.line("shutdown.grace"), Some(1));
    assert_eq!(p.lines.line("power.targets[0]"), Some(6));
    assert_eq!(p.lines.line("log.level"), None);
    // Bad values keep their defaults and every error is there.
    let p = parse_report("[shutdown]\ngrace = \"0s\"\n[log]\nlevel = \"loud\"\n").expect("syntax");
    assert_eq!(p.errors.len(), 2);
    assert_eq!(p.config.shutdown.grace, Config::default().shutdown.grace);
    assert!(parse_report("[x\n").is_err(), "a syntax error stops it");
}

#[test]
fn listen_addresses() {
    assert_eq!(
        normalize_listen(":9876").expect("ok").to_string(),
        "0.0.0.0:9876"
    );
    assert!(normalize_listen("127.0.0.1:9876").is_ok());
    assert!(normalize_listen("[::1]:9876").is_ok());
    assert!(normalize_listen("localhost").is_err());
    let e = parse("[http]\nlisten_address = \"nonsense\"\n")
        .expect_err("bad")
        .to_string();
    assert!(e.contains("line 2: http.listen_address"), "{e}");
}

#[test]
fn threshold_rules_fill_override_ignore() {
    let src = "[[sensors.thresholds]]\nchip = \"thermal_zone*\"\ncritical = 90\nmode = \"fill\"\n[[sensors.thresholds]]\nchip = \"nvme*\"\nmax = 70\n[[sensors.thresholds]]\nchip = \"broken\"\nignore = true\n";
    let c = parse(src).expect("valid");
    let mut rs = vec![
        crate::thermal::Reading::new("thermal_zone0", "cpu", 40.0, "t"),
        crate::thermal::Reading {
            max_celsius: Some(80.0),
            ..crate::thermal::Reading::new("nvme_0", "temp1", 40.0, "t")
        },
        crate::thermal::Reading::new("broken", "temp1", 40.0, "t"),
    ];
    rs[0].critical_celsius = None;
    apply_thresholds(&c.sensors.thresholds, &mut rs);
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].critical_celsius, Some(90.0));
    assert_eq!(rs[1].max_celsius, Some(70.0));
    let e = parse("[[sensors.thresholds]]\nchip = \"x\"\n")
        .expect_err("empty rule")
        .to_string();
    assert!(e.contains("line 1: sensors.thresholds[0]"), "{e}");
}

#[test]
fn http_advertise_takes_host_and_port_and_names_the_line_of_a_bad_one() {
    let c = parse("[http]\nadvertise = \"srv12.room.example:10027\"\n").expect("good");
    assert_eq!(
        c.http.advertise.as_deref(),
        Some("srv12.room.example:10027")
    );
    let c = parse("[http]\nadvertise = \"[2001:db8::12]:10027\"\n").expect("good");
    assert_eq!(c.http.advertise.as_deref(), Some("[2001:db8::12]:10027"));
    for bad in ["srv12", "http://srv12:10027", "srv12:0", "srv12:10027/x"] {
        let e = parse(&format!("[http]\n\nadvertise = \"{bad}\"\n"))
            .expect_err(bad)
            .to_string();
        assert!(e.starts_with("line 3: http.advertise: "), "{bad}: {e}");
        assert!(e.contains("is not host:port"), "{bad}: {e}");
    }
}

#[test]
fn shutdown_stage_and_its_timeout() {
    let d = Config::default();
    assert_eq!(d.shutdown.stage, crate::stage::DEFAULT_STAGE);
    assert_eq!(
        d.shutdown.stage_timeout,
        crate::fsm::FsmConfig::default().stage_timeout
    );
    let c = parse("[shutdown]\nstage = 1\nstage_timeout = \"45s\"\n").expect("valid");
    assert_eq!(c.shutdown.stage, 1);
    assert_eq!(c.shutdown.stage_timeout, Duration::from_secs(45));
    assert_eq!(
        crate::agent::fsm_config(&c).stage_timeout,
        Duration::from_secs(45)
    );
    let errs = parse("[shutdown]\nstage = -1\nstage_timeout = \"soon\"\nstages = 2\n")
        .expect_err("invalid")
        .0;
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    for (key, line, needle) in [
        ("shutdown.stage", 2, "out of range"),
        ("shutdown.stage_timeout", 3, "not a duration"),
        ("shutdown.stages", 4, "did you mean `stage`"),
    ] {
        assert!(
            errs.iter()
                .any(|e| e.key == key && e.line == Some(line) && e.message.contains(needle)),
            "missing {key} line {line} {needle:?} in {shown:#?}"
        );
    }
    assert_eq!(errs.len(), 3, "{shown:#?}");
}

#[test]
fn power_on_section() {
    let d = Config::default();
    assert_eq!(d.power_on, crate::power_on::PowerOnConfig::default());
    assert!(!d.power_on.enabled, "nothing is sent unless asked");
    let c = parse(
        "[power_on]\nenabled = true\nmac = \"02:00:00:00:00:0A\"\nbroadcast = \"10.0.0.255:9\"\nsettle = \"5m\"\ngive_up = \"20m\"\nretry = \"10s\"\ncontroller = \"ups-host\"\n",
    )
    .expect("valid");
    assert!(c.power_on.enabled);
    assert_eq!(c.power_on.mac, Some([2, 0, 0, 0, 0, 0x0a]));
    assert_eq!(c.power_on.broadcast, "10.0.0.255:9".parse().unwrap());
    assert_eq!(c.power_on.settle, Duration::from_secs(300));
    assert_eq!(c.power_on.give_up, Duration::from_secs(1200));
    assert_eq!(c.power_on.retry, Duration::from_secs(10));
    assert_eq!(c.power_on.controller.as_deref(), Some("ups-host"));
    let errs = parse("[power_on]\nmac = \"02:00:00\"\nbroadcast = \"nowhere\"\ngive_up = \"0s\"\nretry = \"10ms\"\n")
        .expect_err("invalid")
        .0;
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    for (key, line) in [
        ("power_on.mac", 2),
        ("power_on.broadcast", 3),
        ("power_on.give_up", 4),
        ("power_on.retry", 5),
    ] {
        assert!(
            errs.iter().any(|e| e.key == key && e.line == Some(line)),
            "missing {key} line {line} in {shown:#?}"
        );
    }
    assert_eq!(errs.len(), 4, "{shown:#?}");
}
