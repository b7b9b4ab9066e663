//! Resident memory of the engine's state per triggered item: a batch of N new typed
//! keys (no payload) is built first, then triggered on a fresh engine; the growth of
//! resident memory across the trigger, less the handles it returns, divided by N.
//! Linux only (`/proc/self/statm`).
//!
//! ```text
//! cargo run --release -p idempotency-sdk --example engine_memory [ITEMS]
//! ```

use std::sync::Arc;

use idempotency_catalog::UnboundedCatalog;
use idempotency_sdk::{Engine, IdempotencyKey, ItemOptions, Scope, Sdk, Triggered};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let items: usize = std::env::args().nth(1).map_or(Ok(1_000_000), |n| n.parse())?;
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let mut batch = sdk.batch("child-task", items);
    for i in 0..items {
        let key = IdempotencyKey::derive(["item", &format!("{i:07}")], Scope::Global, None);
        batch.item(None, ItemOptions::new().key(key));
    }
    let batch = batch.build()?;
    let engine = Engine::new();
    let before = resident_bytes()?;
    let handles = engine.trigger(&batch)?;
    let after = resident_bytes()?;
    let handle_bytes = (handles.capacity() * std::mem::size_of::<Triggered>()) as u64;
    let state = after.saturating_sub(before).saturating_sub(handle_bytes);
    println!("| items | engine state, bytes | per item | handles returned, per item |");
    println!("|---:|---:|---:|---:|");
    println!("| {items} | {state} | {:.1} | {} |", state as f64 / items as f64, std::mem::size_of::<Triggered>());
    assert_eq!((engine.run_count(), engine.key_count()), (items as u64, items));
    Ok(())
}

fn resident_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).ok_or("no resident field in /proc/self/statm")?.parse()?;
    Ok(pages * 4096)
}
