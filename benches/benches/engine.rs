//! The engine's trigger against the raw crate its deduplication is built on, and the
//! whole fan-out (build and trigger) at growing sizes.
//!
//! `trigger/engine` triggers a built batch of N keyed items on a fresh engine: for each
//! item, look up (task, digest), claim it, record the run (its options, no payload) and
//! return a handle. `trigger/raw_hashbrown` inserts the same N (task id, digest) pairs
//! into a new `hashbrown::HashMap` (foldhash) with a run number, sized to N as the
//! engine sizes its table: the floor of "remember which run holds each key". Both
//! allocate inside the timed part, and drop outside it. `trigger/raw_hashbrown_and_records`
//! also pushes, per item, the least a run record can hold (task id, the key's options,
//! no payload) into a vector sized to N: the floor of any engine that records a run
//! per item.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use idempotency_catalog::{CatalogBuilder, CatalogKind, Digest, KeyOptions};
use idempotency_sdk::{Batch, Engine, IdempotencyKey, ItemOptions, RunContext, Scope, Sdk};
use serde_json::json;

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

fn keys(n: usize) -> Vec<IdempotencyKey> {
    (0..n).map(|i| IdempotencyKey::derive(["item", &i.to_string()], Scope::Global, None)).collect()
}

fn batch(sdk: &Sdk, keys: &[IdempotencyKey]) -> Batch {
    let mut batch = sdk.batch("child-task", keys.len());
    for key in keys {
        batch.item(None, ItemOptions::new().key(key));
    }
    batch.build().unwrap_or_else(|_| unreachable!())
}

fn trigger(c: &mut Criterion) {
    let sdk = Sdk::new(Arc::new(idempotency_catalog::UnboundedCatalog::new()));
    let all = keys(SIZES[2]);
    let mut group = c.benchmark_group("trigger");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4)).sample_size(10);
    for n in SIZES {
        let keys = &all[..n];
        let built = batch(&sdk, keys);
        let pairs: Vec<(u32, Digest)> = keys.iter().map(|key| (0, key.digest())).collect();
        let options: Vec<KeyOptions> = keys.iter().filter_map(|key| key.options().cloned()).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("engine", n), |b| {
            b.iter_batched(
                Engine::new,
                |engine| {
                    black_box(engine.trigger(&built).map(|handles| handles.len()).unwrap_or_default());
                    engine
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new("raw_hashbrown", n), |b| {
            b.iter_batched(
                || (),
                |()| {
                    let mut map = hashbrown::HashMap::<(u32, Digest), u64>::with_capacity(n);
                    for (run, pair) in pairs.iter().enumerate() {
                        map.insert(*pair, run as u64);
                    }
                    map
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new("raw_hashbrown_and_records", n), |b| {
            b.iter_batched(
                || (),
                |()| {
                    let mut map = hashbrown::HashMap::<(u32, Digest), u64>::with_capacity(n);
                    let mut records: Vec<(u32, Option<KeyOptions>)> = Vec::with_capacity(n);
                    for (run, (pair, options)) in pairs.iter().zip(&options).enumerate() {
                        map.insert(*pair, run as u64);
                        records.push((pair.0, Some(options.clone())));
                    }
                    (map, records)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The main job end to end, as `fanout --catalog unbounded --key-form typed` runs it:
/// start a run, create and register one key per item, add items with a small JSON
/// payload, build, trigger on a fresh engine (moving the payloads), end the run.
fn fan_out(c: &mut Criterion) {
    let catalog = CatalogBuilder::new().kind(CatalogKind::Unbounded).build().unwrap_or_else(|_| unreachable!());
    let sdk = Sdk::new(catalog);
    let numbers: Vec<String> = (0..SIZES[2]).map(|i| i.to_string()).collect();
    let mut group = c.benchmark_group("fan_out");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5)).sample_size(10);
    for n in SIZES {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let run = sdk.clone().with_run(RunContext::new("run_bench", 1));
                let mut batch = run.batch("child-task", n);
                for (i, number) in numbers[..n].iter().enumerate() {
                    let key = run.create_key(["item", number], Scope::Global);
                    batch.item(json!({ "i": i }), ItemOptions::new().key(key));
                }
                let engine = Engine::new();
                let handles = batch.build().and_then(|batch| engine.trigger_owned(batch));
                handles.map(|handles| handles.len()).unwrap_or_default()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, trigger, fan_out);
criterion_main!(benches);
