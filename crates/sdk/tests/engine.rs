//! The local engine: deduplication within the TTL, run records, and reset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use idempotency_catalog::UnboundedCatalog;
use idempotency_sdk::{Error, ItemOptions, LocalEngine, ResetTarget, RunContext, Scope, Sdk, Ttl};

fn clocked() -> (LocalEngine, Arc<AtomicU64>) {
    let now = Arc::new(AtomicU64::new(1_000_000));
    let read = Arc::clone(&now);
    (LocalEngine::with_clock(move || Duration::from_secs(read.load(Ordering::Relaxed))), now)
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
    let batch = one_item(&sdk, sdk.create_key("k", Scope::Global), Some("60s"));
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
    let batch = one_item(&sdk, sdk.create_key("k", Scope::Global), None);
    engine.trigger(&batch).unwrap();
    now.fetch_add(30 * 86_400, Ordering::Relaxed);
    assert!(engine.trigger(&batch).unwrap()[0].cached);
    now.fetch_add(1, Ordering::Relaxed);
    assert!(!engine.trigger(&batch).unwrap()[0].cached);
}

#[test]
fn the_same_key_on_another_task_is_another_run() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let engine = LocalEngine::new();
    let key = sdk.create_key("k", Scope::Global);
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
    let engine = LocalEngine::new();
    let known = one_item(&sdk, sdk.create_key(["order", "7"], Scope::Attempt), None);
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
    let engine = LocalEngine::new();
    let key = sdk.create_key(["a", "b"], Scope::Attempt);
    let batch = one_item(&sdk, &key, None);

    let targets = [
        ResetTarget::Key(&key),
        ResetTarget::Raw { parts: &["a", "b"], scope: Scope::Attempt, run: Some(&run) },
        ResetTarget::Digest(key.digest()),
    ];
    for target in targets {
        engine.trigger(&batch).unwrap();
        assert!(engine.trigger(&batch).unwrap()[0].cached);
        assert!(engine.reset_key("task", target).unwrap());
        assert!(!engine.trigger(&batch).unwrap()[0].cached);
        assert!(engine.reset_key("task", ResetTarget::Key(&key)).unwrap());
    }
    // Nothing to reset: the wrong attempt derives another digest.
    let other = RunContext::new("run_abc123", 3);
    let target = ResetTarget::Raw { parts: &["a", "b"], scope: Scope::Attempt, run: Some(&other) };
    assert!(!engine.reset_key("task", target).unwrap());
}

#[test]
fn reset_of_a_run_scoped_raw_key_without_its_run_is_a_clear_error() {
    let engine = LocalEngine::new();
    for scope in [Scope::Run, Scope::Attempt] {
        let err = engine.reset_key("task", ResetTarget::Raw { parts: &["k"], scope, run: None }).unwrap_err();
        assert!(matches!(err, Error::ScopeNeedsRun { scope: s } if s == scope));
    }
    assert!(!engine.reset_key("task", ResetTarget::Raw { parts: &["k"], scope: Scope::Global, run: None }).unwrap());
}

#[test]
fn a_key_over_2048_characters_is_refused_naming_the_item() {
    let engine = LocalEngine::new();
    let line =
        serde_json::json!({"index": 3, "task": "t", "options": {"idempotencyKey": "k".repeat(2_049)}}).to_string();
    let item: idempotency_sdk::WireItem = serde_json::from_str(&line).unwrap();
    let err = engine.trigger_items(&[item]).unwrap_err();
    assert!(matches!(err, Error::KeyTooLong { index: 3, len: 2_049 }));
    assert!(engine.runs().is_empty(), "nothing is triggered");
}
