//! Tests of `nut`.

use super::super::test_util::{FakeResolver, LOOPBACK};
use super::super::Outcome;
use super::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::rustls;

const T: Duration = Duration::from_secs(2);

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

#[test]
fn status_table() {
    use Outcome::{Down, Unknown, Up};
    // status, runtime, outcome, urgent
    let cases: &[(&str, Option<Duration>, Outcome, bool)] = &[
        ("OL", secs(900), Up, false),
        ("OL CHRG", None, Up, false),
        ("OL CHRG LB", secs(30), Up, false), // recharging after an outage
        ("OL BYPASS", None, Up, false),
        ("OL TRIM", None, Up, false),
        ("FSD OL", None, Up, false), // mains is there: never a shutdown from us
        ("OL DISCHRG CAL", None, Up, false),
        ("OB", secs(600), Down, false),
        ("OB DISCHRG", secs(600), Down, false),
        ("OB DISCHRG LB", secs(90), Down, true),
        ("OB LB", None, Down, true),
        ("FSD OB", None, Down, true),
        ("FSD OB LB", secs(10), Down, true),
        ("  OB   LB  ", None, Down, true),
        ("OL OB", None, Unknown, false),
        ("", None, Unknown, false),
        ("OFF", None, Unknown, false),
        ("WAIT", None, Unknown, false),
        ("LB", None, Unknown, false),
        ("FSD", None, Unknown, false),
        ("ol", None, Unknown, false), // flags are upper case
        ("OLD", None, Unknown, false),
        ("OBX LB", None, Unknown, false),
    ];
    for (status, runtime, want, urgent) in cases {
        let (res, ups) = judge(status, *runtime);
        assert_eq!(Outcome::of(&res), *want, "{status:?}: {res:?}");
        let got_urgent = ups.is_some_and(|u| u.urgent);
        assert_eq!(got_urgent, *urgent, "{status:?}");
        match want {
            Up => assert_eq!(
                ups,
                Some(UpsReading {
                    on_battery: false,
                    urgent: false,
                    runtime: *runtime
                })
            ),
            Down => {
                let u = ups.expect("a reading on battery");
                assert!(u.on_battery);
                assert_eq!(u.runtime, *runtime);
                let msg = res.unwrap_err().to_string();
                assert!(msg.starts_with("UPS on battery (ups.status "), "{msg}");
                assert_eq!(msg.contains("low battery"), status.contains("LB"), "{msg}");
            }
            Unknown => {
                assert_eq!(ups, None);
                assert!(matches!(res, Err(ProbeError::NoReading(_))), "{res:?}");
            }
        }
    }
}

#[test]
fn var_lines() {
    let p = |l: &str| parse_var(l, "ups", "ups.status");
    assert_eq!(p("VAR ups ups.status \"OL\""), Some("OL".into()));
    assert_eq!(p("VAR ups ups.status \"OB LB\"  "), Some("OB LB".into()));
    assert_eq!(
        p("VAR ups ups.status \"a\\\"b\\\\c\""),
        Some("a\"b\\c".into())
    );
    assert_eq!(p("VAR ups ups.status \"\""), Some(String::new()));
    for bad in [
        "ERR DATA-STALE",
        "VAR ups ups.status OL",
        "VAR ups ups.status \"OL",
        "VAR ups ups.status \"OL\" trailing",
        "VAR ups ups.status \"OL\\",
        "VAR ups2 ups.status \"OL\"",
        "VAR upsx ups.status \"OL\"",
        "VAR ups battery.runtime \"OL\"",
        "VAR ups ups.statusx \"OL\"",
        "var ups ups.status \"OL\"",
        "",
    ] {
        assert_eq!(p(bad), None, "{bad:?}");
    }
    assert_eq!(parse_runtime("342"), secs(342));
    assert_eq!(
        parse_runtime(" 342.50 "),
        Some(Duration::from_millis(342_500))
    );
    for bad in ["", "-1", "NaN", "inf", "1e12", "ten", "0x10"] {
        assert_eq!(parse_runtime(bad), None, "{bad:?}");
    }
}

