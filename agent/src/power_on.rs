//! Ordered power-on: when mains is back and stable, one node that stayed up
//! wakes the members that shut down, highest stage first (storage before
//! the compute nodes that need it), by Wake-on-LAN.
//!
//! - Every node with `power_on.mac` publishes its MAC address in its record
//!   (key 14), and whether it may wake others (`power_on.enabled`).
//! - A node with `power_on.enabled` remembers the members it saw in
//!   `shutdown` with a MAC (the *sleepers*): after they powered off their
//!   records go stale and are dropped from the view after
//!   `cluster.dead_after + cluster.retention`, the controller keeps them.
//! - The controller is the alive, not shut down, enabled node with the
//!   smallest `(stage, PeerId)` ([`controller`]): every node computes the
//!   same answer from the same view, so exactly one sends (during a view
//!   change two may both send once; a magic packet twice is harmless).
//! - Once this node's own power policy has said "up" for `power_on.settle`
//!   without a break, the controller sends a magic packet to each sleeper of
//!   the highest stage that still has sleepers, every `power_on.retry`,
//!   until it is back in the cluster (alive and not in `shutdown`) or
//!   `power_on.give_up` passed since its first packet (counted, alerted).
//!   The next stage down starts when no sleeper of the stage above is
//!   left. Mains lost again stops everything until it is stable again.
//!
//! [`Controller::step`] is pure (time is an argument); [`run`] feeds it the
//! cluster view every second and sends what it says.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use libp2p::PeerId;
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::sync::watch;

use crate::cluster::ClusterView;
use crate::fsm::Millis;

/// `[power_on]`. Every default is safe: nothing is sent unless enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerOnConfig {
    /// This node may wake others. Default false: a room opts in, after
    /// enabling Wake-on-LAN in the servers' firmware.
    pub enabled: bool,
    /// This node's MAC address, published for the controller (record key
    /// 14). Default none: this node is never woken.
    pub mac: Option<[u8; 6]>,
    /// Where magic packets go: a broadcast address and port. Default
    /// `255.255.255.255:9` (the discard port, the usual Wake-on-LAN port).
    /// A directed broadcast (`10.0.0.255:9`) reaches another subnet
    /// through routers that forward it.
    pub broadcast: SocketAddr,
    /// How long mains must stay up before waking anyone. Default 2 min.
    /// Longer rides out a utility that comes back and drops again (each
    /// drop would cut the booting servers); shorter brings the room back
    /// sooner.
    pub settle: Duration,
    /// Give a sleeper up this long after its first packet. Default 15 min:
    /// a server boots in a few minutes. Longer keeps the next stage waiting
    /// for a server that will not come; shorter may give up on a slow boot.
    pub give_up: Duration,
    /// Packets to the same sleeper at most this often. Default 30 s: a
    /// lost packet is resent soon, and a room of 100 sleepers sends 3 or 4
    /// packets a second at most.
    pub retry: Duration,
    /// The node name of the only node that may wake the room. Default
    /// none: the alive enabled node with the smallest `(stage, PeerId)`.
    /// Set it (the same on every node) to pin the job to the node whose
    /// UPS lasts longest; if that node is down, nobody wakes the room.
    pub controller: Option<String>,
}

impl Default for PowerOnConfig {
    fn default() -> Self {
        PowerOnConfig {
            enabled: false,
            mac: None,
            broadcast: SocketAddr::from(([255, 255, 255, 255], 9)),
            settle: Duration::from_secs(120),
            give_up: Duration::from_secs(15 * 60),
            retry: Duration::from_secs(30),
            controller: None,
        }
    }
}

/// Parse `aa:bb:cc:dd:ee:ff` (or with `-`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The Wake-on-LAN magic packet: 6 bytes 0xFF, then the MAC 16 times.
pub fn magic_packet(mac: &[u8; 6]) -> [u8; 102] {
    let mut p = [0xFFu8; 102];
    for chunk in p[6..].chunks_exact_mut(6) {
        chunk.copy_from_slice(mac);
    }
    p
}

