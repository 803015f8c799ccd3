//! `coolmesh counter list|inc`: the room's CRDT counters through a running agent.

use crate::args::{CounterAction, CounterArgs};
use std::process::ExitCode;

pub fn main(args: CounterArgs) -> ExitCode {
    let args = &args;
    crate::client::run_against(&args.url, &args.client, |ep| async move {
        match &args.action {
            CounterAction::List => {
                let snap = crate::client::fetch_state_from(&ep).await?;
                let rows: Vec<[String; 3]> = snap
                    .counters
                    .iter()
                    .map(|c| [c.name.clone(), c.value.to_string(), c.local.to_string()])
                    .collect();
                anyhow::Ok((
                    crate::render::table(&["NAME", "CLUSTER", "THIS NODE"], &rows, &[1, 2]),
                    true,
                ))
            }
            CounterAction::Inc {
                name,
                amount,
                token_file,
            } => {
                let token = std::fs::read_to_string(token_file).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: {e} (pass --token-file, the agent's http.token_file)",
                        token_file.display()
                    )
                })?;
                let path = format!("/v1/counters/{name}/inc?amount={amount}");
                let body =
                    crate::client::request_to(hyper::Method::POST, &ep, &path, Some(token.trim()))
                        .await?;
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                Ok((format!("{}\n", v["ok"].as_str().unwrap_or("ok")), true))
            }
        }
    })
}
