//! Fleet mode against a real `redis-server` (feature `redis`): several processes on one
//! dedup store and one catalog, and what happens when Redis dies or fills up.
//!
//! The multi-process tests run this test binary again as workers: a worker is a test
//! (`worker_*`) that does nothing unless `FLEET_WORKER` is set in its environment.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::collections::HashSet;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idempotency_catalog::{
    CatalogBuilder, CatalogKind, Digest, Fault, FaultKind, KeyOptions, Listener, RedisBuilder, RemovalCause,
};
use idempotency_sdk::{Engine, ItemOptions, KeyInput, RunContext, RunId, Scope, Sdk, Triggered, Ttl};
use serde_json::json;
use testkit::{RedisServer, warnings};

mod support;
use support::batches::batch as big_batch;
use support::fleet::a_fresh_engine_finds_every_key_held_once;
use support::workers::{now_ms, results};

const WORKER: &str = "FLEET_WORKER";

/// Starts the worker test `name` of this binary in a new process, with `args`.
fn worker(name: &str, args: &str) -> Child {
    support::workers::worker(WORKER, name, args)
}

/// A worker's fan-out: 10,000 keys `item-<i>` in scope global, created in a run and
/// triggered on the shared store, starting at the same instant as the others.
#[test]
fn worker_fanout() {
    let Ok(args) = std::env::var(WORKER) else { return };
    let (url, start) = args.split_once(' ').unwrap();
    let redis = RedisBuilder::new(url).build().unwrap();
    let catalog = CatalogBuilder::new().redis(redis.clone()).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let sdk = Sdk::new(Arc::clone(&catalog)).with_run(RunContext::new("run_fleet", 1));
    let mut batch = sdk.batch("child-task", 10_000);
    for i in 0..10_000 {
        let key = sdk.create_key(["item", &i.to_string()], Scope::Global).unwrap();
        batch.item(json!({ "i": i }), ItemOptions::new().key(key).ttl("1h".parse::<Ttl>().unwrap()));
    }
    let batch = batch.build().unwrap();
    let wait = start.parse::<u64>().unwrap().saturating_sub(now_ms());
    std::thread::sleep(Duration::from_millis(wait));
    let handles = engine.trigger_owned(batch).unwrap();
    let cached = handles.iter().filter(|h| h.cached).count();
    let mut with_key = 0;
    engine.for_each_run(|run| with_key += usize::from(run.idempotency_key_scope() == Some(Scope::Global)));
    drop(sdk);
    catalog.flush().unwrap();
    println!("RESULT {} {cached} {with_key}", engine.run_count());
}

#[test]
fn four_processes_fanning_out_the_same_keys_make_each_run_once() {
    let server = RedisServer::start(&[]);
    let start = now_ms() + 1_500;
    let workers: Vec<Child> = (0..4).map(|_| worker("worker_fanout", &format!("{} {start}", server.url()))).collect();
    let (mut runs, mut cached, mut with_key) = (0, 0, 0);
    for child in workers {
        let line = results(child, "RESULT ").pop().unwrap();
        let n: Vec<usize> = line.split(' ').map(|n| n.parse().unwrap()).collect();
        runs += n[0];
        cached += n[1];
        with_key += n[2];
    }
    assert_eq!((runs, cached), (10_000, 30_000));
    assert_eq!(with_key, runs, "every run shows its key and scope");
    // One claim per key, each holding its run's record; one catalog entry per key.
    assert_eq!(server.count("idempotency:claim:*"), 10_000);
    assert_eq!(server.count("idempotency:key:*"), 10_000);
    assert_eq!(a_fresh_engine_finds_every_key_held_once(&server, 10_000), 0);
}

/// A worker that mints keys and prints their digests.
#[test]
fn worker_keys() {
    let Ok(args) = std::env::var(WORKER) else { return };
    let (url, n) = args.split_once(' ').unwrap();
    let redis = RedisBuilder::new(url).build().unwrap();
    let sdk = Sdk::new(CatalogBuilder::new().redis(redis).build().unwrap());
    for i in 0..n.parse::<usize>().unwrap() {
        println!("DIGEST {}", sdk.create_key(["item", &i.to_string()], Scope::Global).unwrap());
    }
    sdk.catalog().flush().unwrap();
}

