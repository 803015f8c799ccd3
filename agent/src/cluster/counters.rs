//! Named CRDT counters: grow-only (G) and positive-negative (PN).
//!
//! Every node owns one slot per counter name (keyed by its PeerId in base58).
//! A slot holds two monotonically growing numbers, `p` (increments) and `n`
//! (decrements; always 0 for G counters). Merging two states takes the
//! per-slot maximum of `p` and of `n`, which makes merge commutative,
//! associative and idempotent, so replicas converge whatever the order or
//! repetition of deliveries. A node only ever increments its own slot; the
//! cluster layer rejects records that carry a slot for somebody else
//! (`foreign_slot`).
//!
//! Kind conflicts (the same name used as G on one node and PN on another)
//! resolve deterministically to PN, which is a superset of G.
//!
//! # Retired slots
//!
//! A slot of a node that left (dead longer than the retention, or removed
//! from the roster) is *retired* ([`Counters::retire`]): it leaves the slot
//! map, the view and the JSON, and its value moves into the counter's
//! `retired` sum, so the total does not change. That keeps the contract of a
//! G counter (its total never goes down; Prometheus would read a drop as a
//! reset) while the slots stay bounded by the live members. The retired
//! values are remembered per owner (at most [`MAX_RETIRED_OWNERS`]): if that
//! node comes back, its slot takes them back from the retired sum instead of
//! being counted twice. Past that bound the oldest owner's memory goes,
//! and a node returning after that is counted twice (never less).
//! The retired sums are local knowledge, not gossiped: a node that joins
//! later sums only the slots it still sees.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Built-in counters the agent maintains itself (grow-only). A record
/// carries them before any user counter, so user counters can never push
/// them out of it.
pub const BUILTIN: [&str; 4] = [
    "overheat_events",
    "power_loss_events",
    "shutdowns",
    "probe_failures",
];

/// The kind of a named counter.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum CounterKind {
    /// Grow-only: `n` is always 0.
    #[default]
    G,
    /// Positive-negative: value = `p - n`.
    #[serde(rename = "pn")]
    PN,
}

impl CounterKind {
    /// Wire code (record schema, docs/protocol.md): 0 = G, 1 = PN.
    pub fn code(self) -> u8 {
        match self {
            CounterKind::G => 0,
            CounterKind::PN => 1,
        }
    }

    /// Inverse of [`CounterKind::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(CounterKind::G),
            1 => Some(CounterKind::PN),
            _ => None,
        }
    }

    /// The label used in metrics and JSON: `g` or `pn`.
    pub fn as_str(self) -> &'static str {
        match self {
            CounterKind::G => "g",
            CounterKind::PN => "pn",
        }
    }
}

/// One node's slot of one named counter, as carried in that node's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CounterSlot {
    /// G or PN.
    pub kind: CounterKind,
    /// Sum of increments by the owning node.
    pub p: u64,
    /// Sum of decrements by the owning node (0 for G).
    pub n: u64,
}

impl CounterSlot {
    /// This slot's contribution to the counter value.
    pub fn value(&self) -> i128 {
        i128::from(self.p) - i128::from(self.n)
    }

    /// Per-field maximum; the kind resolves to PN if either side is PN.
    pub fn merge(&mut self, other: &CounterSlot) {
        self.kind = self.kind.max(other.kind);
        self.p = self.p.max(other.p);
        self.n = self.n.max(other.n);
    }
}

/// One named counter: its kind and one `(p, n)` slot per owning node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Counter {
    /// G or PN (PN wins on conflict).
    pub kind: CounterKind,
    /// Owner (PeerId, base58) -> `(p, n)`.
    pub slots: BTreeMap<String, PnPair>,
    /// Sum of the retired slots (see the module documentation).
    #[serde(default, skip_serializing_if = "PnPair::is_zero")]
    pub retired: PnPair,
}

/// The two grow-only halves of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PnPair {
    /// Increments.
    pub p: u64,
    /// Decrements.
    pub n: u64,
}

impl PnPair {
    /// Both halves zero.
    pub fn is_zero(&self) -> bool {
        self.p == 0 && self.n == 0
    }
}

