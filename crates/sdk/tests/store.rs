//! One suite for both dedup stores: the engine's semantics must not depend on where
//! keys are claimed. The in-memory store runs it always; the Redis store (feature
//! `redis`) runs it against a `redis-server` started for the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;
use std::time::Duration;

use idempotency_catalog::UnboundedCatalog;
use idempotency_sdk::{Batch, Engine, ItemOptions, KeyTarget, RunStatus, Scope, Sdk, Ttl, WireItem};

fn sdk() -> Sdk {
    Sdk::new(Arc::new(UnboundedCatalog::new()))
}

fn batch(sdk: &Sdk, task: &str, keys: &[&str], ttl: &str) -> Batch {
    let mut batch = sdk.batch(task, keys.len());
    for key in keys {
        batch.item(None, ItemOptions::new().key(sdk.create_key(*key, Scope::Global)).ttl(ttl.parse::<Ttl>().unwrap()));
    }
    batch.build().unwrap()
}

fn wire(key: &str, ttl: &str) -> WireItem {
    let line = format!(
        r#"{{"index":0,"task":"wire-task","options":{{"idempotencyKey":"{key}","idempotencyKeyTTL":"{ttl}"}}}}"#
    );
    WireItem::from_json(&line).unwrap()
}

/// Every scenario, each in tasks of its own so that they do not see each other's keys.
fn suite(engine: &Engine) {
    let sdk = sdk();

    // A repeat within the TTL is the same run; duplicates inside one batch too.
    let b = batch(&sdk, "repeat", &["a", "b", "a"], "1h");
    let first = engine.trigger(&b).unwrap();
    assert!(!first[0].cached && !first[1].cached, "{first:?}");
    assert!(first[2].cached && first[2].id == first[0].id, "a duplicate in one batch shares its run: {first:?}");
    let again = engine.trigger(&b).unwrap();
    assert!(again.iter().all(|h| h.cached));
    assert_eq!(again.iter().map(|h| h.id).collect::<Vec<_>>(), first.iter().map(|h| h.id).collect::<Vec<_>>());
    let record = engine.run(first[0].id).unwrap().unwrap();
    assert_eq!((record.idempotency_key.as_deref(), record.idempotency_key_scope), (Some("a"), Some(Scope::Global)));

    // Tasks are separate key spaces.
    let other = engine.trigger(&batch(&sdk, "repeat-elsewhere", &["a"], "1h")).unwrap();
    assert!(!other[0].cached && other[0].id != first[0].id);

    // A run that ends in failure releases its key; one that succeeds does not.
    let b = batch(&sdk, "outcomes", &["failed", "succeeded"], "1h");
    let runs = engine.trigger(&b).unwrap();
    engine.set_status(runs[0].id, RunStatus::Failed).unwrap();
    engine.set_status(runs[1].id, RunStatus::Succeeded).unwrap();
    let after = engine.trigger(&b).unwrap();
    assert!(!after[0].cached && after[0].id != runs[0].id, "{after:?}");
    assert!(after[1].cached && after[1].id == runs[1].id, "{after:?}");
    // Releasing again with the old run does not drop the new run's key.
    engine.set_status(runs[0].id, RunStatus::Crashed).unwrap();
    assert!(engine.trigger(&b).unwrap()[0].cached);

    // Reset forgets the key, once.
    let key = sdk.create_key("reset-me", Scope::Global).unwrap();
    let b = batch(&sdk, "reset", &["reset-me"], "1h");
    let before = engine.trigger(&b).unwrap()[0];
    assert!(engine.reset_key("reset", KeyTarget::Key(&key)).unwrap());
    assert!(!engine.reset_key("reset", KeyTarget::Key(&key)).unwrap());
    let fresh = engine.trigger(&b).unwrap()[0];
    assert!(!fresh.cached && fresh.id != before.id);

    // The server's TTL grammar: `0s` never holds the key; an unreadable TTL is 30 days.
    let zero = wire("zero-ttl", "0s");
    assert!(!engine.trigger_items(std::slice::from_ref(&zero)).unwrap()[0].cached);
    assert!(!engine.trigger_items(std::slice::from_ref(&zero)).unwrap()[0].cached);
    let odd = wire("odd-ttl", "1 week");
    let first = engine.trigger_items(std::slice::from_ref(&odd)).unwrap()[0];
    let again = engine.trigger_items(&[odd]).unwrap()[0];
    assert!(!first.cached && again.cached && again.id == first.id);

    // Expiry: cached within the TTL, a new run once it has passed.
    let b = batch(&sdk, "expiry", &["short"], "1s");
    let first = engine.trigger(&b).unwrap()[0];
    assert!(engine.trigger(&b).unwrap()[0].cached);
    let fenced = batch(&sdk, "fenced", &["fenced"], "1s");
    let stale = engine.trigger(&fenced).unwrap()[0];
    std::thread::sleep(Duration::from_millis(1_100));
    let later = engine.trigger(&b).unwrap()[0];
    assert!(!later.cached && later.id != first.id);

    // A reset that names its run frees the key only while that run holds it: after the
    // key expired and a newer run took it, a stale reset frees nothing.
    let key = sdk.create_key("fenced", Scope::Global).unwrap();
    let newer = engine.trigger(&fenced).unwrap()[0];
    assert!(!newer.cached && newer.id != stale.id);
    assert!(!engine.reset_key_held_by("fenced", KeyTarget::Key(&key), stale.id).unwrap());
    let still = engine.trigger(&fenced).unwrap()[0];
    assert!(still.cached && still.id == newer.id, "the newer run still holds the key");
    assert!(engine.reset_key_held_by("fenced", KeyTarget::Key(&key), newer.id).unwrap());
    assert!(!engine.reset_key_held_by("fenced", KeyTarget::Key(&key), newer.id).unwrap(), "freed once");
    assert!(!engine.trigger(&fenced).unwrap()[0].cached);

    // The runs created (repeat 2, elsewhere 1, outcomes 3, reset 2, zero TTL 2, odd
    // TTL 1, expiry 2, fenced 3), each retained and readable; ids of cached answers left
    // no run.
    let mut ids = Vec::new();
    engine.for_each_run(|run| ids.push(run.id()));
    assert_eq!((ids.len(), engine.run_count(), engine.runs_retained()), (16, 16, 16));
    assert!(ids.iter().all(|&id| engine.run(id).unwrap().is_some()));
}

