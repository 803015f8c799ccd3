//! Membership and failure detection by SWIM, without I/O (docs/scale.md,
//! step 1).
//!
//! The protocol is the `foca` crate's (SWIM with infection-style
//! dissemination and suspicion): each member probes one other member per
//! `probe_period`, asks `k` others to probe it indirectly when it does not
//! answer within `probe_rtt`, marks it suspect, and declares it down after
//! the suspicion timeout unless it refutes (its incarnation rises).
//! Membership updates ride on the probe messages. What each member sends
//! per period is a constant number of small messages whatever N is — the
//! point of it: liveness no longer costs every node every member's record
//! every second.
//!
//! [`Swim`] wraps one `Foca` instance and turns its callbacks into
//! [`SwimActions`] (datagrams to send to a PeerId, timers to arm, members
//! that came up or went down). The caller (the swarm's loop, or the
//! simulation in `tests/sim`) delivers datagrams and fires timers.
//!
//! # Trust
//!
//! A datagram is only accepted from the peer it says it is from
//! ([`Swim::handle_data`] checks the header's source against the
//! authenticated connection's PeerId), so a member cannot speak for
//! another one. What a member claims about third parties (suspect, down)
//! is SWIM's: the accused refutes by raising its incarnation.
//!
//! # Identities
//!
//! [`SwimId`] is the PeerId plus a renewal counter: a node declared down
//! rejoins with the next counter (`Identity::renew`), and of two
//! identities of the same PeerId the higher counter wins.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::Duration;

use foca::{
    AccumulatingRuntime, Codec, Config, Foca, Identity, Member, NoCustomBroadcast,
    OwnedNotification, PostcardCodec, State, Timer,
};
use libp2p::PeerId;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The libp2p protocol that carries SWIM datagrams: one datagram per
/// request, an empty response (the answer, if any, is a datagram of its
/// own, as over UDP).
pub const PROTOCOL: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/coolmesh/swim/1.0.0");

/// Largest SWIM frame accepted (the datagram cap plus room).
pub const MAX_FRAME: usize = 2048;

/// A member's SWIM identity: its PeerId and a renewal counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SwimId {
    /// The member.
    pub peer: PeerId,
    /// Raised each time the member rejoins after being declared down.
    pub bump: u16,
}

impl SwimId {
    /// The first identity of `peer`.
    pub fn new(peer: PeerId) -> SwimId {
        SwimId { peer, bump: 0 }
    }
}

impl Identity for SwimId {
    type Addr = PeerId;

    fn renew(&self) -> Option<Self> {
        Some(SwimId {
            peer: self.peer,
            bump: self.bump.wrapping_add(1),
        })
    }

    fn addr(&self) -> PeerId {
        self.peer
    }

    /// The newer identity wins; counters compare on a circle so a wrap
    /// (after 65,535 rejoins) still orders correctly.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.bump.wrapping_sub(adversary.bump) as i16) > 0
    }
}

impl Serialize for SwimId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // postcard writes bytes as a length and the bytes, which a
        // `Vec<u8>` reads back.
        (self.peer.to_bytes().as_slice(), self.bump).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SwimId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (bytes, bump): (Vec<u8>, u16) = Deserialize::deserialize(d)?;
        // A PeerId is a multihash of at most a few dozen bytes; anything
        // longer is not one (and is not worth parsing).
        if bytes.len() > 64 {
            return Err(serde::de::Error::custom("peer id longer than 64 bytes"));
        }
        let peer = PeerId::from_bytes(&bytes).map_err(serde::de::Error::custom)?;
        Ok(SwimId { peer, bump })
    }
}

/// What the caller must do after a call into [`Swim`].
#[derive(Debug, Default)]
pub struct SwimActions {
    /// Datagrams to send: (to, bytes).
    pub send: Vec<(PeerId, Vec<u8>)>,
    /// Timers to arm: fire [`Swim::handle_timer`] with the timer after the
    /// delay.
    pub timers: Vec<(Duration, Timer<SwimId>)>,
    /// Members that became active.
    pub up: Vec<PeerId>,
    /// Members declared down.
    pub down: Vec<PeerId>,
}

