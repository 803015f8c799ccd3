//! Source `sysinfo` (being written).