#[test]
fn the_in_memory_store_passes_the_suite() {
    suite(&Engine::new());
}

#[cfg(feature = "redis")]
#[test]
fn the_redis_store_passes_the_suite() {
    use idempotency_catalog::RedisBuilder;
    let server = testkit::RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).prefix("suite:").build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    suite(&engine);
    // Everything is under the prefix: claims (one per key still held, its run's record
    // as its value) and the records of runs that hold no key.
    assert!(server.count("suite:claim:*") > 0 && server.count("suite:run:*") > 0);
    assert_eq!(server.count("suite:claim:*") + server.count("suite:run:*"), server.count("*"));
    assert_eq!(redis.faults(), 0);
}

/// One step of the model test.
#[cfg(feature = "redis")]
#[derive(Clone, Debug)]
enum Op {
    /// A batch of keys (by number, repeats allowed) for one of two tasks.
    Trigger { task: u8, keys: Vec<u8> },
    /// Sets the status of the n-th run created (modulo how many there are).
    Status { run: usize, failed: bool },
    /// Resets a key of a task.
    Reset { task: u8, key: u8 },
    /// Resets a key of a task only while the n-th run created (modulo how many there
    /// are) holds it.
    ResetHeldBy { task: u8, key: u8, run: usize },
}

/// Any sequence of triggers, outcomes and resets (of whatever holds a key, or only of a
/// named run) gives the same answers on Redis as in memory: the same items cached,
/// answered by the same runs (matched by the order they were created in), and the same
/// resets found.
#[cfg(feature = "redis")]
#[test]
fn redis_and_memory_agree_on_any_sequence() {
    use std::collections::HashMap;

    use idempotency_catalog::RedisBuilder;
    use idempotency_sdk::{RunId, Triggered};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let server = testkit::RedisServer::start(&[]);
    let op = prop_oneof![
        4 => (0..2u8, prop::collection::vec(0..6u8, 1..6)).prop_map(|(task, keys)| Op::Trigger { task, keys }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(run, failed)| Op::Status { run, failed }),
        1 => (0..2u8, 0..6u8).prop_map(|(task, key)| Op::Reset { task, key }),
        2 => (0..2u8, 0..6u8, any::<usize>()).prop_map(|(task, key, run)| Op::ResetHeldBy { task, key, run }),
    ];
    let case = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config { cases: 48, ..Config::default() });
    let result = runner.run(&prop::collection::vec(op, 1..40), |ops| {
        // A key space of its own for each case (shrinking included).
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let redis = RedisBuilder::new(server.url()).prefix(format!("model{n}:")).build().unwrap();
        let engines = [Engine::new(), Engine::on_redis(&redis).unwrap()];
        // Per engine: its run ids in the order they were created.
        let mut created: [Vec<RunId>; 2] = [Vec::new(), Vec::new()];
        let mut order: [HashMap<RunId, usize>; 2] = [HashMap::new(), HashMap::new()];
        let sdk = sdk();
        for op in &ops {
            match op {
                Op::Trigger { task, keys } => {
                    let names: Vec<String> = keys.iter().map(|k| format!("k{k}")).collect();
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    let batch = batch(&sdk, &format!("task{task}"), &names, "1h");
                    let mut answers: [Vec<(bool, usize)>; 2] = [Vec::new(), Vec::new()];
                    for (e, engine) in engines.iter().enumerate() {
                        for Triggered { id, cached, .. } in engine.trigger(&batch).unwrap() {
                            if !cached {
                                order[e].insert(id, created[e].len());
                                created[e].push(id);
                            }
                            answers[e].push((cached, order[e][&id]));
                        }
                    }
                    prop_assert_eq!(&answers[0], &answers[1], "{:?}", op);
                }
                Op::Status { run, failed } if !created[0].is_empty() => {
                    prop_assert_eq!(created[0].len(), created[1].len());
                    let n = run % created[0].len();
                    let status = if *failed { RunStatus::Failed } else { RunStatus::Succeeded };
                    for (e, engine) in engines.iter().enumerate() {
                        engine.set_status(created[e][n], status).unwrap();
                    }
                }
                Op::Status { .. } => {}
                Op::Reset { task, key } => {
                    let key = sdk.create_key(format!("k{key}").as_str(), Scope::Global).unwrap();
                    let task = format!("task{task}");
                    let found: Vec<bool> =
                        engines.iter().map(|e| e.reset_key(&task, KeyTarget::Key(&key)).unwrap()).collect();
                    prop_assert_eq!(found[0], found[1], "{:?}", op);
                }
                Op::ResetHeldBy { task, key, run } if !created[0].is_empty() => {
                    let key = sdk.create_key(format!("k{key}").as_str(), Scope::Global).unwrap();
                    let (task, n) = (format!("task{task}"), run % created[0].len());
                    let freed: Vec<bool> = (0..2)
                        .map(|e| engines[e].reset_key_held_by(&task, KeyTarget::Key(&key), created[e][n]).unwrap())
                        .collect();
                    prop_assert_eq!(freed[0], freed[1], "{:?}", op);
                }
                Op::ResetHeldBy { .. } => {}
            }
        }
        prop_assert_eq!(engines[0].run_count(), engines[1].run_count());
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}
