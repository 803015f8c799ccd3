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

/// Built-in counters the agent maintains itself (grow-only).
pub const BUILTIN: [&str; 4] = [
    "overheat_events",
    "power_loss_events",
    "shutdowns",
    "probe_failures",
];

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
    /// returning.
    pub fn add(&mut self, name: &str, kind: CounterKind, amount: i64) -> Result<(), String> {
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