#[test]
fn keys_minted_by_one_process_resolve_with_their_options_in_another() {
    let server = RedisServer::start(&[]);
    let digests = results(worker("worker_keys", &format!("{} 3000", server.url())), "DIGEST ");
    assert_eq!(digests.len(), 3_000);

    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let shared = Sdk::new(CatalogBuilder::new().kind(CatalogKind::Lru).capacity(100).redis(redis).build().unwrap());
    let alone = Sdk::new(CatalogBuilder::new().build().unwrap());
    for (i, digest) in digests.iter().enumerate() {
        let input = KeyInput::from(digest.as_str());
        let key = shared.resolve(&input).unwrap().unwrap();
        let options = key.options().unwrap_or_else(|| panic!("digest {i} did not resolve"));
        assert_eq!((options.key(), options.scope()), (format!("item-{i}").as_str(), Scope::Global));
        assert!(alone.resolve(&input).unwrap().unwrap().options().is_none());
    }
    let stats = shared.catalog().stats();
    assert_eq!((stats.hits, stats.misses, stats.faults), (3_000, 0, 0));
    // The local LRU of 100 dropped most of them again: released, not lost.
    assert_eq!((stats.evicted, stats.released, stats.len), (0, 2_900, 100));
}

/// Records the kinds of faults it is told about.
#[derive(Clone, Default)]
struct Faults(Arc<Mutex<Vec<FaultKind>>>);

impl Listener for Faults {
    fn on_evict(&self, _: &Digest, _: &KeyOptions, _: RemovalCause) {}
    fn on_fault(&self, fault: &Fault) {
        self.0.lock().unwrap().push(fault.kind);
    }
}

/// Every handle names a run every process can read: read here, in one round trip.
fn assert_readable(engine: &Engine, handles: &[Triggered]) {
    let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    let records = engine.read_runs(&ids).unwrap();
    let unreadable = records.iter().filter(|r| r.is_none()).count();
    assert_eq!(unreadable, 0, "{unreadable} of {} answers name a run with no record", handles.len());
    // Read in several pipelines, each record where its id was asked.
    assert!(records.iter().zip(&ids).all(|(record, id)| record.as_ref().is_some_and(|r| r.id == *id)));
}

#[test]
fn redis_killed_mid_batch_fails_the_trigger_and_no_key_gets_two_runs() {
    // Every claim on disk before it is answered: dedup survives the restart.
    let mut server = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = server.url();
    let redis = RedisBuilder::new(&url).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let batch = big_batch(300_000);

    let killed = Arc::new(AtomicBool::new(false));
    let killer = {
        let (pid, mut probe, killed) = (server.pid(), server.client(), Arc::clone(&killed));
        std::thread::spawn(move || {
            // Once the first pipeline of claims has landed, mid-batch.
            while redis::cmd("DBSIZE").query::<usize>(&mut probe).unwrap() < 10_000 {
                std::thread::sleep(Duration::from_millis(1));
            }
            Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
            killed.store(true, Ordering::SeqCst);
        })
    };
    let err = engine.trigger(&batch).expect_err("the batch outran the kill: make it larger");
    killer.join().unwrap();
    assert!(killed.load(Ordering::SeqCst));
    let message = err.to_string();
    assert!(message.starts_with(&format!("redis at {url}: cannot create runs: ")), "{message}");
    let before = engine.run_count();
    assert!((10_000..300_000).contains(&before), "{before}");

    // While it is down, triggers fail rather than make runs that may be duplicates.
    assert!(engine.trigger(&batch).is_err());
    assert_eq!(engine.run_count(), before);

    server.restart();
    std::thread::sleep(Duration::from_millis(300)); // past the reconnect pause
    let handles = engine.trigger(&batch).unwrap();
    // Every key has exactly one run, every answer is readable, and the runs whose
    // answer the kill lost are this engine's again: it counts every run it made.
    assert_eq!(engine.run_count(), 300_000);
    let mut keys = HashSet::new();
    engine.for_each_run(|run| assert!(keys.insert(run.idempotency_key().unwrap().into_owned())));
    assert_eq!(keys.len(), 300_000);
    assert_readable(&engine, &handles);
    assert!(redis.faults() >= 2);
    assert_eq!(a_fresh_engine_finds_every_key_held_once(&server, 300_000), 0);
}

