//! Memory under 10,000,000 registrations of distinct digests: an LRU fed outside any
//! run, and a batch-scaled catalog fed by runs of 500,000 keys each, stay within their
//! capacity and their memory stops growing; an unbounded catalog grows with what a run
//! holds and frees it when the run ends.
//!
//! Two measures: live heap bytes, counted by an instrumented allocator (what the
//! catalog holds, exactly), and resident memory (what the process costs, which also
//! holds what glibc keeps mapped after frees, and which varies by a few MB with the
//! binary's layout: the same workload has settled at 65.8 MB in one build and 70.1 MB
//! in another). Exits non-zero when a bounded catalog's live bytes grow after the first
//! million, or its resident memory keeps growing past that variation. Linux only
//! (`/proc/self/statm`).
//!
//! ```text
//! cargo run --release -p idempotency-catalog --example bounded [REGISTRATIONS]
//! ```

use std::alloc::System;

use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, Reservation, Scope};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const STEP: u64 = 1_000_000;
/// How far resident memory may move after the first million without counting as
/// growth: what glibc keeps mapped varies by a few MB between builds.
const RESIDENT_SLACK: u64 = 8 << 20;

/// Heap bytes allocated and not freed since the process started.
fn live_bytes() -> u64 {
    let stats = GLOBAL.stats();
    (stats.bytes_allocated as u64).saturating_sub(stats.bytes_deallocated as u64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: u64 = std::env::args().nth(1).map_or(Ok(10_000_000), |n| n.parse())?;
    println!("| kind | registrations | held | live heap MB, at most | resident MB |");
    println!("|---|---:|---:|---:|---:|");
    for kind in [CatalogKind::Lru, CatalogKind::BatchScaled] {
        let catalog = CatalogBuilder::new().kind(kind).build()?;
        let mut samples = Vec::new();
        for start in (0..total).step_by(STEP as usize) {
            let n = STEP.min(total - start);
            // The most live bytes in the step: with runs, just before each ends.
            let mut peak = 0;
            match kind {
                CatalogKind::BatchScaled => {
                    // Two runs a step, each keeping its 500,000 keys until it ends.
                    for half in [start, start + n / 2] {
                        let run = catalog.reserve(0);
                        register(&run, half, n / 2);
                        peak = peak.max(live_bytes());
                    }
                }
                _ => register(catalog.as_ref(), start, n),
            }
            let (live, rss) = (live_bytes().max(peak), resident_bytes()?);
            let registered = start + STEP.min(total - start);
            println!("| {kind} | {registered} | {} | {:.1} | {:.1} |", catalog.len(), mb(live), mb(rss));
            samples.push((live, rss));
            if catalog.len() > catalog.capacity().unwrap_or(usize::MAX) {
                return Err(format!("{kind}: {} entries over capacity", catalog.len()).into());
            }
        }
        // After the first step the catalog is full; from the second on nothing may grow
        // (1 MB for a map's one rehash after churn, see docs/reliability.md).
        if let (Some(&(live_second, rss_second)), Some(&(live_last, rss_last))) = (samples.get(1), samples.last()) {
            if live_last > live_second + (1 << 20) {
                return Err(format!("{kind}: live heap grew from {} to {} MB", mb(live_second), mb(live_last)).into());
            }
            if rss_last > rss_second + RESIDENT_SLACK {
                return Err(
                    format!("{kind}: resident memory grew from {} to {} MB", mb(rss_second), mb(rss_last)).into()
                );
            }
        }
    }

    // Three runs of a tenth as many: each grows, the end of each frees, and the
    // allocator reuses the freed memory, so the peaks do not add up. How much of the
    // freed memory glibc keeps mapped varies from run to run (a later peak has been
    // seen 17 to 26 MB above the first), so the check is for accumulation: a peak that
    // grew by half of what one run needs means the runs are adding up.
    let catalog = CatalogBuilder::new().kind(CatalogKind::Unbounded).build()?;
    let start = resident_bytes()?;
    let mut peaks = Vec::new();
    for run in 1..=3u64 {
        {
            let run_keys = catalog.reserve(0);
            register(&run_keys, run * total, total / 10);
            let rss = resident_bytes()?;
            println!(
                "| unbounded, run {run} | {} | {} | {:.1} | {:.1} |",
                total / 10,
                catalog.len(),
                mb(live_bytes()),
                mb(rss)
            );
            peaks.push(rss);
        }
        let (live, rss) = (live_bytes(), resident_bytes()?);
        println!("| unbounded, after run {run} ended | — | {} | {:.1} | {:.1} |", catalog.len(), mb(live), mb(rss));
    }
    if let (Some(first), Some(last)) = (peaks.first(), peaks.last()) {
        let one_run = first.saturating_sub(start);
        if *last > first + one_run / 2 {
            return Err(format!(
                "unbounded: peaks add up across runs: {} MB after one run, {} MB after three",
                mb(*first),
                mb(*last)
            )
            .into());
        }
    }
    Ok(())
}

/// Where keys go: straight into a catalog, or through a run's reservation.
trait Sink {
    fn put(&self, digest: Digest, options: KeyOptions);
}

impl Sink for dyn Catalog {
    fn put(&self, digest: Digest, options: KeyOptions) {
        self.register(digest, options);
    }
}

impl Sink for Reservation<'_> {
    fn put(&self, digest: Digest, options: KeyOptions) {
        self.register(digest, options);
    }
}

fn register(sink: &(impl Sink + ?Sized), start: u64, n: u64) {
    for i in start..start + n {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        bytes[8..16].copy_from_slice(&i.to_le_bytes());
        sink.put(Digest::from_bytes(bytes), KeyOptions::new(&format!("item-{i:07}"), Scope::Global));
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn resident_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).ok_or("no resident field in /proc/self/statm")?.parse()?;
    Ok(pages * 4096)
}
