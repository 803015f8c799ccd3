//! coolmesh exporter: Prometheus exposition and the HTTP API.
//!
//! # Layout
//!
//! - [`model`]: the snapshot, plain data the agent publishes; its reading,
//!   sensor role, thermal summary and source status are the agent's own
//!   types too (one model of each thing).
//! - [`clock`]: the wall clock in unix milliseconds (the agent's too).
//! - [`collector`]: scrape-time metrics computed from the snapshot.
//! - [`text`]: the text exposition writer for the snapshot families.
//! - [`metrics`]: the registry, registered once at startup.
//! - [`conn_metrics`]: the HTTP server's connection limits and deadlines as
//!   labels, and their metrics (below both `http` and `metrics`).
//! - [`http`]: hyper server, routes, operator commands, the decision journal
//!   (`GET /v1/events` through [`http::EventSource`]), room commands.
//! - [`auth`]: bearer token check in constant time.
//! - [`history`]: the last half hour of every node, in memory
//!   (`GET /v1/history`, the status page's sparklines).
//! - [`status_page`]: the self-contained HTML status page.
//! - [`web_config`]: `--web.config.file` (exporter-toolkit format): TLS,
//!   basic auth, extra response headers; a folder: `format` (the YAML
//!   schema), `parse`, `tls` (reloading certificates, client certificates),
//!   `basic_auth` (bcrypt behind bounded caches), `mod` (the loaded config).
//!
//! The exporter never does I/O on a scrape beyond serialising the snapshot.

pub mod auth;
pub mod clock;
pub mod collector;
pub mod conn_metrics;
pub mod history;
pub mod http;
pub mod metrics;
pub mod model;
pub mod status_page;
pub mod text;
pub mod web_config;

pub use history::History;
pub use http::{serve, App, Command, ControlRequest, EventSource, Limits};
pub use metrics::{BuildInfo, Metrics};
pub use model::Snapshot;
pub use web_config::WebConfig;
