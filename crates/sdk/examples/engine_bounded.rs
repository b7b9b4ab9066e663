//! The engine's memory under 10,000,000 triggers with a 1-second TTL: batches of 10,000
//! new keys, one a second on an injected clock, on an engine that keeps the newest
//! 100,000 run records. Expired keys are pruned as later triggers come, so the keys held
//! and the resident memory stay flat. Exits non-zero when either keeps growing. Linux
//! only (`/proc/self/statm`). CI runs it.
//!
//! ```text
//! cargo run --release -p idempotency-sdk --example engine_bounded [TRIGGERS]
//! ```

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use idempotency_catalog::UnboundedCatalog;
use idempotency_sdk::{Engine, IdempotencyKey, ItemOptions, Scope, Sdk, Ttl};

const BATCH: u64 = 10_000;
const SAMPLE_EVERY: u64 = 1_000_000;
const KEPT_RUNS: usize = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: u64 = std::env::args().nth(1).map_or(Ok(10_000_000), |n| n.parse())?;
    let seconds = Arc::new(AtomicU64::new(0));
    let clock = Arc::clone(&seconds);
    let engine = Engine::with_clock(move || Duration::from_secs(clock.load(Ordering::Relaxed)))
        .with_max_runs(NonZeroUsize::new(KEPT_RUNS).ok_or("zero")?);
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let ttl: Ttl = "1s".parse()?;

    println!("| triggers | keys held | runs kept | resident MB |");
    println!("|---:|---:|---:|---:|");
    let mut samples = Vec::new();
    for round in 0..total / BATCH {
        let mut batch = sdk.batch("child-task", BATCH as usize);
        for i in 0..BATCH {
            let key = IdempotencyKey::derive(["item", &round.to_string(), &i.to_string()], Scope::Global, None);
            batch.item(None, ItemOptions::new().key(key).ttl(ttl));
        }
        engine.trigger_owned(batch.build()?)?;
        seconds.fetch_add(1, Ordering::Relaxed);
        let done = (round + 1) * BATCH;
        if done.is_multiple_of(SAMPLE_EVERY) {
            let rss = resident_bytes()?;
            let (keys, runs) = (engine.key_count(), engine.runs_retained());
            println!("| {done} | {keys} | {runs} | {:.1} |", rss as f64 / f64::from(1 << 20));
            // A key lives one second past its batch, and is pruned at the next but one.
            if keys > 2 * BATCH as usize || runs > KEPT_RUNS {
                return Err(format!("after {done} triggers: {keys} keys held, {runs} runs kept").into());
            }
            samples.push(rss);
        }
    }
    // From the second sample on, nothing may grow.
    if let (Some(second), Some(last)) = (samples.get(1), samples.last())
        && *last > second + (1 << 20)
    {
        return Err(format!("resident memory grew from {second} to {last} bytes").into());
    }
    Ok(())
}

fn resident_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).ok_or("no resident field in /proc/self/statm")?.parse()?;
    Ok(pages * 4096)
}