/// One member as the controller reads the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its identity.
    pub peer_id: PeerId,
    /// Its node name.
    pub node: String,
    /// Its shutdown stage.
    pub stage: u32,
    /// Its MAC, if it publishes one.
    pub mac: Option<[u8; 6]>,
    /// It may wake others.
    pub waker: bool,
    /// Its state machine state.
    pub state: String,
    /// Alive in the view.
    pub alive: bool,
}

/// The controller among `members` (this node included): the alive, not
/// shut down, enabled member with the smallest `(stage, PeerId)`.
pub fn controller(members: &[Member]) -> Option<PeerId> {
    members
        .iter()
        .filter(|m| m.alive && m.waker && m.state != "shutdown")
        .min_by(|a, b| (a.stage, a.peer_id.to_bytes()).cmp(&(b.stage, b.peer_id.to_bytes())))
        .map(|m| m.peer_id)
}

/// The controller with `power_on.controller` set: that node, if it can
/// (alive, enabled, not shut down); else [`controller`].
pub fn controller_for(cfg: &PowerOnConfig, members: &[Member]) -> Option<PeerId> {
    match &cfg.controller {
        Some(name) => members
            .iter()
            .find(|m| m.node == *name && m.alive && m.waker && m.state != "shutdown")
            .map(|m| m.peer_id),
        None => controller(members),
    }
}

/// A member that shut down, as the controller remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sleeper {
    /// Node name (for logs).
    pub node: String,
    /// Its stage.
    pub stage: u32,
    /// Where to send.
    pub mac: [u8; 6],
    /// First packet.
    pub first: Option<Millis>,
    /// Last packet.
    pub last: Option<Millis>,
    /// Packets sent.
    pub sent: u32,
    /// Given up (counted once); kept so that it is not woken again.
    pub gave_up: bool,
}

/// What [`Controller::step`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a magic packet to this MAC.
    Wake {
        /// The sleeper.
        peer_id: PeerId,
        /// Its node name.
        node: String,
        /// Its stage.
        stage: u32,
        /// Its MAC.
        mac: [u8; 6],
    },
    /// `power_on.give_up` passed for this sleeper.
    GaveUp {
        /// The sleeper.
        peer_id: PeerId,
        /// Its node name.
        node: String,
    },
    /// A sleeper is back in the cluster.
    Back {
        /// Its node name.
        node: String,
    },
}

/// The pure controller (module documentation).
#[derive(Debug, Clone, Default)]
pub struct Controller {
    /// Members seen in `shutdown`, by identity.
    pub sleepers: BTreeMap<PeerId, Sleeper>,
    /// Since when this node's own power policy says "up" without a break.
    pub mains_since: Option<Millis>,
}

impl Controller {
    /// One evaluation at `now`: `me` is this node's identity, `mains_up`
    /// its own power policy result, `members` the view (this node included).
    pub fn step(
        &mut self,
        now: Millis,
        cfg: &PowerOnConfig,
        me: PeerId,
        mains_up: bool,
        members: &[Member],
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if mains_up {
            self.mains_since.get_or_insert(now);
        } else {
            self.mains_since = None;
        }
        for m in members {
            if m.peer_id == me {
                continue;
            }
            if m.state == "shutdown" {
                if let Some(mac) = m.mac {
                    self.sleepers.entry(m.peer_id).or_insert_with(|| Sleeper {
                        node: m.node.clone(),
                        stage: m.stage,
                        mac,
                        first: None,
                        last: None,
                        sent: 0,
                        gave_up: false,
                    });
                }
            } else if m.alive && self.sleepers.remove(&m.peer_id).is_some() {
                // Back: a new boot publishes `normal` again.
                out.push(Action::Back {
                    node: m.node.clone(),
                });
            }
        }
        let stable = self.mains_since.is_some_and(|s| now.since(s) >= cfg.settle);
        if !stable || !cfg.enabled || controller_for(cfg, members) != Some(me) {
            return out;
        }
        // Highest stage with sleepers still to wake.
        let Some(stage) = self
            .sleepers
            .values()
            .filter(|s| !s.gave_up)
            .map(|s| s.stage)
            .max()
        else {
            return out;
        };
        for (peer_id, s) in self.sleepers.iter_mut() {
            if s.gave_up || s.stage != stage {
                continue;
            }
            if s.first.is_some_and(|f| now.since(f) >= cfg.give_up) {
                s.gave_up = true;
                out.push(Action::GaveUp {
                    peer_id: *peer_id,
                    node: s.node.clone(),
                });
                continue;
            }
            if s.last.is_none_or(|l| now.since(l) >= cfg.retry) {
                s.first.get_or_insert(now);
                s.last = Some(now);
                s.sent = s.sent.saturating_add(1);
                out.push(Action::Wake {
                    peer_id: *peer_id,
                    node: s.node.clone(),
                    stage: s.stage,
                    mac: s.mac,
                });
            }
        }
        out
    }

