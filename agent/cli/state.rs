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
                render::render_file_sd(&snap, args.cluster, port)
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
