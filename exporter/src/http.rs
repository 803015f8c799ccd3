//! The HTTP server (hyper 1): `/metrics`, health, the JSON API and the
//! operator's mutating endpoints.
//!
//! `serve(listener, app, shutdown)` owns the accept loop. Every connection
//! is bounded ([`conn`] has the whole policy): a per-address and a global
//! connection cap, where a new connection evicts the oldest one that has not
//! delivered a request head instead of being refused; a first-byte timeout
//! and a fixed request-head deadline (slowloris); a header size limit; a
//! response deadline; and request bodies are never read, except the one
//! of `POST /v1/roster`, after its token checked out and at most
//! [`MAX_ROSTER_BYTES`]. On shutdown the loop stops accepting, idle connections close, and
//! requests in progress get a short grace to finish.
//!
//! With a web config file ([`crate::web_config`]) the same loop serves TLS:
//! the handshake runs inside the connection's task, under the same caps,
//! its own timeout and the same request-head deadline (a client that never
//! finishes its handshake is evictable and cut at the deadline). Basic auth
//! then guards every route, and the mutating endpoints additionally want the
//! operator token, in `X-Coolmesh-Token` (the `Authorization` header carries
//! the basic auth credentials).

pub mod conn;
mod serve;

pub use serve::serve;

use crate::auth::TokenCell;
use crate::metrics::Metrics;
use crate::model::Snapshot;
use crate::status_page::STATUS_PAGE;
use crate::web_config::{AuthResult, WebConfig, PLAIN_HTTP_ON_TLS};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

pub use conn::HttpMetrics;
use conn::{ConnState, ConnTable, GuardedIo, Phase, TrackedBody};

/// An operator command for the agent core.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Cancel a pending shutdown (and hold off new ones for the configured hold).
    CancelShutdown,
    /// Hold automatic shutdowns for this long; zero ends maintenance.
    Maintenance {
        /// How long.
        duration: Duration,
    },
    /// Add `amount` to this node's slot of counter `name`.
    IncrementCounter {
        /// Counter name.
        name: String,
        /// Amount (negative only for PN counters).
        amount: i64,
    },
    /// Install a room roster signed by the operator key (the signature is
    /// checked by the cluster layer; the token only opens the door).
    SetRoster {
        /// The signed roster (CBOR).
        signed: Vec<u8>,
    },
    /// A room command (`coolmesh room`): applied here and sent to every
    /// member by the cluster layer, which checks it (cluster, age, the
    /// operator's signature); the answer is the room's report as JSON.
    Room {
        /// The command's wire form (CBOR).
        command: Vec<u8>,
    },
    /// Re-read the config file and apply what can change at runtime
    /// (`POST /-/reload`, as SIGHUP). The answer is the reload report as
    /// JSON; an `Err` (the new config does not load, the old one stays in
    /// force) becomes a 500 with the reader's message, as Prometheus'
    /// own `/-/reload` answers a failed reload.
    Reload,
}

/// Largest body `POST /v1/room` reads (a command is about 150 bytes).
pub const MAX_ROOM_COMMAND_BYTES: usize = 4096;

/// Largest body `POST /v1/roster` reads: a roster of 20,000 members.
pub const MAX_ROSTER_BYTES: usize = 1024 * 1024;

