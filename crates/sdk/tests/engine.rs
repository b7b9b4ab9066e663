//! The local engine: deduplication within the TTL, run records, and reset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use idempotency_catalog::UnboundedCatalog;
use std::num::NonZeroUsize;

use idempotency_sdk::{Engine, Error, ItemOptions, KeyTarget, RunContext, RunId, RunStatus, Scope, Sdk, Ttl, WireItem};

fn clocked() -> (Engine, Arc<AtomicU64>) {
    let now = Arc::new(AtomicU64::new(1_000_000));
    let read = Arc::clone(&now);
    (Engine::with_clock(move || Duration::from_secs(read.load(Ordering::Relaxed))), now)
}

fn one_item(sdk: &Sdk, key: impl Into<idempotency_sdk::KeyInput>, ttl: Option<&str>) -> idempotency_sdk::Batch {
    let mut batch = sdk.batch("task", 1);
    let options = ItemOptions::new().key(key);
    let options = match ttl {
        Some(ttl) => options.ttl(ttl.parse::<Ttl>().unwrap()),
        None => options,
    };
    batch.item(None, options);
    batch.build().unwrap()
}

#[test]
fn a_repeat_within_the_ttl_is_cached_and_after_it_is_new() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let (engine, now) = clocked();
    let batch = one_item(&sdk, sdk.create_key("k", Scope::Global).unwrap(), Some("60s"));
    let first = engine.trigger(&batch).unwrap().remove(0);
    now.fetch_add(59, Ordering::Relaxed);
    let second = engine.trigger(&batch).unwrap().remove(0);
    assert!(second.cached && second.id == first.id);
    // The server's rule: expired only when `expiresAt < now`, so at exactly the TTL
    // the run is still the answer.
    now.fetch_add(1, Ordering::Relaxed);
    assert!(engine.trigger(&batch).unwrap()[0].cached);
    now.fetch_add(1, Ordering::Relaxed);
    let third = engine.trigger(&batch).unwrap().remove(0);
    assert!(!third.cached && third.id != first.id);
}

#[test]
fn the_default_ttl_is_thirty_days() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let (engine, now) = clocked();
    let batch = one_item(&sdk, sdk.create_key("k", Scope::Global).unwrap(), None);
    engine.trigger(&batch).unwrap();
    now.fetch_add(30 * 86_400, Ordering::Relaxed);
    assert!(engine.trigger(&batch).unwrap()[0].cached);
    now.fetch_add(1, Ordering::Relaxed);
    assert!(!engine.trigger(&batch).unwrap()[0].cached);
}

#[test]
fn the_same_key_on_another_task_is_another_run() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let engine = Engine::new();
    let key = sdk.create_key("k", Scope::Global).unwrap();
    let mut a = sdk.batch("a", 1);
    a.item(None, ItemOptions::new().key(&key));
    let mut b = sdk.batch("b", 1);
    b.item(None, ItemOptions::new().key(&key));
    let (a, b) = (a.build().unwrap(), b.build().unwrap());
    assert!(!engine.trigger(&a).unwrap()[0].cached);
    assert!(!engine.trigger(&b).unwrap()[0].cached);
}

#[test]
fn runs_record_the_original_key_or_else_the_digest() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let engine = Engine::new();
    let known = one_item(&sdk, sdk.create_key(["order", "7"], Scope::Attempt).unwrap(), None);
    let unknown_digest = "f".repeat(64);
    let unknown = one_item(&sdk, unknown_digest.as_str(), None);
    engine.trigger(&known).unwrap();
    engine.trigger(&unknown).unwrap();
    let runs = engine.runs();
    assert_eq!(
        (runs[0].idempotency_key.as_deref(), runs[0].idempotency_key_scope),
        (Some("order-7"), Some(Scope::Attempt))
    );
    assert_eq!(
        (runs[1].idempotency_key.as_deref(), runs[1].idempotency_key_scope),
        (Some(unknown_digest.as_str()), None)
    );
}

#[test]
fn reset_works_by_typed_key_raw_key_and_digest() {
    let run = RunContext::new("run_abc123", 2);
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new())).with_run(run.clone());
    let engine = Engine::new();
    let key = sdk.create_key(["a", "b"], Scope::Attempt).unwrap();
    let batch = one_item(&sdk, &key, None);

    let targets = [
        KeyTarget::Key(&key),
        KeyTarget::Raw { parts: &["a", "b"], scope: Scope::Attempt, run: Some(&run) },
        KeyTarget::Digest(key.digest()),
    ];
    for target in targets {
        engine.trigger(&batch).unwrap();
        assert!(engine.trigger(&batch).unwrap()[0].cached);
        assert!(engine.reset_key("task", target).unwrap());
        assert!(!engine.trigger(&batch).unwrap()[0].cached);
        assert!(engine.reset_key("task", KeyTarget::Key(&key)).unwrap());
    }
    // Nothing to reset: the wrong attempt derives another digest.
    let other = RunContext::new("run_abc123", 3);
    let target = KeyTarget::Raw { parts: &["a", "b"], scope: Scope::Attempt, run: Some(&other) };
    assert!(!engine.reset_key("task", target).unwrap());
}

