//! SIGHUP: caught from the start, turned into reload requests; and the
//! answer of an agent started without a config file.

use super::reload;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Answer reload requests of an agent started without a config file.
pub(super) async fn no_reload(mut rx: mpsc::Receiver<reload::ReloadRequest>) {
    while let Some(req) = rx.recv().await {
        let e = "this agent was started without a config file; there is nothing to reload";
        tracing::warn!("{e}");
        if let Some(reply) = req {
            let _ = reply.send(Err(e.to_string()));
        }
    }
}

#[cfg(unix)]
pub(super) type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub(super) type Hangup = ();

/// Catch SIGHUP from now on (the OS handler is installed by this call).
pub(super) fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP; reload with POST /-/reload");
                None
            }
        }
    }
}

/// SIGHUP (`systemctl reload coolmesh`, `kill -HUP`) reloads the config;
/// without a handler its default action would stop the agent. A SIGHUP
/// that finds a reload already waiting joins it (that reload reads the
/// file after this signal anyway).
pub(super) fn watch_hangup(
    hangup: Hangup,
    reload: mpsc::Sender<reload::ReloadRequest>,
    cancel: CancellationToken,
) {
    #[cfg(unix)]
    if let Some(mut hup) = hangup {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = hup.recv() => {
                        if r.is_none() {
                            return;
                        }
                        tracing::info!("SIGHUP received: reloading the config");
                        if reload.try_send(None).is_err() {
                            tracing::info!("a reload is already waiting; this SIGHUP joins it");
                        }
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop((hangup, reload, cancel));
}
