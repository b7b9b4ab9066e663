//! A long-lived worker on the in-memory defaults, and whether its memory stays flat:
//! rounds of a run that creates 8,000 keys and triggers them, then 2,000 keys made
//! outside any run and triggered, 1,000,000 keyed triggers in all (30-day TTLs, small
//! payloads). The catalog and the engine are built from the environment, as a service
//! builds them; CI runs it with
//!
//! ```text
//! IDEMPOTENCY_ENGINE_MAX_BYTES=32MiB IDEMPOTENCY_CATALOG_MAX_BYTES=16MiB \
//!     cargo run --release -p idempotency-sdk --example engine_worker [TRIGGERS]
//! ```
//!
//! It prints the resident memory as it goes and exits non-zero unless the growth stays
//! within the two budgets plus `SLACK`, the engine forgot keys (counted) and said so
//! in exactly one warning. Linux only (`/proc/self/statm`).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use idempotency_sdk::catalog::CatalogBuilder;
use idempotency_sdk::{Catalog, Engine, ItemOptions, RunContext, Scope, Sdk};
use serde_json::json;

/// Keys a run creates, and keys made outside runs, per round.
const IN_RUN: usize = 8_000;
const OUTSIDE: usize = 2_000;
/// What resident memory may grow by beyond the two budgets. Measured on the project's
/// machine at 1,000,000 and 3,000,000 triggers: none (growth 44.6 to 44.9 MiB of 48:
/// the batch being built and its handles, the catalog's eviction table and allocator
/// rounding fit within what the counts, upper bounds of the tables and ring buffers,
/// set aside; see docs/configuration.md); 8 MiB leaves a margin for another
/// allocator's rounding.
const SLACK: u64 = 8 << 20;

/// Counts the engine's budget warnings on their way to stderr.
#[derive(Clone, Default)]
struct Tee(Arc<AtomicUsize>);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.fetch_add(text.matches("engine at its byte budget").count(), Ordering::Relaxed);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = std::env::args().nth(1).map_or(Ok(1_000_000), |n| n.parse())?;
    let warnings = Tee::default();
    let sink = warnings.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();

    let catalog: Arc<dyn Catalog> = CatalogBuilder::from_env().build()?;
    let engine = Engine::from_env()?;
    let budgets = engine.stats().max_bytes as u64 + catalog.stats().max_bytes.unwrap_or(0) as u64;
    let outside = Sdk::new(Arc::clone(&catalog));
    let start = resident_bytes()?;
    println!(
        "engine budget {} MiB ({}), catalog budget {} MiB",
        engine.stats().max_bytes >> 20,
        engine.stats().max_bytes_source,
        catalog.stats().max_bytes.unwrap_or(0) >> 20
    );
    println!("| triggers | engine keys | engine MiB counted | catalog MiB counted | resident growth MiB |");
    println!("|---:|---:|---:|---:|---:|");
    let mut peak = 0u64;
    let mut done = 0usize;
    let mut round = 0usize;
    while done < total {
        // A run: its keys are held by the run until it ends, then released.
        let sdk = Sdk::new(Arc::clone(&catalog)).with_run(RunContext::new(format!("run_{round}"), 1));
        let mut batch = sdk.batch("child-task", IN_RUN);
        for i in 0..IN_RUN {
            let key = sdk.create_key(["item", &round.to_string(), &i.to_string()], Scope::Global)?;
            batch.item(json!({ "i": i }), ItemOptions::new().key(key));
        }
        engine.trigger_owned(batch.build()?)?;
        drop(sdk);
        // Keys made outside any run (an application backend), passed on as digests.
        let keys = (0..OUTSIDE)
            .map(|i| {
                Ok(outside.create_key(["outside", &round.to_string(), &i.to_string()], Scope::Global)?.to_string())
            })
            .collect::<Result<Vec<String>, idempotency_sdk::Error>>()?;
        let mut batch = outside.batch("child-task", OUTSIDE);
        for (i, key) in keys.into_iter().enumerate() {
            batch.item(json!({ "i": i }), ItemOptions::new().key(key));
        }
        engine.trigger_owned(batch.build()?)?;
        done += IN_RUN + OUTSIDE;
        round += 1;
        let growth = resident_bytes()?.saturating_sub(start);
        peak = peak.max(growth);
        if round.is_multiple_of(10) || done >= total {
            let (stats, catalog_bytes) = (engine.stats(), catalog.stats().bytes);
            let mib = |n: u64| n as f64 / f64::from(1 << 20);
            println!(
                "| {done} | {} | {:.1} | {:.1} | {:.1} |",
                stats.keys,
                mib(stats.bytes as u64),
                mib(catalog_bytes as u64),
                mib(growth)
            );
        }
    }
    catalog.flush()?;
    let stats = engine.stats();
    let said = warnings.0.load(Ordering::Relaxed);
    println!(
        "peak growth {:.1} MiB: budgets {} MiB + slack {:.1} MiB measured; {} keys forgotten before their ttl, {} records dropped; {said} warning(s)",
        peak as f64 / f64::from(1 << 20),
        budgets >> 20,
        peak.saturating_sub(budgets) as f64 / f64::from(1 << 20),
        stats.evicted_keys,
        stats.evicted_runs,
    );
    if peak > budgets + SLACK {
        return Err(format!("resident memory grew by {peak} bytes, past the budgets {budgets} + slack {SLACK}").into());
    }
    if stats.evicted_keys > 0 && said != 1 {
        return Err(format!("{} keys forgotten, {said} warnings about it (expected one)", stats.evicted_keys).into());
    }
    if stats.bytes > stats.max_bytes || catalog.stats().bytes > catalog.stats().max_bytes.unwrap_or(usize::MAX) {
        return Err("a counted total is past its budget".into());
    }
    Ok(())
}

fn resident_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).ok_or("no resident field in /proc/self/statm")?.parse()?;
    Ok(pages * 4096)
}