#[test]
fn while_redis_is_down_the_local_catalog_serves_and_queued_writes_go_out_when_it_returns() {
    let mut server = RedisServer::start(&[]);
    let faults = Faults::default();
    let redis = RedisBuilder::new(server.url()).listener(faults.clone()).build().unwrap();
    let catalog = CatalogBuilder::new().redis(redis.clone()).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let (before, during) = (Digest::from_bytes([1; 32]), Digest::from_bytes([2; 32]));
    catalog.register(before, KeyOptions::new("before", Scope::Global));
    catalog.flush().unwrap();

    server.kill();
    let (err, lines) = warnings(|| {
        assert_eq!(catalog.get(&before).map(|o| o.key().to_owned()).as_deref(), Some("before"));
        catalog.register(during, KeyOptions::new("during", Scope::Run));
        assert!(engine.trigger(&big_batch(10)).unwrap_err().to_string().contains(&server.url()));
        catalog.flush().unwrap_err()
    });
    assert!(err.to_string().starts_with(&format!("redis at {}: cannot ", server.url())), "{err}");
    assert!(!lines.is_empty() && lines[0].contains("shared store failed"), "{lines:?}");
    assert!(lines[0].contains("fault=unreachable"), "{lines:?}");
    let stats = catalog.stats();
    assert!(stats.faults >= 2 && stats.faults == redis.faults());
    assert_eq!(faults.0.lock().unwrap().len() as u64, stats.faults);
    assert_eq!(stats.unshared, 0, "queued, not dropped");

    server.restart();
    std::thread::sleep(Duration::from_millis(300));
    catalog.flush().unwrap();
    let elsewhere = CatalogBuilder::new().redis(RedisBuilder::new(server.url()).build().unwrap()).build().unwrap();
    assert_eq!(elsewhere.get(&during).map(|o| o.key().to_owned()).as_deref(), Some("during"));
    // The trigger that failed while it was down made nothing: the fresh engine makes all.
    assert_eq!(a_fresh_engine_finds_every_key_held_once(&server, 10), 10);
}

