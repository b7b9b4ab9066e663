//! The numbers fleet mode promises, against real `redis-server`s (feature `redis`): how
//! many commands each pipeline carries (counted by a proxy between the client and the
//! server), the outage queue's bound however the sender stops, key material of any
//! length shared, and that `docs/fleet.md` quotes the constants the code uses.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::time::Duration;

use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, RedisBuilder, RedisCatalog};
use idempotency_sdk::{Batch, Engine, KeyInput, PayloadPolicy, RunId, Scope, Sdk};
use serde_json::json;
use testkit::{PipelineProxy, RedisServer};

mod support;
use support::batches::keyed;

fn digest(i: usize) -> Digest {
    let mut bytes = [0; 32];
    bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Digest::from_bytes(bytes)
}

/// `items` keys `item-<i>` of task `child-task`, each with payload `{"i": i}`.
fn batch(items: usize) -> Batch {
    keyed("child-task", 0..items, None, |i| Some(json!({ "i": i })))
}

/// `total` split into pipelines of `size`: what a bounded sender sends.
fn split(total: usize, size: usize) -> Vec<usize> {
    let mut sizes = vec![size; total / size];
    if !total.is_multiple_of(size) {
        sizes.push(total % size);
    }
    sizes
}

#[cfg(feature = "tokio")]
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

#[test]
fn catalog_writes_queued_through_an_outage_go_out_in_bounded_pipelines() {
    let mut server = RedisServer::start(&[]);
    let proxy = PipelineProxy::start(server.port());
    let catalog = CatalogBuilder::new().redis(RedisBuilder::new(proxy.url()).build().unwrap()).build().unwrap();
    let queued = 2 * RedisCatalog::WRITE_PIPELINE + RedisCatalog::WRITE_PIPELINE / 2;
    server.kill();
    for i in 0..queued {
        catalog.register(digest(i), KeyOptions::new(&format!("queued-{i}"), Scope::Global));
    }
    assert!(catalog.flush().is_err());
    server.restart();
    std::thread::sleep(Duration::from_millis(300)); // past the reconnect pause
    let _ = proxy.take();
    catalog.flush().unwrap();
    assert_eq!(proxy.take_counts("SET"), split(queued, RedisCatalog::WRITE_PIPELINE));
    assert_eq!(server.count("idempotency:key:*"), queued);
}

