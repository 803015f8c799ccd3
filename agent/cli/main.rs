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
//! - [`preflight`]: `coolmesh check-config` / `preflight`: the config, and what this host must provide for it.
//! - [`room`]: `coolmesh room cancel|maintenance|state`, one operator action for every member.
//! - [`roster`]: `coolmesh roster keygen|list|add|remove`, the operator's side of the room roster.

mod args;
mod client;
mod counter;
mod daemon;
mod demo;
mod explain;
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
}
