//! The byte budget and the retention of free keys, seen from outside: the counted
//! bytes never exceed the budget under any mix of operations, the newest entry
//! survives, a loss at the budget says which budget and how to raise it, and free keys
//! past the base are kept for their retention, then released (not evicted), with the
//! catalog back at its base.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, KeyOptions, Scope, defaults};
use proptest::prelude::*;
use support::digest;

mod support;

const BUDGET: usize = 64 << 10;

fn options(i: u32, len: usize) -> KeyOptions {
    let key = format!("{i}-{}", "k".repeat(len));
    KeyOptions::new(&key, Scope::Global)
}

fn builder(kind: CatalogKind) -> CatalogBuilder {
    let builder = CatalogBuilder::new().kind(kind).max_bytes(BUDGET);
    match kind {
        CatalogKind::Unbounded => builder,
        _ => builder.capacity(50),
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Digest, key length, and whether a run registers it.
    Register(u32, usize, bool),
    Remove(u32),
    EndRun,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u32..400, prop_oneof![0usize..20, 20usize..300, 1_000usize..3_000], any::<bool>())
            .prop_map(|(d, len, run)| Op::Register(d, len, run)),
        1 => (0u32..400).prop_map(Op::Remove),
        1 => Just(Op::EndRun),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is registered, where, and however long its key: the counted bytes stay
    /// within the budget, the newest entry is there, and the counters add up.
    #[test]
    fn the_budget_is_never_exceeded_and_the_newest_entry_survives(ops in proptest::collection::vec(op(), 1..300)) {
        for kind in CatalogKind::ALL {
            let catalog = builder(kind).build().unwrap();
            let mut run = Some(catalog.reserve(0));
            for op in &ops {
                match *op {
                    Op::Register(d, len, in_run) => {
                        let options = options(d, len);
                        match (&run, in_run) {
                            (Some(run), true) => run.register(digest(d), options.clone()),
                            _ => catalog.register(digest(d), options.clone()),
                        }
                        prop_assert_eq!(catalog.get(&digest(d)), Some(options), "{} lost its newest entry", kind);
                    }
                    Op::Remove(d) => drop(catalog.remove(&digest(d))),
                    Op::EndRun => run = Some(catalog.reserve(0)),
                }
                let stats = catalog.stats();
                prop_assert!(stats.bytes <= BUDGET, "{}: {} bytes over a budget of {}", kind, stats.bytes, BUDGET);
                prop_assert_eq!(stats.max_bytes, Some(BUDGET));
                prop_assert!(stats.bytes >= stats.len * KeyOptions::new("", Scope::Run).entry_bytes());
                let gone = stats.evicted + stats.released + stats.removed + stats.cleared;
                prop_assert_eq!(stats.registered - gone, stats.len as u64, "{}: {:?}", kind, stats);
            }
            drop(run);
            prop_assert!(catalog.stats().bytes <= BUDGET);
        }
    }
}

#[test]
fn a_loss_at_the_budget_warns_naming_the_budget_and_how_to_raise_it() {
    let catalog = CatalogBuilder::new().max_bytes(BUDGET).build().unwrap();
    let run = catalog.reserve(0);
    let (_, lines) = testkit::warnings(|| {
        for i in 0..100 {
            run.register(digest(i), options(i, 2_000));
        }
    });
    let stats = catalog.stats();
    // 64 KiB holds 30 entries of 2,000-byte keys (2,151 bytes each): the run lost the rest.
    let each = options(0, 2_000).entry_bytes();
    assert_eq!(stats.len, BUDGET / each);
    assert_eq!(stats.evicted, 100 - stats.len as u64);
    assert!((90..100).all(|i| catalog.get(&digest(i)).is_some()), "the newest stay");
    let first = lines.first().expect("a warning");
    for field in ["max_bytes=65536", "IDEMPOTENCY_CATALOG_MAX_BYTES", "CatalogBuilder::max_bytes", "bytes="] {
        assert!(first.contains(field), "{field} missing from {first}");
    }
}

#[test]
fn the_default_configuration_has_a_budget_and_a_retention() {
    let stats = CatalogBuilder::new().build().unwrap().stats();
    assert_eq!(stats.max_bytes, Some(defaults::MAX_BYTES));
    // A run of 1,000,000 short keys, the default ceiling, fits the default budget.
    assert!(1_000_000 * KeyOptions::new("item-1234567", Scope::Global).entry_bytes() <= defaults::MAX_BYTES);
    assert!(defaults::RETAIN >= Duration::from_secs(60));
    // An LRU or an unbounded catalog has no budget unless given one.
    for kind in [CatalogKind::Lru, CatalogKind::Unbounded] {
        assert_eq!(CatalogBuilder::new().kind(kind).build().unwrap().stats().max_bytes, None);
    }
}

