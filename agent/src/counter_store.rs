//! This node's CRDT counter slots, persisted so a restart loses nothing.
//!
//! Every increment is written atomically (temp file, fsync, rename, fsync
//! dir) before it is acknowledged, so an acknowledged count survives a
//! kill -9 or a power cut. If the file is lost or corrupt, the slots come
//! back from peers: the cluster still carries this node's last published
//! slots, and merging them (per-slot max) restores the count.

use crate::cluster::counters::CounterSlot;
use crate::cluster::counters::{CounterKind, Counters};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::cluster::counters::BUILTIN;

/// Counter names one node's record carries (the wire limit).
pub const MAX_NAMES: usize = crate::cluster::record::limits::COUNTERS;
/// User counter names one node may create: the rest are the built-ins'.
pub const MAX_USER_NAMES: usize = MAX_NAMES - BUILTIN.len();

/// File name inside the state directory.
pub const FILE: &str = "counters.json";

/// This node's counters.
#[derive(Debug)]
pub struct CounterStore {
    path: PathBuf,
    owner: String,
    counters: Counters,
}

impl CounterStore {
    /// Load `<state_dir>/counters.json` (missing = empty). A corrupt file is
    /// moved aside and reported; the caller logs it, and the slots are
    /// recovered from peers.
    pub fn load(state_dir: &Path, owner: &str) -> (Self, Option<String>) {
        let path = state_dir.join(FILE);
        let (counters, problem) = match std::fs::read(&path) {
            Ok(bytes) => match Counters::from_bytes(&bytes) {
                Ok(c) => (c, None),
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    let _ = std::fs::rename(&path, &aside);
                    (
                        Counters::new(),
                        Some(format!(
                            "{}: {e}; moved to {}",
                            path.display(),
                            aside.display()
                        )),
                    )
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Counters::new(), None),
            Err(e) => (Counters::new(), Some(format!("{}: {e}", path.display()))),
        };
        // Only our own slots are ours to keep; peers' slots come from peers.
        let mut own = Counters::new();
        own.merge_slots(owner, &counters.own_slots(owner));
        (
            CounterStore {
                path,
                owner: owner.to_string(),
                counters: own,
            },
            problem,
        )
    }

    fn save(&self) -> std::io::Result<()> {
        crate::persist::write_atomic(&self.path, &self.counters.to_bytes())
    }

    /// Add `amount` (negative only for PN counters) and persist before
    /// returning. A new name past [`MAX_NAMES`] is refused with the limit
    /// in the message: its increments could never leave this node (a
    /// record carries at most that many names).
    pub fn add(&mut self, name: &str, kind: CounterKind, amount: i64) -> Result<(), String> {
        if !self.counters.map.contains_key(name)
            && !BUILTIN.contains(&name)
            && self.user_names() >= MAX_USER_NAMES
        {
            return Err(format!(
                "too many counters: a node carries at most {MAX_NAMES} counter names ({MAX_USER_NAMES} of yours besides the {} built-ins), and this one has {}; reuse a name",
                BUILTIN.len(),
                self.user_names()
            ));
        }
        let before = self.counters.clone();
        let r = if amount >= 0 {
            self.counters
                .increment(&self.owner, name, kind, amount.unsigned_abs())
        } else {
            if kind == CounterKind::PN && !self.counters.map.contains_key(name) {
                // Create it as PN so the decrement is allowed.
                let _ = self
                    .counters
                    .increment(&self.owner, name, CounterKind::PN, 0);
            }
            self.counters
                .decrement(&self.owner, name, amount.unsigned_abs())
        };
        if let Err(e) = r {
            self.counters = before;
            return Err(e.to_string());
        }
        if let Err(e) = self.save() {
            self.counters = before;
            return Err(format!("{}: cannot persist: {e}", self.path.display()));
        }
        Ok(())
    }

    /// Merge this node's slots as the cluster last saw them (recovery after
    /// a lost file). Persists if anything grew.
    pub fn recover_from(&mut self, cluster: &Counters) -> std::io::Result<bool> {
        let theirs = cluster.own_slots(&self.owner);
        let before = self.counters.clone();
        self.counters.merge_slots(&self.owner, &theirs);
        if self.counters != before {
            self.save()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Our slots, for the record we publish.
    pub fn own_slots(&self) -> BTreeMap<String, CounterSlot> {
        self.counters.own_slots(&self.owner)
    }

    /// Our value of `name`.
    pub fn local(&self, name: &str) -> i128 {
        self.counters.value(name).unwrap_or(0)
    }

    /// Number of user (not built-in) counter names of this node.
    pub fn user_names(&self) -> usize {
        self.counters
            .map
            .keys()
            .filter(|n| !BUILTIN.contains(&n.as_str()))
            .count()
    }

    /// Names of our counters.
    pub fn names(&self) -> Vec<String> {
        self.counters.map.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, p) = CounterStore::load(dir.path(), "me");
        assert!(p.is_none());
        s.add("jobs", CounterKind::PN, 5).expect("inc");
        s.add("jobs", CounterKind::PN, -2).expect("dec");
        s.add("shutdowns", CounterKind::G, 1).expect("inc");
        assert!(
            s.add("shutdowns", CounterKind::G, -1).is_err(),
            "G counters only grow"
        );
        let (s2, _) = CounterStore::load(dir.path(), "me");
        assert_eq!((s2.local("jobs"), s2.local("shutdowns")), (3, 1));
    }

    #[test]
    fn too_many_names_is_a_clear_error_and_builtins_stay_in_the_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = CounterStore::load(dir.path(), "me");
        for b in BUILTIN {
            s.add(b, CounterKind::G, 1).expect("builtin");
        }
        // Names that sort before every built-in.
        for i in 0..MAX_USER_NAMES {
            s.add(&format!("a{i:04}"), CounterKind::PN, 1)
                .expect("fits");
        }
        let e = s
            .add("a9999", CounterKind::PN, 1)
            .expect_err("one too many");
        assert!(e.contains("at most 256"), "{e}");
        // Existing names and built-ins still count.
        s.add("a0000", CounterKind::PN, 1).expect("existing name");
        s.add("shutdowns", CounterKind::G, 1).expect("builtin");
        let key = libp2p::identity::Keypair::generate_ed25519();
        let local = crate::cluster::LocalState {
            counters: s.own_slots(),
            ..Default::default()
        };
        let rec = crate::cluster::record::Record::from_local(
            &local,
            "c",
            key.public().to_peer_id(),
            1,
            &[],
            0,
        );
        assert_eq!(rec.state.counters.len(), MAX_NAMES);
        for b in BUILTIN {
            assert!(rec.state.counters.contains_key(b), "{b} pushed out");
        }
    }

    #[test]
    fn corrupt_file_is_moved_aside_and_recovered_from_the_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE), b"\x00garbage").expect("write");
        let (mut s, p) = CounterStore::load(dir.path(), "me");
        assert!(p.expect("problem reported").contains("counters.json"));
        assert!(dir.path().join("counters.json.corrupt").exists());
        let mut cluster = Counters::new();
        cluster
            .increment("me", "jobs", CounterKind::PN, 7)
            .expect("inc");
        cluster
            .increment("peer", "jobs", CounterKind::PN, 100)
            .expect("inc");
        assert!(s.recover_from(&cluster).expect("recover"));
        assert_eq!(s.local("jobs"), 7, "only our own slot is recovered");
        let (s2, _) = CounterStore::load(dir.path(), "me");
        assert_eq!(s2.local("jobs"), 7);
    }
}
