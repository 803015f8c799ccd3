//! `coolmesh state`: ask a running agent for its state and print it (text,
//! JSON, or a Prometheus file_sd target list).

use crate::args::StateArgs;
use std::process::ExitCode;

pub fn main(args: StateArgs) -> ExitCode {
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coolmesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ep = match crate::client::Endpoint::from_flags(&args.url, &args.client) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            return ExitCode::from(2);
        }
    };
    let progress = crate::render::Progress::new(&format!("asking {}", args.url));
    let r = rt.block_on(crate::client::fetch_state_from(&ep));
    drop(progress);
    match r {
        Ok(snap) => {
            use crate::args::StateFormat;
            use crate::render;
            let format = if args.json {
                StateFormat::Json
            } else {
                args.format
            };
            match format {
                StateFormat::Json => match serde_json::to_string_pretty(&snap) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("coolmesh: {e}"),
                },
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
                    print!("{}", render::render_file_sd(&snap, args.cluster, port));
                }
                StateFormat::Text => {
                    let now = coolmesh_agent::clock::unix_ms();
                    let text = if args.cluster {
                        render::render_cluster(&snap, now)
                    } else {
                        render::render_state(&snap, now)
                    };
                    if render::colour_stdout() {
                        print!("{}", render::colourize(&text));
                    } else {
                        print!("{text}");
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}