#[test]
fn free_keys_past_the_base_are_kept_for_their_retention_then_released() {
    let catalog = CatalogBuilder::new().capacity(1_000).retain(Duration::from_millis(300)).build().unwrap();
    let (_, text) = testkit::captured(|| {
        for i in 0..5_000 {
            catalog.register(digest(i), options(i, 4));
        }
    });
    assert!(!text.contains(" WARN "), "{text}");
    let stats = catalog.stats();
    assert_eq!((stats.len, stats.retained, stats.evicted, stats.released), (5_000, 4_000, 0, 0));
    assert_eq!(stats.capacity, Some(5_000));
    assert!((0..5_000).all(|i| catalog.get(&digest(i)).is_some()), "every key is there");

    thread::sleep(Duration::from_millis(400));
    let (stats, text) = testkit::captured(|| catalog.stats());
    // Back at the base: the oldest 4,000 released, which is no loss and no warning.
    assert_eq!((stats.len, stats.retained, stats.evicted, stats.released), (1_000, 0, 0, 4_000));
    assert_eq!(stats.capacity, Some(1_000));
    assert_eq!(stats.bytes, 1_000 * options(0, 4).entry_bytes());
    assert!(text.contains("retention ended") && text.contains("released=4000") && !text.contains(" WARN "), "{text}");
    assert!((4_000..5_000).all(|i| catalog.get(&digest(i)).is_some()), "the base keeps the newest");
    assert!(catalog.get(&digest(3_999)).is_none());
}

#[test]
fn a_retained_key_dropped_for_room_before_its_time_is_an_eviction() {
    let catalog =
        CatalogBuilder::new().capacity(10).max_capacity(100).retain(Duration::from_secs(600)).build().unwrap();
    let (_, lines) = testkit::warnings(|| {
        for i in 0..150 {
            catalog.register(digest(i), options(i, 4));
        }
    });
    let stats = catalog.stats();
    // The ceiling of 100 entries: the 50 oldest were still within their retention.
    assert_eq!((stats.len, stats.evicted, stats.released), (100, 50, 0));
    assert!(catalog.get(&digest(49)).is_none() && catalog.get(&digest(50)).is_some());
    assert!(lines.iter().any(|l| l.contains("IDEMPOTENCY_CATALOG_MAX_CAPACITY")), "{lines:?}");
}

#[test]
fn a_key_registered_again_moves_out_of_the_retained_keys() {
    let catalog = CatalogBuilder::new().capacity(2).retain(Duration::from_secs(600)).build().unwrap();
    for i in 0..5 {
        catalog.register(digest(i), options(i, 4));
    }
    assert_eq!(catalog.stats().retained, 3);
    // Registered again outside a run: one entry, newest in the base; the one it pushes
    // out is retained in its place.
    catalog.register(digest(0), KeyOptions::new("again", Scope::Run));
    let run = catalog.reserve(0);
    run.register(digest(1), KeyOptions::new("in a run", Scope::Run));
    let stats = catalog.stats();
    assert_eq!((stats.len, stats.retained, stats.registered, stats.replaced), (5, 2, 5, 2));
    assert_eq!(catalog.get(&digest(0)).unwrap().key(), "again");
    assert_eq!(catalog.get(&digest(1)).unwrap().key(), "in a run");
    // A retained entry also carries when it left the base.
    assert!(stats.bytes > 5 * options(0, 4).entry_bytes(), "{stats:?}");
    drop(run);
    assert_eq!(catalog.remove(&digest(2)).map(|o| o.key().to_owned()), Some("2-kkkk".to_owned()));
}

