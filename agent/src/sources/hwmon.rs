//! Source `hwmon` (being written).