/// A command plus where to send the answer.
#[derive(Debug)]
pub struct ControlRequest {
    /// What to do.
    pub command: Command,
    /// `Ok(message)` or `Err(message)`; an `Err` becomes a 409.
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// Limits; every field documents its default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent connections. Default 64: several Prometheus servers plus
    /// operators, far below fd limits. When reached, the oldest connection
    /// still waiting for a request head is closed to admit the new one; a
    /// new connection is refused only when all are being served.
    pub max_connections: usize,
    /// Concurrent connections per client address (IPv4 address or IPv6
    /// /64), loopback included. Default 8. When reached, that client's own
    /// oldest waiting connection is closed; refused if none is waiting.
    pub max_connections_per_ip: usize,
    /// Time from accept to the first byte from the client (of the request,
    /// or of the TLS ClientHello). Default 2 s.
    pub first_byte_timeout: Duration,
    /// Time from accept to a complete request head, TLS handshake included;
    /// on a kept-alive connection, from the first byte of the next request.
    /// A fixed deadline: trickling bytes does not extend it. Default 5 s.
    pub header_read_timeout: Duration,
    /// Largest request head accepted. Default 16 KiB.
    pub max_header_bytes: usize,
    /// How long a kept-alive connection may wait for its next request.
    /// Default 75 s (nginx's `keepalive_timeout`); idle connections are
    /// evicted first when the caps are reached anyway.
    pub idle_timeout: Duration,
    /// Time from a complete request head to the response written out
    /// (handler included; the operator endpoints wait up to 7 s for the
    /// agent). Default 30 s.
    pub response_timeout: Duration,
    /// How long requests in progress may finish after shutdown starts. Default 1 s.
    pub shutdown_grace: Duration,
    /// Longest maintenance window `POST /v1/maintenance` accepts. Default 7 days.
    pub max_maintenance: Duration,
    /// Time a client gets to complete the TLS handshake (TLS only), counted
    /// from accept and never past `header_read_timeout`. Default 5 s.
    pub tls_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            max_connections_per_ip: 8,
            first_byte_timeout: Duration::from_secs(2),
            header_read_timeout: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            idle_timeout: Duration::from_secs(75),
            response_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(1),
            max_maintenance: Duration::from_secs(7 * 24 * 3600),
            tls_handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything a request handler needs.
pub struct App {
    /// Registry to encode.
    pub metrics: Metrics,
    /// Latest snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// The decision journal (`GET /v1/events`); `None`: 404.
    pub events: Option<Arc<dyn EventSource>>,
    /// The last half hour of every node (`GET /v1/history`); `None`: 404.
    pub history: Option<crate::history::History>,
    /// Where operator commands go; `None` disables them (503).
    pub control: Option<mpsc::Sender<ControlRequest>>,
    /// The operator token, read on every request (a config reload swaps
    /// it); empty disables mutating endpoints (403).
    pub token: TokenCell,
    /// Server limits.
    pub limits: Limits,
    /// TLS, basic auth and extra headers (`--web.config.file`); `None`:
    /// plain HTTP, open reads.
    pub web: Option<Arc<WebConfig>>,
}

/// The agent's decision journal, as `GET /v1/events` serves it.
pub trait EventSource: Send + Sync {
    /// One page as JSON: at most `limit` entries, newest first, with a
    /// sequence number below `before` (if given), none older than
    /// `since_ms` (unix ms, if given).
    fn page_json(
        &self,
        since_ms: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> serde_json::Value;
}

/// Most entries one `GET /v1/events` returns.
pub const MAX_EVENTS_PAGE: usize = 1000;

/// Header that carries the operator token when `Authorization` is taken by
/// basic auth. Accepted with or without basic auth.
pub const TOKEN_HEADER: &str = "x-coolmesh-token";

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Resp {
    match serde_json::to_vec_pretty(v) {
        Ok(body) => text(status, "application/json", body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("encoding: {e}")),
    }
}

fn error(status: StatusCode, msg: &str) -> Resp {
    json_plain(status, &serde_json::json!({ "error": msg }))
}

fn json_plain(status: StatusCode, v: &serde_json::Value) -> Resp {
    text(status, "application/json", v.to_string())
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, &format!("use {allow}"));
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// Parse the query string into pairs (percent-decoded).
fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Counter names: `[A-Za-z0-9_.:-]{1,64}`, so they are safe as label values
/// and in URLs.
pub fn valid_counter_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
}

/// Answer one request: basic auth (when configured) in front of every
/// route, then the route, then the configured extra headers on whatever the
/// answer is.
pub async fn respond(app: Arc<App>, req: Request<Incoming>) -> Resp {
    let Some(web) = app.web.clone() else {
        return handle(app, req).await;
    };
    let verdict = match web.basic_auth() {
        None => AuthResult::Ok,
        Some(auth) => {
            auth.check(req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes))
                .await
        }
    };
    let mut resp = match verdict {
        AuthResult::Ok => handle(app, req).await,
        AuthResult::Denied => {
            let mut r = text(StatusCode::UNAUTHORIZED, "text/plain", "Unauthorized\n");
            // No realm: the toolkit sends none either.
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            r
        }
        AuthResult::Busy => {
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "Too many password checks queued; retry\n",
            );
            r.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    };
    for (k, v) in web.headers() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

/// Route one request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    match path.as_str() {
        "/metrics" if get => match app.metrics.encode() {
            Ok(body) => {
                let ctype = "text/plain; version=0.0.4; charset=utf-8";
                // Prometheus asks for gzip; the page shrinks about 8x, which
                // matters for 1,000 agents scraped every 10 s.
                if accepts_gzip(req.headers()) {
                    if let Some(z) = gzip(body.as_ref()) {
                        let mut r = text(StatusCode::OK, ctype, z);
                        r.headers_mut().insert(
                            hyper::header::CONTENT_ENCODING,
                            HeaderValue::from_static("gzip"),
                        );
                        r.headers_mut().insert(
                            hyper::header::VARY,
                            HeaderValue::from_static("Accept-Encoding"),
                        );
                        return r;
                    }
                }
                let mut r = text(StatusCode::OK, ctype, body);
                r.headers_mut().insert(
                    hyper::header::VARY,
                    HeaderValue::from_static("Accept-Encoding"),
                );
                r
            }
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("encoding metrics: {e}"),
            ),
        },
        "/-/healthy" if get => text(StatusCode::OK, "text/plain", "Healthy.\n"),
        "/-/ready" if get => {
            if app.snapshot.borrow().ready {
                text(StatusCode::OK, "text/plain", "Ready.\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "Not ready: first sensor round pending.\n",
                )
            }
        }
        "/" if get => text(StatusCode::OK, "text/html; charset=utf-8", STATUS_PAGE),
        "/v1/state" if get => {
            let snap = app.snapshot.borrow().clone();
            json(StatusCode::OK, &*snap)
        }
        "/v1/peers" if get => {
            let snap = app.snapshot.borrow().clone();
            json(StatusCode::OK, &snap.cluster.peers)
        }
        "/v1/offload" if get => {
            let snap = app.snapshot.borrow().clone();
            json(StatusCode::OK, &snap.offload_ranking())
        }
        "/v1/counters" if get => {
            let snap = app.snapshot.borrow().clone();
            json(StatusCode::OK, &snap.counters)
        }
        "/v1/events" if get => {
            let Some(events) = &app.events else {
                return error(
                    StatusCode::NOT_FOUND,
                    "this process keeps no decision journal",
                );
            };
            let q = query(&req);
            let since_ms = match param(&q, "since") {
                None => None,
                Some(raw) => match humantime::parse_duration(raw) {
                    Ok(d) => Some(
                        crate::clock::unix_ms()
                            .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    ),
                    Err(e) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!(
                                "bad `since` {raw:?}: {e} (a duration back from now, e.g. 24h)"
                            ),
                        )
                    }
                },
            };
            let before = match param(&q, "before") {
                None => None,
                Some(raw) => match raw.parse::<u64>() {
                    Ok(b) => Some(b),
                    Err(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!(
                                "bad `before` {raw:?}: the `next_before` of the previous page"
                            ),
                        )
                    }
                },
            };
            let limit = match param(&q, "limit") {
                None => 100,
                Some(raw) => match raw.parse::<usize>() {
                    Ok(l) if (1..=MAX_EVENTS_PAGE).contains(&l) => l,
                    _ => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!("bad `limit` {raw:?}: 1-{MAX_EVENTS_PAGE}"),
                        )
                    }
                },
            };
            json_plain(StatusCode::OK, &events.page_json(since_ms, before, limit))
        }
        "/v1/events" => method_not_allowed("GET"),
        "/v1/history" if get => {
            let Some(history) = &app.history else {
                return error(StatusCode::NOT_FOUND, "this process keeps no history");
            };
            let q = query(&req);
            let limit = match param(&q, "limit") {
                None => None,
                Some(raw) => match raw.parse::<usize>() {
                    Ok(l) if l >= 1 => Some(l),
                    _ => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!("bad `limit` {raw:?}: a number of nodes, 1 or more"),
                        )
                    }
                },
            };
            let node = param(&q, "node").map(str::to_string);
            let asked = crate::history::Query {
                node: node.clone(),
                limit,
            };
            match history.to_json(&asked) {
                Some(body) => text(StatusCode::OK, "application/json", body),
                None => error(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "no history of node {:?}: not in this node's view (GET /v1/peers)",
                        node.unwrap_or_default()
                    ),
                ),
            }
        }
        "/v1/history" => method_not_allowed("GET"),
        "/v1/roster" if get => {
            let snap = app.snapshot.borrow().clone();
            match &snap.roster {
                Some(r) => json(StatusCode::OK, r),
                None => error(
                    StatusCode::NOT_FOUND,
                    "no room roster: cluster.operator_key is not set on this node",
                ),
            }
        }
        "/v1/roster" if method == Method::POST => {
            if let Some(denied) = token_denied(&app, &req) {
                return denied;
            }
            // The token was right: only now read the body, bounded in size
            // (and in time by the response deadline).
            let body = http_body_util::Limited::new(req.into_body(), MAX_ROSTER_BYTES);
            let signed = match http_body_util::BodyExt::collect(body).await {
                Ok(b) => b.to_bytes().to_vec(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!(
                        "the body must be one signed roster of at most {MAX_ROSTER_BYTES} bytes"
                    ),
                    )
                }
            };
            if signed.is_empty() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the body must be a signed roster (`coolmesh roster add` makes one)",
                );
            }
            dispatch(&app, Command::SetRoster { signed }).await
        }
        "/v1/roster" => method_not_allowed("GET, POST"),
        "/v1/room" if method == Method::POST => {
            if let Some(denied) = token_denied(&app, &req) {
                return denied;
            }
            let body = http_body_util::Limited::new(req.into_body(), MAX_ROOM_COMMAND_BYTES);
            let command = match http_body_util::BodyExt::collect(body).await {
                Ok(b) => b.to_bytes().to_vec(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("the body must be one room command of at most {MAX_ROOM_COMMAND_BYTES} bytes"),
                    )
                }
            };
            if command.is_empty() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the body must be a room command (`coolmesh room cancel` makes one)",
                );
            }
            match dispatch_raw(
                &app,
                Command::Room { command },
                Duration::from_secs(8),
                StatusCode::CONFLICT,
            )
            .await
            {
                // The agent's answer is the report, already JSON.
                Ok(report) => text(StatusCode::OK, "application/json", report),
                Err(resp) => resp,
            }
        }
        "/v1/room" => method_not_allowed("POST"),
        "/-/reload" if method == Method::POST || method == Method::PUT => {
            // PUT too: Prometheus' own /-/reload takes both.
            if let Some(denied) = token_denied(&app, &req) {
                return denied;
            }
            match dispatch_raw(
                &app,
                Command::Reload,
                Duration::from_secs(10),
                StatusCode::INTERNAL_SERVER_ERROR,
            )
            .await
            {
                Ok(report) => text(StatusCode::OK, "application/json", report),
                Err(resp) => resp,
            }
        }
        "/-/reload" => method_not_allowed("POST, PUT"),
        "/v1/http_sd" if get => {
            let snap = app.snapshot.borrow().clone();
            json_plain(StatusCode::OK, &http_sd_json(&snap))
        }
        "/v1/http_sd" => method_not_allowed("GET"),
        "/metrics" | "/-/healthy" | "/-/ready" | "/" | "/v1/state" | "/v1/peers"
        | "/v1/offload" | "/v1/counters" => method_not_allowed("GET"),
        "/v1/shutdown/cancel" | "/v1/maintenance" => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let q = query(&req);
            let cmd = if path == "/v1/shutdown/cancel" {
                Command::CancelShutdown
            } else {
                let Some(raw) = param(&q, "for") else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "missing query parameter `for` (e.g. ?for=1h; ?for=0s ends maintenance)",
                    );
                };
                let duration = match humantime::parse_duration(raw) {
                    Ok(d) => d,
                    Err(e) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!("bad `for` value {raw:?}: {e} (e.g. 30m, 1h, 2h30m)"),
                        )
                    }
                };
                if duration > app.limits.max_maintenance {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "`for` is longer than the limit of {}",
                            humantime::format_duration(app.limits.max_maintenance)
                        ),
                    );
                }
                Command::Maintenance { duration }
            };
            authorized(&app, &req, cmd).await
        }
        p if p.starts_with("/v1/counters/") => {
            let rest = &p["/v1/counters/".len()..];
            let Some(name) = rest.strip_suffix("/inc") else {
                return error(
                    StatusCode::NOT_FOUND,
                    "use POST /v1/counters/{name}/inc?amount=N",
                );
            };
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if !valid_counter_name(name) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "counter names are 1-64 characters of A-Z a-z 0-9 _ . : -",
                );
            }
            let q = query(&req);
            let amount = match param(&q, "amount") {
                None => 1,
                Some(raw) => {
                    match raw.parse::<i64>() {
                        Ok(a) if a != 0 && a.unsigned_abs() <= 1_000_000_000 => a,
                        _ => {
                            return error(StatusCode::BAD_REQUEST, &format!("bad `amount` {raw:?}: want a non-zero integer within ±1000000000"));
                        }
                    }
                }
            };
            authorized(
                &app,
                &req,
                Command::IncrementCounter {
                    name: name.to_string(),
                    amount,
                },
            )
            .await
        }
        _ => error(StatusCode::NOT_FOUND, "not found; see / for the endpoints"),
    }
}

