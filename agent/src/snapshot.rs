//! Turns the agent's internal state into the exporter's [`Snapshot`].

use crate::sampler::SensorState;
use crate::thermal::{Reading, ThermalSummary};
use coolmesh_exporter::model::{SensorReading, SourceStatus, Thermal};
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
