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
//! - [`clock`]: the wall clock in unix milliseconds (records, journal, snapshot).
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
//! - [`votes`]: the cluster's view in the state machine's terms (power votes, cooling quorum).
//! - [`stage`]: staged shutdown, which lower-stage nodes are still going down.
//! - [`power_on`]: ordered power-on by Wake-on-LAN when mains is back.
//! - [`fsm`]: the pure shutdown state machine `(state, input, now) -> (state, actions)`.
//! - [`shutdown`]: the executor of the shutdown command (pre-command, run once, dry-run).
//! - [`persist`]: atomic writes and the state machine's `fsm.json`.
//! - [`journal`]: the decision journal (every decision with its evidence, on disk, checksummed).
//! - [`perms`]: the one permission rule for the token and the cluster key, and the accounts it is checked against.
//! - [`rlimit`]: raises the soft open-file limit at startup, as Go services do.
//! - [`supervisor`]: the async loop that owns the state machine and carries out its actions.
//!
//! The command line (`coolmesh state`, `demo`, `preflight`, ...) is not
//! here: it is the binary's own module tree, `agent/cli` (its own Layout
//! map), which uses this library and is never used by it.

pub mod agent;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod counter_store;
pub mod fsm;
pub mod heating;
pub mod journal;
pub mod perms;
pub mod persist;
pub mod power;
pub mod power_on;
pub mod rlimit;
pub mod sampler;
pub mod shutdown;
pub mod snapshot;
pub mod sources;
pub mod stage;
pub mod supervisor;
pub mod thermal;
pub mod votes;
pub mod watchdog;
