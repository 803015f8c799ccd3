//! The cluster layer: agents find each other over libp2p, exchange signed
//! records (thermal summary, power observations, state-machine state, CRDT
//! counter slots) and hand the agent a [`ClusterView`] of every peer.
//!
//! The wire protocol is specified in `docs/protocol.md`, precisely enough for
//! an independent (e.g. js-libp2p) implementation.
//!
//! # Layout
//!
//! - [`config`]: [`ClusterConfig`], every setting with its default and
//!   trade-off.
//! - [`identity`]: persistent Ed25519 identity (`identity.key`, 0600, atomic
//!   write) and the private-network key (`swarm.key`).
//! - [`record`]: [`LocalState`] (what a node publishes: [`ThermalReport`],
//!   [`TargetObservation`]s, [`FsmSummary`], its counter slots), [`Record`]
//!   (a verified record in memory: a `LocalState` in its envelope), field
//!   limits, [`RejectReason`].
//! - [`room`]: room commands (cancel, maintenance) carried to every member,
//!   their wire form, who may send them, the report.
//! - [`roster`]: the operator-signed list of members ([`roster::Roster`]),
//!   the operator key's text form, the stored copy.
//! - [`counters`]: G and PN counters, one slot per node, merge = per-slot max.
//! - [`wire`]: everything on the wire, and the one place that converts it
//!   to and from the in-memory types: the record payload's versioned CBOR
//!   schema (`wire::record`), [`SignedRecord`] signing and verification
//!   (`wire::signed`), the `/coolmesh/sync/1.0.0` messages (`wire::sync`),
//!   varint framing and the request-response codec (`wire::frame`).
//! - [`engine`] (a folder): the gossip protocol without I/O: the engine's
//!   state and own record (`mod.rs`), one exchange both sides: digests,
//!   deltas, what each neighbour has (`exchange`), taking one record
//!   (`accept`), the roster and candidates (`membership`), liveness, hub
//!   selection, retention and the view (`liveness`). Driven by [`swarm`]
//!   and by the simulation in `tests/cluster_sim.rs`.
//! - [`view`]: [`ClusterView`] of [`ClusterPeer`]s and its queries (power
//!   votes, overheating peers, counter totals, offload ranking), liveness
//!   timer math.
//! - [`metrics`]: [`GossipMetrics`] (`coolmesh_gossip_*`, `coolmesh_swim_*`).
//! - [`swim`]: SWIM membership and failure detection (foca behind our own
//!   identity, codec and checks; no I/O).
//! - [`publish`]: when a new version of our record is worth sending (the
//!   dead band, where every member runs SWIM).
//! - [`swarm`] (a folder): the `tokio::select!` loop and the node's state
//!   ([`Cluster`], [`run`]; `mod.rs`), transport (TCP + optional pnet +
//!   noise + yamux) and the one `NetworkBehaviour` (allow/block lists,
//!   identify, ping, mDNS, request-response; `behaviour`), the sync
//!   exchanges (`sync`), connections, dialling and discovery
//!   (`connections`), room commands (`room_commands`), SWIM's datagrams
//!   and timers (`swim_driver`).
//!
//! Imports run one way: each module uses only those before it in
//! `counters`, `identity`, `record`, `metrics`, `wire`, `roster`, `room`,
//! `view`, `engine`, `config`, `swarm`. The cluster imports nothing from the
//! agent's wiring.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use coolmesh_agent::cluster::{self, ClusterConfig, ClusterView, GossipMetrics, LocalState};
//! use tokio::sync::{mpsc, watch};
//!
//! let key = cluster::load_or_create_identity(std::path::Path::new("/var/lib/coolmesh"))?;
//! let (local_tx, local_rx) = watch::channel(LocalState::default());
//! let (urgent_tx, urgent_rx) = mpsc::channel(4);
//! let (view_tx, view_rx) = watch::channel(ClusterView::default());
//! let metrics = GossipMetrics::new();
//! tokio::spawn(cluster::run(
//!     ClusterConfig::default(), key, local_rx, urgent_rx, view_tx, metrics,
//!     async { let _ = tokio::signal::ctrl_c().await; },
//! ));
//! // publish: local_tx.send_replace(state); after a state-machine
//! // transition also: urgent_tx.try_send(()).ok();
//! // read: view_rx.borrow().power_votes()
//! # drop((local_tx, urgent_tx, view_rx)); Ok(()) }
//! ```

pub mod config;
pub mod counters;
pub mod engine;
pub mod identity;
pub mod metrics;
pub mod publish;
pub mod record;
pub mod room;
pub mod roster;
pub mod swarm;
pub mod swim;
pub mod view;
pub mod wire;

pub use config::ClusterConfig;
pub use counters::{CounterKind, CounterSlot, Counters};
pub use identity::{generate_psk, load_or_create_identity, load_psk, parse_psk};
pub use metrics::GossipMetrics;
pub use record::{FsmSummary, LocalState, Record, RejectReason, TargetObservation, ThermalReport};
pub use swarm::{run, Cluster, ClusterHandle, Control};
pub use view::{ClusterPeer, ClusterView, Liveness, PowerVotes};
pub use wire::SignedRecord;
