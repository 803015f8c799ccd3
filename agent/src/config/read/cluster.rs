//! `[cluster]` and `[power_on]`: the room and waking its members.

use super::*;

pub(super) fn parse_cluster(w: &mut Walker<'_>, t: &Table, c: &mut ClusterSection) {
    const KEYS: &[&str] = &[
        "enabled",
        "name",
        "listen",
        "peers",
        "mdns",
        "mdns_interval",
        "psk_file",
        "insecure_no_psk",
        "operator_key",
        "room_commands",
        "swim",
        "allowlist",
        "sync_interval",
        "anti_entropy_interval",
        "fanout",
        "suspect_after",
        "dead_after",
        "retention",
        "handshake_timeout",
        "max_pending_incoming",
        "max_incoming",
        "max_connections_per_peer",
        "max_streams_per_connection",
        "max_members",
    ];
    let ms = Duration::from_millis;
    w.table("cluster", t, KEYS, |w, k, full, it| match k {
        "max_pending_incoming" | "max_incoming" => {
            if let Some(v) = w.int(full, it, 1..=65_536) {
                let v = v as u32; // in range
                if k == "max_pending_incoming" {
                    c.limits.max_pending_incoming = v;
                } else {
                    c.limits.max_incoming = v;
                }
            }
        }
        "max_connections_per_peer" => {
            // At least 2: a simultaneous dial from both sides makes two.
            if let Some(v) = w.int(full, it, 2..=16) {
                c.limits.max_connections_per_peer = v as u32;
            }
        }
        "max_members" => {
            // Below 16 a room's own members could be refused.
            if let Some(v) = w.int(full, it, 16..=1_000_000) {
                c.limits.max_members = v as usize;
            }
        }
        "max_streams_per_connection" => {
            // Members use up to three at a time (sync, push, follow-up).
            if let Some(v) = w.int(full, it, 4..=256) {
                c.limits.max_streams_per_connection = v as usize;
            }
        }
        "enabled" | "mdns" | "insecure_no_psk" | "room_commands" | "swim" => {
            if let Some(v) = w.bool(full, it) {
                match k {
                    "enabled" => c.enabled = v,
                    "mdns" => c.mdns = v,
                    "room_commands" => c.room_commands = v,
                    "swim" => c.swim = v,
                    _ => c.insecure_no_psk = v,
                }
            }
        }
        "operator_key" => {
            if let Some(v) = w.nonempty_string(full, it) {
                if let Err(e) = crate::cluster::roster::parse_operator_key(&v) {
                    w.err(full, it.span(), e);
                }
                c.operator_key = Some(v);
            }
        }
        "name" => {
            if let Some(v) = w.nonempty_string(full, it) {
                if v.len() > 64 || !v.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
                    w.err(full, it.span(), "must be 1-64 characters of A-Z a-z 0-9 - _ .");
                } else {
                    c.name = v;
                }
            }
        }
        "listen" | "peers" => {
            if let Some(v) = w.strings(full, it) {
                let spans: Vec<_> = it.as_value().and_then(Value::as_array).map(|a| a.iter().map(|x| x.span()).collect()).unwrap_or_default();
                for (i, a) in v.iter().enumerate() {
                    if let Err(e) = a.parse::<libp2p::Multiaddr>() {
                        w.err(&format!("{full}[{i}]"), spans.get(i).cloned().flatten(), format!("{a:?} is not a multiaddr ({e}); e.g. \"/ip4/10.0.0.12/tcp/9877\""));
                    }
                }
                if k == "listen" {
                    if v.is_empty() {
                        w.err(full, it.span(), "needs at least one address (or set cluster.enabled = false)");
                    }
                    c.listen = v;
                } else {
                    c.peers = v;
                }
            }
        }
        "allowlist" => {
            if let Some(v) = w.strings(full, it) {
                for (i, p) in v.iter().enumerate() {
                    if p.parse::<libp2p::PeerId>().is_err() {
                        w.err(&format!("{full}[{i}]"), it.span(), format!("{p:?} is not a PeerId (see `coolmesh keygen` / the node's coolmesh_node_info)"));
                    }
                }
                c.allowlist = v;
            }
        }
        "psk_file" => c.psk_file = w.nonempty_string(full, it).map(PathBuf::from),
        "fanout" => {
            if let Some(v) = w.int(full, it, 1..=16) {
                c.fanout = v as usize;
            }
        }
        _ => {
            let (min, max) = match k {
                "mdns_interval" => (ms(500), Duration::from_secs(600)),
                "sync_interval" => (ms(50), Duration::from_secs(60)),
                "anti_entropy_interval" => (ms(100), Duration::from_secs(600)),
                "suspect_after" | "dead_after" => (ms(500), Duration::from_secs(3600)),
                "handshake_timeout" => (ms(500), Duration::from_secs(60)),
                _ => (Duration::from_secs(1), Duration::from_secs(30 * 24 * 3600)),
            };
            if let Some(d) = w.duration(full, it, min, max) {
                match k {
                    "mdns_interval" => c.mdns_interval = d,
                    "sync_interval" => c.sync_interval = d,
                    "anti_entropy_interval" => c.anti_entropy_interval = d,
                    "suspect_after" => c.suspect_after = d,
                    "dead_after" => c.dead_after = d,
                    "handshake_timeout" => c.limits.handshake_timeout = d,
                    _ => c.retention = d,
                }
            }
        }
    });
}

/// `[power_on]` (see `crate::power_on`).
pub(super) fn parse_power_on(
    w: &mut Walker<'_>,
    t: &Table,
    p: &mut crate::power_on::PowerOnConfig,
) {
    const KEYS: &[&str] = &[
        "enabled",
        "mac",
        "broadcast",
        "settle",
        "give_up",
        "retry",
        "controller",
    ];
    let day = Duration::from_secs(24 * 3600);
    w.table("power_on", t, KEYS, |w, k, full, it| match k {
        "enabled" => {
            if let Some(v) = w.bool(full, it) {
                p.enabled = v;
            }
        }
        "mac" => {
            if let Some(s) = w.nonempty_string(full, it) {
                match crate::power_on::parse_mac(s.trim()) {
                    Some(m) => p.mac = Some(m),
                    None => w.err(
                        full,
                        it.span(),
                        format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"),
                    ),
                }
            }
        }
        "broadcast" => {
            if let Some(s) = w.nonempty_string(full, it) {
                match s.trim().parse::<std::net::SocketAddr>() {
                    Ok(a) => p.broadcast = a,
                    Err(_) => w.err(
                        full,
                        it.span(),
                        format!("{s:?} is not ADDRESS:PORT (e.g. 255.255.255.255:9)"),
                    ),
                }
            }
        }
        "settle" => {
            if let Some(d) = w.duration(full, it, Duration::ZERO, day) {
                p.settle = d;
            }
        }
        "controller" => {
            if let Some(s) = w.nonempty_string(full, it) {
                p.controller = Some(s);
            }
        }
        "give_up" => {
            if let Some(d) = w.nonzero_duration(
                full,
                it,
                day,
                "the controller would give every member up at once (default 15m)",
            ) {
                p.give_up = d;
            }
        }
        _ => {
            // At least a second: a packet a second per sleeper is plenty.
            if let Some(d) = w.duration(full, it, Duration::from_secs(1), Duration::from_secs(3600))
            {
                p.retry = d;
            }
        }
    });
}
