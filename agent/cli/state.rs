//! `coolmesh state`: ask a running agent for its state and print it (text,
//! JSON, or a Prometheus file_sd target list).

use crate::args::{StateArgs, StateFormat};
use crate::render;
use std::process::ExitCode;

pub fn main(args: StateArgs) -> ExitCode {
    let args = &args;
    crate::client::run_against(&args.url, &args.client, |ep| async move {
        let progress = render::Progress::new(&format!("asking {}", args.url));
        let snap = crate::client::fetch_state_from(&ep).await;
        drop(progress);
        let snap = snap?;
        let format = if args.json {
            StateFormat::Json
        } else {
            args.format
        };
        let text = match format {
            StateFormat::Json => format!("{}\n", serde_json::to_string_pretty(&snap)?),
            StateFormat::FileSd => {
                // Every agent of a room serves on the same port as the
                // one asked, unless --sd-port says otherwise.
                let port = args.sd_port.unwrap_or_else(|| {
                    args.url
                        .parse::<hyper::Uri>()
                        .ok()
                        .and_then(|u| u.port_u16())
                        .unwrap_or(80)
                });
                // The addresses members publish (record key 12). An agent
                // older than `/v1/http_sd` answers 404: every target then
                // falls back to NODE:PORT, as before.
                let published =
                    crate::client::request_to(hyper::Method::GET, &ep, "/v1/http_sd", None)
                        .await
                        .ok()
                        .map(|body| published_addresses(&body))
                        .unwrap_or_default();
                render::render_file_sd(&snap, args.cluster, port, &published)
            }
            StateFormat::Text => {
                let now = coolmesh_agent::clock::unix_ms();
                let text = if args.cluster {
                    render::render_cluster(&snap, now)
                } else {
                    render::render_state(&snap, now)
                };
                if render::colour_stdout() {
                    render::colourize(&text)
                } else {
                    text
                }
            }
        };
        Ok((text, true))
    })
}

/// PeerId -> `host:port` from a `GET /v1/http_sd` body; anything that is not
/// that shape is skipped (a member without an address is simply absent).
fn published_addresses(body: &[u8]) -> std::collections::HashMap<String, String> {
    let Ok(serde_json::Value::Array(groups)) = serde_json::from_slice(body) else {
        return Default::default();
    };
    groups
        .iter()
        .filter_map(|g| {
            let peer = g["labels"]["__meta_coolmesh_peer_id"].as_str()?;
            let target = g["targets"].get(0)?.as_str()?;
            Some((peer.to_string(), target.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::published_addresses;

    #[test]
    fn published_addresses_read_http_sd_and_skip_garbage() {
        let body = br#"[
          {"targets":["10.0.0.1:10027"],"labels":{"__meta_coolmesh_peer_id":"12D3a"}},
          {"targets":[],"labels":{"__meta_coolmesh_peer_id":"12D3b"}},
          {"targets":["x:1"],"labels":{}}
        ]"#;
        let m = published_addresses(body);
        assert_eq!(m.len(), 1);
        assert_eq!(m["12D3a"], "10.0.0.1:10027");
        assert!(published_addresses(b"not json").is_empty());
        assert!(published_addresses(b"{}").is_empty());
    }
}
