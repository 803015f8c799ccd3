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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
}

/// The two grow-only halves of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PnPair {
    /// Increments.
    pub p: u64,
    /// Decrements.
    pub n: u64,
}

impl Counter {
    /// `sum(p) - sum(n)` over all slots (i128: cannot overflow for any
    /// realistic number of u64 slots).
    pub fn value(&self) -> i128 {
        self.slots
            .values()
            .map(|s| i128::from(s.p) - i128::from(s.n))
            .sum()
    }
}

/// A set of named counters, each with one slot per node. This is the CRDT
/// state: merge = per-slot max.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Counters {
    /// Counter name -> counter.
    pub map: BTreeMap<String, Counter>,
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

    /// Merge `other` into `self`: per-slot max, PN wins kind conflicts.
    pub fn merge(&mut self, other: &Counters) {
        for (name, theirs) in &other.map {
            let mine = self.map.entry(name.clone()).or_default();
            mine.kind = mine.kind.max(theirs.kind);
            for (owner, pair) in &theirs.slots {
                let slot = mine.slots.entry(owner.clone()).or_default();
                slot.p = slot.p.max(pair.p);
                slot.n = slot.n.max(pair.n);
            }
        }
    }

    /// Merge one owner's slots (as carried by that owner's record).
    pub fn merge_slots(&mut self, owner: &str, slots: &BTreeMap<String, CounterSlot>) {
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
            slots: BTreeMap::new(),
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
            });
        proptest::collection::btree_map("[x-z]", counter, 0..4).prop_map(|map| Counters { map })
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
}
