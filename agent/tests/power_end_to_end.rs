//! End to end through the public API: target strings in, observations and
//! metrics out, against real listeners on 127.0.0.1 only.

mod power {
    use coolmesh_agent::power::{
        build_probes, icmp_preflight, parse_targets, run, Policy, PowerMetrics, RunConfig,
    };
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// An HTTP server on 127.0.0.1 answering every request with `status`.
    async fn http_server(status: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn observations_and_metrics_from_config_strings() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp_port = tcp.local_addr().unwrap().port();
        // Bound but never listening: connections are refused, and the port
        // stays ours (a listener bound and dropped frees it for anyone).
        let closed =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        closed
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        let closed_port = closed.local_addr().unwrap().as_socket().unwrap().port();
        let ok_port = http_server("200 OK").await;
        let err_port = http_server("503 Service Unavailable").await;

        let mut targets = vec![
            format!("tcp://127.0.0.1:{tcp_port}"),
            format!("tcp://127.0.0.1:{closed_port}"),
            format!("http://127.0.0.1:{ok_port}/status"),
            format!("http://127.0.0.1:{err_port}/"),
            "exec:/bin/sh -c 'exit 0'".to_string(),
            "exec:false".to_string(),
        ];
        let icmp = icmp_preflight().is_ok();
        if icmp {
            targets.push("icmp://127.0.0.1".to_string());
        } else {
            println!("no ICMP here; icmp target left out");
        }
        let specs = parse_targets(&targets).unwrap();
        let probes = build_probes(&specs).unwrap();

        let registry = prometheus::Registry::new();
        let metrics = PowerMetrics::new().unwrap();
        metrics.register(&registry).unwrap();
        let (tx, mut rx) = mpsc::channel(2);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = RunConfig {
            interval: Duration::from_millis(200),
            jitter_fraction: 0.1,
            timeout: Duration::from_secs(2),
        };
        let runner = tokio::spawn(run(probes, Policy::Majority, config, metrics, tx, async {
            let _ = stopped.await;
        }));

        for _ in 0..2 {
            let obs = rx.recv().await.unwrap();
            let got: Vec<(&str, bool)> = obs
                .targets
                .iter()
                .map(|t| (t.target.as_str(), t.up))
                .collect();
            let mut want = vec![
                (targets[0].as_str(), true),
                (targets[1].as_str(), false),
                (targets[2].as_str(), true),
                (targets[3].as_str(), false),
                (targets[4].as_str(), true),
                (targets[5].as_str(), false),
            ];
            if icmp {
                want.push((targets[6].as_str(), true));
            }
            assert_eq!(got, want);
            // 3 of 6 up is not a majority; with ICMP it is 4 of 7.
            assert_eq!(obs.up, Some(icmp));
            let errors: Vec<Option<&str>> =
                obs.targets.iter().map(|t| t.error.as_deref()).collect();
            assert!(errors[1].unwrap().contains("refused"), "{errors:?}");
            assert_eq!(
                errors[3],
                Some("HTTP status 503 Service Unavailable (only 2xx means up)")
            );
            assert_eq!(errors[5], Some("exit status 1"));
            assert!(obs
                .targets
                .iter()
                .all(|t| t.duration < Duration::from_secs(2)));
        }
        let _ = stop.send(());
        runner.await.unwrap();

        let mut text = String::new();
        for f in registry.gather() {
            for m in f.get_metric() {
                let get = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                let label = get("target");
                if f.name() == "coolmesh_power_probe_failures_total" {
                    text.push_str(&format!(
                        "{} {label} {} {}\n",
                        f.name(),
                        get("kind"),
                        m.get_counter().get_value()
                    ));
                } else {
                    text.push_str(&format!(
                        "{} {label} {}\n",
                        f.name(),
                        m.get_histogram().get_sample_count()
                    ));
                }
            }
        }
        assert!(
            text.contains(&format!(
                "coolmesh_power_probe_failures_total tcp://127.0.0.1:{closed_port} target "
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "coolmesh_power_probe_failures_total tcp://127.0.0.1:{tcp_port} target 0\n"
            )),
            "{text}"
        );
        // A refusal, an HTTP 503, a failing command: the targets answered,
        // so none of it is a local error.
        for line in text.lines().filter(|l| l.contains(" local ")) {
            assert!(line.ends_with(" local 0"), "{text}");
        }
        assert!(
            text.contains("coolmesh_power_probe_failures_total exec:false target "),
            "{text}"
        );
        assert!(
            !text.contains("coolmesh_power_probe_duration_seconds exec:false 0\n"),
            "{text}"
        );
    }

    #[test]
    fn bad_configuration_fails_before_anything_runs() {
        let e = parse_targets(&["icmp://10.0.0.254", "tcp://10.0.0.253"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tcp target needs a port: tcp://10.0.0.253 — write tcp://10.0.0.253:22"
        );
        let e = parse_targets(&["https://pdu.local/"]).unwrap_err();
        assert!(e.to_string().contains("exec:/usr/bin/curl"), "{e}");
        let specs = parse_targets(&["exec:/usr/sbin/coolmesh-missing-upsc ups@localhost"]).unwrap();
        let e = build_probes(&specs).err().unwrap();
        assert_eq!(
            e.to_string(),
            "power target exec:/usr/sbin/coolmesh-missing-upsc ups@localhost: program /usr/sbin/coolmesh-missing-upsc does not exist"
        );
    }
}
