//! Tests of `targets`: the target grammar, one table.

use super::*;

fn v4(a: u8, b: u8, c: u8, d: u8) -> Host {
    Host::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

#[test]
fn good_targets() {
    let lo6 = Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let cases: Vec<(&str, TargetKind)> = vec![
        (
            "icmp://10.0.0.254",
            TargetKind::Icmp {
                host: v4(10, 0, 0, 254),
            },
        ),
        (
            "icmp://10.0.0.254/",
            TargetKind::Icmp {
                host: v4(10, 0, 0, 254),
            },
        ),
        (
            "ICMP://ac-unit.local",
            TargetKind::Icmp {
                host: Host::Name("ac-unit.local".into()),
            },
        ),
        (
            "ping://ac1",
            TargetKind::Icmp {
                host: Host::Name("ac1".into()),
            },
        ),
        ("icmp://[::1]", TargetKind::Icmp { host: lo6.clone() }),
        ("icmp://::1", TargetKind::Icmp { host: lo6.clone() }),
        (
            "  icmp://pdu.example.  ",
            TargetKind::Icmp {
                host: Host::Name("pdu.example.".into()),
            },
        ),
        (
            "tcp://10.0.0.253:22",
            TargetKind::Tcp {
                host: v4(10, 0, 0, 253),
                port: 22,
            },
        ),
        (
            "tcp://[::1]:65535",
            TargetKind::Tcp {
                host: lo6.clone(),
                port: 65535,
            },
        ),
        (
            "tcp://my_host-1.lan:80",
            TargetKind::Tcp {
                host: Host::Name("my_host-1.lan".into()),
                port: 80,
            },
        ),
        (
            "http://pdu.local/status",
            TargetKind::Http {
                host: Host::Name("pdu.local".into()),
                port: 80,
                authority: "pdu.local".into(),
                path: "/status".into(),
            },
        ),
        (
            "http://10.0.0.9",
            TargetKind::Http {
                host: v4(10, 0, 0, 9),
                port: 80,
                authority: "10.0.0.9".into(),
                path: "/".into(),
            },
        ),
        (
            "http://[::1]:8080?x=1",
            TargetKind::Http {
                host: lo6,
                port: 8080,
                authority: "[::1]:8080".into(),
                path: "/?x=1".into(),
            },
        ),
        (
            "http://h:81/a/b?c=d&e",
            TargetKind::Http {
                host: Host::Name("h".into()),
                port: 81,
                authority: "h:81".into(),
                path: "/a/b?c=d&e".into(),
            },
        ),
        (
            "exec:/usr/bin/upsc ups@localhost ups.status",
            TargetKind::Exec {
                program: "/usr/bin/upsc".into(),
                args: vec!["ups@localhost".into(), "ups.status".into()],
            },
        ),
        (
            "exec:sh -c 'upsc ups@localhost ups.status | grep -qw OL'",
            TargetKind::Exec {
                program: "sh".into(),
                args: vec![
                    "-c".into(),
                    "upsc ups@localhost ups.status | grep -qw OL".into(),
                ],
            },
        ),
        (
            "nut://localhost/ups",
            TargetKind::Nut {
                host: Host::Name("localhost".into()),
                port: 3493,
                ups: "ups".into(),
                user: None,
                ca_file: None,
            },
        ),
        (
            "nuts://mon@ups1.example/ups?ca=/etc/coolmesh/nut-ca.pem",
            TargetKind::Nut {
                host: Host::Name("ups1.example".into()),
                port: 3493,
                ups: "ups".into(),
                user: Some("mon".into()),
                ca_file: Some("/etc/coolmesh/nut-ca.pem".into()),
            },
        ),
        (
            "NUT://10.0.0.5:3494/rack-1.a/",
            TargetKind::Nut {
                host: v4(10, 0, 0, 5),
                port: 3494,
                ups: "rack-1.a".into(),
                user: None,
                ca_file: None,
            },
        ),
        (
            "nut://mon@[::1]/ups",
            TargetKind::Nut {
                host: Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                port: 3493,
                ups: "ups".into(),
                user: Some("mon".into()),
                ca_file: None,
            },
        ),
        (
            "EXEC: /bin/true",
            TargetKind::Exec {
                program: "/bin/true".into(),
                args: vec![],
            },
        ),
    ];
    for (s, kind) in cases {
        let spec = parse_target(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(spec.kind, kind, "{s}");
        assert_eq!(spec.label, s.trim(), "{s}");
    }
}

#[test]
fn bad_targets_say_what_to_write() {
    // (input, substrings the message must contain)
    let cases: &[(&str, &[&str])] = &[
        ("", &["empty power target", "icmp://HOST"]),
        ("   ", &["empty power target"]),
        ("10.0.0.254", &["no scheme", "icmp://10.0.0.254"]),
        ("10.0.0.253:22", &["no scheme", "tcp://10.0.0.253:22"]),
        ("icmp:10.0.0.254", &["missing the //", "icmp://10.0.0.254"]),
        (
            "udp://10.0.0.1:53",
            &["unknown power target scheme \"udp\"", "tcp://HOST:PORT"],
        ),
        (
            "tcp://10.0.0.253",
            &[
                "tcp target needs a port: tcp://10.0.0.253",
                "write tcp://10.0.0.253:22",
            ],
        ),
        ("tcp://[::1]", &["needs a port", "tcp://[::1]:22"]),
        ("tcp://::1", &["needs a port", "tcp://[::1]:22"]),
        ("tcp://h:0", &["bad port \"0\"", "1-65535"]),
        ("tcp://h:65536", &["bad port \"65536\""]),
        ("tcp://h:ssh", &["bad port \"ssh\""]),
        ("tcp://h:+22", &["bad port \"+22\""]),
        ("tcp://h:", &["empty port"]),
        ("tcp://h:22/x", &["tcp target takes no path"]),
        ("tcp://:22", &["has no host"]),
        ("tcp://", &["has no host"]),
        (
            "icmp://10.0.0.1:22",
            &[
                "icmp target takes no port",
                "icmp://10.0.0.1",
                "tcp://10.0.0.1:22",
            ],
        ),
        ("icmp://h/x", &["icmp target takes no path"]),
        ("icmp://10.0.0.256", &["not a valid IPv4 address"]),
        ("icmp://010.0.0.1", &["not a valid IPv4 address"]),
        ("icmp://bad host", &["not a valid host name"]),
        ("icmp://-bad", &["not a valid host name"]),
        ("icmp://a..b", &["not a valid host name"]),
        ("icmp://[::1", &["unclosed ["]),
        ("icmp://[zz::1]", &["not a valid IPv6 address"]),
        ("icmp://[::1]x", &["unexpected \"x\" after ]"]),
        ("icmp://1:2:3", &["not a valid host", "brackets"]),
        (
            "https://pdu.local/status",
            &[
                "https targets are not supported",
                "exec:/usr/bin/curl",
                "https://pdu.local/status",
            ],
        ),
        (
            "http://user:pw@pdu/",
            &["must not carry credentials", "curl"],
        ),
        ("http://pdu/#top", &["#fragment"]),
        (
            "http://pdu/a b",
            &["bad path in http target", "percent-encode"],
        ),
        ("http://pdu:99999/", &["bad port \"99999\""]),
        ("http:///status", &["has no host"]),
        ("exec:", &["exec target needs a command", "grep -qw OL"]),
        ("exec:   ", &["exec target needs a command"]),
        ("exec:'' x", &["exec target needs a command"]),
        (
            "exec:sh -c 'unclosed",
            &["cannot split exec target", "close every quote"],
        ),
        ("exec:bin/upsc x", &["relative path", "absolute path"]),
        ("exec://usr/bin/upsc", &["exec targets take no //"]),
        (
            "nut://ups@localhost",
            &["needs the UPS name after a /", "nut://localhost/ups"],
        ),
        (
            "nut://localhost",
            &["needs the UPS name", "nut://[USER@]HOST"],
        ),
        ("nut://localhost/", &["empty UPS name", "upsc -l"]),
        ("nut://localhost/a b", &["bad UPS name \"a b\""]),
        ("nut://localhost/a/b", &["bad UPS name \"a/b\""]),
        ("nut://localhost/ups\"x", &["bad UPS name"]),
        ("nut:///ups", &["has no host"]),
        ("nut://localhost:0/ups", &["bad port \"0\""]),
        ("nut://localhost:nut/ups", &["bad port \"nut\""]),
        (
            "nut://mon:secret@localhost/ups",
            &["must not carry a password", "nut://mon@HOST/UPS"],
        ),
        (
            "nut://localhost/ups?tls=1",
            &["takes no parameters: ?tls=1", "nuts://HOST/UPS?ca=FILE"],
        ),
        ("nut://m o@localhost/ups", &["bad user name"]),
        ("nut://localhost/ups#x", &["#fragment"]),
        (
            "nuts://localhost/ups",
            &["needs the CA that signed upsd's certificate", "?ca=FILE"],
        ),
        ("nuts://localhost/ups?ca=", &["needs the CA"]),
        (
            "nuts://localhost/ups?ca=ca.pem",
            &["must be an absolute path"],
        ),
        (
            "nuts://localhost/ups?ca=/a.pem&verify=0",
            &["takes one parameter, ca=FILE", "\"verify=0\""],
        ),
        ("nuts://localhost/ups?ca=/a&ca=/b", &["takes one parameter"]),
        (
            "nut:localhost/ups",
            &["missing the //", "nut://localhost/ups"],
        ),
    ];
    for (s, needles) in cases {
        let e = match parse_target(s) {
            Ok(spec) => panic!("{s:?} parsed as {spec:?}"),
            Err(e) => e,
        };
        for n in *needles {
            assert!(e.message.contains(n), "{s:?}: {:?} lacks {n:?}", e.message);
        }
        assert_eq!(e.to_string(), e.message);
    }
}

#[test]
fn list_rejects_duplicates() {
    assert!(parse_targets(&["icmp://10.0.0.1", "tcp://10.0.0.1:22"]).is_ok());
    let e = parse_targets(&["icmp://10.0.0.1", " icmp://10.0.0.1"]).err();
    assert!(e.is_some_and(|e| e.message.contains("listed twice")));
    let e = parse_targets(&["icmp://10.0.0.1", "tcp://x"]).err();
    assert!(e.is_some_and(|e| e.target == "tcp://x"));
    assert_eq!(parse_targets::<&str>(&[]), Ok(vec![]));
}