/// What the fake upsd does with each request line.
#[derive(Clone)]
enum Script {
    /// Answer like upsd with this status and runtime (`None`: the UPS
    /// does not report a runtime).
    Ups(&'static str, Option<&'static str>),
    /// Answer every request with these bytes.
    Raw(&'static [u8]),
    /// Answer the first request with these bytes, then close.
    RawThenClose(&'static [u8]),
    /// Accept, read, never answer.
    Silent,
    /// Accept and close at once.
    Close,
    /// Send one endless line without a newline.
    Flood,
    /// Take USERNAME mon, refuse any other user.
    Login(&'static str),
}

/// A fake upsd on 127.0.0.1 serving `script` to every connection;
/// returns the port and the lines it received.
async fn fake_upsd(script: Script) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let script = script.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = s.into_split();
                let mut rd = BufReader::new(rd);
                match script {
                    Script::Close => return,
                    Script::Flood => {
                        let chunk = [b'A'; 4096];
                        while wr.write_all(&chunk).await.is_ok() {}
                        return;
                    }
                    _ => {}
                }
                loop {
                    let mut line = String::new();
                    if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end().to_string();
                    log.lock().unwrap().push(line.clone());
                    let reply: Vec<u8> = match &script {
                        Script::Silent => continue,
                        Script::Raw(b) => b.to_vec(),
                        Script::RawThenClose(b) => {
                            let _ = wr.write_all(b).await;
                            return;
                        }
                        Script::Login(status) => {
                            if line == "USERNAME mon" {
                                b"OK\n".to_vec()
                            } else if line.starts_with("USERNAME") {
                                b"ERR ACCESS-DENIED\n".to_vec()
                            } else if line == "GET VAR ups ups.status" {
                                format!("VAR ups ups.status \"{status}\"\n").into_bytes()
                            } else {
                                b"ERR VAR-NOT-SUPPORTED\n".to_vec()
                            }
                        }
                        Script::Ups(status, runtime) => {
                            if line == "LOGOUT" {
                                let _ = wr.write_all(b"OK Goodbye\n").await;
                                return;
                            }
                            match line.as_str() {
                                "GET VAR ups ups.status" => {
                                    format!("VAR ups ups.status \"{status}\"\n").into_bytes()
                                }
                                "GET VAR ups battery.runtime" => match runtime {
                                    Some(r) => {
                                        format!("VAR ups battery.runtime \"{r}\"\n").into_bytes()
                                    }
                                    None => b"ERR VAR-NOT-SUPPORTED\n".to_vec(),
                                },
                                l if l.starts_with("GET VAR ") => b"ERR UNKNOWN-UPS\n".to_vec(),
                                _ => b"ERR UNKNOWN-COMMAND\n".to_vec(),
                            }
                        }
                        Script::Close | Script::Flood => unreachable!(),
                    };
                    if wr.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

fn probe(port: u16, ups: &str) -> NutProbe {
    NutProbe::new(
        "nut://test",
        LOOPBACK,
        port,
        ups,
        None,
        Arc::new(FakeResolver::Fail),
    )
}

#[tokio::test]
async fn reads_status_and_runtime_and_logs_out() {
    let (port, seen) = fake_upsd(Script::Ups("OB DISCHRG LB", Some("95"))).await;
    let (res, ups) = probe(port, "ups").probe_ups(T).await;
    assert_eq!(Outcome::of(&res), Outcome::Down, "{res:?}");
    assert_eq!(
        ups,
        Some(UpsReading {
            on_battery: true,
            urgent: true,
            runtime: secs(95)
        })
    );
    assert_eq!(
        res.unwrap_err().to_string(),
        "UPS on battery (ups.status \"OB DISCHRG LB\"), battery.runtime 95s, low battery"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "GET VAR ups ups.status",
            "GET VAR ups battery.runtime",
            "LOGOUT"
        ]
    );

    let (port, _) = fake_upsd(Script::Ups("OL CHRG", None)).await;
    let (res, ups) = probe(port, "ups").probe_ups(T).await;
    res.unwrap();
    assert_eq!(ups.and_then(|u| u.runtime), None, "no runtime reported");
    // The plain probe agrees.
    probe(port, "ups").probe(T).await.unwrap();
}

#[tokio::test]
async fn every_failure_is_unknown_never_down() {
    let long: &'static [u8] = Box::leak(
        format!("VAR ups ups.status \"{}\"\n", "OB ".repeat(400))
            .into_bytes()
            .into_boxed_slice(),
    );
    // (script, UPS name, words the reason must contain)
    let cases: Vec<(Script, &str, &str)> = vec![
        (Script::Raw(b"ERR DATA-STALE\n"), "ups", "data stale"),
        (
            Script::Raw(b"ERR ACCESS-DENIED\n"),
            "ups",
            "refused this client",
        ),
        (
            Script::Raw(b"ERR DRIVER-NOT-CONNECTED\n"),
            "ups",
            "no driver",
        ),
        (Script::Ups("OB", None), "other", "no such UPS"),
        (
            Script::Raw(b"ERR SOMETHING-NEW extra\n"),
            "ups",
            "ERR SOMETHING-NEW",
        ),
        (
            Script::Raw(b"HTTP/1.1 400 Bad Request\r\n"),
            "ups",
            "not the NUT protocol",
        ),
        (
            Script::Raw(b"VAR ups ups.status \"OB\n"),
            "ups",
            "not the NUT protocol",
        ),
        (
            Script::Raw(b"VAR ups ups.status \"\xff\xfe\"\n"),
            "ups",
            "not UTF-8",
        ),
        (Script::Raw(long), "ups", "longer than 512"),
        (
            Script::RawThenClose(b"VAR ups ups.status \"OB"),
            "ups",
            "closed the connection in the middle",
        ),
        (Script::Raw(b""), "ups", "did not answer"),
        (Script::Flood, "ups", "longer than 512"),
        (Script::Close, "ups", "closed the connection"),
        (Script::Silent, "ups", "did not answer within"),
        (Script::Ups("OL OB", None), "ups", "both OL and OB"),
        (Script::Ups("WAIT", None), "ups", "neither OL nor OB"),
        (Script::Ups("", Some("300")), "ups", "neither OL nor OB"),
    ];
    for (script, ups, needle) in cases {
        let (port, _) = fake_upsd(script).await;
        let started = Instant::now();
        let (res, reading) = probe(port, ups).probe_ups(Duration::from_millis(500)).await;
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{needle}: bounded by the timeout"
        );
        assert_eq!(Outcome::of(&res), Outcome::Unknown, "{needle}: {res:?}");
        assert_eq!(reading, None, "{needle}");
        let msg = res.unwrap_err().to_string();
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert!(msg.len() < 300, "bounded message: {msg}");
    }
}

#[tokio::test]
async fn a_dead_or_unresolvable_upsd_is_unknown() {
    let (_refusing, port) = super::super::test_util::refused_port();
    let res = probe(port, "ups").probe(T).await;
    assert_eq!(Outcome::of(&res), Outcome::Unknown, "{res:?}");
    assert!(res.unwrap_err().to_string().contains("refused"));

    let p = NutProbe::new(
        "n",
        Host::Name("ups.test".into()),
        port,
        "ups",
        None,
        Arc::new(FakeResolver::Fail),
    );
    let res = p.probe(T).await;
    assert_eq!(Outcome::of(&res), Outcome::Unknown, "{res:?}");
    let hang = NutProbe::new(
        "n",
        Host::Name("ups.test".into()),
        port,
        "ups",
        None,
        Arc::new(FakeResolver::Hang),
    );
    let res = hang.probe(Duration::from_millis(100)).await;
    assert_eq!(Outcome::of(&res), Outcome::Unknown, "{res:?}");
    // The runner's safety net says the same.
    assert!(hang.overrun(T).is_unknown());
}

#[tokio::test]
async fn sends_the_user_name_and_takes_a_refusal_as_unknown() {
    let (port, seen) = fake_upsd(Script::Login("OL")).await;
    let as_user = |user: &str| {
        NutProbe::new(
            "n",
            LOOPBACK,
            port,
            "ups",
            Some(user.into()),
            Arc::new(FakeResolver::Fail),
        )
    };
    as_user("mon").probe(T).await.unwrap();
    assert_eq!(
        seen.lock().unwrap()[..2],
        ["USERNAME mon", "GET VAR ups ups.status"]
    );
    let res = as_user("eve").probe(T).await;
    assert_eq!(Outcome::of(&res), Outcome::Unknown, "{res:?}");
    assert!(res
        .unwrap_err()
        .to_string()
        .contains("USERNAME with ERR ACCESS-DENIED"));
}

#[tokio::test]
async fn read_line_is_capped_and_strips_crlf() {
    let mut r = BufReader::with_capacity(7, &b"OK\r\nVAR x\n"[..]);
    assert_eq!(read_line(&mut r).await.unwrap(), "OK");
    assert_eq!(read_line(&mut r).await.unwrap(), "VAR x");
    assert!(read_line(&mut r).await.is_err());
    // Exactly at the cap (newline included) passes; one more does not.
    let ok = format!("{}\n", "a".repeat(MAX_LINE - 1));
    let mut r = BufReader::with_capacity(64, ok.as_bytes());
    assert_eq!(read_line(&mut r).await.unwrap().len(), MAX_LINE - 1);
    let bad = format!("{}\n", "a".repeat(MAX_LINE));
    let mut r = BufReader::with_capacity(64, bad.as_bytes());
    let e = read_line(&mut r).await.unwrap_err();
    assert!(e.is_unknown(), "{e:?}");
    let mut drained = Vec::new();
    r.read_to_end(&mut drained).await.unwrap();
    assert!(drained.len() <= bad.len());
}

/// (CA PEM, server certificate PEM for 127.0.0.1, its key PEM).
fn test_pki(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "nut test CA");
    let ca = p.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let p = CertificateParams::new(vec![name.to_string()]).expect("params");
    let cert = p.signed_by(&key, &ca, &ca_key).expect("sign");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A fake upsd that answers STARTTLS (`starttls` is its answer line),
/// then serves `OL` over TLS with `cert`/`key` when the answer was OK.
async fn fake_upsd_tls(starttls: &'static str, cert: String, key: String) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut s = BufReader::new(s);
                let mut line = String::new();
                if s.read_line(&mut line).await.unwrap_or(0) == 0 || line != "STARTTLS\n" {
                    return;
                }
                if s.get_mut().write_all(starttls.as_bytes()).await.is_err()
                    || !starttls.starts_with("OK")
                {
                    return;
                }
                let Ok(tls) = acceptor.accept(s.into_inner()).await else {
                    return;
                };
                let mut tls = BufReader::new(tls);
                loop {
                    let mut line = String::new();
                    if tls.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let reply: &[u8] = match line.trim_end() {
                        "GET VAR ups ups.status" => b"VAR ups ups.status \"OL\"\n",
                        "LOGOUT" => b"OK Goodbye\n",
                        _ => b"ERR VAR-NOT-SUPPORTED\n",
                    };
                    if tls.get_mut().write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn starttls_reads_over_tls_and_every_tls_failure_is_unknown() {
    let (ca, cert, key) = test_pki("127.0.0.1");
    let tls = |ca: &str| tls_client_config(ca.as_bytes()).expect("client config");
    let port = fake_upsd_tls("OK STARTTLS\n", cert.clone(), key.clone()).await;
    let p = probe(port, "ups").with_tls(tls(&ca)).expect("tls");
    let (res, ups) = p.probe_ups(T).await;
    res.expect("OL over TLS is up");
    assert_eq!(ups.map(|u| u.on_battery), Some(false));

    // A certificate from another CA: refused, unknown (not down).
    let (other_ca, _, _) = test_pki("127.0.0.1");
    let p = probe(port, "ups").with_tls(tls(&other_ca)).expect("tls");
    let res = p.probe(T).await;
    assert_eq!(Outcome::of(&res), Outcome::Unknown, "{res:?}");
    assert!(res
        .unwrap_err()
        .to_string()
        .contains("TLS with upsd failed"));

    // A certificate for another name: refused too.
    let (ca2, cert2, key2) = test_pki("ups.example");
    let port2 = fake_upsd_tls("OK STARTTLS\n", cert2, key2).await;
    let p = probe(port2, "ups").with_tls(tls(&ca2)).expect("tls");
    let res = p.probe(T).await;
    assert_eq!(Outcome::of(&res), Outcome::Unknown, "{res:?}");

    // upsd without a certificate: unknown, and the reason says so.
    let port3 = fake_upsd_tls("ERR FEATURE-NOT-CONFIGURED\n", cert, key).await;
    let p = probe(port3, "ups").with_tls(tls(&ca)).expect("tls");
    let res = p.probe(T).await;
    assert_eq!(Outcome::of(&res), Outcome::Unknown, "{res:?}");
    assert!(res.unwrap_err().to_string().contains("CERTFILE"));

    // A CA file that holds no certificate is refused at setup.
    assert!(tls_client_config(b"not a pem").is_err());
}
