//! The anti-entropy exchanges on the swarm: requests out (ticks, urgent
//! pushes, follow-ups), requests in (rate limit, the engine's answer),
//! responses in.

use std::time::Instant;

use libp2p::request_response::{self};
use libp2p::PeerId;

use crate::cluster::engine::{Now, Sent};
use crate::cluster::record::RejectReason;
use crate::cluster::view::Liveness;
use crate::cluster::wire::{RequestKind, SyncRequest, SyncResponse};

use super::{Node, NON_MEMBER_QUARANTINE};

/// Token bucket for inbound requests of one peer.
pub(super) struct Bucket {
    pub(super) tokens: f64,
    pub(super) last: Instant,
}

impl Bucket {
    /// Whether the bucket would be full by `now`, i.e. no different from a
    /// fresh one (and can be forgotten).
    pub(super) fn refilled(&self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * rate >= burst
    }

    pub(super) fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Node {
    pub(super) fn send(&mut self, peer: PeerId, kind: RequestKind) {
        if self.non_members.contains_key(&peer) {
            return;
        }
        // In the overlay the peer is chosen by the engine among all living
        // members (a neighbour, the anti-entropy partner), connected or
        // not: one without a connection is dialled, and the request waits
        // for the connection inside the behaviour (a failed dial fails it).
        let reachable = self.connected.contains(&peer)
            || (self.engine.overlay_mode() && self.dial_member(peer));
        if !reachable {
            return;
        }
        // One exchange in flight per peer (a push burst waits for it).
        if matches!(kind, RequestKind::Sync | RequestKind::Delta) && !self.outstanding.insert(peer)
        {
            return;
        }
        let (req, sent) = self.engine.request(peer, kind, Now::system());
        // A delta to a peer we know nothing of goes out as a full Sync.
        let kind = req.kind();
        self.send_built(peer, kind, req, sent);
    }

    /// Overlay mode: push what an out-neighbour lacks to it, one exchange
    /// in flight each (the one a record came from is believed to have it
    /// and gets nothing).
    pub(super) fn forward_news(&mut self) {
        let now = Instant::now();
        for p in self.engine.push_targets(now) {
            self.send(p, RequestKind::Delta);
        }
    }

    pub(super) fn send_built(
        &mut self,
        peer: PeerId,
        kind: RequestKind,
        req: SyncRequest,
        sent: Sent,
    ) {
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, req.to_bytes());
        self.pending.insert(id, (peer, kind, sent));
        self.metrics.message("out", kind.label());
        self.dirty = true; // our own record may have a new version
    }

    pub(super) fn push_urgent(&mut self) {
        let now = Now::system();
        self.engine.refresh(now, true);
        if self.engine.overlay_mode() {
            // In the overlay the new version goes to the neighbours as a
            // delta and on from there; a push to every member would carry
            // the full digest N times.
            self.forward_news();
            self.dirty = true;
            return;
        }
        let targets: Vec<PeerId> = self
            .connected_list()
            .into_iter()
            .filter(|p| {
                self.engine
                    .liveness(p, now.mono)
                    .is_some_and(|l| l != Liveness::Dead)
            })
            .collect();
        tracing::debug!(peers = targets.len(), "pushing an urgent change");
        for p in targets {
            self.send(p, RequestKind::Push);
        }
        self.dirty = true;
    }

    pub(super) fn on_sync_tick(&mut self) {
        let now = Instant::now();
        let list = self.connected_list();
        let kind = self.engine.sync_kind();
        for p in self.engine.sync_targets(&list, self.cfg.sync_interval, now) {
            self.send(p, kind);
        }
    }

    pub(super) fn on_anti_entropy_tick(&mut self) {
        let now = Instant::now();
        let list = self.connected_list();
        for p in self
            .engine
            .anti_entropy_targets(&list, self.cfg.fanout, now, &mut self.rng)
        {
            self.send(p, RequestKind::Sync);
        }
    }

