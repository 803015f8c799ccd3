//! coolmesh agent: sensors, power probes, the shutdown state machine and the
//! cluster, turned into a snapshot that the exporter serves.
//!
//! # Layout
//!
//! The map of the data flow and where to add things is `docs/architecture.md`.
//!
//! Wiring and the daemon's loop:
//!
//! - [`agent`]: starts every task and runs the core loop (sensor rounds,
//!   probe rounds, the peer view and operator commands in; observations to
//!   the state machine, the snapshot and the published record out).
//! - [`config`]: the TOML config: every key with its default, errors with
//!   key and line.
//! - [`sampler`]: runs the sources on an interval under a timeout.
//! - [`snapshot`]: turns machine, readings, probes and the peer view into
//!   the exporter's snapshot.
//! - [`counter_store`]: this node's CRDT counter slots on disk.
//! - [`watchdog`]: systemd readiness and watchdog pings.
//! - [`cluster`]: the libp2p cluster (its own Layout map).
//!
//! The decision:
//!
//! - [`thermal`]: the thermal model (readings, plausibility, headroom, trend).
//! - [`heating`]: tells a workload from a cooling failure (sensor roles, sustained rise, CPU load) and decides this node's cooling vote.
//! - [`sources`]: one file per thermal source behind the `Source` trait.
//! - [`power`]: one file per power probe behind the `Probe` trait, plus policy.
//! - [`fsm`]: the pure shutdown state machine `(state, input, now) -> (state, actions)`.
//! - [`shutdown`]: the executor of the shutdown command (pre-command, run once, dry-run).
//! - [`persist`]: atomic writes and the state machine's `fsm.json`.
//! - [`journal`]: the decision journal (every decision with its evidence, on disk, checksummed).
//! - [`perms`]: the one permission rule for the token and the cluster key, and the accounts it is checked against.
//! - [`rlimit`]: raises the soft open-file limit at startup, as Go services do.
//! - [`supervisor`]: the async loop that owns the state machine and carries out its actions.
//!
//! The command line (the front door):
//!
//! - [`cli`]: argument parsing (clap) for every command.
//! - [`report`]: the HTTP(S) client of the commands and the text renderers of `state`.
//! - [`demo`]: `coolmesh demo`, a local cluster with simulated sensors and power.
//! - [`explain`]: `coolmesh explain`, the journal as a story.
//! - [`preflight`]: `coolmesh check-config` / `preflight`: the config, and what this host must provide for it.
//! - [`room_cmd`]: `coolmesh room cancel|maintenance|state`, one operator action for every member.
//! - [`roster_cmd`]: `coolmesh roster keygen|list|add|remove`, the operator's side of the room roster.

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod counter_store;
pub mod demo;
pub mod explain;
pub mod fsm;
pub mod heating;
pub mod journal;
pub mod perms;
pub mod persist;
pub mod power;
pub mod preflight;
pub mod report;
pub mod rlimit;
pub mod room_cmd;
pub mod roster_cmd;
pub mod sampler;
pub mod shutdown;
pub mod snapshot;
pub mod sources;
pub mod supervisor;
pub mod thermal;
pub mod watchdog;
