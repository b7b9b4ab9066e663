//! Fleet mode: a 100,000-item fan-out on the Redis dedup store and catalog, against a
//! raw `redis` pipeline that sends the same commands, in the same run, on a
//! `redis-server` the bench starts on a loopback port (persistence off).
//!
//! `fan_out/sdk` does what a task does: inside a run, creates 100,000 keys (each
//! registered, the registrations sent 1,024 to a pipeline), adds them to a batch,
//! builds it and triggers it on `LocalEngine::on_redis` (claims sent 10,000 to a
//! pipeline), then ends the run. `fan_out/raw_pipeline` sends the same commands,
//! prepared beforehand, in pipelines of the same sizes: `SET <prefix>key:<digest>
//! <scope>:<key> PX <ttl>` for the catalog and `SET <prefix>run:…:<digest> <run> NX GET
//! PX <ttl>` for the claims. The server is emptied before each iteration, outside the
//! timed part.
//!
//! `cargo bench -p benches --features redis --bench fleet`

#![allow(clippy::panic, clippy::unwrap_used)] // a bench may stop at a failure; library code may not

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use idempotency_catalog::{CatalogBuilder, RedisBuilder};
use idempotency_sdk::{IdempotencyKey, ItemOptions, LocalEngine, RunContext, Scope, Sdk};

const ITEMS: usize = 100_000;
/// The SDK's pipeline sizes: catalog writes, claims.
const CATALOG_PIPELINE: usize = 1_024;
const CLAIM_PIPELINE: usize = 10_000;
const TTL_30_DAYS_MS: u64 = 30 * 86_400 * 1_000;
const CATALOG_TTL_MS: u64 = 86_400 * 1_000;

fn fan_out(c: &mut Criterion) {
    let server = testkit::RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).build().unwrap_or_else(|err| panic!("{err}"));
    let (mut conn, mut admin) = (server.client(), server.client());
    let mut flush = move || redis::cmd("FLUSHALL").query::<()>(&mut admin).unwrap_or_default();

    let names: Vec<String> = (0..ITEMS).map(|i| i.to_string()).collect();
    let run = RunContext::new("run_bench", 1);
    let keys: Vec<IdempotencyKey> =
        names.iter().map(|i| IdempotencyKey::derive(["item", i.as_str()], Scope::Global, Some(&run))).collect();
    let entries: Vec<(String, String)> = keys
        .iter()
        .zip(&names)
        .map(|(key, i)| (format!("idempotency:key:{key}"), format!("global:item-{i}")))
        .collect();
    let claims: Vec<(String, u64)> = keys
        .iter()
        .enumerate()
        .map(|(n, key)| (format!("idempotency:run:10:child-task:{key}"), (1 << 40) + n as u64 + 1))
        .collect();

    let mut group = c.benchmark_group("fan_out");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8)).sample_size(10);
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function("sdk", |b| {
        b.iter_batched(
            || {
                flush();
                let catalog = CatalogBuilder::new().redis(redis.clone()).build().unwrap_or_else(|err| panic!("{err}"));
                let engine = LocalEngine::on_redis(&redis).unwrap_or_else(|err| panic!("{err}"));
                (catalog, engine)
            },
            |(catalog, engine)| {
                let sdk = Sdk::new(Arc::clone(&catalog)).with_run(run.clone());
                let mut batch = sdk.batch("child-task", ITEMS);
                for i in &names {
                    batch.item(None, ItemOptions::new().key(sdk.create_key(["item", i.as_str()], Scope::Global)));
                }
                let batch = batch.build().unwrap_or_else(|err| panic!("{err}"));
                let handles = engine.trigger_owned(batch).unwrap_or_else(|err| panic!("{err}"));
                drop(sdk); // the run ends: its last registrations are sent
                assert_eq!(handles.iter().filter(|h| !h.cached).count(), ITEMS);
                (catalog, engine)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("raw_pipeline", |b| {
        b.iter_batched(
            &mut flush,
            |()| {
                for chunk in entries.chunks(CATALOG_PIPELINE) {
                    let mut pipe = redis::pipe();
                    for (key, value) in chunk {
                        pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(CATALOG_TTL_MS).ignore();
                    }
                    pipe.query::<()>(&mut conn).unwrap_or_else(|err| panic!("{err}"));
                }
                let mut claimed = 0;
                for chunk in claims.chunks(CLAIM_PIPELINE) {
                    let mut pipe = redis::pipe();
                    for (key, run) in chunk {
                        pipe.cmd("SET").arg(key).arg(*run).arg("NX").arg("GET").arg("PX").arg(TTL_30_DAYS_MS);
                    }
                    let held: Vec<Option<u64>> = pipe.query(&mut conn).unwrap_or_else(|err| panic!("{err}"));
                    claimed += held.iter().filter(|h| h.is_none()).count();
                }
                assert_eq!(claimed, ITEMS);
                black_box(claimed)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
