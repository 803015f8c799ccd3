//! Source `thermal_zone` (being written).