async fn authorized(app: &App, req: &Request<Incoming>, cmd: Command) -> Resp {
    if let Some(denied) = token_denied(app, req) {
        return denied;
    }
    dispatch(app, cmd).await
}

/// `Some(answer)` when the request does not carry the operator token.
fn token_denied(app: &App, req: &Request<Incoming>) -> Option<Resp> {
    let Some(token) = app.token.get() else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "mutating endpoints are disabled: set http.token_file in the config",
        ));
    };
    let headers = req.headers();
    let given = headers.get(TOKEN_HEADER).map(HeaderValue::as_bytes);
    let ok = match given {
        Some(t) => token.check_raw(t),
        None => token.check_header(headers.get(AUTHORIZATION).map(HeaderValue::as_bytes)),
    };
    if !ok {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (Authorization: Bearer <token from http.token_file>, or X-Coolmesh-Token: <token> when basic auth is on)",
        );
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Some(r);
    }
    None
}

/// Hand an authorised command to the agent and wait for its answer.
async fn dispatch(app: &App, cmd: Command) -> Resp {
    match dispatch_raw(app, cmd, Duration::from_secs(5), StatusCode::CONFLICT).await {
        Ok(msg) => json_plain(StatusCode::OK, &serde_json::json!({ "ok": msg })),
        Err(resp) => resp,
    }
}

