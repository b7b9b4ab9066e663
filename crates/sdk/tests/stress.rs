//! Eight threads building twenty batches each (1,000 to 20,000 items, typed and digest
//! keys mixed, each batch built by its own run, half of them creating every key before
//! opening the batch) against one shared catalog of each kind at its default settings,
//! while another thread reads `stats()` and registers unrelated keys outside any run.
//! Under the batch-scaled and unbounded kinds no item loses its options; under every
//! kind the counters add up exactly; and the whole run ends within a fixed bound, which
//! the test enforces itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions};
use idempotency_sdk::{ItemOptions, LossPolicy, RunContext, Scope, Sdk};

const THREADS: u64 = 8;
const BATCHES: u64 = 20;
/// Long enough for a debug build on two cores; a deadlock never finishes.
const BOUND: Duration = Duration::from_secs(300);
/// The reader thread's unrelated registrations, at most (50 a millisecond until then).
const UNRELATED: u64 = 200_000;

#[derive(Default)]
struct Tally {
    items: AtomicU64,
    lost: AtomicU64,
    digest_items: AtomicU64,
    unrelated: AtomicU64,
    reader_gets: AtomicU64,
}

/// Batch sizes from 1,000 to 20,000, different for every (thread, batch), fixed.
fn size(thread: u64, batch: u64) -> usize {
    let mixed = (thread * BATCHES + batch).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    1_000 + (mixed % 19_001) as usize
}

fn builder(base: &Sdk, thread: u64, tally: &Tally) {
    for batch in 0..BATCHES {
        let n = size(thread, batch);
        let sdk = base.clone().with_run(RunContext::new(format!("run_{thread}_{batch}"), 1));
        let create = |i: usize| {
            sdk.create_key(["t", &thread.to_string(), "b", &batch.to_string(), &i.to_string()], Scope::Global).unwrap()
        };
        let keys_first = (thread + batch).is_multiple_of(2);
        let mut created = if keys_first { (0..n).map(create).collect() } else { Vec::new() }.into_iter();
        let mut builder = sdk.batch("stress", n);
        for i in 0..n {
            let key = created.next().unwrap_or_else(|| create(i));
            let options = if (i + batch as usize).is_multiple_of(2) {
                ItemOptions::new().key(key)
            } else {
                tally.digest_items.fetch_add(1, Ordering::Relaxed);
                ItemOptions::new().key(key.to_string())
            };
            builder.item(None, options);
        }
        let built = builder.build().unwrap();
        let report = built.report();
        assert_eq!(report.items, n);
        assert_eq!(report.with_options + report.without_options, n);
        assert_eq!(report.repeated, 0);
        tally.items.fetch_add(n as u64, Ordering::Relaxed);
        tally.lost.fetch_add(report.without_options as u64, Ordering::Relaxed);
    }
}

/// Reads stats and registers unrelated keys until told to stop, checking on every
/// read that the counters agree.
fn reader(catalog: &dyn Catalog, stop: &AtomicBool, tally: &Tally) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let stats = catalog.stats();
        let gone = stats.evicted + stats.released + stats.removed + stats.cleared;
        assert_eq!(stats.registered - gone, stats.len as u64);
        if n >= UNRELATED {
            thread::sleep(Duration::from_millis(1));
            continue;
        }
        for _ in 0..50 {
            let mut bytes = [0xee; 32];
            bytes[..8].copy_from_slice(&n.to_le_bytes());
            let digest = Digest::from_bytes(bytes);
            catalog.register(digest, KeyOptions::new("unrelated", Scope::Run));
            let _ = catalog.get(&digest);
            n += 1;
        }
        tally.unrelated.fetch_add(50, Ordering::Relaxed);
        tally.reader_gets.fetch_add(50, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(1));
    }
}

fn run(kind: CatalogKind) -> (idempotency_catalog::Stats, Arc<Tally>) {
    // Default settings: live runs hold at most 8 x 20,000 keys, far below the ceiling,
    // whatever happened before them.
    let catalog: Arc<dyn Catalog> = CatalogBuilder::new().kind(kind).build().unwrap();
    let sdk = Sdk::new(Arc::clone(&catalog)).with_loss_policy(LossPolicy::Ignore);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let read = {
        let (catalog, stop, tally) = (Arc::clone(&catalog), Arc::clone(&stop), Arc::clone(&tally));
        thread::spawn(move || reader(catalog.as_ref(), &stop, &tally))
    };
    let builders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (sdk, tally) = (sdk.clone(), Arc::clone(&tally));
            thread::spawn(move || builder(&sdk, t, &tally))
        })
        .collect();
    for b in builders {
        b.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    read.join().unwrap();
    (catalog.stats(), tally)
}

#[test]
fn eight_threads_of_batches_against_one_catalog_of_each_kind() {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for kind in CatalogKind::ALL {
            tx.send((kind, run(kind))).unwrap();
        }
    });
    for _ in CatalogKind::ALL {
        let (kind, (stats, tally)) =
            rx.recv_timeout(BOUND).expect("the stress run did not finish: deadlock or livelock");
        let items = tally.items.load(Ordering::Relaxed);
        let expected: u64 = (0..THREADS).flat_map(|t| (0..BATCHES).map(move |b| size(t, b) as u64)).sum();
        assert_eq!(items, expected, "{kind}");
        let unrelated = tally.unrelated.load(Ordering::Relaxed);
        // Every key is distinct: each registration added an entry, none replaced one.
        assert_eq!(stats.registered, items + unrelated, "{kind}");
        assert_eq!(stats.replaced, 0, "{kind}");
        let gone = stats.evicted + stats.released + stats.removed + stats.cleared;
        assert_eq!(stats.registered - gone, stats.len as u64, "{kind}");
        // One lookup per digest-form item (as it is added), one per unrelated key.
        let gets = tally.digest_items.load(Ordering::Relaxed) + tally.reader_gets.load(Ordering::Relaxed);
        assert_eq!(stats.hits + stats.misses, gets, "{kind}");
        assert_eq!(stats.reserved, 0, "{kind}: every reservation was released");
        let lost = tally.lost.load(Ordering::Relaxed);
        if kind == CatalogKind::Lru {
            // A fixed 1,000 entries cannot hold batches of up to 20,000 keys created first.
            assert!(lost > 0 && stats.len <= 1_000, "{kind}: lost {lost}");
        } else {
            assert_eq!(lost, 0, "{kind}");
        }
        if kind == CatalogKind::BatchScaled {
            // Back to its base, but for the unrelated keys made outside any run, which
            // are kept for the retention time (and only those).
            assert!(stats.retained as u64 <= unrelated, "{} retained of {unrelated}", stats.retained);
            let base = idempotency_catalog::defaults::CAPACITY;
            assert_eq!(stats.capacity, Some(base + stats.retained), "back to its base and what it retains");
            // Live runs never held more than 8 batches' keys and room.
            assert!(stats.peak_len as u64 <= 1_000 + 8 * 20_000 + unrelated, "peak {}", stats.peak_len);
        }
    }
}
