//! Shutdown actions (being written).
