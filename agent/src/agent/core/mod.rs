//! The core loop: the only writer of the snapshot the exporter serves, of
//! this node's counter slots and of the record peers see. Sensor rounds,
//! probe rounds, the peer view and operator commands come in; observations
//! go to the state machine, and every step is journaled.
//!
//! - `mod.rs` (this file): the loop, the snapshot and the published record.
//! - [`journal`](self::journal): each decision and operator action, with its evidence.
//! - [`operator`]: room commands, the roster, counters and the built-in counts.

mod journal;
mod operator;

use super::{control, producers_fresh, sync_counters, watchdog_limit};
use crate::clock::unix_ms;
use crate::cluster::{self, counters::CounterKind, ClusterView, LocalState};
use crate::config::Config;
use crate::counter_store::CounterStore;
use crate::fsm::{Event, FsmConfig, Input, Machine, PeerView, PowerReading, Reason, State};
use crate::power::{self, PowerObservation};
use crate::sampler::SensorState;
use crate::supervisor::SupervisorStats;
use crate::votes::{peer_view, peer_votes_cooling};
use coolmesh_exporter::Command;
use coolmesh_exporter::{ControlRequest, Metrics, Snapshot};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The core loop's state.
pub(super) struct Core {
    pub(super) cfg: Config,
    pub(super) fsm_cfg: FsmConfig,
    pub(super) snap_tx: watch::Sender<Arc<Snapshot>>,
    pub(super) metrics: Metrics,
    pub(super) power_metrics: Option<power::PowerMetrics>,
    pub(super) fsm_stats: Arc<SupervisorStats>,
    pub(super) exec_stats: Arc<crate::shutdown::ExecStats>,
    pub(super) event_tx: mpsc::Sender<Event>,
    pub(super) local_tx: watch::Sender<LocalState>,
    /// Commands to the cluster layer (the roster); `None` without a cluster.
    pub(super) cluster_handle: Option<cluster::ClusterHandle>,
    pub(super) counters: CounterStore,
    /// This node's PeerId (base58), the owner of its counter slots.
    pub(super) peer_id: String,
    pub(super) power_configured: bool,
    pub(super) thermal: crate::thermal::ThermalSummary,
    /// The last probe round as the state machine reads it (`None` before
    /// the first round).
    pub(super) power: Option<PowerReading>,
    /// The last round's UPS battery, when it was down with a UPS on
    /// battery (`PowerObservation::battery`).
    pub(super) battery: Option<crate::fsm::Battery>,
    /// The last round's known per-target results, as published to peers.
    pub(super) power_targets: Vec<cluster::record::TargetObservation>,
    pub(super) view: ClusterView,
    /// This node's power policy (parsed once; applied to peers' votes).
    pub(super) policy: power::Policy,
    /// The peer view last sent as [`Event::PeersChanged`].
    pub(super) sent_peers: Option<PeerView>,
    /// Transition counts already turned into built-in counter increments.
    pub(super) seen_transitions: std::collections::HashMap<(State, State, Reason), u64>,
    pub(super) seen_probe_failures: u64,
    /// This node's slots were merged back from the cluster once.
    pub(super) recovered: bool,
    /// The decision journal.
    pub(super) journal: crate::journal::Journal,
    /// The machine as last journaled (transitions are its differences).
    pub(super) last_machine: Option<Machine>,
    /// Every node's last half hour (`GET /v1/history`).
    pub(super) history: coolmesh_exporter::History,
    /// This node's hottest inlet and ambient sensors in the last round.
    pub(super) air: (Option<f64>, Option<f64>),
    /// Where `POST /-/reload` goes (the reload task, `agent::reload`).
    pub(super) reload_tx: mpsc::Sender<super::reload::ReloadRequest>,
    /// The HTTP address this node publishes (record key 12).
    pub(super) http_advertise: Option<String>,
    /// `coolmesh_http_sd_members_without_address`.
    pub(super) sd_missing: prometheus::IntGauge,
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        mut sensor_rx: watch::Receiver<SensorState>,
        mut power_rx: mpsc::Receiver<PowerObservation>,
        mut machine_rx: watch::Receiver<Machine>,
        mut view_rx: watch::Receiver<ClusterView>,
        mut ctl_rx: mpsc::Receiver<ControlRequest>,
        mut room_rx: mpsc::Receiver<cluster::room::RoomApply>,
        mut fsm_task: tokio::task::JoinHandle<Machine>,
        mut config_rx: watch::Receiver<Arc<Config>>,
    ) -> anyhow::Result<()> {
        crate::watchdog::ready();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let power_open = self.power_configured;
        let mut view_open = self.cfg.cluster.enabled;
        let mut room_open = self.cfg.cluster.enabled;
        self.publish_local(&machine_rx.borrow().clone());
        // The watchdog is fed only while sensor rounds and probe rounds
        // keep arriving: a hung or dead producer means the state machine
        // sees nothing new, and systemd should restart the agent.
        let started = tokio::time::Instant::now();
        let mut last_sensor = started;
        let mut last_power = started;
        let sensor_limit = watchdog_limit(self.cfg.sensors.interval, self.cfg.sensors.timeout);
        let power_limit = watchdog_limit(
            self.cfg
                .power
                .interval
                .mul_f64(1.0 + self.cfg.power.jitter.max(0.0)),
            self.cfg.power.timeout,
        );
        let mut starved = false;
        let mut config_open = true;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = config_rx.changed(), if config_open => {
                    if r.is_err() { config_open = false; continue; }
                    // A reload: only its live keys differ from what runs
                    // (`agent::reload::apply_live`), so the producers'
                    // cadence above is still right.
                    self.cfg = (**config_rx.borrow_and_update()).clone();
                    self.fsm_cfg = super::fsm_config(&self.cfg);
                    // Peers' votes are judged by this node's policy, which
                    // a reload may change (checked by the reload).
                    self.policy = self.cfg.power.policy.parse().unwrap_or(self.policy);
                    self.update(|_| {});
                    self.publish_local(&machine_rx.borrow().clone());
                }
                r = sensor_rx.changed() => {
                    if r.is_err() {
                        return Err(anyhow::anyhow!("the sensor sampler stopped unexpectedly"));
                    }
                    last_sensor = tokio::time::Instant::now();
                    let s = sensor_rx.borrow_and_update().clone();
                    self.thermal = s.thermal;
                    self.air = crate::snapshot::air_temperatures(&s.readings);
                    self.update(|snap| crate::snapshot::apply_sensors(snap, &s));
                    // Without power targets the sensor round is the observation;
                    // with them, each probe round is (it carries the latest
                    // thermal summary), so recovery streaks count probes only.
                    if !self.power_configured {
                        self.observe();
                    }
                    self.publish_local(&machine_rx.borrow().clone());
                }
                obs = power_rx.recv(), if power_open => {
                    let Some(obs) = obs else {
                        // Without probe rounds there are no observations
                        // (and no overheat checks): exit, systemd restarts.
                        return Err(anyhow::anyhow!("the power probe task stopped unexpectedly"));
                    };
                    last_power = tokio::time::Instant::now();
                    // An unknown round (local errors only) is neither up nor
                    // down: the machine reads it as a local fault, and peers
                    // get no vote from us.
                    self.power = Some(obs.up.map_or(PowerReading::Unknown, PowerReading::from));
                    self.battery = obs.battery;
                    let at_ms = crate::clock::to_unix_ms(obs.at);
                    // The record has no "unknown" per target: an unknown
                    // target is left out rather than published as "down",
                    // which peers would count as a vote.
                    self.power_targets = obs
                        .targets
                        .iter()
                        .filter(|t| !t.unknown)
                        .map(|t| cluster::record::TargetObservation { target: t.target.clone(), up: t.up, at_ms })
                        .collect();
                    let policy = self.cfg.power.policy.clone();
                    self.update(|snap| crate::snapshot::apply_power(snap, &policy, &obs));
                    self.observe();
                    self.count_probe_failures();
                    self.publish_local(&machine_rx.borrow().clone());
                }
                r = view_rx.changed(), if view_open => {
                    if r.is_err() { view_open = false; continue; }
                    self.view = view_rx.borrow_and_update().clone();
                    self.peers_changed();
                    // Peers carry our last published slots: after a lost
                    // counters file this brings the counts back (the engine
                    // holds our new record until it heard the old one). A
                    // per-slot max: idempotent, so checked on every change.
                    match self.counters.recover_from(&self.view.counters) {
                        Ok(true) => {
                            self.recovered = true;
                            tracing::warn!("counter slots recovered from peers");
                        }
                        Ok(false) => {}
                        Err(e) => tracing::error!(error = %e, "cannot persist recovered counters"),
                    }
                    self.update(|_| {});
                }
                r = machine_rx.changed() => {
                    if r.is_err() { continue; }
                    let m = machine_rx.borrow_and_update().clone();
                    // A state change gets its point at once (before the
                    // snapshot says so), however short the state.
                    self.history.sample_one(unix_ms(), &self.own_history(&m));
                    let fsm_cfg = self.fsm_cfg.clone();
                    let dry_run = self.cfg.shutdown.dry_run;
                    let stage = self.cfg.shutdown.stage;
                    self.update(|snap| crate::snapshot::apply_machine(snap, &m, &fsm_cfg, dry_run, stage));
                    sync_counters(&self.metrics, &self.fsm_stats, &self.exec_stats);
                    self.count_transitions();
                    self.journal_machine(&m);
                    // Peers hear about a transition at once, by one path:
                    // the cluster layer pushes our record to every member
                    // when the published state changes (`Engine::set_local`).
                    self.publish_local(&m);
                }
                apply = room_rx.recv(), if room_open => {
                    let Some(apply) = apply else { room_open = false; continue; };
                    let m = machine_rx.borrow().clone();
                    let ack = self.room_apply(&apply.command, apply.from, &m).await;
                    if ack.outcome == cluster::room::Outcome::Applied {
                        self.publish_local(&m);
                    }
                    let _ = apply.reply.send(ack);
                }
                Some(req) = ctl_rx.recv() => {
                    if let Command::Reload = req.command {
                        self.forward_reload(req.reply);
                        continue;
                    }
                    if let Command::SetRoster { signed } = req.command {
                        // The cluster layer verifies and answers; the core
                        // loop does not wait for it.
                        self.forward_roster(signed, req.reply);
                        continue;
                    }
                    if let Command::Room { command } = req.command {
                        self.forward_room(command, req.reply);
                        continue;
                    }
                    let m = machine_rx.borrow().clone();
                    let answer = match &req.command {
                        Command::IncrementCounter { name, amount } => self.user_increment(name, *amount),
                        cmd => {
                            let a = control(cmd, &m, &self.event_tx, &self.cfg).await;
                            self.journal_operator(cmd, "the node's HTTP API (token)", "this node", &a);
                            a
                        }
                    };
                    if answer.is_ok() {
                        self.publish_local(&m);
                    }
                    let _ = req.reply.send(answer);
                }
                done = &mut fsm_task => {
                    // The state machine must never stop on its own; without it
                    // the agent protects nothing. Exit so systemd restarts us
                    // (the persisted deadline survives).
                    return Err(anyhow::anyhow!("the state machine stopped unexpectedly: {done:?}"));
                }
                _ = tick.tick() => {
                    let m = machine_rx.borrow().clone();
                    self.history.sample_all(
                        unix_ms(),
                        &crate::snapshot::history_samples(self.own_history(&m), &self.view),
                    );
                    // Feed systemd's watchdog only while this loop runs, the
                    // state machine task is alive (checked above) and the
                    // producers deliver.
                    let now = tokio::time::Instant::now();
                    let (sensors_ok, power_ok) = producers_fresh(
                        now.duration_since(last_sensor),
                        power_open.then(|| now.duration_since(last_power)),
                        sensor_limit,
                        power_limit,
                    );
                    if sensors_ok && power_ok {
                        crate::watchdog::ping();
                        if starved {
                            tracing::info!("sensor and probe rounds arrive again; feeding the watchdog");
                            starved = false;
                        }
                    } else if !starved {
                        starved = true;
                        tracing::error!(sensors_ok, power_ok, "no fresh sensor or probe round: not feeding the watchdog (systemd restarts the agent)");
                    }
                }
            }
        }
    }

    /// This node as the history samples it.
    fn own_history(&self, m: &Machine) -> coolmesh_exporter::history::NodeSample {
        crate::snapshot::self_history_sample(
            &self.cfg.node.name,
            &self.peer_id,
            &self.thermal,
            self.air,
            m.state.as_str(),
        )
    }

    /// Rebuild the snapshot: apply `f`, then the cluster-derived parts.
    fn update(&mut self, f: impl FnOnce(&mut Snapshot)) {
        let mut snap = (**self.snap_tx.borrow()).clone();
        f(&mut snap);
        crate::snapshot::apply_cluster(
            &mut snap,
            &self.view,
            &self.cfg.cluster.name,
            &self.fsm_cfg,
            &self.thermal,
        );
        snap.roster = self
            .cfg
            .cluster
            .operator_key
            .as_deref()
            .map(|k| crate::snapshot::roster_status(&self.view, &self.cfg.cluster.name, k));
        snap.counters = self.counter_view();
        snap.sd_members = self.sd_members();
        self.sd_missing
            .set(snap.sd_members.iter().filter(|m| m.http.is_none()).count() as i64);
        snap.updated_ms = unix_ms();
        self.snap_tx.send_replace(Arc::new(snap));
    }

    /// This node and every member the cluster layer holds (alive,
    /// suspect, or dead within `cluster.retention`), with the HTTP address
    /// each publishes, for `GET /v1/http_sd`.
    fn sd_members(&self) -> Vec<coolmesh_exporter::model::SdMember> {
        use coolmesh_exporter::model::SdMember;
        std::iter::once(SdMember {
            node: self.cfg.node.name.clone(),
            peer_id: self.peer_id.clone(),
            http: self.http_advertise.clone(),
        })
        .chain(self.view.peers.values().map(|p| SdMember {
            node: p.record.state.node.clone(),
            peer_id: p.record.peer_id.to_base58(),
            http: p.record.state.http.clone(),
        }))
        .collect()
    }

    /// Hand `POST /-/reload` to the reload task and answer when it is
    /// done, without holding up this loop (a reload reads files).
    fn forward_reload(&self, reply: tokio::sync::oneshot::Sender<Result<String, String>>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.reload_tx.try_send(Some(tx)).is_err() {
            let _ = reply.send(Err("another reload is already waiting; retry".into()));
            return;
        }
        tokio::spawn(async move {
            let answer = match rx.await {
                Ok(Ok(report)) => serde_json::to_string(&report)
                    .map_err(|e| format!("encoding the reload report: {e}")),
                Ok(Err(e)) => Err(e),
                Err(_) => Err("the agent is stopping".into()),
            };
            let _ = reply.send(answer);
        });
    }

    fn counter_view(&self) -> Vec<coolmesh_exporter::model::CounterStatus> {
        let mut names: std::collections::BTreeSet<String> =
            self.view.counters.map.keys().cloned().collect();
        names.extend(self.counters.names());
        names
            .into_iter()
            .map(|name| {
                let local = self.counters.local(&name);
                // The view may lag our latest increment: combine the
                // cluster's other slots with our own current slot.
                let others: i128 = self
                    .view
                    .counters
                    .map
                    .get(&name)
                    .map(|c| {
                        c.slots
                            .iter()
                            .filter(|(owner, _)| **owner != self.peer_id)
                            .map(|(_, s)| i128::from(s.p) - i128::from(s.n))
                            .sum()
                    })
                    .unwrap_or(0);
                coolmesh_exporter::model::CounterStatus {
                    name,
                    value: clamp(others + local),
                    local: clamp(local),
                }
            })
            .collect()
    }

    /// What fresh peers report, on this node's own targets.
    fn peer_view(&self) -> PeerView {
        let mut pv = peer_view(&self.view, &self.fsm_cfg, &self.power_targets, self.policy);
        pv.stages = crate::votes::stage_gate(&self.view, self.cfg.shutdown.stage);
        pv
    }

    /// The state machine's input: our latest probe result and thermal
    /// summary, plus what fresh (alive) peers report.
    fn observe(&self) {
        let peers = self.peer_view();
        let input = Input {
            power: self.power,
            thermal: self.thermal,
            peers,
            battery: self.battery,
        };
        // Bounded: if the machine is behind, this observation is dropped
        // (the next one supersedes it) rather than queueing stale data.
        if let Err(e) = self.event_tx.try_send(Event::Observe(input)) {
            tracing::warn!(error = %e, "state machine busy; observation dropped");
        }
    }

    /// Tell the state machine when what fresh peers report changed, so that
    /// a corroboration that arrives between two own probes acts at once
    /// (e.g. `local_fault` -> `pre_fail` as peers' "down" votes come in).
    /// Only real changes are sent; the machine re-evaluates with its last
    /// own probe result and never counts this as a probe.
    fn peers_changed(&mut self) {
        // Also without power targets: lower stages that finish release a
        // held command (crate::stage) without waiting for a sensor round.
        let peers = self.peer_view();
        if self.sent_peers == Some(peers) {
            return;
        }
        // Bounded, like observations: if the machine is behind, the next
        // observation carries the same view anyway.
        match self.event_tx.try_send(Event::PeersChanged(peers)) {
            Ok(()) => self.sent_peers = Some(peers),
            Err(e) => tracing::debug!(error = %e, "state machine busy; peer view change dropped"),
        }
    }

    /// Publish what peers should see of us.
    fn publish_local(&self, m: &Machine) {
        let state = LocalState {
            node: self.cfg.node.name.clone(),
            thermal: (&self.thermal).into(),
            power: self.power_targets.clone(),
            power_up: self.power.and_then(PowerReading::vote),
            fsm: cluster::record::FsmSummary {
                state: m.state.as_str().to_string(),
                reason: m.reason.as_str().to_string(),
                deadline_ms: m.effective_deadline(&self.fsm_cfg).map(|d| d.0),
                trigger: if m.trigger == Reason::None {
                    String::new()
                } else {
                    m.trigger.as_str().to_string()
                },
                // Higher stages wait for this (crate::stage).
                done: (m.state == State::Shutdown).then_some(m.exec.done),
            },
            counters: self.counters.own_slots(),
            http: self.http_advertise.clone(),
            stage: self.cfg.shutdown.stage,
            mac: self.cfg.power_on.mac,
            waker: self.cfg.power_on.enabled,
            // The cluster layer says whether it runs SWIM.
            swim: false,
        };
        self.local_tx.send_if_modified(|cur| {
            if *cur == state {
                false
            } else {
                *cur = state;
                true
            }
        });
    }
}

fn clamp(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}
