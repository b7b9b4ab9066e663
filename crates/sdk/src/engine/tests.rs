//! The engine's rules, on the memory store and on the fake store with faults
//! injected: what a trigger records when a store fails part-way, the payload policy
//! on both, resets and holders.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use idempotency_catalog::{Scope, UnboundedCatalog};

use super::clock;
use super::fake::{FakeStore, Faults};
use crate::batch::{Batch, ItemOptions};
use crate::error::Error;
use crate::key::IdempotencyKey;
use crate::payload::PayloadPolicy;
use crate::run_id::RunId;
use crate::sdk::Sdk;
use crate::wire::WireItem;
use crate::{Engine, KeyTarget, RunStatus};

/// An engine on `store`.
fn on_store(store: &Arc<FakeStore>) -> Engine {
    Engine::on(Box::new(Arc::clone(store)), clock::system())
}

/// An engine on a fake shared store sending `chunk` items a call, and the store.
fn on_fake(chunk: usize) -> (Engine, Arc<FakeStore>) {
    let store = Arc::new(FakeStore::new(chunk));
    (on_store(&store), store)
}

fn batch(keys: std::ops::Range<usize>) -> Batch {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let mut batch = sdk.batch("task", keys.len());
    for i in keys {
        batch.item(None, ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global)));
    }
    batch.build().unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn an_item_failing_part_way_records_what_was_created_and_stops_the_trigger() {
    let (engine, store) = on_fake(4);
    store.faults.lock().item = Some(2);
    let err = engine.trigger(&batch(0..10)).unwrap_err().to_string();
    assert!(err.contains("injected"), "{err}");
    // The first call's other three items were created and recorded; nothing more sent.
    assert_eq!((engine.run_count(), *store.calls.lock()), (3, 1));
    *store.faults.lock() = Faults::default();
    let handles = engine.trigger(&batch(0..10)).unwrap();
    let cached: Vec<bool> = handles.iter().map(|h| h.cached).collect();
    assert_eq!(cached, [true, true, false, true, false, false, false, false, false, false]);
    assert_eq!(engine.run_count(), 10);
    let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    assert!(engine.read_runs(&ids).unwrap().iter().all(Option::is_some));
}

#[test]
fn runs_whose_answers_were_lost_are_cached_next_time_and_counted_once() {
    let (engine, store) = on_fake(100);
    store.faults.lock().lose_answers = true;
    assert!(engine.trigger(&batch(0..5)).is_err());
    assert_eq!(engine.run_count(), 0, "no answer, no record here");
    store.faults.lock().lose_answers = false;
    let handles = engine.trigger(&batch(0..6)).unwrap();
    assert!(handles[..5].iter().all(|h| h.cached) && !handles[5].cached);
    // The five are this engine's runs: back in its log, in their places.
    assert_eq!(engine.run_count(), 6);
    let mut seen = Vec::new();
    engine.for_each_run(|run| seen.push(run.id()));
    assert_eq!(seen, handles.iter().map(|h| h.id).collect::<Vec<_>>());
    engine.trigger(&batch(0..6)).unwrap();
    assert_eq!(engine.run_count(), 6, "counted once");
}

#[test]
fn a_status_change_the_store_refuses_changes_nothing_here() {
    let (engine, store) = on_fake(100);
    let run = engine.trigger(&batch(0..1)).unwrap()[0];
    store.faults.lock().status = true;
    assert!(engine.set_status(run.id, RunStatus::Failed).is_err());
    assert_eq!(engine.runs()[0].status, RunStatus::Pending);
    assert!(engine.trigger(&batch(0..1)).unwrap()[0].cached, "the key is still held");
    store.faults.lock().status = false;
    engine.set_status(run.id, RunStatus::Failed).unwrap();
    assert_eq!(engine.runs()[0].status, RunStatus::Failed);
    assert_eq!(engine.run(run.id).unwrap().map(|r| r.status), Some(RunStatus::Failed));
    assert!(!engine.trigger(&batch(0..1)).unwrap()[0].cached);
    let unknown = RunId::fleet(7, 7);
    assert!(matches!(engine.set_status(unknown, RunStatus::Failed), Err(Error::UnknownRun { id }) if id == unknown));
}

