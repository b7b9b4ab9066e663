//! Several threads registering, looking up and reserving at once against one catalog
//! of each kind: counters stay exact and live reservations are honoured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;
use std::thread;

use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, Scope};

const THREADS: u32 = 4;
const PER_THREAD: u32 = 5_000;

fn digest(thread: u32, i: u32) -> Digest {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&thread.to_be_bytes());
    bytes[4..8].copy_from_slice(&i.to_be_bytes());
    Digest::from_bytes(bytes)
}

/// Each thread reserves room for its batch, registers it through the reservation,
/// checks every key of it is still there, then releases. Returns how many of its own keys each thread lost.
fn run_batches(catalog: &Arc<dyn Catalog>) -> u32 {
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let catalog = Arc::clone(catalog);
            thread::spawn(move || {
                let room = catalog.reserve(PER_THREAD as usize);
                for i in 0..PER_THREAD {
                    room.register(digest(t, i), KeyOptions::new(&format!("t{t}-{i}"), Scope::Attempt));
                    let _ = catalog.get(&digest(t, i / 2));
                }
                let lost = (0..PER_THREAD).filter(|&i| catalog.get(&digest(t, i)).is_none()).count();
                drop(room);
                lost as u32
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

#[test]
fn counters_add_up_under_contention_for_every_kind() {
    for kind in CatalogKind::ALL {
        let builder = CatalogBuilder::new().kind(kind);
        let catalog = match kind {
            CatalogKind::Unbounded => builder.build(),
            _ => builder.capacity(1_000).build(),
        }
        .unwrap();
        let lost = run_batches(&catalog);
        let stats = catalog.stats();
        assert_eq!(stats.registered, u64::from(THREADS * PER_THREAD), "{kind}");
        let gone = stats.evicted + stats.released + stats.removed + stats.cleared;
        assert_eq!(stats.registered - gone, stats.len as u64, "{kind}");
        // Every lookup is either a hit or a miss: two per registration, one per check.
        assert_eq!(stats.hits + stats.misses, u64::from(THREADS * PER_THREAD * 2), "{kind}");
        assert_eq!(stats.reserved, 0, "{kind}");
        match kind {
            // All four batches fit while their reservations are live.
            CatalogKind::BatchScaled | CatalogKind::Unbounded => assert_eq!(lost, 0, "{kind}"),
            CatalogKind::Lru => assert!(lost > 0),
            other => panic!("a kind this test does not know: {other}"),
        }
        match kind {
            // Each batch's keys were released when it ended.
            CatalogKind::Unbounded => assert_eq!((stats.len, stats.evicted), (0, 0)),
            CatalogKind::BatchScaled => {
                assert_eq!((stats.len, stats.capacity, stats.evicted), (1_000, Some(1_000), 0), "{kind}");
            }
            CatalogKind::Lru => assert_eq!((stats.len, stats.capacity), (1_000, Some(1_000)), "{kind}"),
            other => panic!("a kind this test does not know: {other}"),
        }
    }
}
