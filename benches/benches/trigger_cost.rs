//! The engine's trigger per item, in memory: a fresh engine triggering 100,000 new
//! keys, then the same batch again (every item cached, so every payload compared).
//! Prints `fresh_ns cached_ns` medians of 15 rounds; `benches/trigger_ab.sh` runs it
//! built from two commits, alternating, to compare them on a busy machine.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use idempotency_sdk::{Engine, ItemOptions, Scope, Sdk};
use serde_json::json;

const ITEMS: usize = 100_000;
const ROUNDS: usize = 15;

fn main() {
    let sdk = Sdk::new(Arc::new(idempotency_sdk::catalog::UnboundedCatalog::new()));
    let mut batch = sdk.batch("child-task", ITEMS);
    for i in 0..ITEMS {
        let key = idempotency_sdk::IdempotencyKey::derive(["item", &i.to_string()], Scope::Global, None);
        batch.item(json!({ "i": i }), ItemOptions::new().key(key));
    }
    let Ok(batch) = batch.build() else { return };
    let (mut fresh, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let engine = Engine::new();
        let started = Instant::now();
        black_box(engine.trigger(&batch).map(|h| h.len()).unwrap_or_default());
        fresh.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        black_box(engine.trigger(&batch).map(|h| h.len()).unwrap_or_default());
        cached.push(started.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e9 / ITEMS as f64
    };
    println!("{:.1} {:.1}", median(&mut fresh), median(&mut cached));
}