#[test]
fn a_shared_engine_numbers_its_runs_apart_from_the_items_it_was_answered_for() {
    let (engine, _) = on_fake(3);
    let first = engine.trigger(&batch(0..4)).unwrap();
    let again = engine.trigger(&batch(2..7)).unwrap();
    assert_eq!(again[0].id, first[2].id);
    assert_eq!(engine.run_count(), 7);
    // Each id read back through the store and through the log agrees.
    let mut from_log = Vec::new();
    engine.for_each_run(|run| from_log.push((run.id(), run.idempotency_key().map(|k| k.into_owned()))));
    let ids: Vec<RunId> = from_log.iter().map(|(id, _)| *id).collect();
    let from_store: Vec<_> = engine.read_runs(&ids).unwrap().into_iter().map(|r| r.unwrap().idempotency_key).collect();
    assert_eq!(from_log.into_iter().map(|(_, k)| k).collect::<Vec<_>>(), from_store);
}

/// A batch of `payloads.len()` items of task `pay`, item `i` keyed `order-<key(i)>`
/// with payload `{"amount": payloads[i]}`.
fn orders(keys: &[usize], payloads: &[u32]) -> Batch {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let mut batch = sdk.batch("pay", keys.len());
    for (key, amount) in keys.iter().zip(payloads) {
        let key = sdk.create_key(["order", &key.to_string()], Scope::Global).unwrap();
        batch.item(serde_json::json!({ "amount": amount }), ItemOptions::new().key(key));
    }
    batch.build().unwrap_or_else(|err| panic!("{err}"))
}

/// Two engines on one store, as two processes of a fleet (in memory: one engine,
/// twice, as a process triggers twice).
fn pairs(policy: PayloadPolicy) -> Vec<(&'static str, Engine, Option<Engine>)> {
    let store = Arc::new(FakeStore::new(2));
    let fleet = |store: &Arc<FakeStore>| on_store(store).with_payload_policy(policy);
    vec![
        ("memory", Engine::new().with_payload_policy(policy), None),
        ("fake store", fleet(&store), Some(fleet(&store))),
    ]
}

#[test]
fn the_same_key_with_another_payload_is_answered_and_counted_under_ignore_and_warn() {
    for policy in [PayloadPolicy::Ignore, PayloadPolicy::Warn] {
        for (name, first, second) in pairs(policy) {
            let first_runs = first.trigger(&orders(&[0, 1, 2], &[10, 20, 30])).unwrap();
            let second = second.as_ref().unwrap_or(&first);
            let again = second.trigger(&orders(&[0, 1, 2], &[10, 99, 30])).unwrap();
            assert!(again.iter().all(|h| h.cached), "{name}: the reference's answer");
            assert_eq!(
                again.iter().map(|h| h.id).collect::<Vec<_>>(),
                first_runs.iter().map(|h| h.id).collect::<Vec<_>>()
            );
            assert_eq!(second.payload_mismatches(), 1, "{name} {policy}");
        }
    }
}

