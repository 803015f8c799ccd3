//! `[shutdown]`: the grace, the command and how it runs.

use super::*;

pub(super) fn parse_shutdown(w: &mut Walker<'_>, t: &Table, s: &mut ShutdownSection) {
    const KEYS: &[&str] = &[
        "grace",
        "command",
        "pre_command",
        "pre_command_timeout",
        "command_timeout",
        "duration",
        "recovery_probes",
        "cancel_hold",
        "dry_run",
        "dry_run_marker",
        "stage",
        "stage_timeout",
    ];
    let day = Duration::from_secs(24 * 3600);
    w.table("shutdown", t, KEYS, |w, k, full, it| match k {
        "grace" => {
            if let Some(d) = w.nonzero_duration(full, it, day, "the server would power off on the first corroborated mains blip; the grace rides through short outages and must end with enough battery for the shutdown (default 5m)") {
                s.grace = d;
            }
        }
        "pre_command_timeout" => {
            if let Some(d) = w.duration(full, it, Duration::from_secs(1), Duration::from_secs(3600))
            {
                s.pre_command_timeout = d;
            }
        }
        "command_timeout" => {
            if let Some(d) = w.duration(full, it, Duration::from_secs(1), Duration::from_secs(3600))
            {
                s.command_timeout = d;
            }
        }
        "duration" => {
            if let Some(d) = w.duration(full, it, Duration::ZERO, Duration::from_secs(3600)) {
                s.duration = d;
            }
        }
        "cancel_hold" => {
            if let Some(d) = w.duration(full, it, Duration::ZERO, 7 * day) {
                s.cancel_hold = d;
            }
        }
        "command" => {
            if let Some(v) = w.argv(full, it) {
                s.command = v;
            }
        }
        "pre_command" => {
            if let Some(v) = w.argv(full, it) {
                s.pre_command = v;
            }
        }
        "recovery_probes" => {
            if let Some(v) = w.int(full, it, 1..=100) {
                s.recovery_probes = v as u32;
            }
        }
        "dry_run" => {
            if let Some(v) = w.bool(full, it) {
                s.dry_run = v;
            }
        }
        "stage" => {
            // A handful of stages covers compute, storage and network; a
            // bound keeps a typo (a port number, a year) from reading as a
            // valid, absurd order.
            if let Some(v) = w.int(full, it, 0..=i64::from(crate::stage::MAX_STAGE)) {
                s.stage = v as u32;
            }
        }
        "stage_timeout" => {
            if let Some(d) = w.duration(full, it, Duration::ZERO, Duration::from_secs(3600)) {
                s.stage_timeout = d;
            }
        }
        _ => s.dry_run_marker = w.nonempty_string(full, it).map(PathBuf::from),
    });
}