#[test]
fn reset_of_a_run_scoped_raw_key_without_its_run_is_a_clear_error() {
    let engine = Engine::new();
    for scope in [Scope::Run, Scope::Attempt] {
        let err = engine.reset_key("task", KeyTarget::Raw { parts: &["k"], scope, run: None }).unwrap_err();
        assert!(matches!(err, Error::ScopeNeedsRun { scope: s } if s == scope));
    }
    assert!(!engine.reset_key("task", KeyTarget::Raw { parts: &["k"], scope: Scope::Global, run: None }).unwrap());
}

#[test]
fn a_key_over_2048_characters_is_refused_naming_the_item() {
    let engine = Engine::new();
    let line =
        serde_json::json!({"index": 3, "task": "t", "options": {"idempotencyKey": "k".repeat(2_049)}}).to_string();
    let item: idempotency_sdk::WireItem = serde_json::from_str(&line).unwrap();
    let err = engine.trigger_items(&[item]).unwrap_err();
    assert!(matches!(err, Error::KeyTooLong { index: 3, len: 2_049 }));
    assert!(engine.runs().is_empty(), "nothing is triggered");
}

fn wire(task: &str, key: &str, ttl: Option<&str>) -> WireItem {
    let mut options = serde_json::json!({ "idempotencyKey": key });
    if let Some(ttl) = ttl {
        options["idempotencyKeyTTL"] = ttl.into();
    }
    WireItem::from_json(&serde_json::json!({ "index": 0, "task": task, "options": options }).to_string()).unwrap()
}

#[test]
fn on_the_wire_0s_expires_at_once_and_forms_outside_the_grammar_get_thirty_days() {
    let (engine, now) = clocked();
    // The server's grammar, ^(\d+)([smhd])$: "0s" is valid and keeps nothing.
    let zero = wire("task", "zero", Some("0s"));
    assert!(!engine.trigger_items(std::slice::from_ref(&zero)).unwrap()[0].cached);
    assert!(!engine.trigger_items(std::slice::from_ref(&zero)).unwrap()[0].cached);
    for (key, ttl) in [("a", "1h30m"), ("b", "10"), ("c", " 5s")] {
        let item = wire("task", key, Some(ttl));
        assert!(!engine.trigger_items(std::slice::from_ref(&item)).unwrap()[0].cached);
    }
    now.fetch_add(30 * 86_400, Ordering::Relaxed);
    for key in ["a", "b", "c"] {
        let item = wire("task", key, Some("1h30m"));
        assert!(engine.trigger_items(std::slice::from_ref(&item)).unwrap()[0].cached, "{key} within 30 days");
    }
    now.fetch_add(1, Ordering::Relaxed);
    let item = wire("task", "a", Some("1h30m"));
    assert!(!engine.trigger_items(&[item]).unwrap()[0].cached);
}

#[test]
fn reset_of_a_64_character_string_tries_it_as_it_is_then_derived_in_its_scope() {
    let run = RunContext::new("run_abc123", 1);
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new())).with_run(run.clone());
    let engine = Engine::new();

    // A digest string, with the scope it was created in: found as it is.
    let created = sdk.create_key("k", Scope::Global).unwrap();
    let hex = created.to_string();
    engine.trigger(&one_item(&sdk, &created, None)).unwrap();
    let target = KeyTarget::Raw { parts: &[hex.as_str()], scope: Scope::Run, run: Some(&run) };
    assert!(engine.reset_key("task", target).unwrap());
    assert!(!engine.trigger(&one_item(&sdk, &created, None)).unwrap()[0].cached);

    // 64 characters of key material: not found as it is, then found derived.
    let material = "k".repeat(64);
    let derived = sdk.create_key(material.as_str(), Scope::Global).unwrap();
    engine.trigger(&one_item(&sdk, &derived, None)).unwrap();
    let target = KeyTarget::Raw { parts: &[material.as_str()], scope: Scope::Global, run: None };
    assert!(engine.reset_key("task", target).unwrap());
    assert!(!engine.trigger(&one_item(&sdk, &derived, None)).unwrap()[0].cached);

    // Without the run a run-scoped key needs, a 64-character string is tried as it is,
    // rather than refused.
    let target = KeyTarget::Raw { parts: &[material.as_str()], scope: Scope::Run, run: None };
    assert!(!engine.reset_key("task", target).unwrap());
}

