//! Catalog operations side by side with the raw crates they wrap, in one run:
//! `lru::LruCache` in a `parking_lot::Mutex`, and a plain `HashMap` in the same mutex.
//! Raw and wrapped store the same key and value types, so a ratio is the cost of
//! the catalog's policy, counters and telemetry alone.

use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::Duration;

use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use idempotency_catalog::{BatchScaledCatalog, Catalog, Digest, KeyOptions, LruCatalog, Scope, UnboundedCatalog};
use lru::LruCache;
use parking_lot::Mutex;

const CAPACITY: usize = 1_000;
const KEYS: usize = 100_000;
const FRESH: usize = 10_000;

/// Random digests and ~12-character keys, the same every run.
fn workload(n: usize, seed: u64) -> Vec<(Digest, KeyOptions)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes);
            (Digest::from_bytes(bytes), KeyOptions::new(&format!("item-{i:07}"), Scope::Global))
        })
        .collect()
}

/// The things under test: each catalog kind and the two raw baselines.
enum Subject {
    Catalog(Box<dyn Catalog>),
    RawLru(Mutex<LruCache<Digest, KeyOptions>>),
    RawMap(Mutex<HashMap<Digest, KeyOptions>>),
}

impl Subject {
    fn register(&self, digest: Digest, options: KeyOptions) {
        match self {
            Subject::Catalog(c) => c.register(digest, options),
            Subject::RawLru(m) => drop(black_box(m.lock().push(digest, options))),
            Subject::RawMap(m) => drop(black_box(m.lock().insert(digest, options))),
        }
    }

    fn get(&self, digest: &Digest) -> Option<KeyOptions> {
        match self {
            Subject::Catalog(c) => c.get(digest),
            Subject::RawLru(m) => m.lock().get(digest).cloned(),
            Subject::RawMap(m) => m.lock().get(digest).cloned(),
        }
    }
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// Every subject that holds `capacity` entries before it evicts (the raw map never does).
fn subjects(capacity: usize) -> Vec<(&'static str, Subject)> {
    vec![
        ("raw_lru_mutex", Subject::RawLru(Mutex::new(LruCache::new(cap(capacity))))),
        ("raw_hashmap_mutex", Subject::RawMap(Mutex::new(HashMap::new()))),
        ("lru_catalog", Subject::Catalog(Box::new(LruCatalog::with_capacity(capacity).unwrap_or_default()))),
        (
            "batch_scaled_catalog",
            Subject::Catalog(Box::new(BatchScaledCatalog::new(capacity, capacity).unwrap_or_default())),
        ),
        ("unbounded_catalog", Subject::Catalog(Box::new(UnboundedCatalog::new()))),
    ]
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(30);
}

/// A full catalog of 1,000 taking new random digests: every register evicts.
fn register_evicting(c: &mut Criterion) {
    let keys = workload(KEYS, 1);
    let mut group = c.benchmark_group("register_evicting");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    let evicting =
        subjects(CAPACITY).into_iter().filter(|(name, _)| !matches!(*name, "raw_hashmap_mutex" | "unbounded_catalog"));
    for (name, subject) in evicting {
        for (digest, options) in &keys[..CAPACITY] {
            subject.register(*digest, options.clone());
        }
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let (digest, options) = &keys[i % KEYS];
                i += 1;
                subject.register(*digest, options.clone());
            })
        });
    }
    group.finish();
}

/// 10,000 new digests into a fresh, roomy catalog: inserts and map growth, no eviction.
fn register_fresh(c: &mut Criterion) {
    let keys = workload(FRESH, 2);
    let mut group = c.benchmark_group("register_fresh");
    configure(&mut group);
    group.throughput(Throughput::Elements(FRESH as u64));
    for (name, _) in subjects(FRESH) {
        group.bench_function(name, |b| {
            b.iter_batched(
                || subjects(FRESH).into_iter().find(|(n, _)| *n == name).map(|(_, s)| s),
                |subject| {
                    if let Some(subject) = &subject {
                        for (digest, options) in &keys {
                            subject.register(*digest, options.clone());
                        }
                    }
                    subject
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// Lookups of held digests (`hit`) and of digests never registered (`miss`).
fn get(c: &mut Criterion) {
    let keys = workload(CAPACITY, 3);
    let absent = workload(KEYS, 4);
    for (group_name, probes) in [("get_hit", &keys), ("get_miss", &absent)] {
        let mut group = c.benchmark_group(group_name);
        configure(&mut group);
        group.throughput(Throughput::Elements(1));
        for (name, subject) in subjects(CAPACITY) {
            for (digest, options) in &keys {
                subject.register(*digest, options.clone());
            }
            let mut i = 0;
            group.bench_function(name, |b| {
                b.iter(|| {
                    let (digest, _) = &probes[i % probes.len()];
                    i += 1;
                    black_box(subject.get(digest))
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, register_evicting, register_fresh, get);
criterion_main!(benches);
