//! The watchdog's view of the producers: is each still delivering rounds.

use std::time::Duration;

/// Are the producers delivering? `(sensors, power)`: each is fresh when its
/// last round is at most its limit old; no power probes configured
/// (`since_power` is `None`) counts as fresh.
pub fn producers_fresh(
    since_sensor: Duration,
    since_power: Option<Duration>,
    sensor_limit: Duration,
    power_limit: Duration,
) -> (bool, bool) {
    (
        since_sensor <= sensor_limit,
        since_power.is_none_or(|d| d <= power_limit),
    )
}

/// How long without a round of a producer before the watchdog starves:
/// three intervals plus the timeout (a round may take that long).
pub fn watchdog_limit(interval: Duration, timeout: Duration) -> Duration {
    interval.saturating_mul(3).saturating_add(timeout)
}

#[cfg(test)]
mod watchdog_tests {
    use super::*;

    #[test]
    fn the_watchdog_starves_when_a_producer_stops() {
        let s = Duration::from_secs;
        // Limits at the defaults: sensors every 2 s (timeout 1 s), probes
        // every 5 s +10% (timeout 1 s).
        let sl = watchdog_limit(s(2), s(1));
        let pl = watchdog_limit(Duration::from_millis(5500), s(1));
        assert_eq!((sl, pl), (s(7), Duration::from_millis(17_500)));
        // (since sensor, since power, expected (sensors, power))
        let cases = [
            (s(1), Some(s(4)), (true, true)),
            (s(7), Some(s(17)), (true, true)),
            (s(8), Some(s(1)), (false, true)), // the sampler hangs or died
            (s(1), Some(s(18)), (true, false)), // the probe task hangs or died
            (s(1), None, (true, true)),        // no power targets
            (s(60), None, (false, true)),
        ];
        for (since_sensor, since_power, want) in cases {
            assert_eq!(
                producers_fresh(since_sensor, since_power, sl, pl),
                want,
                "{since_sensor:?} {since_power:?}"
            );
        }
    }

    #[test]
    fn the_unit_orders_after_time_sync_and_lets_the_command_survive_a_restart() {
        let unit = include_str!("../../../deploy/coolmesh.service");
        let line = |key: &str| {
            unit.lines()
                .filter(|l| l.starts_with(key))
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
        };
        assert!(
            line("After=")
                .iter()
                .any(|l| l.contains("time-sync.target")),
            "{unit}"
        );
        assert!(
            line("Wants=")
                .iter()
                .any(|l| l.contains("time-sync.target")),
            "{unit}"
        );
        assert_eq!(line("KillMode="), vec!["KillMode=process".to_string()]);
        assert!(line("WatchdogSec=").len() == 1);
        // `systemctl reload coolmesh` sends SIGHUP, which reloads the
        // config (agent::reload) instead of stopping the agent.
        assert_eq!(
            line("ExecReload="),
            vec!["ExecReload=/bin/kill -HUP $MAINPID".to_string()]
        );
    }
}