    /// Take a token from `peer`'s inbound bucket (sync and room requests
    /// share it); a request over the rate is counted and refused.
    pub(super) fn admit(&mut self, peer: PeerId, now: Instant) -> bool {
        let (rate, burst) = (
            f64::from(self.cfg.inbound_rate),
            f64::from(self.cfg.inbound_burst),
        );
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        if bucket.take(now, rate, burst) {
            true
        } else {
            self.metrics.reject(RejectReason::RateLimited);
            false
        }
    }

    /// An inbound request of `peer` (sync or room) arriving now: its time
    /// when [`Node::admit`] lets it through; `None` when it is over the rate
    /// (the caller drops the channel, which refuses the request).
    pub(super) fn admit_request(&mut self, peer: PeerId) -> Option<Now> {
        let now = Now::system();
        self.admit(peer, now.mono).then_some(now)
    }

    pub(super) fn on_sync_event(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let Some(now) = self.admit_request(peer) else {
                    return; // dropping the channel refuses the request
                };
                let req = match SyncRequest::from_bytes(&request) {
                    Ok(r) => r,
                    Err(reason) => {
                        tracing::debug!(%peer, "malformed request");
                        self.metrics.reject(reason);
                        return;
                    }
                };
                self.metrics.message("in", req.kind().label());
                match self.engine.handle_request(peer, &req, now) {
                    Ok((resp, out)) => {
                        for r in &out.rejected {
                            tracing::debug!(%peer, reason = %r, "rejected a record");
                            self.metrics.reject(*r);
                        }
                        self.dirty |= out.changed;
                        let news = out.changed;
                        if self
                            .swarm
                            .behaviour_mut()
                            .sync
                            .send_response(channel, resp.to_bytes())
                            .is_ok()
                        {
                            self.metrics.message("out", "records");
                        }
                        if news {
                            self.forward_news();
                        }
                    }
                    Err(reason) => {
                        tracing::debug!(%peer, %reason, "rejected a request");
                        self.metrics.reject(reason);
                    }
                }
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.metrics.message("in", "records");
                let Some((_, kind, sent)) = self.pending.remove(&request_id) else {
                    return;
                };
                if matches!(kind, RequestKind::Sync | RequestKind::Delta) {
                    self.outstanding.remove(&peer);
                }
                let resp = match SyncResponse::from_bytes(&response) {
                    Ok(r) => r,
                    Err(reason) => {
                        self.metrics.reject(reason);
                        self.engine.forget_knowledge(&peer);
                        return;
                    }
                };
                let (follow, out) = self
                    .engine
                    .handle_response(peer, &sent, &resp, Now::system());
                for r in &out.rejected {
                    tracing::debug!(%peer, reason = %r, "rejected a record");
                    self.metrics.reject(*r);
                }
                self.dirty |= out.changed;
                if let Some((req, sent)) = follow {
                    self.send_built(peer, RequestKind::Records, req, sent);
                }
                if out.changed {
                    self.forward_news();
                } else if self.engine.push_again(&peer, Instant::now()) {
                    // What arrived while this exchange was in flight.
                    self.send(peer, RequestKind::Delta);
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, kind, _)) = self.pending.remove(&request_id) {
                    if matches!(kind, RequestKind::Sync | RequestKind::Delta) {
                        self.outstanding.remove(&peer);
                    }
                }
                self.engine.forget_knowledge(&peer);
                if matches!(
                    error,
                    request_response::OutboundFailure::UnsupportedProtocols
                ) {
                    self.non_members
                        .insert(peer, Instant::now() + NON_MEMBER_QUARANTINE);
                    let _ = self.swarm.disconnect_peer_id(peer);
                } else {
                    tracing::debug!(%peer, %error, "exchange failed");
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                // Framing errors of inbound requests never get here; the
                // codec counts them (see `FrameCodec`).
                tracing::trace!(%peer, %error, "inbound exchange failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }
}
