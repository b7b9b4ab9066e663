//! Fleet mode on a Redis Cluster (feature `cluster`), against real 3-master clusters on
//! loopback: the same engine and catalog as on one server, the URL of any node (or
//! several) enough, four processes on the same keys making each run once, digests
//! minted in one process resolving in another, a master replaced by its replica in
//! the middle of a batch, an evicting policy on one master refused, and the async
//! forms (feature `tokio`).
//!
//! Workers are this test binary run again: a worker is a test (`worker_*`) that does
//! nothing unless `CLUSTER_WORKER` is set in its environment.
#![cfg(feature = "cluster")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::collections::HashSet;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use idempotency_catalog::{CatalogBuilder, CatalogKind, Redis, RedisBuilder};
use idempotency_sdk::{Batch, Engine, ItemOptions, KeyInput, RunId, RunStatus, Scope, Sdk};
use testkit::RedisCluster;

mod support;
use support::batches::keyed;
use support::workers::{now_ms, results};

const WORKER: &str = "CLUSTER_WORKER";

fn worker(name: &str, args: &str) -> Child {
    support::workers::worker(WORKER, name, args)
}

fn handle(url: &str) -> Redis {
    RedisBuilder::new(url).build().unwrap()
}

/// `items` keys `item-<i>` in scope global, for task `child-task`.
fn batch(items: std::ops::Range<usize>) -> Batch {
    keyed("child-task", items, Some("1h"), |_| None)
}

/// A fresh engine triggers keys `0..items`: every answer names a readable run of its
/// own key, and the cluster holds one claim per key. How many it had to create.
fn every_key_held_once(cluster: &RedisCluster, items: usize) -> usize {
    let fresh = Engine::on_redis(&handle(&cluster.seed_url())).unwrap();
    let handles = fresh.trigger(&batch(0..items)).unwrap();
    let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    let records = fresh.read_runs(&ids).unwrap();
    let keys: HashSet<String> = records.into_iter().map(|r| r.unwrap().idempotency_key.unwrap()).collect();
    assert_eq!(keys.len(), items, "every answer names the run of its own key");
    assert_eq!(cluster.count("idempotency:claim:*"), items, "one claim per key");
    handles.iter().filter(|h| !h.cached).count()
}

#[test]
fn worker_fanout() {
    let Ok(args) = std::env::var(WORKER) else { return };
    let (url, start) = args.split_once(' ').unwrap();
    let redis = handle(url);
    let catalog = CatalogBuilder::new().redis(redis.clone()).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let sdk = Sdk::new(Arc::clone(&catalog));
    let mut batch = sdk.batch("child-task", 10_000);
    for i in 0..10_000 {
        batch.item(None, ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global)));
    }
    let batch = batch.build().unwrap();
    std::thread::sleep(Duration::from_millis(start.parse::<u64>().unwrap().saturating_sub(now_ms())));
    let handles = engine.trigger_owned(batch).unwrap();
    let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    let readable = engine.read_runs(&ids).unwrap().iter().filter(|r| r.is_some()).count();
    catalog.flush().unwrap();
    println!("RESULT {} {} {readable}", engine.run_count(), handles.iter().filter(|h| h.cached).count());
}

#[test]
fn four_processes_on_a_cluster_make_each_run_once_whichever_node_they_were_given() {
    let cluster = RedisCluster::start(3, 0);
    let urls = cluster.urls();
    let start = now_ms() + 2_000;
    // Each worker names a different node; the last names them all.
    let given = [urls[0].clone(), urls[1].clone(), urls[2].clone(), urls.join(",")];
    let workers: Vec<Child> = given.iter().map(|url| worker("worker_fanout", &format!("{url} {start}"))).collect();
    let (mut runs, mut cached) = (0, 0);
    for child in workers {
        let n: Vec<usize> = results(child, "RESULT ").pop().unwrap().split(' ').map(|n| n.parse().unwrap()).collect();
        assert_eq!(n[0] + n[1], 10_000);
        assert_eq!(n[2], 10_000, "every answer readable in the process that got it");
        runs += n[0];
        cached += n[1];
    }
    assert_eq!((runs, cached), (10_000, 30_000));
    assert_eq!(cluster.count("idempotency:key:*"), 10_000);
    assert_eq!(every_key_held_once(&cluster, 10_000), 0);
}

