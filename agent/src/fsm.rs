//! The shutdown state machine (being written).
