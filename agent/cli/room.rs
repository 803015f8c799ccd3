//! `coolmesh room cancel|maintenance|state`: one operator action for every
//! member of the room ([`coolmesh_agent::cluster::room`]).
//!
//! The command is built here (a random id, the time, who asks), signed
//! with the operator key when `--key` is given, and posted to one agent
//! with its token (`POST /v1/room`). That agent applies it and sends it to
//! every member it is connected to; the answer lists every node's outcome
//! and the members it did not reach. Exit status: 0 when every member
//! answered and none refused, 1 otherwise (retry, or act on the node).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use coolmesh_exporter::Snapshot;
use rand::Rng;

use crate::args::{ListFormat, RoomAction as Cli, RoomArgs, RoomSendFlags};
use crate::client::{self, Endpoint};
use crate::render;
use coolmesh_agent::cluster::room::{
    Outcome, RoomAction, RoomCommand, RoomReport, MAX_MAINTENANCE,
};

/// Run a `coolmesh room` command.
pub fn main(args: RoomArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coolmesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let node = match &args.action {
        Cli::Cancel { send } | Cli::Maintenance { send, .. } => &send.node,
        Cli::State { node, .. } => node,
    };
    let ep = match Endpoint::from_flags(&node.url, &node.client) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            return ExitCode::from(2);
        }
    };
    let r = rt.block_on(run(&ep, &args.action));
    rt.shutdown_timeout(Duration::from_millis(300));
    match r {
        Ok((text, complete)) => {
            print!("{text}");
            if complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parse `maintenance`'s DURATION: `off` or a duration within the limit.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Duration::ZERO);
    }
    let d = humantime::parse_duration(s)
        .map_err(|e| anyhow::anyhow!("bad DURATION {s:?}: {e} (e.g. 30m, 2h, or off)"))?;
    if d > MAX_MAINTENANCE {
        anyhow::bail!(
            "DURATION {s:?} is longer than the limit of {}",
            humantime::format_duration(MAX_MAINTENANCE)
        );
    }
    Ok(d)
}

/// "user@host" for the logs of every node.
fn default_requester() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{host}")
}

async fn run(ep: &Endpoint, action: &Cli) -> anyhow::Result<(String, bool)> {
    let (send, action) = match action {
        Cli::State { format, .. } => {
            let snap = client::fetch_state_from(ep).await?;
            return Ok(match format {
                ListFormat::Json => (
                    format!("{}\n", serde_json::to_string_pretty(&room_nodes(&snap))?),
                    true,
                ),
                ListFormat::Table => (render_state(&snap, coolmesh_agent::clock::unix_ms()), true),
            });
        }
        Cli::Cancel { send } => (send, RoomAction::Cancel),
        Cli::Maintenance { duration, send } => (
            send,
            RoomAction::Maintenance {
                duration: parse_duration(duration)?,
            },
        ),
    };
    let report = send_command(ep, send, action).await?;
    let complete = report.unreached.is_empty()
        && report
            .answers
            .iter()
            .all(|a| a.ack.outcome != Outcome::Refused);
    Ok(match send.format {
        ListFormat::Json => (
            format!("{}\n", serde_json::to_string_pretty(&report)?),
            complete,
        ),
        ListFormat::Table => (render_report(&report), complete),
    })
}

async fn send_command(
    ep: &Endpoint,
    send: &RoomSendFlags,
    action: RoomAction,
) -> anyhow::Result<RoomReport> {
    // Read the token and the key before anything goes out: a typo should
    // not cost a round trip during an incident.
    let token = std::fs::read_to_string(&send.token_file).with_context(|| {
        format!(
            "{} (pass --token-file, the agent's http.token_file)",
            send.token_file.display()
        )
    })?;
    let key = match &send.key {
        Some(k) => Some(crate::roster::load_key(k)?),
        None => None,
    };
    let snap = client::fetch_state_from(ep).await?;
    if snap.cluster.name.is_empty() {
        anyhow::bail!(
            "{} runs without a cluster; use `curl -X POST .../v1/shutdown/cancel` on each node",
            ep.url
        );
    }
    let cmd = RoomCommand {
        cluster: snap.cluster.name.clone(),
        id: rand::rng().random(),
        action,
        issued_ms: coolmesh_agent::clock::unix_ms(),
        requester: send.requester.clone().unwrap_or_else(default_requester),
    };
    let body = match &key {
        Some(k) => cmd.sign(k).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => cmd.to_unsigned(),
    };
    let answer = client::request_with_body(
        hyper::Method::POST,
        ep,
        "/v1/room",
        Some(token.trim()),
        bytes::Bytes::from(body),
    )
    .await?;
    serde_json::from_slice(&answer).context("the agent's answer is not a room report")
}

