//! `nut://[USER@]HOST[:PORT]/UPS`: a UPS through the NUT network protocol.
//!
//! One fresh TCP connection to `upsd` per probe (default port 3493), then:
//!
//! ```text
//! [USERNAME user]                       only with USER@ (no password: see below)
//! GET VAR ups ups.status        -> VAR ups ups.status "OB DISCHRG LB"
//! GET VAR ups battery.runtime   -> VAR ups battery.runtime "342"   (or ERR ...)
//! LOGOUT                        -> OK Goodbye                      (not waited for long)
//! ```
//!
//! # What the status means
//!
//! `ups.status` is a list of flags. coolmesh reads three kinds:
//!
//! | flags | result |
//! |---|---|
//! | `OL` (with anything but `OB`) | *up*: the UPS runs on mains. `LB`, `FSD`, a runtime: ignored on mains, so a battery reading never shuts a server down while mains is there |
//! | `OB` | *down*: mains is lost at the UPS input ([`ProbeError::Down`]) |
//! | `OB` with `LB` or `FSD` | *down* and *urgent* ([`UpsReading::urgent`]): the UPS is about to drop its load |
//! | both `OL` and `OB`, or neither (`OFF`, `WAIT`, empty, garbage) | *unknown* |
//!
//! A UPS on battery is what a dark device on raw mains is for the other
//! probes: evidence that mains is lost for the servers behind it. The state
//! machine treats it the same way (corroborated by peers that probe the
//! same UPS); what it adds is the urgency and the runtime left
//! (`battery.runtime`), which can only bring the shutdown *earlier* once a
//! corroborated power loss runs (see `fsm`, "Battery").
//!
//! # Failures are unknown, never down
//!
//! `upsd` normally runs on a host that the UPS keeps running, so its
//! silence says nothing about mains. No connection, a timeout, a closed
//! connection, `ERR DATA-STALE` (the driver lost the UPS),
//! `ERR DRIVER-NOT-CONNECTED`, `ERR ACCESS-DENIED`, `ERR UNKNOWN-UPS`, an
//! answer that is not NUT, a line longer than [`MAX_LINE`]: all are
//! [`ProbeError::NoReading`], *unknown*: no vote, `local_fault`, an alert,
//! never a shutdown. Only a fresh `OB` is a "down" vote.
//!
//! # No password
//!
//! upsd answers `GET VAR` to anyone its `LISTEN` lines and firewall let in;
//! it checks a password only for `LOGIN` (upsmon's), `SET` and `INSTCMD`.
//! coolmesh sends none of these: a `LOGIN` would count the agent as a
//! power consumer of the UPS, and a primary upsmon waits for those to log
//! out before it cuts the UPS output. `USER@` is sent as `USERNAME` only.
//!
//! # Bounds
//!
//! Every answer line is read with a length cap ([`MAX_LINE`]); the whole
//! probe (resolution, connect, every exchange) runs under the probe timeout;
//! nothing here panics on hostile input. `LOGOUT` is sent politely and its
//! answer waited for at most [`LOGOUT_WAIT`] within the same timeout.
//!
//! # Layout
//!
//! - this file: the [`NutProbe`], its exchange with upsd and [`judge`], which
//!   turns a status into the probe result.
//! - `protocol.rs`: the lines of the protocol: commands, `VAR` answers and
//!   `ERR` refusals, the capped [`read_line`], [`parse_runtime`].
//! - `tls.rs`: `nuts://`: the client configuration ([`tls_client_config`]) and
//!   [`NutProbe::with_tls`].
//! - `tests.rs`: the tests, against a fake upsd (plain and STARTTLS).

use super::{Endpoint, Host, Probe, ProbeError, Resolve, UpsReading};
use futures::future::BoxFuture;
use protocol::{command, get_var, shown};
use std::sync::Arc;
use std::time::Duration;
use tls::NutTls;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};

mod protocol;
mod tls;

pub use protocol::{parse_runtime, parse_var, read_line};
pub use tls::tls_client_config;

/// Longest answer line accepted, newline included. upsd's own answers to
/// `GET VAR` are far shorter (a status is a few flags; upsd caps values at
/// 256 bytes); anything longer is not upsd, and reading it unbounded would
/// let a hostile peer grow the agent's memory.
pub const MAX_LINE: usize = 512;

/// How long `LOGOUT` may wait for upsd's `OK Goodbye` (within the probe
/// timeout). The answer changes nothing; waiting a little lets upsd close
/// first, so that it logs a clean logout instead of a dropped client.
pub const LOGOUT_WAIT: Duration = Duration::from_millis(100);

/// NUT probe.
pub struct NutProbe {
    label: String,
    endpoint: Endpoint,
    ups: String,
    user: Option<String>,
    tls: Option<NutTls>,
}

impl NutProbe {
    /// A probe of UPS `ups` on `upsd` at `host:port`, reported as `label`,
    /// introducing itself as `user` (`USERNAME`) when given.
    pub fn new(
        label: &str,
        host: Host,
        port: u16,
        ups: &str,
        user: Option<String>,
        resolver: Arc<dyn Resolve>,
    ) -> Self {
        Self {
            label: label.to_string(),
            endpoint: Endpoint::new(host, port, resolver),
            ups: ups.to_string(),
            user,
            tls: None,
        }
    }

