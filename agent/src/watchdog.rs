//! systemd integration: READY=1 once serving, WATCHDOG=1 from the core loop
//! only, so a hung core loop stops the pings and systemd restarts the agent.
//! Outside systemd (no `NOTIFY_SOCKET`) these are no-ops.

/// Tell systemd the agent is up.
pub fn ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::debug!(error = %e, "sd_notify READY failed");
    }
}

/// Feed the watchdog.
pub fn ping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
}
