//! Power probes (being written).
