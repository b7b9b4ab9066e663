//! The main job against its floor, measured in the same process: one million keyed
//! items in a run, into the in-memory engine, against the least work the same result
//! needs.
//!
//! - **main job**: the `fanout` example's path. An SDK inside a run on the default
//!   catalog; per item a key created from its material (`item-<i>`, global), a
//!   `{"i": i}` payload and a TTL of 7 days, added to one batch; the batch built and
//!   moved into a fresh `Engine`; then the answers, the engine, the SDK and the catalog
//!   dropped.
//! - **floor**: per item the key's text, a SHA-256 of it, kept beside it, the payload
//!   as JSON text (`json!` and `serde_json::to_string`), a dedup map from digest to run
//!   (hashbrown) and a record per run (key, digest, payload), and an answer per item;
//!   then all of it dropped.
//!
//! Every round runs both sides, alternating which goes first, and the report is the
//! median of the per-round ratios (and of each side's times), with every round shown:
//! on a busy machine only an interleaved measurement compares like with like.
//!
//! `cargo bench -p benches --bench main_job_ratio` (5 rounds of 1,000,000 items), or
//! `-- --items N --rounds R`, or `-- one main|floor [N]`: one side once, for a profiler.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use idempotency_sdk::catalog::CatalogBuilder;
use idempotency_sdk::{Engine, ItemOptions, RunContext, Scope, Sdk, Ttl};
use serde_json::json;
use sha2::{Digest as _, Sha256};

const ITEMS: usize = 1_000_000;
const ROUNDS: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Main,
    Floor,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Main => "main",
            Side::Floor => "floor",
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The main job, timed from nothing to everything dropped; the number of runs made.
fn main_job(items: usize) -> Result<(f64, usize)> {
    let started = Instant::now();
    let catalog = CatalogBuilder::new().build()?;
    let sdk = Sdk::new(Arc::clone(&catalog)).with_run(RunContext::new("run_bench", 1));
    let ttl: Ttl = "7d".parse()?;
    let mut batch = sdk.batch("child-task", items);
    for i in 0..items {
        let key = sdk.create_key(["item", &i.to_string()], Scope::Global)?;
        batch.item(json!({ "i": i }), ItemOptions::new().key(key).ttl(ttl));
    }
    let batch = batch.build()?;
    let engine = Engine::new();
    let answers = engine.trigger_owned(batch)?;
    let runs = answers.iter().filter(|answer| !answer.cached).count();
    drop(black_box(answers));
    drop(black_box(engine));
    drop(sdk);
    drop(black_box(catalog));
    Ok((started.elapsed().as_secs_f64(), runs))
}

/// What the floor keeps per run.
struct Record {
    key: String,
    digest: [u8; 32],
    payload: String,
}

/// The floor, timed the same way; the number of runs made.
fn floor(items: usize) -> Result<(f64, usize)> {
    let started = Instant::now();
    let mut dedup: HashMap<[u8; 32], usize> = HashMap::with_capacity(items);
    let mut records: Vec<Record> = Vec::with_capacity(items);
    let mut answers: Vec<(usize, bool)> = Vec::with_capacity(items);
    for i in 0..items {
        let key = format!("item-{i}");
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let payload = serde_json::to_string(&json!({ "i": i }))?;
        match dedup.entry(digest) {
            Entry::Occupied(run) => answers.push((*run.get(), true)),
            Entry::Vacant(slot) => {
                slot.insert(records.len());
                answers.push((records.len(), false));
                records.push(Record { key, digest, payload });
            }
        }
    }
    let runs = records.len();
    black_box(records.last().map(|r| (r.key.len(), r.digest[0], r.payload.len())));
    drop(black_box(answers));
    drop(black_box(records));
    drop(black_box(dedup));
    Ok((started.elapsed().as_secs_f64(), runs))
}

fn run(side: Side, items: usize) -> Result<(f64, usize)> {
    match side {
        Side::Main => main_job(items),
        Side::Floor => floor(items),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|at| args.get(at + 1)?.parse().ok());
    if args.first().map(String::as_str) == Some("one") {
        let side = if args.get(1).map(String::as_str) == Some("floor") { Side::Floor } else { Side::Main };
        let items = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(ITEMS);
        let (seconds, runs) = run(side, items)?;
        println!("{} {items} items: {seconds:.3} s, {runs} runs", side.name());
        return Ok(());
    }
    let items = arg("--items").unwrap_or(ITEMS);
    let rounds = arg("--rounds").unwrap_or(ROUNDS);
    let (mut main, mut floors, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 { [Side::Main, Side::Floor] } else { [Side::Floor, Side::Main] };
        let mut times = [0.0; 2];
        for side in order {
            let (seconds, runs) = run(side, items)?;
            assert_eq!(runs, items, "{}: every key is new, so every item makes a run", side.name());
            times[side as usize] = seconds;
        }
        let ratio = times[Side::Main as usize] / times[Side::Floor as usize];
        println!(
            "round {}: main job {:.3} s, floor {:.3} s, ratio {ratio:.2}x",
            round + 1,
            times[Side::Main as usize],
            times[Side::Floor as usize]
        );
        main.push(times[Side::Main as usize]);
        floors.push(times[Side::Floor as usize]);
        ratios.push(ratio);
    }
    let spread = |v: &[f64]| (v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(0.0, f64::max));
    let (low, high) = spread(&ratios);
    println!(
        "main job ({items} keyed items in a run, {rounds} rounds): median {:.3} s against a floor of {:.3} s; \
         per-round ratio median {:.2}x (min {low:.2}x, max {high:.2}x)",
        median(&main),
        median(&floors),
        median(&ratios),
    );
    Ok(())
}
