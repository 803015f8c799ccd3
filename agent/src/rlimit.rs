//! The open-file limit: raise the soft limit to the hard one at startup.
//!
//! Many distributions start services with a soft `RLIMIT_NOFILE` of 1024 and
//! a much higher hard limit. An agent with a few hundred peers, its HTTP
//! clients and its probes can get close to 1024, and running out turns into
//! failed probes and refused connections (the test bed's scenario j). Go
//! programs such as node_exporter raise the soft limit to the hard one when
//! they start; the agent does the same, capped at [`NOFILE_CAP`], which
//! matches `LimitNOFILE` in `deploy/coolmesh.service`. It never lowers a
//! limit, and it cannot raise the hard one (that takes privilege the agent
//! should not use for this).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Upper bound of the raised soft limit. The connection caps keep real use
/// far below it; the cap only avoids asking for "unlimited".
pub const NOFILE_CAP: u64 = 65_536;

/// The soft limit to set, given the current soft and hard limits (`None`
/// = unlimited), or `None` if the current one should stay.
pub fn nofile_target(soft: Option<u64>, hard: Option<u64>, cap: u64) -> Option<u64> {
    let want = hard.map_or(cap, |h| h.min(cap));
    match soft {
        // Already unlimited or at least as high: leave it.
        None => None,
        Some(s) if s >= want => None,
        Some(_) => Some(want),
    }
}

/// Raise the soft open-file limit (see the module docs). Returns the old
/// and new soft limits when it changed; an error if the kernel refused.
pub fn raise_nofile() -> std::io::Result<Option<(u64, u64)>> {
    let cur = getrlimit(Resource::Nofile);
    let Some(new) = nofile_target(cur.current, cur.maximum, NOFILE_CAP) else {
        return Ok(None);
    };
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(new),
            maximum: cur.maximum,
        },
    )
    .map_err(std::io::Error::from)?;
    Ok(Some((cur.current.unwrap_or(0), new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nofile_target_table() {
        for (soft, hard, want) in [
            // The common case: 1024 soft, higher hard -> the hard one.
            (Some(1024), Some(4096), Some(4096)),
            // A huge hard limit -> the cap.
            (Some(1024), Some(1 << 20), Some(NOFILE_CAP)),
            (Some(1024), None, Some(NOFILE_CAP)),
            // Nothing to gain, or never lower.
            (Some(4096), Some(4096), None),
            (Some(100_000), Some(1 << 20), None),
            (None, None, None),
            // soft == hard == 1024 (hard fixed by the operator): stays.
            (Some(1024), Some(1024), None),
        ] {
            assert_eq!(
                nofile_target(soft, hard, NOFILE_CAP),
                want,
                "{soft:?} {hard:?}"
            );
        }
    }

    #[test]
    fn raise_reaches_the_target_and_is_idempotent() {
        // Raising the soft limit of the test process is harmless.
        let before = getrlimit(Resource::Nofile);
        let expect = nofile_target(before.current, before.maximum, NOFILE_CAP);
        let r = raise_nofile().expect("setrlimit");
        assert_eq!(r.map(|(_, new)| new), expect);
        let after = getrlimit(Resource::Nofile);
        if let Some(n) = expect {
            assert_eq!(after.current, Some(n));
        }
        assert_eq!(after.maximum, before.maximum);
        assert_eq!(raise_nofile().expect("second"), None);
    }
}
