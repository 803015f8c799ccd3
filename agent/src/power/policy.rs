//! How per-target results combine into one "mains power is up" bit.

use std::fmt;
use std::str::FromStr;

/// Which targets must be up for power to count as up.
///
/// | policy     | power is up when                                  |
/// |------------|---------------------------------------------------|
/// | `any`      | at least one target is up (default)               |
/// | `all`      | every target is up                                |
/// | `majority` | strictly more than half are up (2 of 4 is *down*) |
///
/// With **zero targets** every policy says *up*: no targets means power is
/// not monitored, and an empty result must never read as an outage.
///
/// **Unknown** results (a probe that failed on this node, e.g. `EMFILE`)
/// are left out before the policy applies ([`Policy::evaluate_votes`]):
/// `all` over `[up, unknown]` is up, `majority` over `[up, unknown, unknown]`
/// is up. A round with only unknown results is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// At least one target up. Tolerates single dead targets; best when the
    /// targets are independent devices on the same mains feed.
    #[default]
    Any,
    /// Every target up. Sees a failure of any one feed.
    All,
    /// More than half of the targets up.
    Majority,
}

impl Policy {
    /// Combine per-target votes, `None` being an unknown result (a local
    /// error, see [`Outcome`](super::Outcome)): the policy applies to the
    /// known results only, so an unknown target is neither "up" nor "down".
    /// If every result is unknown, so is the round (`None`). No targets at
    /// all is "up", as in [`Policy::evaluate`].
    pub fn evaluate_votes(&self, votes: &[Option<bool>]) -> Option<bool> {
        let known: Vec<bool> = votes.iter().flatten().copied().collect();
        if known.is_empty() && !votes.is_empty() {
            return None;
        }
        Some(self.evaluate(&known))
    }

    /// Combine per-target results (`true` = up).
    pub fn evaluate(&self, results: &[bool]) -> bool {
        if results.is_empty() {
            return true;
        }
        let up = results.iter().filter(|&&r| r).count();
        match self {
            Policy::Any => up > 0,
            Policy::All => up == results.len(),
            Policy::Majority => up * 2 > results.len(),
        }
    }

    /// The configuration spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Policy::Any => "any",
            Policy::All => "all",
            Policy::Majority => "majority",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown policy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown power policy {0:?}; expected any, all or majority")]
pub struct PolicyError(pub String);

impl FromStr for Policy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "any" => Ok(Policy::Any),
            "all" => Ok(Policy::All),
            "majority" => Ok(Policy::Majority),
            _ => Err(PolicyError(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        const T: bool = true;
        const F: bool = false;
        // results, any, all, majority
        let cases: &[(&[bool], bool, bool, bool)] = &[
            (&[], T, T, T),
            (&[T], T, T, T),
            (&[F], F, F, F),
            (&[T, T], T, T, T),
            (&[T, F], T, F, F),
            (&[F, F], F, F, F),
            (&[T, T, F], T, F, T),
            (&[T, F, F], T, F, F),
            (&[F, F, F], F, F, F),
            (&[T, T, T], T, T, T),
            (&[T, T, F, F], T, F, F),
            (&[T, T, T, F], T, F, T),
            (&[F, T, F, T, T], T, F, T),
            (&[F, T, F, T, F], T, F, F),
        ];
        for (results, any, all, majority) in cases {
            assert_eq!(Policy::Any.evaluate(results), *any, "any {results:?}");
            assert_eq!(Policy::All.evaluate(results), *all, "all {results:?}");
            assert_eq!(
                Policy::Majority.evaluate(results),
                *majority,
                "majority {results:?}"
            );
        }
    }

    #[test]
    fn unknown_results_are_not_votes() {
        const U: Option<bool> = None;
        const T: Option<bool> = Some(true);
        const F: Option<bool> = Some(false);
        // votes, any, all, majority
        type Row<'a> = (&'a [Option<bool>], Option<bool>, Option<bool>, Option<bool>);
        let cases: &[Row] = &[
            (&[], T, T, T),
            (&[U], U, U, U),
            (&[U, U, U], U, U, U),
            (&[U, T], T, T, T),
            (&[U, F], F, F, F),
            // "all" over the known ones: an unknown target does not fail it.
            (&[T, T, U], T, T, T),
            (&[T, F, U], T, F, F),
            // "majority" over the known ones: 1 of 1 is a majority.
            (&[U, U, T], T, T, T),
            (&[T, F, U, U], T, F, F),
            (&[T, T, F, U], T, F, T),
        ];
        for (votes, any, all, majority) in cases {
            assert_eq!(Policy::Any.evaluate_votes(votes), *any, "any {votes:?}");
            assert_eq!(Policy::All.evaluate_votes(votes), *all, "all {votes:?}");
            assert_eq!(
                Policy::Majority.evaluate_votes(votes),
                *majority,
                "majority {votes:?}"
            );
        }
    }

    #[test]
    fn parse_and_display() {
        for p in [Policy::Any, Policy::All, Policy::Majority] {
            assert_eq!(p.to_string().parse::<Policy>(), Ok(p));
        }
        assert_eq!(" Majority ".parse::<Policy>(), Ok(Policy::Majority));
        assert_eq!(Policy::default(), Policy::Any);
        let e = "most".parse::<Policy>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown power policy \"most\"; expected any, all or majority"
        );
    }
}