/// The table of a room command's answers.
pub fn render_report(r: &RoomReport) -> String {
    let mut out = format!("room command {} ({}) by {}\n", r.id, r.action, r.requester);
    let rows: Vec<[String; 4]> = r
        .answers
        .iter()
        .map(|a| {
            [
                a.ack.node.clone(),
                outcome_text(a.ack.outcome).into(),
                a.ack.state.clone(),
                a.ack.message.clone(),
            ]
        })
        .collect();
    out.push_str(&render::table(
        &["NODE", "OUTCOME", "WAS", "MESSAGE"],
        &rows,
        &[],
    ));
    if !r.unreached.is_empty() {
        out.push_str("not reached (act on these nodes directly, or retry):\n");
        let rows: Vec<[String; 3]> = r
            .unreached
            .iter()
            .map(|u| {
                [
                    if u.node.is_empty() {
                        "?".into()
                    } else {
                        u.node.clone()
                    },
                    u.peer_id.clone(),
                    u.error.clone(),
                ]
            })
            .collect();
        out.push_str(&render::table(&["NODE", "PEER ID", "WHY"], &rows, &[]));
    }
    let count = |o| r.answers.iter().filter(|a| a.ack.outcome == o).count();
    let _ = writeln!(
        out,
        "{} applied, {} nothing to do, {} refused, {} not reached",
        count(Outcome::Applied),
        count(Outcome::NothingToDo),
        count(Outcome::Refused),
        r.unreached.len()
    );
    out
}

fn outcome_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Applied => "applied",
        Outcome::NothingToDo => "nothing to do",
        Outcome::Refused => "REFUSED",
    }
}

/// One node of `room state`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoomNode {
    /// Name.
    pub node: String,
    /// PeerId.
    pub peer_id: String,
    /// "this node", alive, suspect, dead.
    pub liveness: String,
    /// State-machine state.
    pub state: String,
    /// Why (for pre_fail and shutdown).
    pub reason: String,
    /// When a pending shutdown runs (unix ms).
    pub deadline_ms: Option<u64>,
}

/// This node and every peer it knows, pending shutdowns first (soonest
/// first), then other non-normal states, then by name.
pub fn room_nodes(s: &Snapshot) -> Vec<RoomNode> {
    let mut v = vec![RoomNode {
        node: s.node.clone(),
        peer_id: s.peer_id.clone(),
        liveness: "this node".into(),
        state: s.fsm.state.clone(),
        reason: s.fsm.reason.clone(),
        deadline_ms: s.fsm.deadline_ms,
    }];
    v.extend(s.cluster.peers.iter().map(|p| RoomNode {
        node: p.node.clone(),
        peer_id: p.peer_id.clone(),
        liveness: p.liveness.clone(),
        state: p.state.clone(),
        reason: p.reason.clone(),
        deadline_ms: p.deadline_ms,
    }));
    let rank = |n: &RoomNode| match n.state.as_str() {
        "shutdown" => 0,
        "pre_fail" => 1,
        "normal" => 3,
        _ => 2,
    };
    v.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then(
                a.deadline_ms
                    .unwrap_or(u64::MAX)
                    .cmp(&b.deadline_ms.unwrap_or(u64::MAX)),
            )
            .then_with(|| a.node.cmp(&b.node))
    });
    v
}