#[test]
fn a_run_that_fails_or_expires_releases_its_key_and_one_that_succeeds_or_is_cancelled_does_not() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let engine = Engine::new();
    let cases = [
        (RunStatus::Pending, false),
        (RunStatus::Executing, false),
        (RunStatus::Succeeded, false),
        (RunStatus::Cancelled, false),
        (RunStatus::Failed, true),
        (RunStatus::SystemFailure, true),
        (RunStatus::Crashed, true),
        (RunStatus::Interrupted, true),
        (RunStatus::TimedOut, true),
        (RunStatus::Expired, true),
    ];
    for (status, releases) in cases {
        let batch = one_item(&sdk, sdk.create_key(status.as_str(), Scope::Global).unwrap(), None);
        let first = engine.trigger(&batch).unwrap()[0];
        engine.set_status(first.id, status).unwrap();
        assert_eq!(engine.run(first.id).unwrap().unwrap().status, status);
        let again = engine.trigger(&batch).unwrap()[0];
        assert_eq!(again.cached, !releases, "{status}");
        assert_eq!(again.id == first.id, !releases, "{status}");
    }
    let err = engine.set_status(RunId::new(9_999), RunStatus::Failed).unwrap_err();
    assert!(matches!(err, Error::UnknownRun { id } if id == RunId::new(9_999)));
    assert_eq!(err.to_string(), "unknown run run_00009999: the engine never created it, or no longer keeps its record");
}

#[test]
fn expired_keys_are_pruned_as_later_triggers_come() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let (engine, now) = clocked();
    let mut batch = sdk.batch("task", 3_000);
    for i in 0..3_000 {
        let key = idempotency_sdk::IdempotencyKey::derive(["k", &i.to_string()], Scope::Global, None);
        batch.item(None, ItemOptions::new().key(key).ttl("1s".parse().unwrap()));
    }
    engine.trigger_owned(batch.build().unwrap()).unwrap();
    assert_eq!(engine.key_count(), 3_000);
    now.fetch_add(2, Ordering::Relaxed);
    engine.trigger(&one_item(&sdk, sdk.create_key("later", Scope::Global).unwrap(), None)).unwrap();
    assert_eq!(engine.key_count(), 1, "the 3,000 expired keys were dropped");
}

#[test]
fn a_capped_engine_keeps_the_newest_records_and_still_deduplicates_the_older_keys() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let engine = Engine::new().with_max_runs(NonZeroUsize::new(3).unwrap());
    let batches: Vec<_> =
        (0..5).map(|i| one_item(&sdk, sdk.create_key(i.to_string(), Scope::Global).unwrap(), None)).collect();
    let ids: Vec<RunId> = batches.iter().map(|b| engine.trigger(b).unwrap()[0].id).collect();
    assert_eq!(engine.run_count(), 5);
    let kept: Vec<RunId> = engine.runs().iter().map(|r| r.id).collect();
    assert_eq!(kept, ids[2..]);
    assert!(engine.run(ids[0]).unwrap().is_none());
    let again = engine.trigger(&batches[0]).unwrap()[0];
    assert!(again.cached && again.id == ids[0]);
}

#[test]
fn a_reset_held_by_a_run_frees_only_that_runs_key() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let engine = Engine::new();
    let key = sdk.create_key("k", Scope::Global).unwrap();
    let run = engine.trigger(&one_item(&sdk, &key, None)).unwrap()[0].id;
    let other = engine.trigger(&one_item(&sdk, sdk.create_key("other", Scope::Global), None)).unwrap()[0].id;
    assert!(!engine.reset_key_held_by("task", KeyTarget::Key(&key), other).unwrap());
    // A shared store's id with the same number is not this engine's run.
    let fleet: RunId = format!("run_{:032x}{:016x}", 7, run.to_string()[4..].parse::<u64>().unwrap()).parse().unwrap();
    assert!(!engine.reset_key_held_by("task", KeyTarget::Key(&key), fleet).unwrap());
    assert!(!engine.reset_key_held_by("another-task", KeyTarget::Key(&key), run).unwrap());
    assert!(engine.trigger(&one_item(&sdk, &key, None)).unwrap()[0].cached);
    assert!(engine.reset_key_held_by("task", KeyTarget::Key(&key), run).unwrap());
    assert!(!engine.trigger(&one_item(&sdk, &key, None)).unwrap()[0].cached);
}
