//! What the core loop asks of the state machine's side: the operator
//! commands it answers, and its counters brought into the metrics.

use crate::config::Config;
use crate::fsm::{Event, Machine, State};
use crate::supervisor::SupervisorStats;
use coolmesh_exporter::{Command, Metrics};
use std::time::Duration;
use tokio::sync::mpsc;

/// Bring the registered counters up to the supervisor's and executor's counts.
pub(super) fn sync_counters(
    metrics: &Metrics,
    fsm: &SupervisorStats,
    exec: &crate::shutdown::ExecStats,
) {
    for (from, to, reason, n) in fsm.all_transitions() {
        let c = metrics.fsm_transitions.with_label_values(&[
            from.as_str(),
            to.as_str(),
            reason.as_str(),
        ]);
        let have = c.get();
        if n > have {
            c.inc_by(n - have);
        }
    }
    let failures = crate::shutdown::ExecStats::get(&exec.command_failures);
    let have = metrics.shutdown_command_failures.get();
    if failures > have {
        metrics.shutdown_command_failures.inc_by(failures - have);
    }
    let unknown = crate::shutdown::ExecStats::get(&exec.outcome_unknown);
    let have = metrics.shutdown_command_outcome_unknown.get();
    if unknown > have {
        metrics
            .shutdown_command_outcome_unknown
            .inc_by(unknown - have);
    }
}

/// Answer an operator command against the current machine.
pub(super) async fn control(
    cmd: &Command,
    m: &Machine,
    tx: &mpsc::Sender<Event>,
    cfg: &Config,
) -> Result<String, String> {
    let send = |ev: Event| async move {
        tx.send_timeout(ev, Duration::from_secs(2))
            .await
            .map_err(|_| "state machine busy; retry".to_string())
    };
    match cmd {
        Command::CancelShutdown => match m.state {
            State::PreFail => {
                send(Event::Cancel).await?;
                tracing::warn!(reason = %m.reason, "operator cancelled the pending shutdown");
                Ok(format!(
                    "pending shutdown ({}) cancelled; automatic shutdowns held for {}",
                    m.reason,
                    humantime::format_duration(cfg.shutdown.cancel_hold)
                ))
            }
            State::Shutdown => {
                Err("the shutdown command has already been issued; it cannot be cancelled".into())
            }
            s => Err(format!("nothing to cancel: state is {s}")),
        },
        Command::Maintenance { duration } if duration.is_zero() => {
            if m.state != State::Maintenance {
                return Err(format!("not in maintenance: state is {}", m.state));
            }
            send(Event::EndMaintenance).await?;
            tracing::warn!("operator ended maintenance");
            Ok("maintenance ended".into())
        }
        Command::Maintenance { duration } => {
            if m.state == State::Shutdown {
                return Err("the shutdown command has already been issued".into());
            }
            // The window is measured on the state machine's clock: it
            // computes the end when it handles the request.
            send(Event::MaintenanceFor {
                duration: *duration,
            })
            .await?;
            let d = humantime::format_duration(*duration);
            tracing::warn!(duration = %d, "operator started maintenance: automatic shutdowns held");
            Ok(format!("maintenance for {d}; automatic shutdowns held"))
        }
        Command::IncrementCounter { .. }
        | Command::SetRoster { .. }
        | Command::Room { .. }
        | Command::Reload => Err("handled by the core loop".into()),
    }
}