#[test]
fn worker_keys() {
    let Ok(args) = std::env::var(WORKER) else { return };
    let (url, n) = args.split_once(' ').unwrap();
    let sdk = Sdk::new(CatalogBuilder::new().redis(handle(url)).build().unwrap());
    for i in 0..n.parse::<usize>().unwrap() {
        println!("DIGEST {}", sdk.create_key(["item", &i.to_string()], Scope::Global).unwrap());
    }
    sdk.catalog().flush().unwrap();
}

#[test]
fn digests_minted_in_one_process_resolve_in_another_one_at_a_time_or_prefetched() {
    let cluster = RedisCluster::start(3, 0);
    let digests = results(worker("worker_keys", &format!("{} 2000", cluster.seed_url())), "DIGEST ");
    assert_eq!(digests.len(), 2_000);
    // A dead seed first: the next one answers for it (as when a worker restarts while a
    // node is down).
    let (redis, warned) = testkit::warnings(|| handle(&format!("redis://127.0.0.1:1,{}", cluster.urls()[2])));
    assert_eq!(redis.masters().len(), 3);
    assert!(warned.iter().any(|w| w.contains("redis seed unreachable; the next one is asked")), "{warned:?}");
    // One at a time, on a local miss.
    let shared =
        Sdk::new(CatalogBuilder::new().kind(CatalogKind::Lru).capacity(10_000).redis(redis.clone()).build().unwrap());
    for (i, digest) in digests.iter().enumerate().take(500) {
        let key = shared.resolve(&KeyInput::from(digest.as_str())).unwrap().unwrap();
        assert_eq!(key.options().map(|o| o.key().to_owned()), Some(format!("item-{i}")));
    }
    // All at once: one batch over the cluster's nodes.
    let catalog = CatalogBuilder::new().redis(redis.clone()).build_redis().unwrap();
    let parsed: Vec<_> = digests.iter().map(|d| d.parse().unwrap()).collect();
    assert_eq!(catalog.prefetch(&parsed).unwrap(), 2_000);
    assert_eq!(redis.faults(), 0);
}

#[test]
fn a_master_replaced_by_its_replica_mid_batch_leaves_every_key_one_run() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let cluster = Arc::new(RedisCluster::start(3, 1));
    let redis = RedisBuilder::new(cluster.seed_url()).io_timeout(Duration::from_secs(2)).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let replica = cluster.replicas()[0];
    let (began, ended) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let failover = {
        let (cluster, began, ended) = (Arc::clone(&cluster), Arc::clone(&began), Arc::clone(&ended));
        std::thread::spawn(move || {
            while cluster.count("idempotency:claim:*") < 5_000 {
                std::thread::sleep(Duration::from_millis(5));
            }
            began.store(true, Ordering::SeqCst);
            cluster.failover(replica);
            ended.store(true, Ordering::SeqCst);
        })
    };
    // Batches of 5,000 new keys until the failover is over, and two more after it.
    let (mut next, mut overlapped, mut failed, mut after) = (0, 0, 0, 0);
    while after < 2 {
        let done = ended.load(Ordering::SeqCst);
        let during = began.load(Ordering::SeqCst) && !done;
        match engine.trigger(&batch(next..next + 5_000)) {
            Ok(handles) => assert_eq!(handles.len(), 5_000),
            // The same engine goes on once the cluster has: no restart.
            Err(err) if done => panic!("a batch after the failover failed: {err}"),
            Err(err) => {
                failed += 1;
                assert!(err.to_string().starts_with(&format!("redis at {}: cannot ", redis.url())), "{err}");
            }
        }
        overlapped += usize::from(during || (!done && ended.load(Ordering::SeqCst)));
        after += usize::from(done);
        next += 5_000;
    }
    failover.join().unwrap();
    assert!(overlapped > 0, "no batch ran while the master was replaced");
    assert!(cluster.masters().contains(&replica), "the replica took over");
    eprintln!("{overlapped} batches during the failover, {failed} failed");
    every_key_held_once(&cluster, next);
}

