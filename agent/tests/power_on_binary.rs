//! Ordered power-on with real agents on loopback: a UDP listener stands in
//! for the broadcast domain and counts the Wake-on-LAN magic packets per
//! MAC.
//!
//! `ctl` (the only node with `power_on.enabled`) rides the outage out in
//! `pre_fail` (a long grace); `compute` (stage 0) and `storage` (stage 1)
//! shut down (dry run: they stay up in `shutdown`, so they never come
//! "back"). When mains returns and stays up for `settle`, `ctl` wakes
//! storage first, every `retry`, gives it up after `give_up`, then compute;
//! both give-ups are counted, and no packet is sent before mains is back.

mod common;
use common::*;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "power-on-test-token-0123456789";
const COMPUTE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const STORAGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn config(
    dir: &Path,
    name: &str,
    power_port: u16,
    seed: Option<u16>,
    shutdown: &str,
    power_on: &str,
) -> PathBuf {
    let path = write_cluster_config(&ClusterNodeConfig {
        dir,
        name,
        token: TOKEN,
        cluster: "wake",
        p2p: 0,
        seed,
        power_port,
        extra_cluster: "",
    });
    let text = shutdown_replaced(&path, shutdown);
    std::fs::write(&path, format!("{text}\n[power_on]\n{power_on}")).expect("config");
    path
}

fn start(cfg: &Path) -> Agent {
    start_agent(&[
        "--config",
        cfg.to_str().expect("utf-8 path"),
        "--cluster.name",
        "wake",
    ])
}

/// When a packet arrived, and the MAC it wakes (`None`: not a magic packet).
type Packet = (Instant, Option<[u8; 6]>);

/// The MAC a packet wakes, if it is a well-formed magic packet.
fn magic_mac(p: &[u8]) -> Option<[u8; 6]> {
    if p.len() != 102 || p[..6] != [0xFF; 6] {
        return None;
    }
    let mac: [u8; 6] = p[6..12].try_into().ok()?;
    p[6..].chunks(6).all(|c| c == mac).then_some(mac)
}

#[test]
fn mains_back_wakes_storage_then_compute_and_gives_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut power = PowerTarget::new();
    // The "broadcast domain": packets to 127.0.0.1:port, with their time.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let udp_port = udp.local_addr().expect("addr").port();
    udp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let got: Arc<Mutex<Vec<Packet>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let (got, stop) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok((n, _)) = udp.recv_from(&mut buf) {
                    got.lock()
                        .expect("lock")
                        .push((Instant::now(), magic_mac(&buf[..n])));
                }
            }
        })
    };

    let ctl_cfg = config(
        &tmp.path().join("ctl"),
        "ctl",
        power.port,
        None,
        "grace = \"10m\"\nstage = 2\n",
        &format!(
            "enabled = true\nsettle = \"1s\"\nretry = \"2s\"\ngive_up = \"5s\"\nbroadcast = \"127.0.0.1:{udp_port}\"\n"
        ),
    );
    let mut ctl = start(&ctl_cfg);
    let seed = ctl.p2p_port();
    let compute = start(&config(
        &tmp.path().join("compute"),
        "compute",
        power.port,
        Some(seed),
        "grace = \"2s\"\nstage = 0\n",
        "mac = \"02:00:00:00:00:0a\"\n",
    ));
    let storage = start(&config(
        &tmp.path().join("storage"),
        "storage",
        power.port,
        Some(seed),
        "grace = \"2s\"\nstage = 1\nstage_timeout = \"5s\"\n",
        "mac = \"02:00:00:00:00:0b\"\n",
    ));
    let agents = [&ctl, &compute, &storage];
    wait_for("convergence", Duration::from_secs(30), || {
        agents
            .iter()
            .all(|a| {
                get_json(a, "/v1/peers")
                    .as_array()
                    .is_some_and(|ps| ps.iter().filter(|p| p["liveness"] == "alive").count() == 2)
            })
            .then_some(())
    });
    let m = http(ctl.addr, "GET", "/metrics", None).1;
    assert_eq!(
        metric(&m, "coolmesh_power_on_controller "),
        Some(1.0),
        "{m}"
    );

    power.off();
    wait_for(
        "compute and storage shut down",
        Duration::from_secs(30),
        || {
            (tmp.path().join("compute/marker").exists()
                && tmp.path().join("storage/marker").exists())
            .then_some(())
        },
    );
    assert_eq!(get_json(&ctl, "/v1/state")["fsm"]["state"], "pre_fail");
    // Mains still out: the controller waits (the pending count says what
    // it will wake), and nothing goes out.
    wait_for("two sleepers remembered", Duration::from_secs(10), || {
        let m = http(ctl.addr, "GET", "/metrics", None).1;
        (metric(&m, "coolmesh_power_on_pending ") == Some(2.0)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        got.lock().expect("lock").is_empty(),
        "a packet while mains was out"
    );

    power.on();
    let back = Instant::now();
    wait_for("both given up", Duration::from_secs(40), || {
        let m = http(ctl.addr, "GET", "/metrics", None).1;
        (metric(&m, "coolmesh_power_on_gave_up_total ") == Some(2.0)).then_some(())
    });
    // No packet after giving up (no spam): wait two retry intervals.
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    listener.join().expect("listener");
    let got = got.lock().expect("lock").clone();
    assert!(
        got.iter().all(|(_, mac)| mac.is_some()),
        "not a magic packet: {got:?}"
    );
    let times = |mac: [u8; 6]| -> Vec<Duration> {
        got.iter()
            .filter(|(_, m)| *m == Some(mac))
            .map(|(t, _)| t.duration_since(back))
            .collect()
    };
    let (s, c) = (times(STORAGE_MAC), times(COMPUTE_MAC));
    eprintln!("after mains back: storage packets {s:?}, compute packets {c:?}");
    assert_eq!(
        s.len() + c.len(),
        got.len(),
        "packets for another MAC: {got:?}"
    );
    // settle 1 s, then storage (stage 1) every 2 s until give_up 5 s after
    // its first packet: 3 packets; then compute, the same.
    assert!((2..=4).contains(&s.len()), "storage packets: {s:?}");
    assert!((2..=4).contains(&c.len()), "compute packets: {c:?}");
    assert!(s[0] >= Duration::from_secs(1), "before the settle: {s:?}");
    assert!(
        s.last() < c.first(),
        "compute woken before storage was given up: {s:?} {c:?}"
    );
    for w in s.windows(2).chain(c.windows(2)) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(1500),
            "faster than the retry: {s:?} {c:?}"
        );
    }
    let m = http(ctl.addr, "GET", "/metrics", None).1;
    assert_eq!(
        metric(&m, "coolmesh_power_on_packets_total "),
        Some(got.len() as f64),
        "{m}"
    );
    assert_eq!(metric(&m, "coolmesh_power_on_pending "), Some(0.0), "{m}");
    let _ = terminate(&mut ctl);
}