    /// Ask upsd. `Ok((status, runtime))` when it gave a status.
    async fn ask(&self, timeout: Duration) -> Result<(String, Option<Duration>), ProbeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = self.endpoint.connect().await?;
        let Some(tls) = &self.tls else {
            return self.session(BufReader::new(stream), deadline).await;
        };
        let mut conn = BufReader::new(stream);
        command(&mut conn, "STARTTLS\n", "STARTTLS").await?;
        // upsd waits for our ClientHello after `OK STARTTLS`: anything
        // already buffered was sent in clear text after the switch.
        if !conn.buffer().is_empty() {
            return Err(ProbeError::NoReading(
                "upsd sent clear text after OK STARTTLS: not the NUT protocol".into(),
            ));
        }
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config))
            .connect(tls.name.clone(), conn.into_inner())
            .await
            .map_err(|e| ProbeError::NoReading(format!("TLS with upsd failed: {e}")))?;
        self.session(BufReader::new(stream), deadline).await
    }

    /// The exchange after the connection (and TLS) is up.
    async fn session<S>(
        &self,
        mut conn: BufReader<S>,
        deadline: tokio::time::Instant,
    ) -> Result<(String, Option<Duration>), ProbeError>
    where
        S: tokio::io::AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(user) = &self.user {
            command(&mut conn, &format!("USERNAME {user}\n"), "USERNAME").await?;
        }
        let status = get_var(&mut conn, &self.ups, "ups.status").await?;
        // The runtime is extra: a UPS that does not report it
        // (VAR-NOT-SUPPORTED), or any other failure here, leaves the status
        // standing, and the grace alone decides.
        let runtime = match get_var(&mut conn, &self.ups, "battery.runtime").await {
            Ok(v) => parse_runtime(&v),
            Err(_) => None,
        };
        // Polite, bounded, and never the result's business.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::time::timeout(left.min(LOGOUT_WAIT), async {
            if conn.get_mut().write_all(b"LOGOUT\n").await.is_ok() {
                let _ = read_line(&mut conn).await;
            }
        })
        .await;
        Ok((status, runtime))
    }

    async fn read(&self, timeout: Duration) -> (Result<(), ProbeError>, Option<UpsReading>) {
        let answer = match tokio::time::timeout(timeout, self.ask(timeout)).await {
            Ok(a) => a,
            Err(_) => Err(ProbeError::NoReading(format!(
                "upsd did not answer within {timeout:?}"
            ))),
        };
        match answer {
            Ok((status, runtime)) => judge(&status, runtime),
            // Local errors stay local (the same kind as other probes', and
            // unknown too); everything else about upsd is no reading.
            Err(e) if e.is_local() => (Err(e), None),
            Err(ProbeError::NoReading(m)) => (Err(ProbeError::NoReading(m)), None),
            Err(e) => (Err(ProbeError::NoReading(format!("upsd: {e}"))), None),
        }
    }
}

impl Probe for NutProbe {
    fn target(&self) -> &str {
        &self.label
    }

    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Result<(), ProbeError>> {
        Box::pin(async move { self.read(timeout).await.0 })
    }

    fn probe_ups(
        &self,
        timeout: Duration,
    ) -> BoxFuture<'_, (Result<(), ProbeError>, Option<UpsReading>)> {
        Box::pin(self.read(timeout))
    }

    fn overrun(&self, timeout: Duration) -> ProbeError {
        ProbeError::NoReading(format!("upsd did not answer within {timeout:?}"))
    }
}

/// Turn a status (and the runtime) into the probe result; pure. See the
/// module documentation for the table.
pub fn judge(
    status: &str,
    runtime: Option<Duration>,
) -> (Result<(), ProbeError>, Option<UpsReading>) {
    let flags: Vec<&str> = status.split_ascii_whitespace().collect();
    let has = |f: &str| flags.contains(&f);
    let (ol, ob) = (has("OL"), has("OB"));
    let shown = shown(status);
    match (ol, ob) {
        (true, false) => (
            Ok(()),
            Some(UpsReading {
                on_battery: false,
                urgent: false,
                runtime,
            }),
        ),
        (false, true) => {
            let urgent = has("LB") || has("FSD");
            let mut why = format!("UPS on battery (ups.status {shown})");
            if let Some(r) = runtime {
                why.push_str(&format!(", battery.runtime {}s", r.as_secs()));
            }
            if urgent {
                why.push_str(if has("LB") {
                    ", low battery"
                } else {
                    ", forced shutdown"
                });
            }
            (
                Err(ProbeError::Down(why)),
                Some(UpsReading {
                    on_battery: true,
                    urgent,
                    runtime,
                }),
            )
        }
        (true, true) => (
            Err(ProbeError::NoReading(format!(
                "ups.status {shown} says both OL and OB: no reading"
            ))),
            None,
        ),
        (false, false) => (
            Err(ProbeError::NoReading(format!(
                "ups.status {shown} says neither OL nor OB: no reading"
            ))),
            None,
        ),
    }
}

#[cfg(test)]
mod tests;