impl Counter {
    /// `sum(p) - sum(n)` over all slots and the retired sum (i128: cannot
    /// overflow for any realistic number of u64 slots).
    pub fn value(&self) -> i128 {
        let retired = i128::from(self.retired.p) - i128::from(self.retired.n);
        retired
            + self
                .slots
                .values()
                .map(|s| i128::from(s.p) - i128::from(s.n))
                .sum::<i128>()
    }
}

/// Owners whose retired values are remembered (see the module
/// documentation).
pub const MAX_RETIRED_OWNERS: usize = 4096;

/// A set of named counters, each with one slot per node. This is the CRDT
/// state: merge = per-slot max.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Counters {
    /// Counter name -> counter.
    pub map: BTreeMap<String, Counter>,
    /// Retired owner -> counter name -> the slot it had when retired.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retired_owners: BTreeMap<String, BTreeMap<String, PnPair>>,
}

/// Errors of the `Counters` operations that can fail.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// The counter is grow-only.
    #[error("counter {0:?} is grow-only (G) and cannot be decremented")]
    GrowOnly(String),
    /// The slot would overflow u64.
    #[error("counter {0:?} would overflow")]
    Overflow(String),
    /// `from_bytes` got something that is not a serialised `Counters`.
    #[error("invalid counters encoding: {0}")]
    Decode(String),
}

impl Counters {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merge `other` into `self`: per-slot max, PN wins kind conflicts
    /// (the retired sums and memories merge by max too).
    pub fn merge(&mut self, other: &Counters) {
        for (name, theirs) in &other.map {
            let mine = self.map.entry(name.clone()).or_default();
            mine.kind = mine.kind.max(theirs.kind);
            for (owner, pair) in &theirs.slots {
                let slot = mine.slots.entry(owner.clone()).or_default();
                slot.p = slot.p.max(pair.p);
                slot.n = slot.n.max(pair.n);
            }
            mine.retired.p = mine.retired.p.max(theirs.retired.p);
            mine.retired.n = mine.retired.n.max(theirs.retired.n);
        }
        for (owner, theirs) in &other.retired_owners {
            let mine = self.retired_owners.entry(owner.clone()).or_default();
            for (name, pair) in theirs {
                let m = mine.entry(name.clone()).or_default();
                m.p = m.p.max(pair.p);
                m.n = m.n.max(pair.n);
            }
        }
    }

    /// Retire `owner`'s slots: they leave the map, their values move into
    /// each counter's retired sum (totals unchanged) and are remembered for
    /// the owner's return. `true` if it had any.
    pub fn retire(&mut self, owner: &str) -> bool {
        let mut had = BTreeMap::new();
        for (name, c) in self.map.iter_mut() {
            if let Some(pair) = c.slots.remove(owner) {
                c.retired.p = c.retired.p.saturating_add(pair.p);
                c.retired.n = c.retired.n.saturating_add(pair.n);
                had.insert(name.clone(), pair);
            }
        }
        if had.is_empty() {
            return false;
        }
        if self.retired_owners.len() >= MAX_RETIRED_OWNERS
            && !self.retired_owners.contains_key(owner)
        {
            if let Some(first) = self.retired_owners.keys().next().cloned() {
                self.retired_owners.remove(&first);
            }
        }
        let mem = self.retired_owners.entry(owner.to_string()).or_default();
        for (name, pair) in had {
            let m = mem.entry(name).or_default();
            m.p = m.p.saturating_add(pair.p);
            m.n = m.n.saturating_add(pair.n);
        }
        true
    }

    /// Merge one owner's slots (as carried by that owner's record).
    pub fn merge_slots(&mut self, owner: &str, slots: &BTreeMap<String, CounterSlot>) {
        // A retired owner is back: its slot takes its old values back from
        // the retired sum, so they are not counted twice.
        if let Some(mem) = self.retired_owners.remove(owner) {
            for (name, pair) in mem {
                let c = self.map.entry(name).or_default();
                c.retired.p = c.retired.p.saturating_sub(pair.p);
                c.retired.n = c.retired.n.saturating_sub(pair.n);
                let slot = c.slots.entry(owner.to_string()).or_default();
                slot.p = slot.p.max(pair.p);
                slot.n = slot.n.max(pair.n);
            }
        }
        for (name, s) in slots {
            let c = self.map.entry(name.clone()).or_default();
            c.kind = c.kind.max(s.kind);
            let slot = c.slots.entry(owner.to_string()).or_default();
            slot.p = slot.p.max(s.p);
            slot.n = slot.n.max(s.n);
        }
    }

