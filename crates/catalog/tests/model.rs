//! Random interleavings of reserve / register (through a reservation or outside any) /
//! release / lookups / removal / clear, against each kind:
//!
//! - the LRU catalog against an exact model (a deque, least recently used first);
//! - the batch-scaled and unbounded catalogs against properties seen from outside:
//!   room follows what is live, nothing a live reservation holds is lost below the
//!   ceiling, releases are never counted as evictions, and the counters add up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::collections::{HashMap, VecDeque};

use idempotency_catalog::{
    BatchScaledCatalog, Catalog, Digest, KeyOptions, LruCatalog, Reservation, Scope, Source, Stats, UnboundedCatalog,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Digest, scope, and which live reservation registers it (`None`: outside any).
    Register(u8, u8, Option<usize>),
    Get(u8),
    Remove(u8),
    Reserve(usize),
    Release(usize),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..64, 0u8..3, proptest::option::weighted(0.7, any::<usize>()))
            .prop_map(|(d, s, r)| Op::Register(d, s, r)),
        3 => (0u8..64).prop_map(Op::Get),
        1 => (0u8..64).prop_map(Op::Remove),
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

/// A live reservation and what was registered through it while it was live.
struct Live<'a> {
    guard: Reservation<'a>,
    registered: usize,
}

