#![allow(missing_docs, clippy::unwrap_used)]
use idempotency_catalog::CatalogBuilder;
use idempotency_sdk::{ItemOptions, Scope, Sdk};
use std::sync::Arc;
use std::time::Instant;
fn main() {
    let catalog = CatalogBuilder::new().max_capacity(2_000_000).build().unwrap();
    let sdk = Sdk::new(Arc::clone(&catalog));
    let numbers: Vec<String> = (0..1_000_000).map(|i| i.to_string()).collect();
    for items in [10_000usize, 1_000_000, 10_000, 1_000_000] {
        let hold = sdk.catalog().reserve(0);
        let t0 = Instant::now();
        let mut batch = sdk.batch("child-task", items);
        let t1 = Instant::now();
        let mut keys = Vec::with_capacity(items);
        for number in &numbers[..items] {
            keys.push(idempotency_sdk::IdempotencyKey::derive(["item", number], Scope::Global, None));
        }
        let t2 = Instant::now();
        for k in keys {
            sdk.catalog().register(k.digest(), k.options().unwrap().clone());
            batch.item(None, ItemOptions::new().key(k));
        }
        let t3 = Instant::now();
        let built = batch.build().unwrap();
        let t4 = Instant::now();
        drop(built);
        let t5 = Instant::now();
        drop(hold);
        let t6 = Instant::now();
        let per = |a: Instant, b: Instant| (b - a).as_nanos() as f64 / items as f64;
        println!(
            "{items}: open {:.0} derive {:.0} register+push {:.0} build {:.0} drop {:.0} shrink {:.0} ns/item",
            per(t0, t1),
            per(t1, t2),
            per(t2, t3),
            per(t3, t4),
            per(t4, t5),
            per(t5, t6)
        );
    }
}