#[test]
fn under_fail_a_mismatch_refuses_the_whole_trigger_before_anything_is_claimed() {
    for (name, first, second) in pairs(PayloadPolicy::Fail) {
        let held = first.trigger(&orders(&[0, 1], &[10, 20])).unwrap();
        let second = second.as_ref().unwrap_or(&first);
        let runs_before = second.run_count();
        // Key 1 differs; keys 5 and 6 are new and must not be claimed.
        let err = second.trigger(&orders(&[5, 0, 1, 6], &[1, 10, 99, 2])).unwrap_err();
        match &err {
            Error::PayloadMismatch { task, key, run, items } => {
                assert_eq!(
                    (task.as_str(), key.as_str(), *run, *items),
                    ("pay", r#""order-1" (global)"#, Some(held[1].id), 1),
                    "{name}"
                );
            }
            other => panic!("{name}: {other}"),
        }
        assert_eq!(second.run_count(), runs_before, "{name}: no run created");
        assert_eq!(second.payload_mismatches(), 1);
        // Nothing was claimed: the new keys make runs now, the held ones answer.
        let fresh = second.trigger(&orders(&[5, 6, 0], &[1, 2, 10])).unwrap();
        assert_eq!(fresh.iter().map(|h| h.cached).collect::<Vec<_>>(), [false, false, true], "{name}");
    }
}

#[test]
fn a_key_repeated_in_one_batch_with_another_payload_is_reported_and_follows_the_policy() {
    let batch = orders(&[3, 4, 3], &[1, 2, 7]);
    assert_eq!((batch.report().repeated, batch.report().payload_conflicts), (1, 1));
    assert_eq!(batch.report().first_payload_conflict, Some(2));
    let same = orders(&[3, 3], &[1, 1]);
    assert_eq!((same.report().repeated, same.report().payload_conflicts), (1, 0));
    for (name, engine, _) in pairs(PayloadPolicy::Warn) {
        let handles = engine.trigger(&batch).unwrap();
        assert!(handles[2].cached && handles[2].id == handles[0].id, "{name}: one run, the rest cached");
        assert_eq!(engine.payload_mismatches(), 1, "{name}");
    }
    for (name, engine, _) in pairs(PayloadPolicy::Fail) {
        let err = engine.trigger(&batch).unwrap_err();
        assert!(matches!(&err, Error::PayloadMismatch { run: None, items: 1, .. }), "{name}: {err}");
        assert!(
            err.to_string().contains(r#""order-3" (global) repeats in this trigger with another payload"#),
            "{err}"
        );
        assert_eq!(engine.run_count(), 0, "{name}");
    }
}

#[test]
fn a_reset_finds_the_run_of_a_key_whose_ttl_passed_unpruned() {
    let now = Arc::new(AtomicU64::new(1_000_000));
    let clock = Arc::clone(&now);
    let engine = Engine::with_clock(move || Duration::from_millis(clock.load(Ordering::Relaxed)));
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let key = sdk.create_key("k", Scope::Global).unwrap();
    let mut batch = sdk.batch("task", 1);
    batch.item(None, ItemOptions::new().key(&key).ttl("1s".parse().unwrap_or_default()));
    engine.trigger(&batch.build().unwrap_or_else(|err| panic!("{err}"))).unwrap();
    now.fetch_add(5_000, Ordering::Relaxed);
    // Expired, and no trigger since to prune it: the server clears it all the same.
    assert!(engine.reset_key("task", KeyTarget::Key(&key)).unwrap());
    assert!(!engine.reset_key("task", KeyTarget::Key(&key)).unwrap());
}

/// A wire item of `task`, keyed `key`, with `payload` and `ttl`.
fn wire(task: &str, key: &str, payload: &str, ttl: &str) -> WireItem {
    let line = format!(
        r#"{{"index":0,"task":"{task}","payload":{payload},"options":{{"idempotencyKey":"{key}","idempotencyKeyTTL":"{ttl}"}}}}"#
    );
    WireItem::from_json(&line).unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn under_fail_wire_items_of_several_tasks_are_checked_before_any_is_claimed() {
    for (name, engine, _) in pairs(PayloadPolicy::Fail) {
        engine.trigger_items(&[wire("b", "held", "1", "1h")]).unwrap();
        // Task a's item is new; task b's differs from the run holding its key.
        let err = engine.trigger_items(&[wire("a", "new", "1", "1h"), wire("b", "held", "2", "1h")]).unwrap_err();
        assert!(matches!(&err, Error::PayloadMismatch { task, .. } if task == "b"), "{name}: {err}");
        assert!(
            !engine.trigger_items(&[wire("a", "new", "1", "1h")]).unwrap()[0].cached,
            "{name}: task a was not claimed"
        );
    }
}

#[test]
fn under_fail_an_item_with_a_ttl_of_zero_is_checked_too() {
    // A `0s` item claims nothing, but a run that holds its key still answers it.
    let engine = Engine::new().with_payload_policy(PayloadPolicy::Fail);
    engine.trigger_items(&[wire("t", "k", "1", "1h")]).unwrap();
    let err = engine.trigger_items(&[wire("t", "k", "2", "0s")]).unwrap_err();
    assert!(matches!(err, Error::PayloadMismatch { items: 1, .. }), "{err}");
    // Within one trigger: a held-for-an-hour item answers a later `0s` one.
    let err = engine.trigger_items(&[wire("t", "j", "1", "1h"), wire("t", "j", "2", "0s")]).unwrap_err();
    assert!(matches!(err, Error::PayloadMismatch { run: None, .. }), "{err}");
    assert_eq!(engine.payload_mismatches(), 2);
    // The count does not depend on the policy: a key held with payload 1, then
    // [2, 1] under Warn and under Fail both count one.
    let warn = Engine::new();
    warn.trigger_items(&[wire("t", "k", "1", "1h")]).unwrap();
    warn.trigger_items(&[wire("t", "k", "2", "1h"), wire("t", "k", "1", "1h")]).unwrap();
    let fail = Engine::new().with_payload_policy(PayloadPolicy::Fail);
    fail.trigger_items(&[wire("t", "k", "1", "1h")]).unwrap();
    assert!(fail.trigger_items(&[wire("t", "k", "2", "1h"), wire("t", "k", "1", "1h")]).is_err());
    assert_eq!((warn.payload_mismatches(), fail.payload_mismatches()), (1, 1));
}

/// The key of item `i` of [`batch`], as the engine's callers name it.
fn item_key(i: usize) -> IdempotencyKey {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    sdk.create_key(["item", &i.to_string()], Scope::Global).unwrap()
}

#[test]
fn holder_in_memory_is_the_live_run_until_released_reset_or_expired() {
    let now = Arc::new(AtomicU64::new(1_000));
    let clock = Arc::clone(&now);
    let engine = Engine::with_clock(move || Duration::from_millis(clock.load(Ordering::Relaxed)));
    let key = item_key(0);
    assert!(engine.holder("task", KeyTarget::Key(&key)).unwrap().is_none(), "unknown task");
    let run = engine.trigger(&batch(0..2)).unwrap()[0];
    let held = engine.holder("task", KeyTarget::Key(&key)).unwrap().unwrap();
    assert_eq!((held.id, held.status, held.idempotency_key.as_deref()), (run.id, RunStatus::Pending, Some("item-0")));
    let by_digest = engine.holder("task", KeyTarget::Digest(key.digest())).unwrap();
    assert_eq!(by_digest.map(|r| r.id), Some(run.id));
    let raw = engine.holder("task", KeyTarget::Raw { parts: &["item-0"], scope: Scope::Global, run: None });
    assert_eq!(raw.unwrap().map(|r| r.id), Some(run.id));
    assert!(engine.holder("other", KeyTarget::Key(&key)).unwrap().is_none());
    assert!(matches!(
        engine.holder("task", KeyTarget::Raw { parts: &["item-0"], scope: Scope::Run, run: None }),
        Err(Error::ScopeNeedsRun { .. })
    ));
    // Executing keeps the key; a failure releases it.
    engine.set_status(run.id, RunStatus::Executing).unwrap();
    assert_eq!(engine.holder("task", KeyTarget::Key(&key)).unwrap().map(|r| r.status), Some(RunStatus::Executing));
    engine.set_status(run.id, RunStatus::Failed).unwrap();
    assert!(engine.holder("task", KeyTarget::Key(&key)).unwrap().is_none());
    // Reset forgets the key; expiry (30 days by default) frees it too.
    assert!(engine.holder("task", KeyTarget::Key(&item_key(1))).unwrap().is_some());
    now.fetch_add(31 * 24 * 3_600_000, Ordering::Relaxed);
    assert!(engine.holder("task", KeyTarget::Key(&item_key(1))).unwrap().is_none(), "expired");
}

#[test]
fn holder_on_a_shared_store_reads_the_claim_and_its_record() {
    let (engine, store) = on_fake(100);
    let key = item_key(0);
    assert!(engine.holder("task", KeyTarget::Key(&key)).unwrap().is_none());
    let run = engine.trigger(&batch(0..1)).unwrap()[0];
    let held = engine.holder("task", KeyTarget::Key(&key)).unwrap().unwrap();
    assert_eq!((held.id, held.task.as_str()), (run.id, "task"));
    // Another engine on the same store sees the same holder, read-only.
    let other = on_store(&store);
    assert_eq!(other.holder("task", KeyTarget::Digest(key.digest())).unwrap().map(|r| r.id), Some(run.id));
    assert_eq!(other.run_count(), 0);
    assert!(engine.reset_key("task", KeyTarget::Key(&key)).unwrap());
    assert!(engine.holder("task", KeyTarget::Key(&key)).unwrap().is_none());
    assert!(engine.run(run.id).unwrap().is_some(), "the record stays");
}