#[test]
fn an_evicting_policy_on_any_master_is_refused_naming_that_master() {
    let cluster = RedisCluster::start(3, 0);
    let masters = cluster.masters();
    let (seed, evicting) = (masters[0], masters[2]);
    assert_eq!(cluster.cli(evicting, &["config", "set", "maxmemory-policy", "allkeys-lru"]).trim(), "OK");
    let err = RedisBuilder::new(cluster.seed_url()).build().unwrap_err().to_string();
    let expected = format!(
        "redis at redis://127.0.0.1:{seed}/: cannot accept the server's configuration: maxmemory-policy is allkeys-lru on the cluster master 127.0.0.1:{evicting}: "
    );
    assert!(err.starts_with(&expected), "{err}");
    #[cfg(feature = "tokio")]
    {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = runtime.block_on(RedisBuilder::new(cluster.seed_url()).build_async()).unwrap_err().to_string();
        assert!(err.starts_with(&expected), "{err}");
    }
    // Accepted when asked, as on one server.
    assert!(RedisBuilder::new(cluster.seed_url()).allow_evicting_policy().build().is_ok());

    // Masters without a replica: one warning naming them (nothing takes over when one
    // fails); a durability that needs a replica is refused, naming a master.
    let (built, warned) = testkit::warnings(|| {
        RedisBuilder::new(cluster.seed_url()).allow_evicting_policy().build().map(|r| r.masters())
    });
    let masters = built.unwrap();
    assert_eq!(masters.len(), 3);
    assert!(masters.iter().all(|(_, replicas)| *replicas == 0), "{masters:?}");
    let alone: Vec<&String> = warned.iter().filter(|w| w.contains("redis cluster masters without a replica")).collect();
    assert_eq!(alone.len(), 1, "{warned:?}");
    assert!(masters.iter().all(|(master, _)| alone[0].contains(master.as_str())), "{alone:?}");
    let err = RedisBuilder::new(cluster.seed_url())
        .allow_evicting_policy()
        .durability(idempotency_catalog::fleet::Durability::Replicas(1))
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("durability replicas:1 asks for 1 replicas of every write, but master 127.0.0.1:"), "{err}");
}

#[cfg(feature = "tokio")]
#[test]
fn the_async_forms_work_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let redis = RedisBuilder::new(cluster.seed_url()).build_async().await.unwrap();
        assert!(redis.is_cluster());
        let engine = Engine::on_redis_async(&redis).await.unwrap();
        let b = batch(0..3_000);
        let first = engine.trigger_async(&b).await.unwrap();
        assert!(first.iter().all(|h| !h.cached));
        assert!(engine.trigger_async(&b).await.unwrap().iter().all(|h| h.cached));
        let ids: Vec<RunId> = first.iter().map(|h| h.id).collect();
        assert!(engine.read_runs_async(&ids).await.unwrap().iter().all(Option::is_some));
        engine.set_status_async(first[0].id, RunStatus::Failed).await.unwrap();
        assert!(!engine.trigger_async(&batch(0..1)).await.unwrap()[0].cached);
        let catalog = CatalogBuilder::new().redis_async(redis.clone()).build_redis().unwrap();
        let sdk = Sdk::new(Arc::clone(&catalog) as Arc<dyn idempotency_catalog::Catalog>);
        let key = sdk.create_key("async-on-a-cluster", Scope::Global).unwrap();
        catalog.flush_async().await.unwrap();
        let reader = CatalogBuilder::new().redis_async(redis.clone()).build_redis().unwrap();
        assert_eq!(reader.prefetch_async(&[key.digest()]).await.unwrap(), 1);
        assert_eq!(redis.faults(), 0);
    });
}
