//! Fleet mode from async code (feature `tokio`), against real `redis-server`s: the async
//! forms give the answers the sync ones give, their futures are `Send`, many tasks and
//! threads on one handle do not take turns, a paused server makes calls fail with a
//! timeout and the handle goes on once it resumes, and an async catalog sends from its
//! own task.
//!
//! The runtime is the one the crates already depend on (`tokio`, through the feature):
//! a current-thread runtime built by hand, as a service's `#[tokio::main(flavor =
//! "current_thread")]` would, and once a multi-thread one.
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, Redis, RedisBuilder};
use idempotency_sdk::{Batch, Engine, IdempotencyKey, ItemOptions, KeyTarget, RunId, RunStatus, Scope, Sdk};
use testkit::RedisServer;

mod support;
use support::batches::keyed;

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn batch(keys: std::ops::Range<usize>, ttl: &str) -> Batch {
    keyed("async-task", keys, Some(ttl), |_| None)
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn the_async_forms_answer_as_the_sync_ones_and_their_futures_are_send() {
    let server = RedisServer::start(&[]);
    block_on(async {
        let redis = RedisBuilder::new(server.url()).build_async().await.unwrap();
        let engine = Engine::on_redis_async(&redis).await.unwrap();
        let b = batch(0..3, "1h");
        let future = engine.trigger_async(&b);
        assert_send(&future);
        let first = future.await.unwrap();
        assert!(first.iter().all(|h| !h.cached));
        let again = engine.trigger_async(&b).await.unwrap();
        assert!(again.iter().zip(&first).all(|(a, f)| a.cached && a.id == f.id));
        let ids: Vec<RunId> = first.iter().map(|h| h.id).collect();
        let runs = engine.read_runs_async(&ids).await.unwrap();
        assert_eq!(runs[2].as_ref().and_then(|r| r.idempotency_key.as_deref()), Some("item-2"));

        // A failure releases the key; the sync form sees it too.
        let status = engine.set_status_async(first[0].id, RunStatus::Failed);
        assert_send(&status);
        status.await.unwrap();
        assert_eq!(engine.run(first[0].id).unwrap().unwrap().status, RunStatus::Failed);
        let after = engine.trigger_owned_async(batch(0..3, "1h")).await.unwrap();
        assert!(!after[0].cached && after[1].cached);

        let key = IdempotencyKey::derive(["item", "1"], Scope::Global, None);
        let target = || KeyTarget::Key(&key);
        assert!(!engine.reset_key_held_by_async("async-task", target(), first[2].id).await.unwrap(), "another run");
        assert!(engine.reset_key_held_by_async("async-task", target(), first[1].id).await.unwrap());
        assert!(!engine.reset_key_async("async-task", target()).await.unwrap());
        engine.trigger_async(&b).await.unwrap();
        assert!(engine.reset_key_async("async-task", target()).await.unwrap());
        assert!(!engine.reset_key_async("async-task", target()).await.unwrap());
        assert_eq!(engine.run_async(first[1].id).await.unwrap().unwrap().status, RunStatus::Pending);
        assert_eq!(redis.faults(), 0);
    });
}

#[test]
fn an_engine_in_memory_answers_its_async_forms_too() {
    block_on(async {
        let engine = Engine::new();
        let b = batch(0..2, "1h");
        let first = engine.trigger_async(&b).await.unwrap();
        assert!(engine.trigger_async(&b).await.unwrap().iter().all(|h| h.cached));
        engine.set_status_async(first[0].id, RunStatus::Crashed).await.unwrap();
        assert_eq!(engine.run_async(first[0].id).await.unwrap().unwrap().status, RunStatus::Crashed);
    });
}

#[test]
fn a_paused_server_fails_async_calls_with_a_timeout_and_the_handle_goes_on_after() {
    let server = RedisServer::start(&[]);
    block_on(async {
        let redis = RedisBuilder::new(server.url()).io_timeout(Duration::from_millis(300)).build_async().await.unwrap();
        let engine = Engine::on_redis_async(&redis).await.unwrap();
        engine.trigger_async(&batch(0..10, "1h")).await.unwrap();
        server.pause();
        let started = Instant::now();
        let err = engine.trigger_async(&batch(10..20, "1h")).await.unwrap_err().to_string();
        let waited = started.elapsed();
        server.resume();
        assert!(
            err.starts_with(&format!("redis at {}: cannot create runs: no answer within 300ms", server.url())),
            "{err}"
        );
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        // The same handle, after: the keys of the failed call are held by runs it made
        // (Redis ran them once it resumed), and new ones go through.
        let after = engine.trigger_async(&batch(10..30, "1h")).await.unwrap();
        assert_eq!(after.len(), 20);
        let ids: Vec<RunId> = after.iter().map(|h| h.id).collect();
        assert!(engine.read_runs_async(&ids).await.unwrap().iter().all(Option::is_some));
    });
}

#[test]
fn eight_threads_missing_the_catalog_at_once_do_not_take_turns_on_one_connection() {
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let catalog = CatalogBuilder::new().redis(redis.clone()).build().unwrap();
    let clients = || -> usize {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut server.client()).unwrap();
        list.lines().count() - 1 // less the connection asking
    };
    let before = clients();
    // Paused, each miss waits for its answer: eight at once need eight connections.
    server.pause();
    let threads: Vec<_> = (0..8u8)
        .map(|i| {
            let catalog = Arc::clone(&catalog);
            std::thread::spawn(move || catalog.get(&Digest::from_bytes([i; 32])))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    server.resume();
    for thread in threads {
        assert!(thread.join().unwrap().is_none());
    }
    assert_eq!(clients() - before, 8, "one connection per concurrent miss");
    assert_eq!(redis.faults(), 0);
}

#[test]
fn eight_tasks_on_a_multi_thread_runtime_share_one_connection_and_make_each_run_once() {
    let server = RedisServer::start(&[]);
    let clients = || -> usize {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut server.client()).unwrap();
        list.lines().count() - 1 // less the connection asking
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (created, cached) = runtime.block_on(async {
        let redis = RedisBuilder::new(server.url()).build_async().await.unwrap();
        let engine = Arc::new(Engine::on_redis_async(&redis).await.unwrap());
        let before = clients();
        // Each task triggers the same 2,000 keys, in its own order of batches.
        let tasks: Vec<_> = (0..8usize)
            .map(|task| {
                let engine = Arc::clone(&engine);
                tokio::spawn(async move {
                    let (mut created, mut cached) = (0, 0);
                    for round in 0..4 {
                        let from = (task + round) % 4 * 500;
                        let handles = engine.trigger_owned_async(batch(from..from + 500, "1h")).await.unwrap();
                        created += handles.iter().filter(|h| !h.cached).count();
                        cached += handles.iter().filter(|h| h.cached).count();
                    }
                    (created, cached)
                })
            })
            .collect();
        let (mut created, mut cached) = (0, 0);
        for task in tasks {
            let (c, k) = task.await.unwrap();
            created += c;
            cached += k;
        }
        assert_eq!(clients(), before, "the engine's calls share the handle's one connection");
        assert_eq!(engine.run_count(), 2_000);
        (created, cached)
    });
    assert_eq!((created, cached), (2_000, 7 * 2_000));
    assert_eq!(server.count("idempotency:claim:*"), 2_000);
}

/// A handle built inside a runtime and a catalog in async mode on it.
async fn async_catalog(redis: &Redis) -> Arc<idempotency_catalog::RedisCatalog> {
    CatalogBuilder::new().redis_async(redis.clone()).build_redis().unwrap()
}

#[test]
fn an_async_catalog_sends_from_its_own_task_and_prefetches_in_one_round_trip() {
    let server = RedisServer::start(&[]);
    block_on(async {
        let redis = RedisBuilder::new(server.url()).build_async().await.unwrap();
        let writer = async_catalog(&redis).await;
        let digests: Vec<Digest> = (0..500u32)
            .map(|i| {
                let mut bytes = [0; 32];
                bytes[..4].copy_from_slice(&i.to_be_bytes());
                Digest::from_bytes(bytes)
            })
            .collect();
        for (i, digest) in digests.iter().enumerate() {
            writer.register(*digest, KeyOptions::new(&format!("item-{i}"), Scope::Global));
        }
        // Nothing was sent from here: the sender task sends within 100 ms.
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.count("idempotency:key:*") < 500 {
            assert!(Instant::now() < deadline, "the sender never sent");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Another catalog, in async mode: a miss stays a miss until prefetched.
        let reader = async_catalog(&redis).await;
        assert!(reader.get(&digests[7]).is_none());
        assert_eq!(reader.prefetch_async(&digests).await.unwrap(), 500);
        assert_eq!(reader.get(&digests[7]).map(|o| o.key().to_owned()).as_deref(), Some("item-7"));
        assert_eq!(reader.prefetch_async(&digests).await.unwrap(), 0, "all local now");

        // Dropped with registrations queued: its task sends them, the drop does not.
        let late = Digest::from_bytes([0xee; 32]);
        writer.register(late, KeyOptions::new("late", Scope::Run));
        drop(writer);
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.count("idempotency:key:*") < 501 {
            assert!(Instant::now() < deadline, "the last registration was lost");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A flush waits for the write.
        let flushing = async_catalog(&redis).await;
        flushing.register(Digest::from_bytes([0xef; 32]), KeyOptions::new("flushed", Scope::Run));
        flushing.flush_async().await.unwrap();
        assert_eq!(server.count("idempotency:key:*"), 502);
    });
}

#[test]
fn an_async_catalog_needs_a_runtime() {
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let err = CatalogBuilder::new().redis_async(redis).build().unwrap_err().to_string();
    assert!(err.contains("build it inside a tokio runtime"), "{err}");
}

/// `n` keys `order-<i>` with payload `{"amount": 1}`, but `{"amount": 2}` at `changed`.
fn orders(n: usize, changed: Option<usize>) -> Batch {
    let sdk = Sdk::new(CatalogBuilder::new().kind(CatalogKind::Unbounded).build().unwrap());
    let mut batch = sdk.batch("async-task", n);
    for i in 0..n {
        let amount = if Some(i) == changed { 2 } else { 1 };
        let key = sdk.create_key(["order", &i.to_string()], Scope::Global).unwrap();
        batch.item(serde_json::json!({ "amount": amount }), ItemOptions::new().key(key));
    }
    batch.build().unwrap()
}

#[test]
fn reads_and_payload_checks_of_more_keys_than_a_pipeline_keep_their_order() {
    use idempotency_sdk::{Error, PayloadPolicy};
    let server = RedisServer::start(&[]);
    block_on(async {
        let redis = RedisBuilder::new(server.url()).build_async().await.unwrap();
        let engine = Engine::on_redis_async(&redis).await.unwrap().with_payload_policy(PayloadPolicy::Fail);
        let first = engine.trigger_async(&orders(1_000, None)).await.unwrap();
        // Four async pipelines' worth: every record comes back where its id was asked.
        let ids: Vec<RunId> = first.iter().map(|h| h.id).collect();
        let runs = engine.read_runs_async(&ids).await.unwrap();
        for (i, (run, id)) in runs.iter().zip(&ids).enumerate() {
            let run = run.as_ref().unwrap();
            assert_eq!((run.id, run.idempotency_key.clone()), (*id, Some(format!("order-{i}"))));
        }
        // A payload changed at the 700th key, in the check's third pipeline: found, and
        // answered with that key's run.
        let err = engine.trigger_async(&orders(1_000, Some(700))).await.unwrap_err();
        assert!(matches!(&err, Error::PayloadMismatch { run: Some(run), items: 1, .. } if *run == ids[700]), "{err}");
    });
}