    /// Sleepers still to wake (not back, not given up).
    pub fn pending(&self) -> usize {
        self.sleepers.values().filter(|s| !s.gave_up).count()
    }
}

/// The members of a view, this node included (from its own record).
pub fn members(view: &ClusterView) -> Vec<Member> {
    let own = view.local.iter().map(|r| (r, true));
    let peers = view.peers.values().map(|p| {
        (
            &p.record,
            p.liveness == crate::cluster::view::Liveness::Alive,
        )
    });
    own.chain(peers)
        .map(|(r, alive)| Member {
            peer_id: r.peer_id,
            node: r.state.node.clone(),
            stage: r.state.stage,
            mac: r.state.mac,
            waker: r.state.waker,
            state: r.state.fsm.state.clone(),
            alive,
        })
        .collect()
}

/// Metrics of the controller (registered only with `power_on.enabled`).
#[derive(Clone)]
pub struct PowerOnMetrics {
    /// `coolmesh_power_on_packets_total`.
    pub packets: IntCounter,
    /// `coolmesh_power_on_gave_up_total`.
    pub gave_up: IntCounter,
    /// `coolmesh_power_on_pending`.
    pub pending: IntGauge,
    /// `coolmesh_power_on_controller`.
    pub controller: IntGauge,
}

impl PowerOnMetrics {
    /// Create and register.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = PowerOnMetrics {
            packets: IntCounter::new(
                "coolmesh_power_on_packets_total",
                "Wake-on-LAN magic packets this node sent to members that shut down.",
            )?,
            gave_up: IntCounter::new(
                "coolmesh_power_on_gave_up_total",
                "Members this node stopped waking after power_on.give_up without seeing them back.",
            )?,
            pending: IntGauge::new(
                "coolmesh_power_on_pending",
                "Members seen shut down that this node still has to wake (not back, not given up).",
            )?,
            controller: IntGauge::new(
                "coolmesh_power_on_controller",
                "1 if this node is the one that wakes the room when mains is back.",
            )?,
        };
        registry.register(Box::new(m.packets.clone()))?;
        registry.register(Box::new(m.gave_up.clone()))?;
        registry.register(Box::new(m.pending.clone()))?;
        registry.register(Box::new(m.controller.clone()))?;
        Ok(m)
    }
}