/// A datagram that was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SwimError {
    /// The header does not decode.
    #[error("swim datagram does not decode: {0}")]
    Malformed(String),
    /// The header's source is not the peer the datagram came from.
    #[error("swim datagram from {from} claims to come from {claimed}")]
    Impersonation {
        /// The authenticated sender (base58).
        from: String,
        /// Who the header says sent it (base58).
        claimed: String,
    },
    /// foca refused it (too big, from ourselves, malformed updates...).
    #[error("swim datagram refused: {0}")]
    Refused(String),
}

/// SWIM settings.
#[derive(Clone, Debug)]
pub struct SwimConfig {
    /// How often each member probes one other member. Default 1 s
    /// (memberlist's LAN default). Shorter detects sooner at a
    /// proportionally higher constant cost.
    pub probe_period: Duration,
    /// How long a direct probe waits before indirect probes. Default
    /// 500 ms; must be well below `probe_period`, above the room's RTT.
    pub probe_rtt: Duration,
    /// Members asked to probe indirectly. Default 3.
    pub indirect_probes: usize,
    /// The room size the retransmission count and the suspicion timeout
    /// are computed for (foca's LAN formulas, memberlist's). Default 1,000;
    /// a larger value costs a few more retransmissions and a slower
    /// declaration, a smaller one risks an update not reaching everyone.
    pub expected_members: u32,
    /// Largest datagram. Default 1,400 bytes (one Ethernet frame).
    pub max_packet: usize,
    /// How long a member stays suspect before it is declared down, unless
    /// it refutes. Default 4 s. memberlist scales this with log N (4 ×
    /// log10 N probe periods: 12 s at 1,000 members); a room needs a dead
    /// server dead everywhere within 10 s, so it is fixed here. Shorter
    /// declares a stalled member (a long pause, an overloaded host) down
    /// sooner; it rejoins under a renewed identity when it answers again.
    pub suspect_timeout: Duration,
}

impl Default for SwimConfig {
    fn default() -> Self {
        SwimConfig {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            indirect_probes: 3,
            expected_members: 1000,
            max_packet: 1400,
            suspect_timeout: Duration::from_secs(4),
        }
    }
}

impl SwimConfig {
    fn foca(&self) -> Config {
        let size = NonZeroU32::new(self.expected_members.max(2)).unwrap_or(NonZeroU32::MIN);
        let mut c = Config::new_lan(size);
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.suspect_to_down_after = self.suspect_timeout;
        if let Some(k) = std::num::NonZeroUsize::new(self.indirect_probes) {
            c.num_indirect_probes = k;
        }
        if let Some(m) = std::num::NonZeroUsize::new(self.max_packet) {
            c.max_packet_size = m;
        }
        c
    }
}

/// One member's SWIM state. See the module documentation.
pub struct Swim {
    foca: Foca<SwimId, PostcardCodec, StdRng, NoCustomBroadcast>,
    rt: AccumulatingRuntime<SwimId>,
    down: HashSet<PeerId>,
}

impl Swim {
    /// A member `me` (first identity), with a random source seeded by
    /// `seed` (the simulation passes fixed seeds; the agent a random one).
    pub fn new(me: PeerId, cfg: &SwimConfig, seed: u64) -> Swim {
        Swim {
            foca: Foca::new(
                SwimId::new(me),
                cfg.foca(),
                StdRng::seed_from_u64(seed),
                PostcardCodec,
            ),
            rt: AccumulatingRuntime::new(),
            down: HashSet::new(),
        }
    }

    /// Our current identity.
    pub fn identity(&self) -> SwimId {
        *self.foca.identity()
    }

    /// Introduce ourselves to `peer` (a member we know of: a configured
    /// seed, a connection, a record). Its identity's counter is not known
    /// yet; foca replaces it with the real one from the answer.
    pub fn announce(&mut self, peer: PeerId) -> SwimActions {
        let _ = self.foca.announce(SwimId::new(peer), &mut self.rt);
        self.drain()
    }

    /// Members known from elsewhere (their signed records) that SWIM has
    /// not met yet join the probe rotation as alive, without being
    /// broadcast (their owners announce themselves). A member SWIM
    /// declared down is not revived this way: only its own answer (a
    /// renewed identity) brings it back.
    pub fn learn(&mut self, peers: impl IntoIterator<Item = PeerId>) -> SwimActions {
        let me = self.foca.identity().peer;
        let known: HashSet<PeerId> = self.foca.iter_members().map(|m| m.id().peer).collect();
        let new: Vec<Member<SwimId>> = peers
            .into_iter()
            .filter(|p| *p != me && !known.contains(p) && !self.down.contains(p))
            .map(|p| Member::new(SwimId::new(p), 0, State::Alive))
            .collect();
        if !new.is_empty() {
            let _ = self.foca.apply_many(new.into_iter(), false, &mut self.rt);
        }
        self.drain()
    }