/// Hand an authorised command to the agent; its `Ok` text, or the error
/// response (`refused`: the status of the agent's `Err`). `wait` bounds
/// the agent's answer.
async fn dispatch_raw(
    app: &App,
    cmd: Command,
    wait: Duration,
    refused: StatusCode,
) -> Result<String, Resp> {
    let Some(control) = &app.control else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this process does not accept commands",
        ));
    };
    let (tx, rx) = oneshot::channel();
    // Bounded: a flood of commands waits (and times out) here instead of
    // growing a queue inside the agent.
    let send = control.send_timeout(
        ControlRequest {
            command: cmd,
            reply: tx,
        },
        Duration::from_secs(2),
    );
    if send.await.is_err() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent busy or stopping; retry",
        ));
    }
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(Ok(msg))) => Ok(msg),
        Ok(Ok(Err(msg))) => Err(error(refused, &msg)),
        _ => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent did not answer; retry",
        )),
    }
}

/// `GET /v1/http_sd`: the room in Prometheus' HTTP service discovery
/// format, one target group per member (this node included) that
/// published its HTTP address. The labels are those of `coolmesh state
/// --format file_sd`: `__meta_coolmesh_node`, `__meta_coolmesh_cluster`,
/// `__meta_coolmesh_peer_id`. Meta labels, not target labels: Prometheus
/// drops them after relabelling, so they cannot collide with the
/// `coolmesh_node`/`coolmesh_cluster` labels of `coolmesh_node_info` (which
/// would become `exported_*` and break the rules' joins).
/// Members without an address (agents older than record key 12, which do not publish
/// one) cannot be scraped by address and are left out; the agent counts
/// them (`coolmesh_http_sd_members_without_address`). Members the cluster
/// layer still holds (alive, suspect, or dead within `cluster.retention`)
/// are listed: a dead one shows as `up == 0` in Prometheus, which is the
/// signal an operator wants, until it is forgotten.
pub fn http_sd_json(snap: &Snapshot) -> serde_json::Value {
    let mut members: Vec<&crate::model::SdMember> = snap.sd_members.iter().collect();
    members.sort_by(|a, b| (&a.node, &a.peer_id).cmp(&(&b.node, &b.peer_id)));
    serde_json::Value::Array(
        members
            .into_iter()
            .filter_map(|m| {
                let addr = m.http.as_ref()?;
                Some(serde_json::json!({
                    "targets": [addr],
                    "labels": {
                        "__meta_coolmesh_node": m.node,
                        "__meta_coolmesh_cluster": snap.cluster.name,
                        "__meta_coolmesh_peer_id": m.peer_id,
                    },
                }))
            })
            .collect(),
    )
}