    /// Add `amount` to `owner`'s slot of `name` (creating the counter with
    /// `kind` if new). Only call this with the local node as owner.
    pub fn increment(
        &mut self,
        owner: &str,
        name: &str,
        kind: CounterKind,
        amount: u64,
    ) -> Result<(), CounterError> {
        let c = self.map.entry(name.to_string()).or_default();
        c.kind = c.kind.max(kind);
        let slot = c.slots.entry(owner.to_string()).or_default();
        slot.p = slot
            .p
            .checked_add(amount)
            .ok_or_else(|| CounterError::Overflow(name.to_string()))?;
        Ok(())
    }

    /// Subtract `amount` (PN counters only) from `owner`'s slot.
    pub fn decrement(&mut self, owner: &str, name: &str, amount: u64) -> Result<(), CounterError> {
        let c = self.map.entry(name.to_string()).or_insert_with(|| Counter {
            kind: CounterKind::PN,
            ..Counter::default()
        });
        if c.kind != CounterKind::PN {
            return Err(CounterError::GrowOnly(name.to_string()));
        }
        let slot = c.slots.entry(owner.to_string()).or_default();
        slot.n = slot
            .n
            .checked_add(amount)
            .ok_or_else(|| CounterError::Overflow(name.to_string()))?;
        Ok(())
    }

    /// Value of one counter, `None` if unknown.
    pub fn value(&self, name: &str) -> Option<i128> {
        self.map.get(name).map(Counter::value)
    }

    /// The slots owned by `owner`, in the shape a record carries.
    pub fn own_slots(&self, owner: &str) -> BTreeMap<String, CounterSlot> {
        self.map
            .iter()
            .filter_map(|(name, c)| {
                c.slots.get(owner).map(|s| {
                    (
                        name.clone(),
                        CounterSlot {
                            kind: c.kind,
                            p: s.p,
                            n: s.n,
                        },
                    )
                })
            })
            .collect()
    }

