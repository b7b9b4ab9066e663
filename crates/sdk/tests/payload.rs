//! Same key, different payload, seen from outside: the warning's fields, the counter,
//! the policy from the environment, and which payloads count as the same.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;

use idempotency_sdk::catalog::UnboundedCatalog;
use idempotency_sdk::{Batch, Engine, Error, ItemOptions, PayloadPolicy, Scope, Sdk, WireItem};
use serde_json::{Value, json};

fn batch(sdk: &Sdk, payloads: &[Value]) -> Batch {
    let mut batch = sdk.batch("charge", payloads.len());
    for (i, payload) in payloads.iter().enumerate() {
        let key = sdk.create_key(["order", &i.to_string()], Scope::Global).unwrap();
        batch.item(payload.clone(), ItemOptions::new().key(key));
    }
    batch.build().unwrap()
}

#[test]
fn one_warning_a_trigger_names_the_task_the_count_the_first_key_and_its_run() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let engine = Engine::new();
    let first = engine.trigger(&batch(&sdk, &[json!(1), json!(2), json!(3)])).unwrap();
    let (again, lines) = testkit::warnings(|| engine.trigger(&batch(&sdk, &[json!(1), json!(20), json!(30)])).unwrap());
    assert!(again.iter().all(|h| h.cached));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    for field in [
        "idempotency key reused with another payload",
        "task=\"charge\"",
        "mismatched=2",
        r#"key="order-1" (global)"#,
        &format!("run={}", first[1].id),
        "IDEMPOTENCY_PAYLOAD_POLICY=fail",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert_eq!(engine.payload_mismatches(), 2);
    // Under `Ignore`: counted, not warned.
    let quiet = Engine::new().with_payload_policy(PayloadPolicy::Ignore);
    quiet.trigger(&batch(&sdk, &[json!(1)])).unwrap();
    let (_, lines) = testkit::warnings(|| quiet.trigger(&batch(&sdk, &[json!(2)])).unwrap());
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(quiet.payload_mismatches(), 1);
}

#[test]
fn payloads_are_compared_as_the_text_that_travels() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let engine = Engine::new().with_payload_policy(PayloadPolicy::Fail);
    // `json!` objects serialise with sorted keys: equal values are the same payload.
    engine.trigger(&batch(&sdk, &[json!({"a": 1, "b": 2})])).unwrap();
    engine.trigger(&batch(&sdk, &[json!({"b": 2, "a": 1})])).unwrap();
    assert_eq!(engine.payload_mismatches(), 0);
    // Wire items made elsewhere keep their text: another key order is another payload,
    // as the server would store another text.
    let key = sdk.create_key(["order", "0"], Scope::Global).unwrap().to_string();
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

/// Key material a caller chose, hostile to a log: a line break that forges a second
/// log line, a carriage return, NUL, ANSI colour, and 2,048 emoji.
const HOSTILE: [&str; 4] = [
    "order-1\n2026-01-01T00:00:00.000000Z  WARN forged: all clear",
    "order-2\r\0",
    "\u{1b}[31morder-3\u{1b}[0m",
    "", // replaced by 2,048 emoji below
];

fn hostile_keys() -> Vec<String> {
    let mut keys: Vec<String> = HOSTILE.iter().map(|k| (*k).to_owned()).collect();
    keys[3] = "😀".repeat(2_048);
    keys
}

fn keyed(sdk: &Sdk, key: &str, amount: u32) -> Batch {
    let mut batch = sdk.batch("charge", 1);
    batch.item(json!({ "amount": amount }), ItemOptions::new().key(sdk.create_key(key, Scope::Global)));
    batch.build().unwrap()
}

#[test]
fn hostile_key_material_is_escaped_and_cut_in_the_warning_and_the_error() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    for key in hostile_keys() {
        let engine = Engine::new();
        engine.trigger(&keyed(&sdk, &key, 1)).unwrap();
        let (_, text) = testkit::captured(|| engine.trigger(&keyed(&sdk, &key, 2)).unwrap());
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        assert!(!text.trim_end().chars().any(char::is_control), "{text:?}");
        assert!(text.contains(&format!("key={} (global)", idempotency_sdk::catalog::shown(&key))), "{text}");
        assert!(text.len() < 1_024, "{} bytes", text.len());

        let failing = Engine::new().with_payload_policy(PayloadPolicy::Fail);
        failing.trigger(&keyed(&sdk, &key, 1)).unwrap();
        let err = failing.trigger(&keyed(&sdk, &key, 2)).unwrap_err().to_string();
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(err.len() < 512, "{} bytes: {err}", err.len());
    }
    // The emoji key: cut at 64 characters, its length shown.
    let engine = Engine::new().with_payload_policy(PayloadPolicy::Fail);
    let emoji = "😀".repeat(2_048);
    engine.trigger(&keyed(&sdk, &emoji, 1)).unwrap();
    let err = engine.trigger(&keyed(&sdk, &emoji, 2)).unwrap_err().to_string();
    assert!(err.contains("… (2048 characters) (global)") && err.matches('😀').count() == 64, "{err}");
}

#[test]
fn a_raw_wire_key_with_control_characters_is_escaped_too() {
    let engine = Engine::new().with_payload_policy(PayloadPolicy::Fail);
    let wire = |payload: &str| {
        let line = format!(
            r#"{{"index":0,"task":"t\n\u001b[2J","payload":{payload},"options":{{"idempotencyKey":"a\nb\r\u0000\u001b[31m"}}}}"#
        );
        WireItem::from_json(&line).unwrap()
    };
    engine.trigger_items(&[wire("1")]).unwrap();
    let err = engine.trigger_items(&[wire("2")]).unwrap_err().to_string();
    assert!(!err.chars().any(char::is_control), "{err:?}");
    assert!(err.starts_with(r#"task "t\n\u{1b}[2J": idempotency key "a\nb\r\0\u{1b}[31m" is held by run"#), "{err}");
}

#[test]
fn the_engine_from_the_environment_reads_the_payload_policy_the_warning_names() {
    // The warning's remedy names IDEMPOTENCY_PAYLOAD_POLICY=fail for programs that read
    // it: `Engine::from_env` does.
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let env = |name: &str| (name == "IDEMPOTENCY_PAYLOAD_POLICY").then(|| "fail".to_owned());
    let engine = Engine::from_env_with(env).unwrap();
    engine.trigger(&batch(&sdk, &[json!(1)])).unwrap();
    assert!(matches!(engine.trigger(&batch(&sdk, &[json!(2)])), Err(Error::PayloadMismatch { .. })));
    // A policy set in code wins.
    let engine = Engine::from_env_with(env).unwrap().with_payload_policy(PayloadPolicy::Warn);
    engine.trigger(&batch(&sdk, &[json!(1)])).unwrap();
    assert!(engine.trigger(&batch(&sdk, &[json!(2)])).is_ok());
    let bad = |name: &str| (name == "IDEMPOTENCY_PAYLOAD_POLICY").then(|| "strict".to_owned());
    assert!(matches!(Engine::from_env_with(bad), Err(Error::InvalidPayloadPolicy { .. })));
}
