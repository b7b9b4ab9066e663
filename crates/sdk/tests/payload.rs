//! Same key, different payload, seen from outside: the warning's fields, the counter,
//! the policy from the environment, and which payloads count as the same.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;

use idempotency_sdk::catalog::UnboundedCatalog;
use idempotency_sdk::{Batch, Error, ItemOptions, LocalEngine, PayloadPolicy, Scope, Sdk, WireItem};
use serde_json::{Value, json};

fn batch(sdk: &Sdk, payloads: &[Value]) -> Batch {
    let mut batch = sdk.batch("charge", payloads.len());
    for (i, payload) in payloads.iter().enumerate() {
        let key = sdk.create_key(["order", &i.to_string()], Scope::Global);
        batch.item(payload.clone(), ItemOptions::new().key(key));
    }
    batch.build().unwrap()
}

#[test]
fn one_warning_a_trigger_names_the_task_the_count_the_first_key_and_its_run() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let engine = LocalEngine::new();
    let first = engine.trigger(&batch(&sdk, &[json!(1), json!(2), json!(3)])).unwrap();
    let (again, lines) = testkit::warnings(|| engine.trigger(&batch(&sdk, &[json!(1), json!(20), json!(30)])).unwrap());
    assert!(again.iter().all(|h| h.cached));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    for field in [
        "idempotency key reused with another payload",
        "task=\"charge\"",
        "mismatched=2",
        "key=order-1 (global)",
        &format!("run={}", first[1].id),
        "IDEMPOTENCY_PAYLOAD_POLICY=fail",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert_eq!(engine.payload_mismatches(), 2);
    // Under `Ignore`: counted, not warned.
    let quiet = LocalEngine::new().with_payload_policy(PayloadPolicy::Ignore);
    quiet.trigger(&batch(&sdk, &[json!(1)])).unwrap();
    let (_, lines) = testkit::warnings(|| quiet.trigger(&batch(&sdk, &[json!(2)])).unwrap());
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(quiet.payload_mismatches(), 1);
}

#[test]
fn payloads_are_compared_as_the_text_that_travels() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let engine = LocalEngine::new().with_payload_policy(PayloadPolicy::Fail);
    // `json!` objects serialise with sorted keys: equal values are the same payload.
    engine.trigger(&batch(&sdk, &[json!({"a": 1, "b": 2})])).unwrap();
    engine.trigger(&batch(&sdk, &[json!({"b": 2, "a": 1})])).unwrap();
    assert_eq!(engine.payload_mismatches(), 0);
    // Wire items made elsewhere keep their text: another key order is another payload,
    // as the server would store another text.
    let key = sdk.create_key(["order", "0"], Scope::Global).to_string();
    let wire = |payload: &str| {
        let line =
            format!(r#"{{"index":0,"task":"charge","payload":{payload},"options":{{"idempotencyKey":"{key}"}}}}"#);
        WireItem::from_json(&line).unwrap()
    };
    assert!(engine.trigger_items(&[wire(r#"{"a":1,"b":2}"#)]).unwrap()[0].cached);
    let err = engine.trigger_items(&[wire(r#"{"b":2,"a":1}"#)]).unwrap_err();
    assert!(matches!(err, Error::PayloadMismatch { items: 1, .. }), "{err}");
}

#[test]
fn the_policy_comes_from_the_environment_or_is_refused_by_name() {
    let read =
        |value: &str| PayloadPolicy::from_env_with(|name| (name == "IDEMPOTENCY_PAYLOAD_POLICY").then(|| value.into()));
    assert_eq!(read("fail").unwrap(), PayloadPolicy::Fail);
    assert_eq!(PayloadPolicy::from_env_with(|_| None).unwrap(), PayloadPolicy::Warn);
    let err = read("strict").unwrap_err().to_string();
    assert_eq!(err, r#"invalid IDEMPOTENCY_PAYLOAD_POLICY "strict": expected one of `ignore`, `warn`, `fail`"#);
}
