//! The core loop's journal entries: each transition of the state machine
//! and each operator action, with the evidence the decision saw.

use super::*;

impl Core {
    /// Journal what changed in the machine since the last call:
    /// triggers that became active or cleared, transitions, deadline moves,
    /// shutdown command attempts. The evidence is what this node knows now,
    /// which is what the observation that caused the change carried.
    pub(super) fn journal_machine(&mut self, m: &Machine) {
        use crate::journal::Event as J;
        let Some(prev) = self.last_machine.replace(m.clone()) else {
            // The first machine the supervisor publishes is the one it
            // restored from disk.
            self.journal.record(
                unix_ms(),
                J::Started {
                    version: env!("CARGO_PKG_VERSION").into(),
                    state: m.state.to_string(),
                    reason: m.reason.to_string(),
                    detail: m.detail.clone(),
                },
                None,
            );
            return;
        };
        let now = unix_ms();
        let deadline = |x: &Machine| x.effective_deadline(&self.fsm_cfg).map(|d| d.0);
        let mut evidence = None;
        let mut ev = |this: &Self| evidence.get_or_insert_with(|| this.evidence()).clone();
        for (trigger, was, is) in [
            ("power", prev.power_lost_since, m.power_lost_since),
            ("cooling", prev.cooling_since, m.cooling_since),
            ("overheat", prev.overheat_since, m.overheat_since),
        ] {
            if was.is_some() != is.is_some() {
                let e = ev(self);
                self.journal.record(
                    now,
                    J::Trigger {
                        trigger: trigger.into(),
                        active: is.is_some(),
                    },
                    Some(e),
                );
            }
        }
        if prev.state != m.state || prev.since != m.since {
            let e = ev(self);
            self.journal.record(
                now,
                J::Transition {
                    from: prev.state.to_string(),
                    to: m.state.to_string(),
                    reason: m.reason.to_string(),
                    trigger: m.trigger.to_string(),
                    detail: m.detail.clone(),
                    deadline_before_ms: deadline(&prev),
                    deadline_ms: deadline(m),
                },
                Some(e),
            );
        } else if deadline(&prev) != deadline(m) {
            let e = ev(self);
            self.journal.record(
                now,
                J::DeadlineMoved {
                    reason: m.reason.to_string(),
                    detail: m.detail.clone(),
                    before_ms: deadline(&prev),
                    after_ms: deadline(m),
                },
                Some(e),
            );
        }
        let (a, b) = (&prev.exec, &m.exec);
        let dry_run = self.cfg.shutdown.dry_run;
        let command = |outcome: &str, error: Option<String>| J::Command {
            attempt: b.attempts,
            outcome: outcome.into(),
            error,
            dry_run,
        };
        if b.attempts > a.attempts {
            self.journal.record(now, command("started", None), None);
        }
        if b.done && !a.done {
            self.journal.record(now, command("succeeded", None), None);
        }
        if b.failures > a.failures {
            self.journal
                .record(now, command("failed", b.last_error.clone()), None);
        }
    }

    /// Journal an operator command of the node's own API.
    pub(super) fn journal_operator(
        &self,
        cmd: &Command,
        requester: &str,
        via: &str,
        answer: &Result<String, String>,
    ) {
        let action = match cmd {
            Command::CancelShutdown => "cancel".to_string(),
            Command::Maintenance { duration } if duration.is_zero() => "end maintenance".into(),
            Command::Maintenance { duration } => {
                format!("maintenance for {}", humantime::format_duration(*duration))
            }
            _ => return,
        };
        let (outcome, message) = match answer {
            Ok(m) => ("applied", m.clone()),
            Err(m) => ("refused", m.clone()),
        };
        self.journal.record(
            unix_ms(),
            crate::journal::Event::Operator {
                action,
                requester: requester.into(),
                via: via.into(),
                outcome: outcome.into(),
                message,
            },
            None,
        );
    }

    /// What the decisions use now: this node's probes and readings, the
    /// voters' observations of the same targets (by name), the cooling
    /// quorum as the state machine counts it.
    pub(super) fn evidence(&self) -> crate::journal::Evidence {
        use crate::journal::{CoolingEvidence, Evidence, TargetEvidence, ThermalEvidence};
        let voters = self.view.voters();
        let name = |p: &cluster::ClusterPeer| {
            if p.record.state.node.is_empty() {
                p.record.peer_id.to_base58()
            } else {
                p.record.state.node.clone()
            }
        };
        let targets = self
            .cfg
            .power
            .targets
            .iter()
            .map(|t| {
                let mut te = TargetEvidence {
                    target: t.clone(),
                    own: self
                        .power_targets
                        .iter()
                        .find(|o| &o.target == t)
                        .map(|o| o.up),
                    ..Default::default()
                };
                for p in &voters {
                    if let Some(o) = p.record.state.power.iter().find(|o| &o.target == t) {
                        if o.up {
                            te.up.push(name(p));
                        } else {
                            te.down.push(name(p));
                        }
                    }
                }
                te.up.sort();
                te.down.sort();
                te
            })
            .collect();
        let th = &self.thermal;
        let thermal = ThermalEvidence {
            node: self.cfg.node.name.clone(),
            hottest: th.hottest_celsius,
            headroom: th.headroom_celsius,
            trend: th.trend_celsius_per_minute,
            time_to_critical: th.time_to_critical_seconds,
            critical: th.critical,
            cooling_vote: self.fsm_cfg.is_heating(th),
            air: th.air,
            load: th.load,
        };
        let pv = self.peer_view();
        let (peer_weight, peer_voting) = pv.weights();
        let own_w = if th.air { 2 } else { 1 };
        let own_vote = thermal.cooling_vote;
        let weight = peer_weight + own_w;
        let voting_weight = peer_voting + if own_vote { own_w } else { 0 };
        let voting_nodes = pv.overheating + u32::from(own_vote);
        let (formed, needed) = crate::fsm::weighted_quorum(
            weight,
            voting_weight,
            voting_nodes,
            self.fsm_cfg.cooling_quorum_min,
        );
        let voting = voters
            .iter()
            .filter(|p| peer_votes_cooling(&p.record.state.thermal, &self.fsm_cfg))
            .map(|p| {
                let t = &p.record.state.thermal;
                ThermalEvidence {
                    node: name(p),
                    hottest: t.hottest,
                    headroom: t.headroom,
                    trend: t.trend,
                    time_to_critical: t.time_to_critical,
                    critical: t.critical,
                    cooling_vote: true,
                    air: t.air,
                    load: None,
                }
            })
            .collect();
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Evidence {
            own_power: match self.power {
                None => String::new(),
                Some(PowerReading::Unknown) => "unknown".into(),
                Some(r) => match r.vote() {
                    Some(true) => "up".into(),
                    Some(false) => "down".into(),
                    None => "unknown".into(),
                },
            },
            targets,
            thermal,
            cooling: CoolingEvidence {
                nodes: n(voters.len()) + 1,
                weight,
                voting_weight,
                needed,
                formed,
                voting,
            },
            voters: n(voters.len()),
            non_voters: n(self.view.peers.len().saturating_sub(voters.len())),
            stage: Some(crate::journal::StageEvidence {
                stage: self.cfg.shutdown.stage,
                lower: pv.stages,
            }),
        }
    }
}