/// Does the request accept gzip (`Accept-Encoding: gzip` or `*`, with a
/// non-zero q)?
pub fn accepts_gzip(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(hyper::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

/// gzip at the fast level (the cost is on every scrape); `None` if it fails.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    e.write_all(body).ok()?;
    e.finish().ok()
}

#[cfg(test)]
mod http_sd_tests {
    use super::*;
    use crate::model::SdMember;

    #[test]
    fn http_sd_lists_members_with_an_address_sorted_with_meta_labels() {
        let mut snap = Snapshot::default();
        snap.cluster.name = "room-1".into();
        let m = |node: &str, peer: &str, http: Option<&str>| SdMember {
            node: node.into(),
            peer_id: peer.into(),
            http: http.map(str::to_string),
        };
        snap.sd_members = vec![
            m("srv-b", "12D3B", Some("10.0.0.12:10027")),
            m("srv-old", "12D3O", None),
            m("srv-a", "12D3A", Some("[2001:db8::11]:10027")),
        ];
        let want = r#"[{"labels":{"__meta_coolmesh_cluster":"room-1","__meta_coolmesh_node":"srv-a","__meta_coolmesh_peer_id":"12D3A"},"targets":["[2001:db8::11]:10027"]},{"labels":{"__meta_coolmesh_cluster":"room-1","__meta_coolmesh_node":"srv-b","__meta_coolmesh_peer_id":"12D3B"},"targets":["10.0.0.12:10027"]}]"#;
        assert_eq!(http_sd_json(&snap).to_string(), want);
        // An empty room is an empty list, which Prometheus accepts.
        assert_eq!(http_sd_json(&Snapshot::default()).to_string(), "[]");
    }
}
