//! `coolmesh roster keygen|list|add|remove`: the operator's side of the room
//! roster ([`coolmesh_agent::cluster::roster`]).
//!
//! A change reads the roster the node holds (`GET /v1/roster`), checks that
//! it was signed by the operator's key, edits the member list, signs a new
//! version with the private key (which never leaves the operator's machine)
//! and installs it on the same node (`POST /v1/roster`, with the token),
//! which spreads it to the room. The new version is
//! `max(old + 1, now in unix ms)`, so versions keep growing even when
//! changes are made from different machines.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use coolmesh_exporter::model::RosterStatus;
use libp2p::identity::Keypair;
use libp2p::PeerId;

use crate::args::{ListFormat, RosterAction, RosterArgs};
use crate::client::{self, Endpoint};
use crate::render;
use coolmesh_agent::cluster::roster::{format_operator_key, parse_operator_key, Roster};

/// Run a `coolmesh roster` command.
pub fn main(args: RosterArgs) -> ExitCode {
    if let RosterAction::Keygen { out } = &args.action {
        return match keygen(out) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("coolmesh: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let node = match &args.action {
        RosterAction::List { node, .. }
        | RosterAction::Add { node, .. }
        | RosterAction::Remove { node, .. } => node,
        RosterAction::Keygen { .. } => unreachable!("handled above"),
    };
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
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Write a new operator key (never over an existing file) and return the
/// config line with its public half.
fn keygen(out: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = Keypair::generate_ed25519();
    let bytes = key
        .to_protobuf_encoding()
        .context("encoding the operator key")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            format!(
                "{} (an existing key is never overwritten: remove it first if you really want a new one, and then every server needs the new cluster.operator_key)",
                out.display()
            )
        })?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} (keep it off the servers); put this line in [cluster] on every server:",
        out.display()
    );
    Ok(format!(
        "operator_key = \"{}\"",
        format_operator_key(&key.public())
    ))
}

/// Read the operator's private key (`roster keygen`).
pub fn load_key(path: &Path) -> anyhow::Result<Keypair> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "{} (the operator key from `coolmesh roster keygen`)",
            path.display()
        )
    })?;
    Keypair::from_protobuf_encoding(&bytes)
        .with_context(|| format!("{} is not an operator key", path.display()))
}

fn parse_peers(list: &[String]) -> anyhow::Result<Vec<PeerId>> {
    list.iter()
        .map(|p| {
            p.parse::<PeerId>().map_err(|e| {
                anyhow::anyhow!("{p:?} is not a PeerId ({e}); `coolmesh keygen --state-dir DIR` prints a server's")
            })
        })
        .collect()
}

async fn fetch(ep: &Endpoint) -> anyhow::Result<RosterStatus> {
    let body = client::request_to(hyper::Method::GET, ep, "/v1/roster", None).await?;
    serde_json::from_slice(&body).context("the agent's /v1/roster is not a roster")
}

async fn run(ep: &Endpoint, action: &RosterAction) -> anyhow::Result<String> {
    match action {
        RosterAction::Keygen { .. } => unreachable!("handled before the runtime starts"),
        RosterAction::List { format, .. } => {
            let st = fetch(ep).await?;
            Ok(match format {
                ListFormat::Json => format!("{}\n", serde_json::to_string_pretty(&st)?),
                ListFormat::Table => render(&st),
            })
        }
        RosterAction::Add {
            peers,
            pending,
            key,
            token_file,
            ..
        } => {
            let add = parse_peers(peers)?;
            let st = fetch(ep).await?;
            let mut extra = Vec::new();
            if *pending {
                extra = parse_peers(
                    &st.pending
                        .iter()
                        .map(|c| c.peer_id.clone())
                        .collect::<Vec<_>>(),
                )?;
            }
            if add.is_empty() && extra.is_empty() {
                anyhow::bail!("nothing to add: name PeerIds, or --pending for the identities waiting (none now)");
            }
            change(ep, &st, key, token_file, |m| {
                for p in add.iter().chain(&extra) {
                    m.insert(*p);
                }
            })
            .await
        }
        RosterAction::Remove {
            peers,
            key,
            token_file,
            ..
        } => {
            let remove = parse_peers(peers)?;
            let st = fetch(ep).await?;
            let current: BTreeSet<String> = st.members.iter().map(|m| m.peer_id.clone()).collect();
            if let Some(p) = remove.iter().find(|p| !current.contains(&p.to_base58())) {
                anyhow::bail!("{p} is not in the roster (version {})", st.version);
            }
            change(ep, &st, key, token_file, |m| {
                for p in &remove {
                    m.remove(p);
                }
            })
            .await
        }
    }
}

