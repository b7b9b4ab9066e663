//! The reference API's own schema verdicts (`tests/data/wire_examples.json`): what it
//! accepts parses and round-trips; what it rejects is refused naming the same field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use idempotency_sdk::{Error, WireItem};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Example {
    name: String,
    valid: bool,
    errors: Vec<String>,
    input: Value,
}

/// Drops the fields the reference schema strips (unknown keys inside
/// `idempotencyKeyOptions`), so a valid input can be compared with our output.
fn stripped(mut input: Value) -> Value {
    if let Some(options) = input.pointer_mut("/options/idempotencyKeyOptions").and_then(Value::as_object_mut) {
        options.retain(|k, _| k == "key" || k == "scope");
    }
    input
}

#[test]
fn every_schema_verdict_is_ours_too() {
    let examples: Vec<Example> = serde_json::from_str(include_str!("data/wire_examples.json")).unwrap();
    assert_eq!(examples.len(), 17);
    for ex in examples {
        let line = serde_json::to_string(&ex.input).unwrap();
        let parsed = WireItem::from_json(&line);
        if ex.valid {
            let item = parsed.unwrap_or_else(|e| panic!("{}: {e}", ex.name));
            assert_eq!(serde_json::to_value(&item).unwrap(), stripped(ex.input), "{}", ex.name);
            continue;
        }
        let err = parsed.err().unwrap_or_else(|| panic!("{} should be refused", ex.name));
        // The schema names the field as `options.idempotencyKey`; we name the same one.
        let schema_path = ex.errors[0].split(':').next().unwrap();
        let ours = match &err {
            Error::Wire { path, .. } => path.clone(),
            Error::KeyTooLong { .. } => "options.idempotencyKey".to_owned(),
            other => panic!("{}: unexpected error {other}", ex.name),
        };
        assert_eq!(ours, schema_path, "{}: {err}", ex.name);
    }
}

#[test]
fn a_2049_character_key_names_the_item_index() {
    let item = serde_json::json!({"index": 7, "task": "t", "options": {"idempotencyKey": "k".repeat(2049)}});
    let err = WireItem::from_json(&item.to_string()).unwrap_err();
    assert_eq!(err.to_string(), "item 7: idempotency key is 2049 characters long; the server accepts at most 2048");
}