#[test]
fn a_steady_stream_outside_runs_stays_within_the_budget_and_memory_returns_to_the_base() {
    // 1,000,000 keys at a steady rate for about two seconds, kept 200 ms each.
    let budget = 16 << 20;
    let catalog: Arc<dyn Catalog> =
        CatalogBuilder::new().max_bytes(budget).retain(Duration::from_millis(200)).build().unwrap();
    let started = Instant::now();
    let mut most = 0;
    for i in 0..1_000_000u32 {
        catalog.register(digest(i), options(i, 4));
        if i % 10_000 == 0 {
            let stats = catalog.stats();
            assert!(stats.bytes <= budget, "{} bytes over {budget}", stats.bytes);
            most = most.max(stats.retained);
            // Pace it: 10,000 keys every 20 ms.
            let due = started + Duration::from_millis(u64::from(i / 10_000) * 20);
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    assert!(most > 10_000, "the stream was retained while it ran ({most} at most)");
    thread::sleep(Duration::from_millis(300));
    let stats = catalog.stats();
    assert_eq!((stats.len, stats.retained), (defaults::CAPACITY, 0));
    assert_eq!(stats.bytes, defaults::CAPACITY * options(0, 4).entry_bytes());
    assert_eq!(stats.registered, 1_000_000);
    assert_eq!(stats.released + stats.evicted, 1_000_000 - defaults::CAPACITY as u64);
}

#[test]
fn inside_a_run_nothing_changes() {
    let catalog = CatalogBuilder::new().capacity(10).retain(Duration::from_millis(1)).build().unwrap();
    let run = catalog.reserve(0);
    for i in 0..10_000 {
        run.register(digest(i), options(i, 4));
    }
    thread::sleep(Duration::from_millis(20));
    let stats = catalog.stats();
    assert_eq!((stats.len, stats.retained, stats.evicted, stats.released), (10_000, 0, 0, 0));
    drop(run);
    // The run's newest 10 stay free; the rest released, and none of it retained.
    let stats = catalog.stats();
    assert_eq!((stats.len, stats.retained, stats.evicted, stats.released), (10, 0, 0, 9_990));
}

#[test]
fn an_eviction_when_a_run_ends_is_warned() {
    // 50 free keys of 1,040 bytes and a run of 50 short ones fit 64 KiB; when the run
    // ends, its keys take the base and push the free ones out to be retained, which
    // costs 16 bytes more each: over the budget, and the oldest goes.
    let catalog =
        CatalogBuilder::new().capacity(50).max_bytes(BUDGET).retain(Duration::from_secs(600)).build().unwrap();
    for i in 0..50 {
        catalog.register(digest(i), options(i, 1_040 - i.to_string().len() - 1));
    }
    let run = catalog.reserve(0);
    for i in 100..150 {
        run.register(digest(i), options(i, 4));
    }
    assert_eq!(catalog.stats().evicted, 0, "{:?}", catalog.stats());
    let (_, lines) = testkit::warnings(|| drop(run));
    let stats = catalog.stats();
    assert!(stats.evicted > 0 && stats.bytes <= BUDGET, "{stats:?}");
    assert!(
        lines.iter().any(|l| l.contains("catalog full") && l.contains("IDEMPOTENCY_CATALOG_MAX_BYTES")),
        "{lines:?}"
    );
}

#[test]
fn a_retained_key_whose_time_is_up_dropped_for_room_is_a_release() {
    let catalog =
        CatalogBuilder::new().capacity(10).max_capacity(100).retain(Duration::from_millis(100)).build().unwrap();
    let run = catalog.reserve(0);
    for i in 0..50 {
        catalog.register(digest(i), options(i, 4));
    }
    thread::sleep(Duration::from_millis(250));
    let (_, lines) = testkit::warnings(|| {
        for i in 100..200 {
            run.register(digest(i), options(i, 4));
        }
    });
    let stats = catalog.stats();
    // The 40 retained keys were past their time: released. The ceiling then took the
    // 10 free ones of the base, which no time limits: those are losses, and warned.
    assert_eq!((stats.released, stats.evicted), (40, 10), "{stats:?}");
    assert!(!lines.is_empty());
}

#[test]
fn a_runs_leftovers_pushed_out_of_the_base_are_released_not_retained() {
    let catalog = CatalogBuilder::new().capacity(5).retain(Duration::from_secs(600)).build().unwrap();
    let run = catalog.reserve(0);
    for i in 0..5 {
        run.register(digest(i), options(i, 4));
    }
    drop(run);
    assert_eq!(catalog.len(), 5, "the run's keys stay as the base");
    for i in 10..15 {
        catalog.register(digest(i), options(i, 4));
    }
    let stats = catalog.stats();
    assert_eq!((stats.len, stats.retained, stats.released, stats.evicted), (5, 0, 5, 0), "{stats:?}");
    // Free keys made outside a run, pushed out in turn, are retained.
    for i in 20..25 {
        catalog.register(digest(i), options(i, 4));
    }
    assert_eq!(catalog.stats().retained, 5);
}