    /// A datagram from `from` (the authenticated sender).
    pub fn handle_data(&mut self, from: PeerId, data: &[u8]) -> Result<SwimActions, SwimError> {
        let mut buf = data;
        let header = Codec::<SwimId>::decode_header(&mut PostcardCodec, &mut buf)
            .map_err(|e| SwimError::Malformed(e.to_string()))?;
        if header.src.peer != from {
            return Err(SwimError::Impersonation {
                from: from.to_base58(),
                claimed: header.src.peer.to_base58(),
            });
        }
        let r = self.foca.handle_data(data, &mut self.rt);
        let actions = self.drain();
        r.map_err(|e| SwimError::Refused(e.to_string()))?;
        Ok(actions)
    }

    /// A timer armed earlier fired.
    pub fn handle_timer(&mut self, timer: Timer<SwimId>) -> SwimActions {
        let _ = self.foca.handle_timer(timer, &mut self.rt);
        self.drain()
    }

    /// Active members (alive or suspect), ourselves excluded.
    pub fn active(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.foca.iter_members().map(|m| m.id().peer)
    }

    /// Number of active members, ourselves excluded.
    pub fn active_count(&self) -> usize {
        self.foca.num_members()
    }

    /// Whether `peer` was declared down (and has not come back since).
    pub fn is_down(&self, peer: &PeerId) -> bool {
        self.down.contains(peer)
    }

    fn drain(&mut self) -> SwimActions {
        let mut a = SwimActions::default();
        while let Some((to, bytes)) = self.rt.to_send() {
            a.send.push((to.peer, bytes.to_vec()));
        }
        while let Some((after, timer)) = self.rt.to_schedule() {
            a.timers.push((after, timer));
        }
        while let Some(n) = self.rt.to_notify() {
            match n {
                OwnedNotification::MemberUp(id) => {
                    self.down.remove(&id.peer);
                    a.up.push(id.peer);
                }
                // A newer identity of the same PeerId may be up already
                // (a rejoin renames); only an identity that is no longer
                // active counts as down.
                OwnedNotification::MemberDown(id)
                    if !self.foca.iter_members().any(|m| m.id().peer == id.peer) =>
                {
                    self.down.insert(id.peer);
                    a.down.push(id.peer);
                }
                _ => {}
            }
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> PeerId {
        let key = libp2p::identity::Keypair::ed25519_from_bytes([n; 32]).expect("key");
        key.public().to_peer_id()
    }

    #[test]
    fn identities_round_trip_and_the_newer_counter_wins() {
        let a = SwimId {
            peer: id(1),
            bump: 3,
        };
        let bytes = postcard::to_allocvec(&a).expect("encodes");
        let back: SwimId = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, a);
        let b = a.renew().expect("renews");
        assert_eq!(b.bump, 4);
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
        let wrapped = SwimId {
            peer: id(1),
            bump: 0,
        };
        let last = SwimId {
            peer: id(1),
            bump: u16::MAX,
        };
        assert!(
            wrapped.win_addr_conflict(&last),
            "the counter orders across a wrap"
        );
    }

    #[test]
    fn garbage_and_impersonation_are_refused_without_panicking() {
        let mut s = Swim::new(id(1), &SwimConfig::default(), 1);
        for junk in [&b""[..], b"\x00", b"\xff\xff\xff\xff", &[7u8; 2000][..]] {
            assert!(s.handle_data(id(2), junk).is_err(), "{junk:?}");
        }
        // A real datagram from 2, delivered as if it came from 3.
        let mut two = Swim::new(id(2), &SwimConfig::default(), 2);
        let a = two.announce(id(1));
        let (to, bytes) = a.send.first().cloned().expect("an announce");
        assert_eq!(to, id(1));
        match s.handle_data(id(3), &bytes) {
            Err(SwimError::Impersonation { from, claimed }) => {
                assert_eq!((from, claimed), (id(3).to_base58(), id(2).to_base58()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.active_count(), 0);
        s.handle_data(id(2), &bytes).expect("from its real sender");
        assert_eq!(s.active_count(), 1);
    }
}
