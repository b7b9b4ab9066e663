//! Key creation against its floor (a bare `sha2` digest of the same bytes), and batch
//! building at growing sizes beside the raw crates' own scaling over the same sizes.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use idempotency_catalog::{CatalogBuilder, Digest};
use idempotency_sdk::{IdempotencyKey, ItemOptions, RunContext, Scope, Sdk};
use lru::LruCache;
use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};

/// `derive` does the hash and builds the options (original key and scope); it does not
/// register. The floor hashes the exact bytes `derive` hashes, and nothing else.
fn key_create(c: &mut Criterion) {
    let run = RunContext::new("run_abc123", 1);
    let mut group = c.benchmark_group("key_create");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(30);
    group.throughput(Throughput::Elements(1));
    let cases: [(&str, Scope, &str); 3] = [
        ("global", Scope::Global, "item-42"),
        ("run", Scope::Run, "item-42-run_abc123"),
        ("attempt", Scope::Attempt, "item-42-run_abc123-1"),
    ];
    for (name, scope, joined) in cases {
        group.bench_function(BenchmarkId::new("floor_sha256", name), |b| {
            b.iter(|| Digest::from_bytes(Sha256::digest(black_box(joined).as_bytes()).into()))
        });
        group.bench_function(BenchmarkId::new("derive", name), |b| {
            b.iter(|| IdempotencyKey::derive(black_box(["item", "42"]), scope, Some(&run)))
        });
    }
    group.finish();
}

/// A whole fan-out, as a task runs it: start a run, open the batch (reserving room),
/// create one typed key per item, add the items, build, end the run (the catalog
/// releases the run's keys). Payloads are left out so that the key work is what is
/// timed. `batch_build` creates keys with `Sdk::create_key`, which registers them
/// (held by the run); `batch_build_unregistered` derives them without registering,
/// which is enough when every key travels as an `IdempotencyKey` (it carries its own
/// options).
fn batch_build(c: &mut Criterion) {
    let catalog = CatalogBuilder::new().max_capacity(2_000_000).build().unwrap_or_else(|_| unreachable!());
    let sdk = Sdk::new(Arc::clone(&catalog));
    let numbers: Vec<String> = (0..1_000_000).map(|i| i.to_string()).collect();
    // Key material is never empty here: `create_key` cannot refuse it.
    let create =
        |run: &Sdk, number: &str| run.create_key(["item", number], Scope::Global).unwrap_or_else(|_| unreachable!());
    let derive = |run: &Sdk, number: &str| IdempotencyKey::derive(["item", number], Scope::Global, run.run());
    fan_out_group(c, "batch_build", &sdk, &numbers, create);
    fan_out_group(c, "batch_build_unregistered", &sdk, &numbers, derive);
}

fn fan_out_group(
    c: &mut Criterion,
    name: &str,
    sdk: &Sdk,
    numbers: &[String],
    key: impl Fn(&Sdk, &str) -> IdempotencyKey,
) {
    let mut group = c.benchmark_group(name);
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5)).sample_size(10);
    for items in [10_000, 100_000, 1_000_000] {
        group.throughput(Throughput::Elements(items as u64));
        group.bench_function(BenchmarkId::from_parameter(items), |b| {
            b.iter(|| {
                let run = sdk.clone().with_run(RunContext::new("run_bench", 1));
                let mut batch = run.batch("child-task", items);
                for number in &numbers[..items] {
                    batch.item(None, ItemOptions::new().key(key(&run, number)));
                }
                batch.build().map(|batch| batch.report().with_options)
            })
        });
    }
    group.finish();
}

/// What the batch's per-item cost can scale no better than on this machine: the same
/// growth in sizes, applied to the raw crate the catalog wraps (`lru` in a
/// `parking_lot::Mutex`, filled with as many digests and options as the batch
/// registers, then dropped) and to a plain `Vec` of the batch's keys. Neither does any
/// work that grows with the size; whatever their per-item cost does at a million is
/// the machine's memory, not an algorithm.
fn scaling_floor(c: &mut Criterion) {
    let keys: Vec<IdempotencyKey> =
        (0..1_000_000).map(|i: u32| IdempotencyKey::derive(["item", &i.to_string()], Scope::Global, None)).collect();
    let mut group = c.benchmark_group("scaling_floor");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3)).sample_size(10);
    for items in [10_000, 100_000, 1_000_000] {
        let keys = &keys[..items];
        group.throughput(Throughput::Elements(items as u64));
        group.bench_function(BenchmarkId::new("raw_lru_mutex_fill", items), |b| {
            b.iter(|| {
                let map = Mutex::new(LruCache::new(NonZeroUsize::new(items + 1_000).unwrap_or(NonZeroUsize::MIN)));
                for key in keys {
                    map.lock().push(key.digest(), key.options().cloned().unwrap_or_else(|| unreachable!()));
                }
                map.into_inner().len()
            })
        });
        group.bench_function(BenchmarkId::new("vec_of_keys", items), |b| {
            b.iter(|| {
                let mut vec = Vec::with_capacity(items);
                vec.extend(keys.iter().cloned());
                vec.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, key_create, batch_build, scaling_floor);
criterion_main!(benches);