/// The controller task: every second (and on every view change), one
/// [`Controller::step`]; packets go out by UDP broadcast.
pub async fn run(
    cfg: PowerOnConfig,
    me: PeerId,
    mut view_rx: watch::Receiver<ClusterView>,
    metrics: PowerOnMetrics,
    stop: impl std::future::Future<Output = ()>,
) {
    let socket = match UdpSocket::bind(("0.0.0.0", 0)).and_then(|s| {
        s.set_broadcast(true)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => {
            // Not fatal: the agent's safety does not depend on waking the
            // room; the error says why nothing will be sent.
            tracing::error!(error = %e, "power-on: cannot open a UDP socket; no Wake-on-LAN");
            return;
        }
    };
    let mut ctl = Controller::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            r = view_rx.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
        let view = view_rx.borrow_and_update().clone();
        let mains_up = view
            .local
            .as_ref()
            .is_some_and(|r| r.state.power_up == Some(true));
        let members = members(&view);
        let now = Millis(crate::clock::unix_ms());
        for a in ctl.step(now, &cfg, me, mains_up, &members) {
            match a {
                Action::Wake {
                    node, stage, mac, ..
                } => match socket.send_to(&magic_packet(&mac), cfg.broadcast) {
                    Ok(_) => {
                        metrics.packets.inc();
                        tracing::info!(%node, stage, mac = %format_mac(&mac), to = %cfg.broadcast, "power-on: magic packet sent");
                    }
                    Err(e) => {
                        tracing::warn!(%node, error = %e, to = %cfg.broadcast, "power-on: magic packet not sent")
                    }
                },
                Action::GaveUp { node, .. } => {
                    metrics.gave_up.inc();
                    tracing::error!(%node, give_up = ?cfg.give_up, "power-on: gave up waking a member; it did not come back");
                }
                Action::Back { node } => {
                    tracing::info!(%node, "power-on: member back in the cluster");
                }
            }
        }
        metrics
            .pending
            .set(i64::try_from(ctl.pending()).unwrap_or(i64::MAX));
        metrics
            .controller
            .set(i64::from(controller_for(&cfg, &members) == Some(me)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    #[test]
    fn magic_packet_bytes() {
        let mac = [0x00, 0x11, 0x22, 0xaa, 0xbb, 0xcc];
        let p = magic_packet(&mac);
        assert_eq!(p.len(), 6 + 16 * 6);
        assert_eq!(&p[..6], &[0xFF; 6]);
        let mut want = vec![0xFFu8; 6];
        for _ in 0..16 {
            want.extend_from_slice(&mac);
        }
        assert_eq!(p.to_vec(), want);
        // The well-known sample: "FF FF FF FF FF FF 00 11 22 AA BB CC ...".
        assert_eq!(&p[6..12], &[0x00, 0x11, 0x22, 0xaa, 0xbb, 0xcc]);
        assert_eq!(&p[96..102], &[0x00, 0x11, 0x22, 0xaa, 0xbb, 0xcc]);
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("00:11:22:AA:bb:cc"),
            Some([0x00, 0x11, 0x22, 0xaa, 0xbb, 0xcc])
        );
        assert_eq!(
            parse_mac("00-11-22-aa-bb-cc"),
            Some([0, 0x11, 0x22, 0xaa, 0xbb, 0xcc])
        );
        for bad in [
            "",
            "00:11:22:aa:bb",
            "00:11:22:aa:bb:cc:dd",
            "0:11:22:aa:bb:cc",
            "zz:11:22:aa:bb:cc",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(
            format_mac(&[0, 0x11, 0x22, 0xaa, 0xbb, 0xcc]),
            "00:11:22:aa:bb:cc"
        );
    }

    fn id() -> PeerId {
        Keypair::generate_ed25519().public().to_peer_id()
    }

    fn member(p: PeerId, node: &str, stage: u32, state: &str, waker: bool) -> Member {
        Member {
            peer_id: p,
            node: node.into(),
            stage,
            mac: Some([2, 0, 0, 0, 0, stage as u8 + 1]),
            waker,
            state: state.into(),
            alive: true,
        }
    }

    const T0: Millis = Millis(1_700_000_000_000);
    fn at(s: u64) -> Millis {
        Millis(T0.0 + s * 1000)
    }

    #[test]
    fn the_controller_is_deterministic_and_never_a_shut_down_node() {
        let (a, b, c) = (id(), id(), id());
        let ms = vec![
            member(a, "a", 1, "normal", true),
            member(b, "b", 1, "normal", true),
            member(c, "c", 0, "shutdown", true),
        ];
        let want = if a.to_bytes() < b.to_bytes() { a } else { b };
        assert_eq!(controller(&ms), Some(want));
        let mut rev = ms.clone();
        rev.reverse();
        assert_eq!(controller(&rev), Some(want), "order of the view");
        // A lower stage wins when it is up; a node not enabled never.
        let ms2 = vec![
            member(a, "a", 1, "normal", true),
            member(c, "c", 0, "normal", false),
        ];
        assert_eq!(controller(&ms2), Some(a));
        let mut dead = ms.clone();
        for m in &mut dead {
            m.alive = false;
        }
        assert_eq!(controller(&dead), None);
    }

    #[test]
    fn wakes_highest_stage_first_after_settle_retries_and_gives_up() {
        let cfg = PowerOnConfig {
            enabled: true,
            settle: Duration::from_secs(120),
            give_up: Duration::from_secs(300),
            retry: Duration::from_secs(30),
            ..PowerOnConfig::default()
        };
        let (me, storage, compute) = (id(), id(), id());
        let mut ms = vec![
            member(me, "me", 2, "normal", true),
            member(storage, "storage", 1, "shutdown", false),
            member(compute, "compute", 0, "shutdown", false),
        ];
        let mut c = Controller::default();
        // Mains down: remembered, nothing sent.
        assert!(c.step(at(0), &cfg, me, false, &ms).is_empty());
        assert_eq!(c.pending(), 2);
        // The sleepers power off: their records go stale, still remembered.
        for m in &mut ms[1..] {
            m.alive = false;
        }
        assert!(
            c.step(at(10), &cfg, me, true, &ms).is_empty(),
            "not settled"
        );
        assert!(
            c.step(at(129), &cfg, me, true, &ms).is_empty(),
            "not settled"
        );
        // Mains drops again: the settle starts over.
        assert!(c.step(at(130), &cfg, me, false, &ms).is_empty());
        assert!(c.step(at(131), &cfg, me, true, &ms).is_empty());
        let woke = |acts: &[Action]| -> Vec<String> {
            acts.iter()
                .filter_map(|a| match a {
                    Action::Wake { node, .. } => Some(node.clone()),
                    _ => None,
                })
                .collect()
        };
        let a = c.step(at(251), &cfg, me, true, &ms);
        assert_eq!(woke(&a), ["storage"], "highest stage first: {a:?}");
        // No spam: nothing before the retry interval.
        assert!(woke(&c.step(at(252), &cfg, me, true, &ms)).is_empty());
        assert!(woke(&c.step(at(280), &cfg, me, true, &ms)).is_empty());
        assert_eq!(woke(&c.step(at(281), &cfg, me, true, &ms)), ["storage"]);
        // Storage comes back: compute is next.
        ms[1].alive = true;
        ms[1].state = "normal".into();
        let a = c.step(at(290), &cfg, me, true, &ms);
        assert!(
            a.contains(&Action::Back {
                node: "storage".into()
            }),
            "{a:?}"
        );
        assert_eq!(woke(&a), ["compute"]);
        // Compute never comes back: retried every 30 s, given up at 300 s.
        let mut sent = 1;
        let mut gave_up = Vec::new();
        for s in 291..=700 {
            let a = c.step(at(s), &cfg, me, true, &ms);
            sent += woke(&a).len();
            gave_up.extend(a.into_iter().filter(|x| matches!(x, Action::GaveUp { .. })));
        }
        assert_eq!(sent, 10, "one packet per 30 s for 300 s");
        assert_eq!(gave_up.len(), 1, "given up once");
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn only_the_controller_sends() {
        let cfg = PowerOnConfig {
            enabled: true,
            settle: Duration::ZERO,
            ..PowerOnConfig::default()
        };
        let (a, b, s) = (id(), id(), id());
        let ms = vec![
            member(a, "a", 1, "normal", true),
            member(b, "b", 1, "normal", true),
            member(s, "s", 0, "shutdown", false),
        ];
        let sends = |me: PeerId| {
            Controller::default()
                .step(at(0), &cfg, me, true, &ms)
                .iter()
                .filter(|x| matches!(x, Action::Wake { .. }))
                .count()
        };
        assert_eq!(sends(a) + sends(b), 1);
        // A configured controller: that one only, whatever the PeerIds.
        let pinned = |name: &str| PowerOnConfig {
            controller: Some(name.into()),
            ..cfg.clone()
        };
        assert_eq!(controller_for(&pinned("b"), &ms), Some(b));
        assert_eq!(controller_for(&pinned("a"), &ms), Some(a));
        assert_eq!(controller_for(&pinned("s"), &ms), None, "shut down");
        assert_eq!(controller_for(&pinned("nobody"), &ms), None);
        // Not enabled here: never sends, even as the only candidate.
        let off = PowerOnConfig {
            enabled: false,
            ..cfg
        };
        assert!(Controller::default()
            .step(at(0), &off, a, true, &ms)
            .is_empty());
    }
}
