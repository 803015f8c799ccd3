//! Room commands on the swarm: one the operator sent through this node
//! (applied here, sent to every member, answers collected into the report)
//! and one a member sent (checked, applied, answered).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libp2p::request_response::{self};
use libp2p::PeerId;

use crate::cluster::record::RejectReason;
use crate::cluster::room::{
    self, NodeAnswer, RoomAck, RoomApply, RoomCommand, RoomReport, Unreached,
};
use crate::cluster::view::Liveness;

use super::Node;

/// How long a member has to answer a room command. The state machine
/// answers within milliseconds; a member that takes longer is reported as
/// not reached, and the operator still has the rest of the grace.
pub(super) const ROOM_TIMEOUT: Duration = Duration::from_secs(2);

/// A room command this node sent, collecting answers.
pub(super) struct PendingRoom {
    /// The command's wire form, for members reached after a dial.
    pub(super) bytes: Vec<u8>,
    /// Alive members this node was not connected to: dialled, sent the
    /// command once connected, reported unreached at `dial_until`.
    pub(super) dialing: HashSet<PeerId>,
    pub(super) dial_until: Instant,
    pub(super) report: RoomReport,
    /// Answers still expected (peers, and this node's own).
    pub(super) waiting: usize,
    pub(super) reply: Option<tokio::sync::oneshot::Sender<Result<RoomReport, String>>>,
}

/// The local state machine answered a room command.
pub(super) enum RoomDone {
    /// One this node sent (by id).
    Own(u64, RoomAck),
    /// One a peer sent: answer on its channel.
    Peer(request_response::ResponseChannel<Vec<u8>>, RoomAck),
}

impl Node {
    pub(super) fn room_policy(&self) -> room::Policy {
        room::Policy {
            cluster: self.cfg.name.clone(),
            operator: self.cfg.operator.clone(),
            enabled: self.cfg.room_commands,
        }
    }

    /// Hand a checked command to the local state machine; the future
    /// yields its answer (or a refusal if it cannot be asked).
    pub(super) fn apply_here(
        &self,
        command: RoomCommand,
        from: Option<PeerId>,
    ) -> futures::future::BoxFuture<'static, RoomAck> {
        let sink = self.room_sink.clone();
        Box::pin(async move {
            let Some(sink) = sink else {
                return RoomAck::refused("", "no state machine on this node", "");
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            let apply = RoomApply {
                command,
                from,
                reply: tx,
            };
            // Bounded: a flood of commands is refused, never queued.
            if sink.try_send(apply).is_err() {
                return RoomAck::refused("", "the state machine is busy; retry", "");
            }
            match tokio::time::timeout(ROOM_TIMEOUT, rx).await {
                Ok(Ok(ack)) => ack,
                _ => RoomAck::refused("", "the state machine did not answer in time", ""),
            }
        })
    }

