//! The `coolmesh` binary, the front door: parses the command line and runs
//! one command. The daemon itself (`coolmesh agent`) is the library
//! `coolmesh_agent` (agent/src); everything here is what an operator types
//! and reads, and nothing in the library imports it.
//!
//! # Layout
//!
//! - `main` (this file): dispatch and the runtime.
//! - [`args`]: argument parsing (clap) for every command.
//! - [`daemon`]: `coolmesh agent`: config checks, then the library's daemon; signals, SIGHUP.
//! - [`logging`]: the daemon's log level filter and colour rules; [`logformat`]: its lines (logfmt or JSON, Prometheus' keys).
//! - [`sensors`], [`state`], [`counter`], [`keygen`]: one module per one-shot command.
//! - [`client`]: the HTTP(S) client of the commands.
//! - [`render`]: tables, colour and the text views of `sensors` and `state`.
//! - [`demo`]: `coolmesh demo`, a local cluster with simulated sensors and power.
//! - [`explain`]: `coolmesh explain`, the journal as a story.
//! - [`generate`]: `coolmesh generate man|completions` (hidden): man pages and shell completions from the clap tree, for the package.
//! - [`preflight`]: `coolmesh check-config` / `preflight`: the config, and what this host must provide for it.
//! - [`room`]: `coolmesh room cancel|maintenance|state`, one operator action for every member.
//! - [`roster`]: `coolmesh roster keygen|list|add|remove`, the operator's side of the room roster.

mod args;
mod client;
mod counter;
mod daemon;
mod demo;
mod explain;
mod generate;
mod keygen;
mod logformat;
mod logging;
mod preflight;
mod render;
mod room;
mod roster;
mod sensors;
mod state;

use crate::args::{Cli, Cmd};
use clap::Parser;
use std::process::ExitCode;

/// The runtime of every command: two workers (the daemon's loops are
/// light; a room's agent must not take the server's cores).
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Agent(args) => daemon::main(args),
        Cmd::Sensors(args) => sensors::main(args),
        Cmd::CheckConfig(args) => preflight::main(&args),
        Cmd::State(args) => state::main(args),
        Cmd::Keygen(args) => keygen::main(args),
        Cmd::Counter(args) => counter::main(args),
        Cmd::Roster(args) => roster::main(args),
        Cmd::Room(args) => room::main(args),
        Cmd::Explain(args) => explain::main(args),
        Cmd::Demo(args) => demo::main(args),
        Cmd::Generate(args) => generate::main(args),
    }
}

#[cfg(test)]
mod tests {
    /// Every command is documented (the other doc checks are
    /// agent/tests/docs_in_step.rs; the command tree lives here).
    #[test]
    fn the_reference_lists_every_command() {
        use clap::CommandFactory;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference.md");
        let reference = std::fs::read_to_string(path).expect("reference");
        for sub in crate::args::Cli::command().get_subcommands() {
            let name = sub.get_name();
            if name == "help" {
                continue;
            }
            assert!(
                reference.contains(&format!("`coolmesh {name}")),
                "`coolmesh {name}` is missing from docs/reference.md"
            );
        }
    }

    /// The default HTTP port is one number: the agent's listen address, the
    /// commands' `--url`, the demo's first port, the example config and the
    /// reference agree.
    #[test]
    fn the_default_port_agrees_everywhere() {
        use clap::CommandFactory;
        let port = coolmesh_agent::config::DEFAULT_HTTP_PORT;
        let cfg = coolmesh_agent::config::Config::default();
        assert_eq!(cfg.http.listen_address, format!("127.0.0.1:{port}"));
        let mut urls = 0;
        let mut stack = vec![crate::args::Cli::command()];
        while let Some(cmd) = stack.pop() {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                let default: Vec<_> = a
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                if id == "url" && !default.is_empty() {
                    assert_eq!(
                        default,
                        [format!("http://127.0.0.1:{port}")],
                        "{} --url",
                        cmd.get_name()
                    );
                    urls += 1;
                }
                if id == "base_port" {
                    assert_eq!(default, [port.to_string()], "demo --base-port");
                }
            }
            stack.extend(cmd.get_subcommands().cloned());
        }
        assert!(urls >= 4, "only {urls} commands have a default --url");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let example =
            std::fs::read_to_string(root.join("deploy/coolmesh.example.toml")).expect("example");
        assert!(example.contains(&format!("listen_address = \":{port}\"")));
        let reference = std::fs::read_to_string(root.join("docs/reference.md")).expect("reference");
        assert!(reference.contains(&format!("`127.0.0.1:{port}`")));
    }
}
