//! The wall clock in unix milliseconds: the one implementation is the
//! shared model's (`coolmesh_exporter::clock`), also used by the exporter's
//! history; records, the journal and the snapshot all read it.

pub use coolmesh_exporter::clock::{to_unix_ms, unix_ms};
