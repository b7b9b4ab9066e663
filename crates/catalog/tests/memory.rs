//! Live heap bytes under a long stream of distinct digests: a bounded catalog's
//! footprint stops growing once it is full, and the end of a run gives an unbounded
//! catalog's memory back. Counted by an instrumented allocator (this file only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::alloc::System;
use std::time::Duration;

use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, Scope};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn digest(i: u64) -> Digest {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    bytes[8..16].copy_from_slice(&i.to_le_bytes());
    Digest::from_bytes(bytes)
}

/// Live bytes allocated since `region` began. `stats_alloc` already adds a
/// reallocation's growth to `bytes_allocated` (and its shrinkage to
/// `bytes_deallocated`); `bytes_reallocated` is the same change again, not to be added.
fn live(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
}

/// Registers `n` distinct digests from `start`, with keys longer than the inline limit
/// so that every entry owns a heap string too.
fn register(catalog: &dyn Catalog, start: u64, n: u64) {
    for i in start..start + n {
        catalog.register(digest(i), KeyOptions::new(&format!("customer-{i:012}@example.com"), Scope::Global));
    }
}

#[test]
fn bounded_catalogs_stop_growing_and_the_end_of_a_run_frees_an_unbounded_one() {
    for kind in [CatalogKind::Lru, CatalogKind::BatchScaled] {
        let builder = CatalogBuilder::new().kind(kind).capacity(10_000);
        // Without a retention a batch-scaled catalog's free keys are an LRU of its base
        // (with one, they are bounded by the byte budget: `budget.rs`).
        let builder = if kind == CatalogKind::BatchScaled { builder.retain(Duration::ZERO) } else { builder };
        let catalog = builder.build().unwrap();
        let region = Region::new(GLOBAL);
        // Fill, then churn: evictions leave tombstones in the hash table, and it
        // settles once, at twice the buckets of a fresh one (see docs/reliability.md).
        register(catalog.as_ref(), 0, 100_000);
        let settled = live(&region);
        // Twenty times the capacity again: every one evicts one.
        register(catalog.as_ref(), 100_000, 200_000);
        let after = live(&region);
        assert_eq!(catalog.len(), 10_000, "{kind}");
        assert_eq!(catalog.stats().evicted, 290_000, "{kind}");
        assert!(after <= settled + 4_096, "{kind}: grew from {settled} to {after} bytes while evicting");
        // And what it holds is about what 10,000 entries need, beside the table of
        // 512 KiB that remembers recent evictions (`Catalog::forgotten`), allocated at
        // the first one.
        assert!(settled < 10_000 * 200 + 512 * 1_024, "{kind}: {settled} bytes for 10,000 entries");
    }

    let catalog = CatalogBuilder::new().kind(CatalogKind::Unbounded).build().unwrap();
    let region = Region::new(GLOBAL);
    {
        let run = catalog.reserve(0);
        for i in 0..100_000 {
            run.register(digest(i), KeyOptions::new(&format!("customer-{i:012}@example.com"), Scope::Global));
        }
        let grown = live(&region);
        // Entries, their key strings and the map: well over 100 bytes each.
        assert!(grown > 100 * 100_000, "{grown}");
    }
    assert!(catalog.is_empty());
    assert!(live(&region) < 64 * 1_024, "the end of the run left {} bytes", live(&region));
}