#[test]
fn redis_at_maxmemory_is_counted_warned_and_fails_the_trigger() {
    let server = RedisServer::start(&["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]);
    let faults = Faults::default();
    let redis = RedisBuilder::new(server.url()).listener(faults.clone()).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let catalog = CatalogBuilder::new().redis(redis.clone()).build().unwrap();
    let batch = big_batch(100_000);
    let (err, lines) = warnings(|| engine.trigger(&batch).unwrap_err());
    assert!(err.to_string().contains("OOM"), "{err}");
    assert!(lines.iter().any(|l| l.contains("fault=out-of-memory")), "{lines:?}");
    assert!(faults.0.lock().unwrap().contains(&FaultKind::OutOfMemory));

    for i in 0..2_000u32 {
        let mut bytes = [0; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        catalog.register(Digest::from_bytes(bytes), KeyOptions::new("k", Scope::Global));
    }
    assert!(catalog.flush().unwrap_err().to_string().contains("OOM"));
    // The local catalog keeps serving: its base, and the rest for their retention.
    assert_eq!(catalog.len(), 2_000, "the local catalog keeps serving what it was given");
    assert!(catalog.stats().faults >= 3);
    assert_eq!(catalog.stats().unshared, 0, "queued, not dropped");

    // Room again: the queued writes go out at the next flush, and every claim the
    // trigger made before the OOM holds its record.
    redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0").query::<()>(&mut server.client()).unwrap();
    catalog.flush().unwrap();
    assert_eq!(server.count("idempotency:key:*"), 2_000, "every write stayed queued and arrived");
    let created = a_fresh_engine_finds_every_key_held_once(&server, 100_000);
    assert!(created < 100_000, "the trigger claimed some before the OOM: {created} made now");
}

#[test]
fn runs_whose_answer_was_lost_answer_the_next_trigger_and_are_counted_by_their_engine() {
    let server = RedisServer::start(&["--enable-debug-command", "local"]);
    let redis = RedisBuilder::new(server.url()).io_timeout(Duration::from_millis(100)).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let batch = big_batch(1_000);
    // The server stalls past the engine's timeout, which gives up and closes its
    // connection; the server then runs what it had read of the pipeline before it sees
    // the close: those runs hold their keys, with their records, and the engine never
    // heard of them.
    let mut stall = server.client();
    let staller = std::thread::spawn(move || redis::cmd("DEBUG").arg("SLEEP").arg("0.5").query::<()>(&mut stall));
    std::thread::sleep(Duration::from_millis(50));
    let err = engine.trigger(&batch).unwrap_err();
    assert!(err.to_string().contains("cannot create runs"), "{err}");
    staller.join().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the server done with it, and past the reconnect pause
    let applied = server.count("idempotency:claim:*");
    assert!((1..=1_000).contains(&applied), "{applied} of the runs were created");
    assert_eq!(engine.run_count(), 0);

    let handles = engine.trigger(&batch).unwrap();
    // Those that existed before this trigger are cached; they are this engine's, so it
    // records them beside the runs it makes now.
    assert_eq!(handles.iter().filter(|h| h.cached).count(), applied);
    assert_readable(&engine, &handles);
    assert_eq!(engine.run_count(), 1_000);
    let again = engine.trigger(&batch).unwrap();
    assert_eq!(again.iter().map(|h| h.id).collect::<Vec<_>>(), handles.iter().map(|h| h.id).collect::<Vec<_>>());
    assert_eq!(engine.run_count(), 1_000);
    assert_eq!(a_fresh_engine_finds_every_key_held_once(&server, 1_000), 0);
}

#[test]
fn a_server_that_never_answers_fails_the_startup_within_the_timeouts_naming_the_url() {
    // Accepts connections (the kernel does, from the backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://:secret@{}/", silent.local_addr().unwrap());
    let faults = Faults::default();
    let started = std::time::Instant::now();
    let err = RedisBuilder::new(&url)
        .connect_timeout(Duration::from_millis(300))
        .io_timeout(Duration::from_millis(300))
        .listener(faults.clone())
        .build()
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let shown = url.replace(":secret@", ":***@");
    assert!(err.starts_with(&format!("redis at {shown}: cannot connect: ")), "{err}");
    assert!(!err.contains("secret"));
    assert_eq!(*faults.0.lock().unwrap(), [FaultKind::Timeout]);
}

/// A batch of task `pay`: item `i` keyed `order-<keys[i]>` with `{"amount": amounts[i]}`.
fn orders(keys: &[u32], amounts: &[u32]) -> idempotency_sdk::Batch {
    let sdk = Sdk::new(Arc::new(idempotency_catalog::UnboundedCatalog::new()));
    let mut batch = sdk.batch("pay", keys.len());
    for (key, amount) in keys.iter().zip(amounts) {
        let key = sdk.create_key(["order", &key.to_string()], Scope::Global).unwrap();
        batch.item(json!({ "amount": amount }), ItemOptions::new().key(key));
    }
    batch.build().unwrap()
}

#[test]
fn a_payload_check_of_more_keys_than_a_pipeline_finds_a_change_in_the_last() {
    use idempotency_sdk::{Error, PayloadPolicy};
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap().with_payload_policy(PayloadPolicy::Fail);
    let keys: Vec<u32> = (0..12_000).collect();
    let held = engine.trigger(&orders(&keys, &vec![1; keys.len()])).unwrap();
    let mut amounts = vec![1; keys.len()];
    amounts[11_500] = 2;
    let err = engine.trigger(&orders(&keys, &amounts)).unwrap_err();
    assert!(
        matches!(&err, Error::PayloadMismatch { run: Some(run), items: 1, .. } if *run == held[11_500].id),
        "{err}"
    );
}

#[test]
fn two_workers_see_the_same_payload_mismatches_as_one_process_under_each_policy() {
    use idempotency_sdk::{Error, PayloadPolicy};
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    for (round, policy) in PayloadPolicy::ALL.into_iter().enumerate() {
        let base = round as u32 * 100;
        let worker = || Engine::on_redis(&redis).unwrap().with_payload_policy(policy);
        let (first, second) = (worker(), worker());
        let held = first.trigger(&orders(&[base, base + 1], &[10, 20])).unwrap();
        let (answer, lines) = warnings(|| second.trigger(&orders(&[base + 5, base, base + 1], &[1, 10, 99])));
        assert_eq!(second.payload_mismatches(), 1, "{policy}");
        match policy {
            PayloadPolicy::Fail => {
                let err = answer.unwrap_err();
                assert!(
                    matches!(&err, Error::PayloadMismatch { run: Some(run), items: 1, .. } if *run == held[1].id),
                    "{err}"
                );
                // Nothing claimed: the new key is free, for either worker.
                assert!(!first.trigger(&orders(&[base + 5], &[1])).unwrap()[0].cached);
                assert_eq!(second.run_count(), 0);
            }
            _ => {
                let answer = answer.unwrap();
                assert_eq!(answer.iter().map(|h| h.cached).collect::<Vec<_>>(), [false, true, true], "{policy}");
                assert_eq!(answer[2].id, held[1].id);
                let warned = lines.iter().any(|l| l.contains("reused with another payload") && l.contains("order-"));
                assert_eq!(warned, policy == PayloadPolicy::Warn, "{policy}: {lines:?}");
                // The warning sits in the trigger's span, with OpenTelemetry's database
                // attribute (docs/telemetry.md).
                let in_span = lines
                    .iter()
                    .any(|l| l.contains("idempotency.trigger{") && l.contains(r#"store="redis" db.system="redis""#));
                assert_eq!(in_span, policy == PayloadPolicy::Warn, "{policy}: {lines:?}");
            }
        }
        // Within one batch, on Redis as in memory.
        let repeated = orders(&[base + 9, base + 9], &[1, 2]);
        let answer = worker().trigger(&repeated);
        match policy {
            PayloadPolicy::Fail => assert!(matches!(answer, Err(Error::PayloadMismatch { run: None, .. }))),
            _ => assert!(answer.unwrap()[1].cached),
        }
    }
}

/// The issue that named it: worker A holds a key for a second (run R1); once it has
/// expired, worker B triggers it (run R2); A's reset of R1 must leave R2's claim alone,
/// so that a third worker is answered with R2. A plain reset frees whatever holds the
/// key, as documented.
#[test]
fn a_stale_workers_reset_frees_only_the_run_it_names() {
    let server = RedisServer::start(&[]);
    let worker = || Engine::on_redis(&RedisBuilder::new(server.url()).build().unwrap()).unwrap();
    let (a, b, c) = (worker(), worker(), worker());
    let sdk = Sdk::new(CatalogBuilder::new().kind(CatalogKind::Unbounded).build().unwrap());
    let key = sdk.create_key("order-7", Scope::Global).unwrap();
    let mut batch = sdk.batch("charge", 1);
    batch.item(None, ItemOptions::new().key(&key).ttl("1s".parse::<Ttl>().unwrap()));
    let batch = batch.build().unwrap();
    let r1 = a.trigger(&batch).unwrap()[0].id;
    std::thread::sleep(Duration::from_millis(1_100));
    let r2 = b.trigger(&batch).unwrap()[0];
    assert!(!r2.cached && r2.id != r1);
    let target = || idempotency_sdk::KeyTarget::Key(&key);
    assert!(!a.reset_key_held_by("charge", target(), r1).unwrap(), "R1 no longer holds the key");
    let r3 = c.trigger(&batch).unwrap()[0];
    assert!(r3.cached && r3.id == r2.id, "the third worker is answered with R2: {r3:?}");
    assert!(a.reset_key("charge", target()).unwrap(), "a plain reset frees whatever holds the key");
    assert!(!c.trigger(&batch).unwrap()[0].cached);
}
