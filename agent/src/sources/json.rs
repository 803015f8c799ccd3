//! Source `json` (being written).
