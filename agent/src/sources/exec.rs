//! Source `exec` (being written).
