//! The wall clock, in the one unit the records, the journal and the
//! snapshot use: unix milliseconds. The state machine's own time type is
//! `fsm::Millis`; timers use tokio's monotonic clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock unix milliseconds now (0 before 1970: a clock that far off
/// is reported by the journal and the status page, not a reason to panic).
pub fn unix_ms() -> u64 {
    to_unix_ms(SystemTime::now())
}

/// A wall-clock time as unix milliseconds (0 before 1970).
pub fn to_unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unix_ms_counts_from_the_epoch_and_floors_before_it() {
        for (t, want) in [
            (UNIX_EPOCH, 0),
            (
                UNIX_EPOCH + Duration::from_millis(1_765_000_000_123),
                1_765_000_000_123,
            ),
            (UNIX_EPOCH - Duration::from_secs(5), 0),
        ] {
            assert_eq!(to_unix_ms(t), want, "{t:?}");
        }
        assert!(
            unix_ms() > 1_700_000_000_000,
            "the test machine's clock is set"
        );
    }
}