    /// The operator's command: check it as every member will, apply it
    /// here, send it to every connected member.
    pub(super) fn start_room(
        &mut self,
        bytes: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<Result<RoomReport, String>>,
    ) {
        let cmd = match room::verify(&bytes, &self.room_policy(), crate::clock::unix_ms()) {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                return;
            }
        };
        if self.rooms.contains_key(&cmd.id) || !self.room_seen.insert(cmd.id) {
            let _ = reply.send(Err(room::RoomError::Replayed(cmd.id).to_string()));
            return;
        }
        tracing::warn!(
            id = %format!("{:016x}", cmd.id),
            action = %cmd.action,
            requester = %cmd.requester,
            "operator sent a room command; applying it here and sending it to every member"
        );
        let targets: Vec<PeerId> = self
            .connected_list()
            .into_iter()
            .filter(|p| self.engine.is_member(p))
            .collect();
        // Members alive in the view but not connected here (heard through
        // a relay): dial them, and send the command once connected.
        let mut unreached = Vec::new();
        let mut dialing = HashSet::new();
        let now = Instant::now();
        for (p, liveness, addrs) in self.engine.members(now) {
            if liveness == Liveness::Dead || targets.contains(&p) || !self.engine.is_member(&p) {
                continue;
            }
            if addrs.is_empty() || !self.allowed(&p) {
                unreached.push(Unreached {
                    peer_id: p.to_base58(),
                    node: self.peer_name(&p),
                    error: "not connected to this node, and no address to dial".into(),
                });
                continue;
            }
            self.dial_peer(p, addrs, "room command");
            dialing.insert(p);
        }
        for p in &targets {
            let id = self
                .swarm
                .behaviour_mut()
                .room
                .send_request(p, bytes.clone());
            self.room_out.insert(id, (cmd.id, *p));
        }
        if !dialing.is_empty() {
            tracing::info!(
                members = dialing.len(),
                "dialling members this node is not connected to for the room command"
            );
        }
        let id = cmd.id;
        let waiting = targets.len() + dialing.len() + 1;
        self.rooms.insert(
            id,
            PendingRoom {
                bytes,
                dialing,
                dial_until: now + ROOM_TIMEOUT,
                report: RoomReport {
                    id: format!("{id:016x}"),
                    action: cmd.action,
                    requester: cmd.requester.clone(),
                    answers: Vec::new(),
                    unreached,
                },
                waiting,
                reply: Some(reply),
            },
        );
        let work = self.apply_here(cmd, None);
        self.room_work
            .push(Box::pin(async move { RoomDone::Own(id, work.await) }));
    }

    /// One answer (or failure) for a command this node sent.
    pub(super) fn room_answer(&mut self, id: u64, peer: PeerId, answer: Result<RoomAck, String>) {
        // The name from the peer's record: a refusal by a peer's cluster
        // layer carries none.
        let node = self.peer_name(&peer);
        let Some(pending) = self.rooms.get_mut(&id) else {
            return;
        };
        match answer {
            Ok(mut ack) => {
                if ack.node.is_empty() {
                    ack.node = node;
                }
                pending.report.answers.push(NodeAnswer {
                    peer_id: peer.to_base58(),
                    ack,
                })
            }
            Err(error) => {
                pending.report.unreached.push(Unreached {
                    peer_id: peer.to_base58(),
                    node,
                    error,
                });
            }
        }
        pending.waiting = pending.waiting.saturating_sub(1);
        if pending.waiting == 0 {
            if let Some(mut p) = self.rooms.remove(&id) {
                // This node first, then by name.
                let me = self.me.to_base58();
                p.report.answers.sort_by(|a, b| {
                    (a.peer_id != me, &a.ack.node).cmp(&(b.peer_id != me, &b.ack.node))
                });
                p.report.unreached.sort_by(|a, b| a.node.cmp(&b.node));
                if let Some(reply) = p.reply.take() {
                    let _ = reply.send(Ok(p.report));
                }
            }
        }
    }

    /// The name a peer's record gives ("" if unknown).
    pub(super) fn peer_name(&self, p: &PeerId) -> String {
        self.view_tx
            .borrow()
            .peers
            .get(p)
            .map(|v| v.record.state.node.clone())
            .unwrap_or_default()
    }

    /// A member connected: send it the room commands waiting for it.
    pub(super) fn room_connected(&mut self, peer: PeerId) {
        let mut sends = Vec::new();
        for (id, r) in self.rooms.iter_mut() {
            if r.dialing.remove(&peer) {
                sends.push((*id, r.bytes.clone()));
            }
        }
        for (id, bytes) in sends {
            let rid = self.swarm.behaviour_mut().room.send_request(&peer, bytes);
            self.room_out.insert(rid, (id, peer));
        }
    }

    /// Members that could not be reached by dialling in time.
    pub(super) fn room_dial_timeouts(&mut self, now: Instant) {
        let mut late = Vec::new();
        for (id, r) in self.rooms.iter_mut() {
            if now >= r.dial_until && !r.dialing.is_empty() {
                late.extend(r.dialing.drain().map(|p| (*id, p)));
            }
        }
        for (id, p) in late {
            self.room_answer(
                id,
                p,
                Err(format!(
                    "not connected to this node, and no connection within {} s",
                    ROOM_TIMEOUT.as_secs()
                )),
            );
        }
    }

    pub(super) fn on_room_done(&mut self, done: RoomDone) {
        match done {
            RoomDone::Own(id, ack) => self.room_answer(id, self.me, Ok(ack)),
            RoomDone::Peer(channel, ack) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .room
                    .send_response(channel, ack.to_bytes());
            }
        }
    }

    pub(super) fn on_room_event(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
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
                let refuse = |node: &mut Node, channel, why: String| {
                    tracing::warn!(%peer, reason = %why, "refused a room command");
                    let ack = RoomAck::refused("", why, "");
                    let _ = node
                        .swarm
                        .behaviour_mut()
                        .room
                        .send_response(channel, ack.to_bytes());
                };
                if !self.engine.is_member(&peer) {
                    self.metrics.reject(RejectReason::NotInRoster);
                    refuse(self, channel, "the sender is not in the room roster".into());
                    return;
                }
                let cmd = match room::verify(&request, &self.room_policy(), now.unix_ms) {
                    Ok(c) => c,
                    Err(e) => {
                        refuse(self, channel, e.to_string());
                        return;
                    }
                };
                if !self.room_seen.insert(cmd.id) {
                    refuse(self, channel, room::RoomError::Replayed(cmd.id).to_string());
                    return;
                }
                let node = self
                    .view_tx
                    .borrow()
                    .peers
                    .get(&peer)
                    .map(|v| v.record.state.node.clone())
                    .unwrap_or_default();
                tracing::warn!(
                    id = %format!("{:016x}", cmd.id),
                    action = %cmd.action,
                    requester = %cmd.requester,
                    from_peer = %peer,
                    from_node = %node,
                    signed = self.cfg.operator.is_some(),
                    "room command from a member"
                );
                let work = self.apply_here(cmd, Some(peer));
                self.room_work
                    .push(Box::pin(async move { RoomDone::Peer(channel, work.await) }));
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
                if let Some((id, _)) = self.room_out.remove(&request_id) {
                    let answer = RoomAck::from_bytes(&response).map_err(|e| e.to_string());
                    self.room_answer(id, peer, answer);
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((id, _)) = self.room_out.remove(&request_id) {
                    let why = match error {
                        request_response::OutboundFailure::UnsupportedProtocols => {
                            "does not speak the room protocol (an older agent?)".to_string()
                        }
                        request_response::OutboundFailure::Timeout => {
                            format!("no answer within {} s", ROOM_TIMEOUT.as_secs())
                        }
                        e => e.to_string(),
                    };
                    self.room_answer(id, peer, Err(why));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound room exchange failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }
}
