//! Each catalog kind against a plain reference model over random operation sequences:
//! the same entries in the same recency order, the same counters, and a capacity that
//! is never exceeded and never shrinks while a reservation is live.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::collections::VecDeque;

use idempotency_catalog::{
    BatchScaledCatalog, Catalog, Digest, KeyOptions, LruCatalog, Reservation, Scope, Stats, UnboundedCatalog,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Register(u8, u8),
    Get(u8),
    Remove(u8),
    Reserve(usize),
    Release(usize),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..48, 0u8..3).prop_map(|(d, s)| Op::Register(d, s)),
        3 => (0u8..48).prop_map(Op::Get),
        1 => (0u8..48).prop_map(Op::Remove),
        1 => (0usize..24).prop_map(Op::Reserve),
        1 => any::<usize>().prop_map(Op::Release),
        1 => Just(Op::Clear),
    ]
}

fn digest(d: u8) -> Digest {
    Digest::from_bytes([d; 32])
}

fn options(d: u8, s: u8) -> KeyOptions {
    KeyOptions::new(&format!("item-{d}"), Scope::ALL[usize::from(s) % 3])
}

#[derive(Clone, Copy, Debug)]
enum Policy {
    Fixed(usize),
    Unbounded,
    Scaled { base: usize, max: usize },
}

/// The reference: a deque with the least recently used entry at the front.
struct Model {
    policy: Policy,
    /// A batch-scaled catalog's current capacity.
    scaled_cap: usize,
    entries: VecDeque<(u8, KeyOptions)>,
    reservations: Vec<usize>,
    /// What reservations asked for since none was live.
    grown: usize,
    stats: Stats,
}

impl Model {
    fn capacity(&self) -> Option<usize> {
        match self.policy {
            Policy::Fixed(cap) => Some(cap),
            Policy::Unbounded => None,
            Policy::Scaled { .. } => Some(self.scaled_cap),
        }
    }

    fn take(&mut self, d: u8) -> Option<KeyOptions> {
        let at = self.entries.iter().position(|(k, _)| *k == d)?;
        self.entries.remove(at).map(|(_, o)| o)
    }

    fn register(&mut self, d: u8, o: KeyOptions) {
        if self.take(d).is_some() {
            self.stats.replaced += 1;
        } else {
            self.stats.registered += 1;
            // While a reservation is live, a batch-scaled catalog grows instead of evicting.
            if let Policy::Scaled { max, .. } = self.policy
                && !self.reservations.is_empty()
                && self.entries.len() >= self.scaled_cap
                && self.scaled_cap < max
            {
                self.scaled_cap = (self.scaled_cap * 2).min(max);
            }
            if self.capacity().is_some_and(|cap| self.entries.len() >= cap) {
                self.entries.pop_front();
                self.stats.evicted_capacity += 1;
            }
        }
        self.entries.push_back((d, o));
        self.stats.peak_len = self.stats.peak_len.max(self.entries.len());
    }

    fn get(&mut self, d: u8) -> Option<KeyOptions> {
        let found = self.take(d);
        match &found {
            Some(o) => {
                self.stats.hits += 1;
                self.entries.push_back((d, o.clone()));
            }
            None => self.stats.misses += 1,
        }
        found
    }

    fn release(&mut self, at: usize) {
        self.reservations.remove(at);
        if self.reservations.is_empty() {
            self.grown = 0;
            if let Policy::Scaled { base, .. } = self.policy {
                self.scaled_cap = base;
            }
        }
        let cap = self.capacity().unwrap_or(usize::MAX);
        while self.entries.len() > cap {
            self.entries.pop_front();
            self.stats.evicted_shrink += 1;
        }
    }
}

fn check(policy: Policy, catalog: &dyn Catalog, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let scaled_cap = match policy {
        Policy::Scaled { base, .. } => base,
        _ => 0,
    };
    let mut model = Model {
        policy,
        scaled_cap,
        entries: VecDeque::new(),
        reservations: Vec::new(),
        grown: 0,
        stats: Stats::default(),
    };
    let mut guards: Vec<Reservation<'_>> = Vec::new();
    for op in ops {
        match op {
            Op::Register(d, s) => {
                catalog.register(digest(d), options(d, s));
                model.register(d, options(d, s));
            }
            Op::Get(d) => prop_assert_eq!(catalog.get(&digest(d)), model.get(d)),
            Op::Remove(d) => {
                let removed = model.take(d);
                model.stats.removed += u64::from(removed.is_some());
                prop_assert_eq!(catalog.remove(&digest(d)), removed);
            }
            Op::Reserve(n) => {
                let guard = catalog.reserve(n);
                model.reservations.push(n);
                model.grown += n;
                if let Policy::Scaled { base, max } = model.policy {
                    model.scaled_cap = model.scaled_cap.max((base + model.grown).min(max));
                }
                let expected = model.capacity().map_or(0, |cap| n.saturating_sub(cap));
                prop_assert_eq!(guard.shortfall(), expected);
                guards.push(guard);
            }
            Op::Release(at) if !guards.is_empty() => {
                let at = at % guards.len();
                drop(guards.remove(at));
                model.release(at);
            }
            Op::Release(_) => {}
            Op::Clear => {
                model.stats.cleared += model.entries.len() as u64;
                model.entries.clear();
                catalog.clear();
            }
        }
        let stats = catalog.stats();
        let capacity = model.capacity();
        prop_assert_eq!(catalog.capacity(), capacity);
        prop_assert!(stats.len <= capacity.unwrap_or(usize::MAX), "capacity exceeded: {:?}", stats);
        prop_assert_eq!(stats.registered - stats.evictions() - stats.removed - stats.cleared, stats.len as u64);
        let mut expected = model.stats;
        expected.len = model.entries.len();
        expected.capacity = capacity;
        expected.reserved = model.reservations.iter().sum();
        prop_assert_eq!(stats, expected);
    }
    // Same entries, oldest first: looking each up in model order keeps both in step.
    let order: Vec<(u8, KeyOptions)> = model.entries.iter().cloned().collect();
    for (d, o) in order {
        prop_assert_eq!(catalog.get(&digest(d)), Some(o));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lru_matches_the_model(cap in 1usize..16, ops in proptest::collection::vec(op(), 0..200)) {
        let catalog = LruCatalog::with_capacity(cap).unwrap();
        check(Policy::Fixed(cap), &catalog, ops)?;
    }

    #[test]
    fn unbounded_matches_the_model(ops in proptest::collection::vec(op(), 0..200)) {
        check(Policy::Unbounded, &UnboundedCatalog::new(), ops)?;
    }

    #[test]
    fn batch_scaled_matches_the_model(
        base in 1usize..12,
        extra in 0usize..40,
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let catalog = BatchScaledCatalog::new(base, base + extra).unwrap();
        check(Policy::Scaled { base, max: base + extra }, &catalog, ops)?;
    }
}