/// The table of `room state`: a summary line, then the nodes.
pub fn render_state(s: &Snapshot, now_ms: u64) -> String {
    let nodes = room_nodes(s);
    let mut by_state: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in &nodes {
        *by_state.entry(n.state.as_str()).or_default() += 1;
    }
    let counts: Vec<String> = by_state.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let mut out = format!(
        "room {}: {} nodes as {} sees them: {}\n",
        s.cluster.name,
        nodes.len(),
        s.node,
        counts.join(", ")
    );
    if let Some(next) = nodes
        .iter()
        .filter(|n| n.state == "pre_fail")
        .filter_map(|n| n.deadline_ms.map(|d| (d, n)))
        .min_by_key(|(d, _)| *d)
    {
        let _ = writeln!(
            out,
            "next shutdown: {} ({}) in {}; `coolmesh room cancel` cancels it on every member",
            next.1.node,
            next.1.reason,
            render::secs(next.0.saturating_sub(now_ms) / 1000)
        );
    }
    let rows: Vec<[String; 5]> = nodes
        .iter()
        .map(|n| {
            [
                n.node.clone(),
                n.liveness.clone(),
                n.state.clone(),
                n.reason.clone(),
                n.deadline_ms
                    .map(|d| render::secs(d.saturating_sub(now_ms) / 1000))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push_str(&render::table(
        &["NODE", "LIVENESS", "STATE", "REASON", "SHUTDOWN IN"],
        &rows,
        &[],
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use coolmesh_agent::cluster::room::{NodeAnswer, RoomAck, Unreached};
    use coolmesh_exporter::model::PeerStatus;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("off").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("8d").is_err());
        let e = parse_duration("soon").unwrap_err().to_string();
        assert!(e.contains("e.g. 30m"), "{e}");
    }

    #[test]
    fn the_report_names_every_node_and_counts_outcomes() {
        let ack = |node: &str, outcome, state: &str, message: &str| NodeAnswer {
            peer_id: format!("P{node}"),
            ack: RoomAck {
                outcome,
                node: node.into(),
                message: message.into(),
                state: state.into(),
            },
        };
        let r = RoomReport {
            id: "00000000000000ff".into(),
            action: RoomAction::Cancel,
            requester: "alice@ops".into(),
            answers: vec![
                ack(
                    "h1",
                    Outcome::Applied,
                    "pre_fail",
                    "pending shutdown (power) cancelled",
                ),
                ack(
                    "h2",
                    Outcome::NothingToDo,
                    "normal",
                    "nothing to cancel: state is normal",
                ),
                ack(
                    "h3",
                    Outcome::Refused,
                    "shutdown",
                    "the shutdown command has already been issued",
                ),
            ],
            unreached: vec![Unreached {
                peer_id: "Ph4".into(),
                node: "h4".into(),
                error: "not connected to this node".into(),
            }],
        };
        let t = render_report(&r);
        assert!(
            t.starts_with("room command 00000000000000ff (cancel) by alice@ops\n"),
            "{t}"
        );
        for n in ["h1", "h2", "h3", "h4", "REFUSED", "not connected"] {
            assert!(t.contains(n), "{n} missing:\n{t}");
        }
        assert!(
            t.ends_with("1 applied, 1 nothing to do, 1 refused, 1 not reached\n"),
            "{t}"
        );
    }

    #[test]
    fn room_state_puts_the_soonest_pending_shutdown_first() {
        let peer = |node: &str, state: &str, deadline: Option<u64>| PeerStatus {
            node: node.into(),
            peer_id: format!("P{node}"),
            liveness: "alive".into(),
            state: state.into(),
            reason: if state == "normal" {
                String::new()
            } else {
                "power".into()
            },
            deadline_ms: deadline,
            ..Default::default()
        };
        let mut s = Snapshot {
            node: "h1".into(),
            ..Default::default()
        };
        s.fsm.state = "normal".into();
        s.cluster.name = "room1".into();
        s.cluster.peers = vec![
            peer("h2", "pre_fail", Some(90_000)),
            peer("h3", "normal", None),
            peer("h4", "pre_fail", Some(30_000)),
            peer("h5", "local_fault", None),
        ];
        let order: Vec<String> = room_nodes(&s).into_iter().map(|n| n.node).collect();
        assert_eq!(order, ["h4", "h2", "h5", "h1", "h3"]);
        let t = render_state(&s, 0);
        assert!(
            t.starts_with(
                "room room1: 5 nodes as h1 sees them: 1 local_fault, 2 normal, 2 pre_fail\n"
            ),
            "{t}"
        );
        assert!(t.contains("next shutdown: h4 (power) in 0m30s"), "{t}");
    }
}