/// Runs `ops` against `catalog`, calling `check` after each one with the live
/// reservations, which digests each holds (by the last registration), and the
/// evictions counted before the operation.
fn drive<'a>(
    catalog: &'a dyn Catalog,
    ops: Vec<Op>,
    mut check: impl FnMut(&Op, &[Live<'a>], &HashMap<u8, Option<usize>>, &Stats) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut live: Vec<Live<'a>> = Vec::new();
    // Digest -> the reservation (by its place in `live`) whose registration was last.
    let mut holder: HashMap<u8, Option<usize>> = HashMap::new();
    for op in ops {
        let before = catalog.stats();
        match &op {
            Op::Register(d, s, via) => match via.filter(|_| !live.is_empty()).map(|at| at % live.len()) {
                Some(at) => {
                    live[at].guard.register(digest(*d), options(*d, *s));
                    live[at].registered += 1;
                    holder.insert(*d, Some(at));
                }
                None => {
                    catalog.register(digest(*d), options(*d, *s));
                    holder.insert(*d, None);
                }
            },
            Op::Get(d) => {
                let _ = catalog.get(&digest(*d));
            }
            Op::Remove(d) => {
                catalog.remove(&digest(*d));
                holder.remove(d);
            }
            Op::Reserve(n) => live.push(Live { guard: catalog.reserve(*n), registered: 0 }),
            Op::Release(at) if !live.is_empty() => {
                let at = at % live.len();
                drop(live.remove(at));
                // Places after `at` move down by one; what `at` held is no longer held.
                holder.retain(|_, h| *h != Some(at));
                for h in holder.values_mut().flatten() {
                    if *h > at {
                        *h -= 1;
                    }
                }
                let after = catalog.stats();
                prop_assert_eq!(after.evicted, before.evicted, "a release is never an eviction");
            }
            Op::Release(_) => {}
            Op::Clear => {
                catalog.clear();
                holder.clear();
            }
        }
        let stats = catalog.stats();
        let gone = stats.evicted + stats.released + stats.removed + stats.cleared;
        prop_assert_eq!(stats.registered - gone, stats.len as u64, "counters add up: {:?}", stats);
        prop_assert_eq!(stats.reserved, live.iter().map(|l| l.guard.requested()).sum::<usize>());
        prop_assert!(stats.len <= stats.capacity.unwrap_or(usize::MAX), "capacity exceeded: {:?}", stats);
        check(&op, &live, &holder, &before)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Below the ceiling, a live reservation loses nothing; capacity is the base plus
    /// at most what live reservations asked for or registered, and the base when none
    /// is live; promised room never goes past the ceiling.
    #[test]
    fn batch_scaled_room_follows_what_is_live(
        base in 1usize..12,
        extra in 0usize..80,
        ops in proptest::collection::vec(op(), 0..300),
    ) {
        let max = base + extra;
        let catalog = BatchScaledCatalog::new(base, max).unwrap();
        let mut ceiling_met = false;
        drive(&catalog, ops, |_, live, holder, _| {
            let stats = catalog.stats();
            let capacity = stats.capacity.unwrap();
            ceiling_met |= stats.len >= max;
            prop_assert!(capacity <= max);
            let held: usize = live.iter().map(|l| l.guard.requested() + l.registered).sum();
            prop_assert!(capacity <= base + held, "capacity {} beyond base {} + live {}", capacity, base, held);
            if live.is_empty() {
                prop_assert_eq!(capacity, base);
                prop_assert!(stats.len <= base);
            }
            // A reservation's entries are held apart from the free ones, which give way
            // first: what live reservations were promised fits the ceiling together.
            let promised: usize = live.iter().map(|l| l.guard.requested() - l.guard.shortfall()).sum();
            prop_assert!(promised <= max, "promised {} of {} room", promised, max);
            if !ceiling_met {
                for (d, _) in holder.iter().filter(|(_, h)| h.is_some()) {
                    prop_assert!(catalog.get(&digest(*d)).is_some(), "held digest {} lost below the ceiling", d);
                }
            }
            Ok(())
        })?;
    }

    /// With a ceiling nothing reaches, the only evictions are of free entries beyond
    /// the base: a reservation's entries never cost a warning.
    #[test]
    fn batch_scaled_warns_only_for_free_entries(
        base in 1usize..12,
        ops in proptest::collection::vec(op(), 0..300),
    ) {
        let catalog = BatchScaledCatalog::new(base, 100_000).unwrap();
        drive(&catalog, ops, |op, _, _, before| {
            let stats = catalog.stats();
            if stats.evicted > before.evicted {
                prop_assert!(matches!(op, Op::Register(..)), "evicted by {:?}", op);
                prop_assert!(before.len >= base);
            }
            Ok(())
        })?;
    }

    /// An unbounded catalog never evicts, and a reservation that ends takes exactly
    /// its own entries with it.
    #[test]
    fn unbounded_releases_exactly_what_ended(ops in proptest::collection::vec(op(), 0..300)) {
        let catalog = UnboundedCatalog::new();
        drive(&catalog, ops, |_, _, holder, _| {
            let stats = catalog.stats();
            prop_assert_eq!(stats.evicted, 0);
            prop_assert_eq!(stats.len, holder.len());
            for d in holder.keys() {
                prop_assert!(catalog.get(&digest(*d)).is_some());
            }
            Ok(())
        })?;
    }

    #[test]
    fn lru_matches_the_model(cap in 1usize..16, ops in proptest::collection::vec(op(), 0..200)) {
        let catalog = LruCatalog::with_capacity(cap).unwrap();
        check_lru(cap, &catalog, ops)?;
    }
}

/// An LRU catalog is one map whatever holds its entries: the model is a deque with the
/// least recently used entry at the front.
fn check_lru(cap: usize, catalog: &dyn Catalog, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut entries: VecDeque<(u8, KeyOptions)> = VecDeque::new();
    let mut expected = Stats::default();
    let mut live: Vec<Reservation<'_>> = Vec::new();
    let take = |entries: &mut VecDeque<(u8, KeyOptions)>, d: u8| {
        let at = entries.iter().position(|(k, _)| *k == d)?;
        entries.remove(at).map(|(_, o)| o)
    };
    for op in ops {
        match op {
            Op::Register(d, s, via) => {
                match via.filter(|_| !live.is_empty()) {
                    Some(at) => live[at % live.len()].register(digest(d), options(d, s)),
                    None => catalog.register(digest(d), options(d, s)),
                }
                if take(&mut entries, d).is_some() {
                    expected.replaced += 1;
                } else {
                    expected.registered += 1;
                    if entries.len() >= cap {
                        entries.pop_front();
                        expected.evicted += 1;
                    }
                }
                entries.push_back((d, options(d, s)));
                expected.peak_len = expected.peak_len.max(entries.len());
            }
            Op::Get(d) => {
                let found = take(&mut entries, d);
                match &found {
                    Some(o) => {
                        expected.hits += 1;
                        entries.push_back((d, o.clone()));
                    }
                    None => expected.misses += 1,
                }
                prop_assert_eq!(catalog.get(&digest(d)), found);
            }
            Op::Remove(d) => {
                let removed = take(&mut entries, d);
                expected.removed += u64::from(removed.is_some());
                prop_assert_eq!(catalog.remove(&digest(d)), removed);
            }
            Op::Reserve(n) => {
                let others: usize = live.iter().map(Reservation::requested).sum();
                let guard = catalog.reserve(n);
                prop_assert_eq!(guard.shortfall(), n.saturating_sub(cap.saturating_sub(others)));
                live.push(guard);
            }
            Op::Release(at) if !live.is_empty() => drop(live.remove(at % live.len())),
            Op::Release(_) => {}
            Op::Clear => {
                expected.cleared += entries.len() as u64;
                entries.clear();
                catalog.clear();
            }
        }
        let mut expected = expected;
        expected.len = entries.len();
        expected.capacity = Some(cap);
        expected.max_capacity = Some(cap);
        expected.reserved = live.iter().map(Reservation::requested).sum();
        expected.bytes = entries.iter().map(|(_, o)| o.entry_bytes()).sum();
        // Made with `LruCatalog::with_capacity`: every setting given in code.
        expected.sources.kind = Source::Builder;
        expected.sources.capacity = Source::Builder;
        expected.sources.max_capacity = Source::Builder;
        expected.sources.max_bytes = Source::Builder;
        expected.sources.retain = Source::Builder;
        prop_assert_eq!(catalog.stats(), expected);
    }
    // Same entries, oldest first: looking each up in model order keeps both in step.
    for (d, o) in entries.iter().cloned().collect::<Vec<_>>() {
        prop_assert_eq!(catalog.get(&digest(d)), Some(o));
    }
    Ok(())
}
