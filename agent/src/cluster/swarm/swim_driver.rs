//! SWIM in the swarm (`cluster.swim`, docs/scale.md step 1): datagrams
//! over `/coolmesh/swim/1.0.0` (one request each, an empty answer), foca's
//! timers on a heap the select loop sleeps on, and members learned from
//! the records of members that say they run SWIM (record key 15).
//!
//! What SWIM decides: a member it declares down is dead in the view until
//! its record advances again ([`Engine::entry_liveness`]), so a crash is
//! seen everywhere in a few probe periods instead of when its record ages
//! out. Members that do not run SWIM are never probed, so they are judged
//! by their records alone.
//!
//! Not yet (docs/scale.md): dialling a member without a connection (every
//! member is dialled today, so a datagram to one without a connection is
//! dropped and SWIM treats it as lost), and a longer record refresh for
//! SWIM members (step 2).
//!
//! [`Engine::entry_liveness`]: crate::cluster::engine::Engine

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use foca::Timer;
use libp2p::request_response;
use libp2p::PeerId;
use tokio::time::Instant;

use super::Node;
use crate::cluster::swim::{Swim, SwimActions, SwimConfig, SwimId};

/// SWIM and its timers.
pub(super) struct SwimState {
    swim: Swim,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    armed: HashMap<u64, Timer<SwimId>>,
    seq: u64,
}

impl SwimState {
    pub(super) fn new(me: PeerId, seed: u64) -> SwimState {
        SwimState {
            swim: Swim::new(me, &SwimConfig::default(), seed),
            timers: BinaryHeap::new(),
            armed: HashMap::new(),
            seq: 0,
        }
    }

    /// When the next timer is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }
}

impl Node {
    /// When the next SWIM timer is due (`None`: SWIM off or idle).
    pub(super) fn swim_due(&self) -> Option<Instant> {
        self.swim.as_ref().and_then(SwimState::next_due)
    }

    /// Fire every SWIM timer that is due.
    pub(super) fn on_swim_timers(&mut self) {
        let now = Instant::now();
        loop {
            let Some(s) = self.swim.as_mut() else { return };
            let Some(Reverse((at, seq))) = s.timers.peek().copied() else {
                return;
            };
            if at > now {
                return;
            }
            s.timers.pop();
            let Some(timer) = s.armed.remove(&seq) else {
                continue;
            };
            let a = s.swim.handle_timer(timer);
            self.swim_apply(a);
        }
    }

    /// Members whose records say they run SWIM join its probe rotation.
    pub(super) fn swim_learn(&mut self) {
        if self.swim.is_none() {
            return;
        }
        let members = self.engine.swim_members(std::time::Instant::now());
        if let Some(s) = self.swim.as_mut() {
            let a = s.swim.learn(members);
            self.swim_apply(a);
        }
    }

    /// Send what SWIM asks for and arm its timers.
    fn swim_apply(&mut self, a: SwimActions) {
        let now = Instant::now();
        if let Some(s) = self.swim.as_mut() {
            for (after, timer) in a.timers {
                s.seq += 1;
                s.timers.push(Reverse((now + after, s.seq)));
                s.armed.insert(s.seq, timer);
            }
        }
        for (to, bytes) in a.send {
            // A member without a connection is dialled at its record's
            // addresses and the datagram waits for the connection; one we
            // cannot dial loses it, which SWIM treats as it treats any
            // lost datagram.
            if !self.connected.contains(&to) && !self.dial_member(to) {
                continue;
            }
            if let Some(b) = self.swarm.behaviour_mut().swim.as_mut() {
                b.send_request(&to, bytes);
                self.metrics
                    .swim_datagrams
                    .with_label_values(&["out"])
                    .inc();
            }
        }
        for p in a.up {
            self.engine.swim_up(&p);
        }
        let now = std::time::Instant::now();
        for p in a.down {
            self.metrics.swim_down.inc();
            if self.engine.swim_down(p, now) {
                tracing::info!(peer = %p, "swim: member declared down, dead until its record advances");
                // The view changes now, not at the next housekeeping tick.
                self.publish();
            }
        }
        if let Some(s) = self.swim.as_ref() {
            self.metrics
                .swim_members
                .set(i64::try_from(s.swim.active_count()).unwrap_or(i64::MAX));
        }
    }

    /// A SWIM request (a datagram) or the empty answer to one of ours.
    pub(super) fn on_swim_event(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message};
        let Event::Message {
            peer,
            message: Message::Request {
                request, channel, ..
            },
            ..
        } = ev
        else {
            return;
        };
        if let Some(b) = self.swarm.behaviour_mut().swim.as_mut() {
            let _ = b.send_response(channel, Vec::new());
        }
        self.metrics.swim_datagrams.with_label_values(&["in"]).inc();
        // Only members speak SWIM here: the roster (or the allowlist, which
        // the swarm enforces before this) decides, as for records.
        if !self.engine.is_member(&peer) {
            self.metrics.swim_refused.inc();
            return;
        }
        let Some(s) = self.swim.as_mut() else { return };
        match s.swim.handle_data(peer, &request) {
            Ok(a) => self.swim_apply(a),
            Err(e) => {
                self.metrics.swim_refused.inc();
                tracing::debug!(%peer, error = %e, "swim datagram refused");
            }
        }
    }
}