/// Sign the edited roster and install it.
async fn change(
    ep: &Endpoint,
    st: &RosterStatus,
    key: &Path,
    token_file: &Path,
    edit: impl FnOnce(&mut BTreeSet<PeerId>),
) -> anyhow::Result<String> {
    let key = load_key(key)?;
    let ours = format_operator_key(&key.public());
    let theirs = parse_operator_key(&st.operator_key)
        .map_err(|e| anyhow::anyhow!("the node's cluster.operator_key: {e}"))?;
    if theirs != key.public() {
        anyhow::bail!(
            "the node trusts operator key {} but this key is {ours}; use the right --key, or set cluster.operator_key on the servers",
            st.operator_key
        );
    }
    // Start from the roster the node holds, after checking it is ours.
    let mut members = BTreeSet::new();
    if !st.signed.is_empty() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&st.signed)
            .context("the node's roster is not base64")?;
        let r = Roster::verify(&bytes, &key.public(), &st.cluster)
            .map_err(|e| anyhow::anyhow!("the node's roster: {e}"))?;
        members = r.members;
    }
    let before = members.len();
    edit(&mut members);
    let now_ms = coolmesh_agent::clock::unix_ms();
    let version = st.version.saturating_add(1).max(now_ms);
    let r = Roster::sign(&key, &st.cluster, version, now_ms, members)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = std::fs::read_to_string(token_file).with_context(|| {
        format!(
            "{} (pass --token-file, the agent's http.token_file)",
            token_file.display()
        )
    })?;
    let body = client::request_with_body(
        hyper::Method::POST,
        ep,
        "/v1/roster",
        Some(token.trim()),
        bytes::Bytes::copy_from_slice(r.to_bytes()),
    )
    .await?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    Ok(format!(
        "{} ({} members before, {} now)\n",
        v["ok"].as_str().unwrap_or("installed"),
        before,
        r.members.len()
    ))
}

/// The table of `roster list`.
pub fn render(st: &RosterStatus) -> String {
    let mut out = String::new();
    if st.version == 0 {
        out.push_str(&format!(
            "cluster {}: no roster yet (operator key {}); every holder of the cluster key is a member, one vote per address\n",
            st.cluster, st.operator_key
        ));
    } else {
        let issued = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_millis(st.issued_ms),
        );
        out.push_str(&format!(
            "cluster {}: roster version {}, signed {issued}, {} members{}\n",
            st.cluster,
            st.version,
            st.members.len(),
            if st.self_member {
                ""
            } else {
                "; THIS NODE IS NOT A MEMBER"
            }
        ));
        let rows: Vec<[String; 3]> = st
            .members
            .iter()
            .map(|m| {
                [
                    m.peer_id.clone(),
                    m.node.clone().unwrap_or_else(|| "-".into()),
                    m.liveness.clone(),
                ]
            })
            .collect();
        out.push_str(&render::table(&["MEMBER", "NODE", "LIVENESS"], &rows, &[]));
    }
    if st.pending.is_empty() {
        out.push_str("no identities waiting outside the roster\n");
    } else {
        out.push_str(&format!(
            "{} waiting outside the roster (`coolmesh roster add PEER_ID --key FILE` admits one):\n",
            st.pending.len()
        ));
        let rows: Vec<[String; 4]> = st
            .pending
            .iter()
            .map(|c| {
                [
                    c.peer_id.clone(),
                    c.node.clone().unwrap_or_else(|| "-".into()),
                    c.address.clone().unwrap_or_else(|| "-".into()),
                    format!("{}s ago", c.last_seen_secs),
                ]
            })
            .collect();
        out.push_str(&render::table(
            &["WAITING", "CLAIMS NODE", "ADDRESS", "LAST SEEN"],
            &rows,
            &[3],
        ));
    }
    out
}
