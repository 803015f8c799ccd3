//! Source `file` (being written).
