//! What operators and the cluster ask of the core loop besides
//! observations: room commands, roster installs, counter increments, and
//! the built-in counters (transitions, probe failures).

use super::*;

impl Core {
    /// A room command from the operator: the cluster layer checks it,
    /// applies it here (through [`Core::room_apply`]) and on every member,
    /// and answers with the report, which goes back as JSON.
    pub(super) fn forward_room(
        &self,
        command: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    ) {
        let Some(handle) = self.cluster_handle.clone() else {
            let _ = reply.send(Err(
                "the cluster is disabled on this node; use POST /v1/shutdown/cancel or /v1/maintenance".into(),
            ));
            return;
        };
        tokio::spawn(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let answer = match handle
                .send(cluster::Control::Room { command, reply: tx })
                .await
            {
                Err(_) => Err("the cluster layer has stopped".to_string()),
                // The members have 2 s to answer; the layer always replies.
                Ok(()) => match tokio::time::timeout(Duration::from_secs(6), rx).await {
                    Ok(Ok(Ok(report))) => serde_json::to_string(&report).map_err(|e| e.to_string()),
                    Ok(Ok(Err(e))) => Err(e),
                    _ => Err("the cluster layer did not answer; retry".to_string()),
                },
            };
            let _ = reply.send(answer);
        });
    }

    /// Apply a checked room command to this node's state machine, the same
    /// way as the node's own HTTP command, and say how it went. Every node
    /// logs who asked.
    pub(super) async fn room_apply(
        &self,
        cmd: &cluster::room::RoomCommand,
        from: Option<libp2p::PeerId>,
        m: &Machine,
    ) -> cluster::room::RoomAck {
        use cluster::room::{Outcome, RoomAck, RoomAction};
        let (local, nothing) = match cmd.action {
            RoomAction::Cancel => (
                Command::CancelShutdown,
                !matches!(m.state, State::PreFail | State::Shutdown),
            ),
            RoomAction::Maintenance { duration } => (
                Command::Maintenance { duration },
                duration.is_zero() && m.state != State::Maintenance,
            ),
        };
        let (outcome, message) = if nothing {
            let what = match cmd.action {
                RoomAction::Cancel => "nothing to cancel",
                RoomAction::Maintenance { .. } => "not in maintenance",
            };
            (
                Outcome::NothingToDo,
                format!("{what}: state is {}", m.state),
            )
        } else {
            match control(&local, m, &self.event_tx, &self.cfg).await {
                Ok(msg) => (Outcome::Applied, msg),
                Err(msg) => (Outcome::Refused, msg),
            }
        };
        let from = from.map_or_else(|| "this node".to_string(), |p| p.to_base58());
        self.journal.record(
            unix_ms(),
            crate::journal::Event::Operator {
                action: format!("room: {}", cmd.action),
                requester: cmd.requester.clone(),
                via: from.clone(),
                outcome: match outcome {
                    Outcome::Applied => "applied",
                    Outcome::NothingToDo => "nothing to do",
                    Outcome::Refused => "refused",
                }
                .into(),
                message: message.clone(),
            },
            None,
        );
        tracing::warn!(
            id = %format!("{:016x}", cmd.id),
            action = %cmd.action,
            requester = %cmd.requester,
            via = %from,
            outcome = ?outcome,
            state = %m.state,
            answer = %message,
            "room command"
        );
        RoomAck {
            outcome,
            node: self.cfg.node.name.clone(),
            message,
            state: m.state.to_string(),
        }
    }

    /// Hand a signed roster to the cluster layer; the answer goes straight
    /// back to the HTTP request.
    pub(super) fn forward_roster(
        &self,
        signed: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    ) {
        let Some(handle) = self.cluster_handle.clone() else {
            let _ = reply.send(Err("the cluster is disabled on this node".into()));
            return;
        };
        if self.cfg.cluster.operator_key.is_none() {
            let _ = reply.send(Err(
                "this node has no cluster.operator_key, so it takes no roster".into(),
            ));
            return;
        }
        tokio::spawn(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let sent = handle
                .send(cluster::Control::Roster { signed, reply: tx })
                .await;
            let answer = match sent {
                Err(_) => Err("the cluster layer has stopped".to_string()),
                Ok(()) => match tokio::time::timeout(Duration::from_secs(3), rx).await {
                    Ok(Ok(a)) => a,
                    _ => Err("the cluster layer did not answer; retry".to_string()),
                },
            };
            let _ = reply.send(answer);
        });
    }

    pub(super) fn user_increment(&mut self, name: &str, amount: i64) -> Result<String, String> {
        if crate::counter_store::BUILTIN.contains(&name) {
            return Err(format!(
                "{name} is a built-in counter maintained by the agent"
            ));
        }
        if !self.cfg.cluster.enabled {
            tracing::debug!("counters are local only: the cluster is disabled");
        }
        self.counters.add(name, CounterKind::PN, amount)?;
        let r = format!(
            "{name} {amount:+} on this node; local slot now {}",
            self.counters.local(name)
        );
        self.update(|_| {});
        Ok(r)
    }

    pub(super) fn builtin(&mut self, name: &str, n: u64) {
        if n == 0 {
            return;
        }
        if let Err(e) =
            self.counters
                .add(name, CounterKind::G, i64::try_from(n).unwrap_or(i64::MAX))
        {
            tracing::error!(counter = name, error = %e, "cannot count");
        }
    }

    /// Built-in event counters from the state machine's transitions.
    pub(super) fn count_transitions(&mut self) {
        let mut changed = false;
        for (from, to, reason, n) in self.fsm_stats.all_transitions() {
            let seen = self.seen_transitions.entry((from, to, reason)).or_insert(0);
            let new = n.saturating_sub(*seen);
            *seen = n;
            if new == 0 {
                continue;
            }
            let name = match (to, reason) {
                (State::Shutdown, _) => "shutdowns",
                (State::PreFail, Reason::Power) => "power_loss_events",
                (State::PreFail, Reason::Overheat | Reason::Cooling) => "overheat_events",
                _ => continue,
            };
            self.builtin(name, new);
            changed = true;
        }
        if changed {
            self.update(|_| {});
        }
    }

    /// The built-in probe failure counter follows the probe metrics.
    pub(super) fn count_probe_failures(&mut self) {
        let Some(pm) = &self.power_metrics else {
            return;
        };
        let total: u64 = self
            .cfg
            .power
            .targets
            .iter()
            .map(|t| pm.failures_of(t))
            .sum();
        let new = total.saturating_sub(self.seen_probe_failures);
        self.seen_probe_failures = total;
        self.builtin("probe_failures", new);
    }
}
