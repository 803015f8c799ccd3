//! Source `lm_sensors` (being written).