#[test]
fn catalog_writes_from_a_batch_go_at_every_async_write_pipeline() {
    let server = RedisServer::start(&[]);
    let proxy = PipelineProxy::start(server.port());
    let n = 3 * RedisCatalog::ASYNC_WRITE_PIPELINE + 100;
    // The registration that fills a pipeline's worth sends it.
    let catalog = CatalogBuilder::new().redis(RedisBuilder::new(proxy.url()).build().unwrap()).build().unwrap();
    let _ = proxy.take();
    for i in 0..n {
        catalog.register(digest(i), KeyOptions::new("sync", Scope::Global));
    }
    catalog.flush().unwrap();
    assert_eq!(proxy.take_counts("SET"), split(n, RedisCatalog::ASYNC_WRITE_PIPELINE));
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_catalog_sends_its_writes_in_pipelines_of_the_async_size() {
    let server = RedisServer::start(&[]);
    let proxy = PipelineProxy::start(server.port());
    let n = 3 * RedisCatalog::ASYNC_WRITE_PIPELINE + 100;
    // Registered before the sender task can run, sent by it a pipeline at a time.
    block_on(async {
        let redis = RedisBuilder::new(proxy.url()).build_async().await.unwrap();
        let catalog = CatalogBuilder::new().redis_async(redis).build_redis().unwrap();
        catalog.flush_async().await.unwrap(); // the connection is open
        let _ = proxy.take();
        for i in 0..n {
            catalog.register(digest(i), KeyOptions::new("async", Scope::Global));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while server.count("idempotency:key:*") < n {
            assert!(std::time::Instant::now() < deadline, "the sender never sent them all");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert_eq!(proxy.take_counts("SET"), split(n, RedisCatalog::ASYNC_WRITE_PIPELINE));
}

/// A server holding `n` catalog entries, digests `digest(0..n)`, and the digests.
fn entries(n: usize) -> (RedisServer, Vec<Digest>) {
    let server = RedisServer::start(&[]);
    let writer = CatalogBuilder::new().redis(RedisBuilder::new(server.url()).build().unwrap()).build().unwrap();
    for i in 0..n {
        writer.register(digest(i), KeyOptions::new(&format!("item-{i}"), Scope::Global));
    }
    writer.flush().unwrap();
    (server, (0..n).map(digest).collect())
}

#[test]
fn prefetch_reads_in_bounded_pipelines() {
    let n = 2 * RedisCatalog::READ_PIPELINE + 2_000;
    let (server, digests) = entries(n);

    let proxy = PipelineProxy::start(server.port());
    let redis = RedisBuilder::new(proxy.url()).build().unwrap();
    let reader = CatalogBuilder::new().kind(CatalogKind::Unbounded).redis(redis).build_redis().unwrap();
    let _ = proxy.take();
    assert_eq!(reader.prefetch(&digests).unwrap(), n);
    assert_eq!(proxy.take_counts("GETRANGE"), split(n, RedisCatalog::READ_PIPELINE));
    assert_eq!(reader.get(&digests[n - 1]).unwrap().key(), format!("item-{}", n - 1));
}

#[cfg(feature = "tokio")]
#[test]
fn prefetch_async_reads_in_pipelines_of_the_async_size() {
    let async_n = 4 * RedisCatalog::ASYNC_READ_PIPELINE + 10;
    let (server, digests) = entries(async_n);
    let proxy = PipelineProxy::start(server.port());
    block_on(async {
        let redis = RedisBuilder::new(proxy.url()).build_async().await.unwrap();
        let reader = CatalogBuilder::new().kind(CatalogKind::Unbounded).redis_async(redis).build_redis().unwrap();
        reader.flush_async().await.unwrap();
        let _ = proxy.take();
        assert_eq!(reader.prefetch_async(&digests).await.unwrap(), async_n);
    });
    assert_eq!(proxy.take_counts("GETRANGE"), split(async_n, RedisCatalog::ASYNC_READ_PIPELINE));
}

#[test]
fn triggers_reads_and_payload_checks_go_in_bounded_pipelines() {
    let server = RedisServer::start(&[]);
    let proxy = PipelineProxy::start(server.port());
    let redis = RedisBuilder::new(proxy.url()).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap().with_payload_policy(PayloadPolicy::Fail);
    let n = 2 * Engine::REDIS_TRIGGER_PIPELINE + Engine::REDIS_TRIGGER_PIPELINE / 2;
    let items = batch(n);
    let _ = proxy.take();
    let handles = engine.trigger(&items).unwrap();
    let pipelines = proxy.take();
    // Under `Fail`, the claims are read first (one GET a key), then claimed (one SET an item).
    let gets: Vec<usize> = pipelines.iter().map(|p| p.count("GET")).filter(|&n| n > 0).collect();
    let sets: Vec<usize> = pipelines.iter().map(|p| p.count("SET")).filter(|&n| n > 0).collect();
    assert_eq!(gets, split(n, Engine::REDIS_READ_PIPELINE));
    assert_eq!(sets, split(n, Engine::REDIS_TRIGGER_PIPELINE));

    // Two GETs a run: the claim and the record apart.
    let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    assert!(engine.read_runs(&ids).unwrap().iter().all(Option::is_some));
    let read: Vec<usize> = split(n, Engine::REDIS_READ_PIPELINE).iter().map(|n| 2 * n).collect();
    assert_eq!(proxy.take_counts("GET"), read);
}

#[cfg(feature = "tokio")]
#[test]
fn async_triggers_and_reads_go_in_pipelines_of_the_async_size() {
    let server = RedisServer::start(&[]);
    let proxy = PipelineProxy::start(server.port());
    let n = 4 * Engine::REDIS_ASYNC_PIPELINE + 10;
    let items = batch(n);
    block_on(async {
        let redis = RedisBuilder::new(proxy.url()).build_async().await.unwrap();
        let engine = Engine::on_redis_async(&redis).await.unwrap();
        let _ = proxy.take();
        let handles = engine.trigger_async(&items).await.unwrap();
        assert_eq!(proxy.take_counts("SET"), split(n, Engine::REDIS_ASYNC_PIPELINE));
        let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
        assert!(engine.read_runs_async(&ids).await.unwrap().iter().all(Option::is_some));
        let read: Vec<usize> = split(n, Engine::REDIS_ASYNC_PIPELINE).iter().map(|n| 2 * n).collect();
        assert_eq!(proxy.take_counts("GET"), read);
    });
}

#[test]
fn the_outage_queue_holds_the_newest_registrations_up_to_its_bound() {
    let mut server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let catalog = CatalogBuilder::new().kind(CatalogKind::Unbounded).redis(redis).build().unwrap();
    let over = 1_500;
    server.kill();
    let ((), lines) = testkit::warnings(|| {
        for i in 0..RedisCatalog::MAX_QUEUED + over {
            catalog.register(digest(i), KeyOptions::new("k", Scope::Global));
        }
    });
    assert_eq!(catalog.stats().unshared, over as u64, "the oldest past the bound are dropped and counted");
    assert!(lines.iter().any(|l| l.contains("dropped from the write queue")), "{lines:?}");

    server.restart();
    std::thread::sleep(Duration::from_millis(300)); // past the reconnect pause
    catalog.flush().unwrap();
    assert_eq!(server.count("idempotency:key:*"), RedisCatalog::MAX_QUEUED);
    let elsewhere = CatalogBuilder::new().redis(RedisBuilder::new(server.url()).build().unwrap()).build().unwrap();
    assert!(elsewhere.get(&digest(over - 1)).is_none(), "the oldest went");
    assert!(
        elsewhere.get(&digest(over)).is_some() && elsewhere.get(&digest(RedisCatalog::MAX_QUEUED + over - 1)).is_some()
    );
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_catalog_whose_runtime_stopped_queues_no_more_than_the_bound() {
    let server = RedisServer::start(&[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let catalog = runtime.block_on(async {
        let redis = RedisBuilder::new(server.url()).build_async().await.unwrap();
        CatalogBuilder::new().kind(CatalogKind::Unbounded).redis_async(redis).build_redis().unwrap()
    });
    drop(runtime); // its sender task is gone with it: nothing sends
    let over = 1_500;
    let ((), lines) = testkit::warnings(|| {
        for i in 0..RedisCatalog::MAX_QUEUED + over {
            catalog.register(digest(i), KeyOptions::new("k", Scope::Global));
        }
    });
    assert_eq!(catalog.stats().unshared, over as u64);
    assert!(lines.iter().any(|l| l.contains("dropped from the write queue")), "{lines:?}");
    assert!(format!("{catalog:?}").contains(&format!("queued: {}", RedisCatalog::MAX_QUEUED)), "{catalog:?}");
    assert_eq!(server.count("idempotency:key:*"), 0);
}

#[test]
fn key_material_of_any_length_minted_in_one_process_resolves_in_another() {
    let server = RedisServer::start(&[]);
    let shared = || CatalogBuilder::new().redis(RedisBuilder::new(server.url()).build().unwrap()).build().unwrap();
    let minting = Sdk::new(shared());
    // The wire's longest key, one past it, a megabyte of ASCII and of 4-byte characters.
    let materials = ["k".repeat(2_048), "k".repeat(2_049), "k".repeat(1_000_000), "\u{10FFFF}".repeat(250_000)];
    let digests: Vec<String> =
        materials.iter().map(|m| minting.create_key([m.as_str()], Scope::Global).unwrap().to_string()).collect();
    minting.catalog().flush().unwrap();
    assert_eq!(minting.catalog().stats().unshared, 0);

    // One by one (`get`), and prefetched.
    let resolving = Sdk::new(shared());
    for (material, digest) in materials.iter().zip(&digests) {
        let key = resolving.resolve(&KeyInput::from(digest.as_str())).unwrap().unwrap();
        let found = key.options().map(|o| o.key().len());
        assert!(key.options().map(KeyOptions::key) == Some(material.as_str()), "{} bytes: {found:?}", material.len());
    }
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let prefetching = CatalogBuilder::new().redis(redis).build_redis().unwrap();
    let parsed: Vec<Digest> = digests.iter().map(|d| d.parse().unwrap()).collect();
    assert_eq!(prefetching.prefetch(&parsed).unwrap(), materials.len());
    assert_eq!(prefetching.stats().faults, 0);

    // Past what an entry shares: kept here, counted and warned, never silently.
    let too_long = "k".repeat(RedisCatalog::MAX_KEY_BYTES + 1);
    let (digest, lines) = testkit::warnings(|| minting.create_key([too_long.as_str()], Scope::Global).unwrap());
    minting.catalog().flush().unwrap();
    assert_eq!(minting.catalog().stats().unshared, 1);
    assert!(lines.iter().any(|l| l.contains("too long to share") && l.contains("unshared=1")), "{lines:?}");
    assert!(
        Sdk::new(shared()).resolve(&KeyInput::from(digest.to_string().as_str())).unwrap().unwrap().options().is_none()
    );
    assert!(minting.resolve(&KeyInput::from(digest.to_string().as_str())).unwrap().unwrap().options().is_some());
}

/// `n` with a comma every three digits, as the docs write numbers.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn the_docs_quote_the_pipeline_sizes_and_bounds_the_code_uses() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fleet.md")).unwrap();
    let docs = docs.split_whitespace().collect::<Vec<_>>().join(" ");
    let async_items = 250; // Engine::REDIS_ASYNC_PIPELINE, without the feature `tokio`
    #[cfg(feature = "tokio")]
    assert_eq!(Engine::REDIS_ASYNC_PIPELINE, async_items);
    for quoted in [
        format!(
            "**Runs** go in pipelines of {} items from sync code ({} from async code)",
            thousands(Engine::REDIS_TRIGGER_PIPELINE),
            thousands(async_items)
        ),
        format!(
            "go in pipelines of {} ids or keys ({} from async code)",
            thousands(Engine::REDIS_READ_PIPELINE),
            thousands(async_items)
        ),
        format!(
            "past {} queued registrations, in pipelines of {} ({} from async code)",
            thousands(RedisCatalog::ASYNC_WRITE_PIPELINE),
            thousands(RedisCatalog::WRITE_PIPELINE),
            thousands(RedisCatalog::ASYNC_WRITE_PIPELINE)
        ),
        format!(
            "reads in pipelines of {} ({} from async code)",
            thousands(RedisCatalog::READ_PIPELINE),
            thousands(RedisCatalog::ASYNC_READ_PIPELINE)
        ),
        format!("registrations wait (up to {}, then the oldest", thousands(RedisCatalog::MAX_QUEUED)),
        format!("at most {} to a pipeline", thousands(RedisCatalog::ASYNC_WRITE_PIPELINE)),
        format!("**Batches go in pipelines of {} items**", thousands(async_items)),
    ] {
        assert!(docs.contains(&quoted), "docs/fleet.md does not say: {quoted}");
    }
}
