//! Resident memory under 10,000,000 registrations of distinct digests: an LRU fed
//! outside any run, and a batch-scaled catalog fed by runs of 500,000 keys each, stay
//! within their capacity and their resident memory stops growing; an unbounded catalog
//! grows with what a run holds and frees it when the run ends.
//! Exits non-zero when a bounded catalog keeps growing. Linux only (`/proc/self/statm`).
//!
//! ```text
//! cargo run --release -p idempotency-catalog --example bounded [REGISTRATIONS]
//! ```

use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, Reservation, Scope};

const STEP: u64 = 1_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: u64 = std::env::args().nth(1).map_or(Ok(10_000_000), |n| n.parse())?;
    println!("| kind | registrations | held | resident MB |");
    println!("|---|---:|---:|---:|");
    for kind in [CatalogKind::Lru, CatalogKind::BatchScaled] {
        let catalog = CatalogBuilder::new().kind(kind).build()?;
        let mut samples = Vec::new();
        for start in (0..total).step_by(STEP as usize) {
            let n = STEP.min(total - start);
            match kind {
                CatalogKind::BatchScaled => {
                    // Two runs a step, each keeping its 500,000 keys until it ends.
                    for half in [start, start + n / 2] {
                        let run = catalog.reserve(0);
                        register(&run, half, n / 2);
                    }
                }
                _ => register(catalog.as_ref(), start, n),
            }
            let rss = resident_bytes()?;
            println!("| {kind} | {} | {} | {:.1} |", start + STEP.min(total - start), catalog.len(), mb(rss));
            samples.push(rss);
            if catalog.len() > catalog.capacity().unwrap_or(usize::MAX) {
                return Err(format!("{kind}: {} entries over capacity", catalog.len()).into());
            }
        }
        // After the first step the catalog is full; from the second on nothing may grow.
        if let (Some(second), Some(last)) = (samples.get(1), samples.last())
            && *last > second + (1 << 20)
        {
            return Err(format!("{kind}: resident memory grew from {} to {} MB", mb(*second), mb(*last)).into());
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
            println!("| unbounded, run {run} | {} | {} | {:.1} |", total / 10, catalog.len(), mb(rss));
            peaks.push(rss);
        }
        println!("| unbounded, after run {run} ended | — | {} | {:.1} |", catalog.len(), mb(resident_bytes()?));
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
