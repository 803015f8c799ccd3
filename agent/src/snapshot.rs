//! Turns the agent's internal state into the exporter's [`Snapshot`].

use crate::sampler::SensorState;
use crate::thermal::{Reading, ThermalSummary};
use coolmesh_exporter::model::{
    FsmView, PowerView, SensorReading, SourceStatus, TargetStatus, Thermal,
};
use coolmesh_exporter::Snapshot;

/// Exporter view of a reading.
pub fn reading(r: &Reading) -> SensorReading {
    SensorReading {
        chip: r.chip.clone(),
        sensor: r.sensor.clone(),
        label: r.label.clone(),
        celsius: r.celsius,
        max_celsius: r.max_celsius,
        critical_celsius: r.critical_celsius,
        source: r.source.clone(),
    }
}

/// Exporter view of a thermal summary.
pub fn thermal(t: &ThermalSummary) -> Thermal {
    Thermal {
        hottest_celsius: t.hottest_celsius,
        headroom_celsius: t.headroom_celsius,
        trend_celsius_per_minute: t.trend_celsius_per_minute,
        time_to_critical_seconds: t.time_to_critical_seconds,
        critical: t.critical,
    }
}

/// Fill the sensor part of a snapshot.
pub fn apply_sensors(snap: &mut Snapshot, s: &SensorState) {
    snap.ready = s.round > 0;
    snap.readings = s.readings.iter().map(reading).collect();
    snap.sources = s
        .sources
        .iter()
        .map(|st| SourceStatus {
            name: st.name.clone(),
            up: st.up,
            duration_seconds: st.duration.as_secs_f64(),
            readings: st.readings,
            error: st.error.clone(),
            last_read_ms: st.at_ms,
        })
        .collect();
    snap.thermal = thermal(&s.thermal);
}

/// Fill the power part of a snapshot from one probe round.
pub fn apply_power(snap: &mut Snapshot, policy: &str, obs: &crate::power::PowerObservation) {
    snap.power = PowerView {
        policy: policy.to_string(),
        up: Some(obs.up),
        targets: obs
            .targets
            .iter()
            .map(|t| TargetStatus {
                target: t.target.clone(),
                up: t.up,
                duration_seconds: t.duration.as_secs_f64(),
                error: t.error.clone(),
            })
            .collect(),
        at_ms: obs
            .at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
}

/// Fill the state machine part of a snapshot.
pub fn apply_machine(
    snap: &mut Snapshot,
    m: &crate::fsm::Machine,
    cfg: &crate::fsm::FsmConfig,
    dry_run: bool,
) {
    snap.fsm = FsmView {
        state: m.state.as_str().to_string(),
        reason: m.reason.as_str().to_string(),
        detail: m.detail.clone(),
        since_ms: m.since.0,
        deadline_ms: m.effective_deadline(cfg).map(|d| d.0),
        maintenance_until_ms: m.maintenance_until.map(|d| d.0),
        executed: m.shutdown_issued(),
        dry_run,
    };
}

/// Cluster-wide vote figures. Until peers are known this node is the whole
/// room: its own observation is the only vote, and the quorum is a majority
/// of one.
pub fn apply_votes(snap: &mut Snapshot, heating: bool) {
    use coolmesh_exporter::model::PowerVote;
    snap.cluster.power_votes = snap
        .power
        .targets
        .iter()
        .map(|t| PowerVote {
            target: t.target.clone(),
            up: u32::from(t.up),
            down: u32::from(!t.up),
        })
        .collect();
    snap.cluster.overheating = u32::from(heating);
    let nodes = 1 + snap
        .cluster
        .peers
        .iter()
        .filter(|p| p.liveness == "alive" && !p.stale)
        .count() as u32;
    snap.cluster.quorum = nodes / 2 + 1;
}