    /// Serialise (JSON, stable and human-readable) for persistence.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a map of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Inverse of [`Counters::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CounterError> {
        serde_json::from_slice(bytes).map_err(|e| CounterError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_counters() -> impl Strategy<Value = Counters> {
        let slot = (0u64..1000, 0u64..1000);
        let counter = (
            any::<bool>(),
            proptest::collection::btree_map("[a-d]", slot, 0..4),
        )
            .prop_map(|(pn, slots)| Counter {
                kind: if pn { CounterKind::PN } else { CounterKind::G },
                slots: slots
                    .into_iter()
                    .map(|(k, (p, n))| {
                        (
                            k,
                            PnPair {
                                p,
                                n: if pn { n } else { 0 },
                            },
                        )
                    })
                    .collect(),
                ..Counter::default()
            });
        proptest::collection::btree_map("[x-z]", counter, 0..4).prop_map(|map| Counters {
            map,
            ..Counters::default()
        })
    }

    fn merged(a: &Counters, b: &Counters) -> Counters {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in arb_counters(), b in arb_counters()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in arb_counters(), b in arb_counters(), c in arb_counters()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent(a in arb_counters(), b in arb_counters()) {
            let ab = merged(&a, &b);
            prop_assert_eq!(merged(&ab, &b), ab.clone());
            prop_assert_eq!(merged(&a, &a), a);
        }

        #[test]
        fn merge_never_decreases_values_of_g_counters(a in arb_counters(), b in arb_counters()) {
            let m = merged(&a, &b);
            for (name, c) in &a.map {
                if c.kind == CounterKind::G && m.map[name].kind == CounterKind::G {
                    prop_assert!(m.value(name) >= a.value(name));
                }
            }
        }

        #[test]
        fn bytes_roundtrip(a in arb_counters()) {
            prop_assert_eq!(Counters::from_bytes(&a.to_bytes()).unwrap(), a);
        }
    }

    #[test]
    fn increments_and_decrements() {
        let mut c = Counters::new();
        c.increment("a", "x", CounterKind::G, 3).unwrap();
        c.increment("b", "x", CounterKind::G, 4).unwrap();
        assert_eq!(c.value("x"), Some(7));
        assert!(c.decrement("a", "x", 1).is_err());
        c.increment("a", "y", CounterKind::PN, 5).unwrap();
        c.decrement("a", "y", 2).unwrap();
        c.decrement("b", "y", 10).unwrap();
        assert_eq!(c.value("y"), Some(-7));
        assert_eq!(c.value("nope"), None);
        let own = c.own_slots("a");
        assert_eq!(
            own["x"],
            CounterSlot {
                kind: CounterKind::G,
                p: 3,
                n: 0
            }
        );
        assert_eq!(
            own["y"],
            CounterSlot {
                kind: CounterKind::PN,
                p: 5,
                n: 2
            }
        );
        assert!(c.increment("a", "x", CounterKind::G, u64::MAX).is_err());
    }

    #[test]
    fn kind_conflict_resolves_to_pn() {
        let mut a = Counters::new();
        a.increment("a", "x", CounterKind::G, 1).unwrap();
        let mut b = Counters::new();
        b.increment("b", "x", CounterKind::PN, 1).unwrap();
        assert_eq!(merged(&a, &b).map["x"].kind, CounterKind::PN);
        assert_eq!(merged(&b, &a).map["x"].kind, CounterKind::PN);
    }

    fn slots_of(c: &Counters, owner: &str) -> BTreeMap<String, CounterSlot> {
        c.own_slots(owner)
    }

    proptest! {
        /// Retiring any owner keeps every total; its return with slots that
        /// grew (as a node's own slots only grow) never lowers a total and
        /// counts nothing twice.
        #[test]
        fn retiring_keeps_totals_and_a_return_is_not_counted_twice(
            a in arb_counters(),
            owner in "[a-d]",
            grow in 0u64..5,
        ) {
            let before: BTreeMap<String, i128> =
                a.map.iter().map(|(k, c)| (k.clone(), c.value())).collect();
            let mut r = a.clone();
            let old = slots_of(&a, &owner);
            r.retire(&owner);
            prop_assert!(slots_of(&r, &owner).is_empty());
            for (k, c) in &r.map {
                prop_assert_eq!(c.value(), before[k]);
            }
            // The owner returns with every slot grown by `grow`.
            let back: BTreeMap<String, CounterSlot> = old
                .iter()
                .map(|(k, s)| (k.clone(), CounterSlot { kind: s.kind, p: s.p + grow, n: s.n }))
                .collect();
            r.merge_slots(&owner, &back);
            for (k, c) in &r.map {
                let expect = before[k] + if back.contains_key(k) { i128::from(grow) } else { 0 };
                prop_assert_eq!(c.value(), expect, "counter {}", k);
            }
            prop_assert!(r.retired_owners.is_empty());
        }
    }

    #[test]
    fn retired_owners_are_bounded() {
        let mut c = Counters::new();
        for i in 0..MAX_RETIRED_OWNERS + 10 {
            let o = format!("owner{i:05}");
            c.increment(&o, "x", CounterKind::G, 1).unwrap();
            assert!(c.retire(&o));
        }
        assert_eq!(c.retired_owners.len(), MAX_RETIRED_OWNERS);
        assert!(c.map["x"].slots.is_empty());
        // Every increment is still in the total.
        assert_eq!(c.value("x"), Some((MAX_RETIRED_OWNERS + 10) as i128));
        // Retiring an owner without slots changes nothing.
        assert!(!c.retire("nobody"));
        // The JSON of a set without retired owners has no such key (old
        // readers and the stored format are unchanged).
        let mut d = Counters::new();
        d.increment("a", "y", CounterKind::G, 2).unwrap();
        let j = String::from_utf8(d.to_bytes()).unwrap();
        assert!(!j.contains("retired"), "{j}");
        assert_eq!(Counters::from_bytes(j.as_bytes()).unwrap(), d);
    }
}
