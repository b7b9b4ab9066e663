//! Hostile and malformed input to the SDK: TTLs and wire items from any string or any
//! JSON, and keys of extreme sizes and contents. Nothing panics, errors are specific,
//! valid input round-trips exactly, and every digest follows the reference rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;

use idempotency_catalog::UnboundedCatalog;
use idempotency_sdk::{Error, IdempotencyKey, KeyInput, RunContext, Scope, Sdk, Ttl, WireItem};
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The reference rule, written out plainly: SHA-256 of `(parts ++ suffix).join("-")`.
fn reference_hex(parts: &[String], scope: Scope, run: Option<&RunContext>) -> String {
    let mut all: Vec<String> = parts.to_vec();
    if let Some(run) = run {
        match scope {
            Scope::Global => {}
            Scope::Run => all.push(run.run_id().to_owned()),
            Scope::Attempt => all.extend([run.run_id().to_owned(), run.attempt().to_string()]),
        }
    }
    Sha256::digest(all.join("-").as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("index".to_owned()),
                    Just("task".to_owned()),
                    Just("payload".to_owned()),
                    Just("options".to_owned()),
                    Just("idempotencyKey".to_owned()),
                    Just("idempotencyKeyTTL".to_owned()),
                    Just("idempotencyKeyOptions".to_owned()),
                    Just("key".to_owned()),
                    Just("scope".to_owned()),
                    ".{0,6}"
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid_item() -> impl Strategy<Value = Value> {
    (
        any::<u32>(),
        "[a-z-]{1,12}",
        proptest::option::of(any::<i32>()),
        proptest::option::of((
            "\\PC{0,70}",
            proptest::option::of("[1-9][0-9]{0,3}[smhd]"),
            proptest::option::of(("\\PC{0,20}", 0usize..3)),
        )),
    )
        .prop_map(|(index, task, payload, options)| {
            let mut item = json!({ "index": index, "task": task });
            if let Some(p) = payload {
                item["payload"] = json!({ "i": p });
            }
            if let Some((key, ttl, key_options)) = options {
                let mut o = json!({ "idempotencyKey": key });
                if let Some(ttl) = ttl {
                    o["idempotencyKeyTTL"] = json!(ttl);
                }
                if let Some((k, s)) = key_options {
                    let scope = Scope::ALL[s].as_str();
                    o["idempotencyKeyOptions"] = json!({ "key": k, "scope": scope });
                }
                item["options"] = o;
            }
            item
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ttl_parsing_never_panics_and_round_trips(s in prop_oneof![any::<String>(), "[0-9]{0,25}[smhdw ]?", "\\PC{0,10}"]) {
        match s.parse::<Ttl>() {
            Ok(ttl) => {
                prop_assert_eq!(ttl.to_string().parse::<Ttl>().unwrap(), ttl);
                prop_assert!(ttl.duration().as_secs() >= 1);
            }
            Err(err) => prop_assert!(err.to_string().starts_with("invalid ttl "), "{}", err),
        }
    }

    #[test]
    fn wire_items_from_any_string_never_panic(s in any::<String>()) {
        let _ = WireItem::from_json(&s);
    }

    #[test]
    fn wire_items_from_any_json_never_panic_and_name_a_path(value in json_value()) {
        if let Err(err) = WireItem::from_json(&value.to_string()) {
            let text = err.to_string();
            prop_assert!(text.starts_with("invalid batch item at ") || text.starts_with("item "), "{}", text);
        }
    }

    #[test]
    fn valid_wire_items_round_trip_exactly(value in valid_item()) {
        let line = value.to_string();
        let item = WireItem::from_json(&line).unwrap();
        prop_assert_eq!(serde_json::to_value(&item).unwrap(), value);
    }

    #[test]
    fn every_derived_digest_follows_the_reference_rule(
        parts in proptest::collection::vec(any::<String>(), 0..6),
        scope in 0usize..3,
        run in proptest::option::of(("\\PC{0,16}", any::<u32>())),
    ) {
        let scope = Scope::ALL[scope];
        let run = run.map(|(id, attempt)| RunContext::new(id, attempt));
        let key = IdempotencyKey::derive(&parts, scope, run.as_ref());
        prop_assert_eq!(key.digest().to_string(), reference_hex(&parts, scope, run.as_ref()));
        prop_assert_eq!(key.options().unwrap().key(), parts.join("-"));
    }

    /// Short ASCII parts, so that joined keys and messages land on both sides of the
    /// limits where the implementation changes path: 22 bytes (options stored inline)
    /// and 55 bytes (one SHA-256 block).
    #[test]
    fn keys_around_the_inline_and_one_block_limits_follow_the_reference_rule(
        parts in proptest::collection::vec("[a-z0-9]{0,14}", 0..6),
        scope in 0usize..3,
        run_id in "[a-z_0-9]{0,24}",
    ) {
        let scope = Scope::ALL[scope];
        let run = RunContext::new(run_id, 12);
        let key = IdempotencyKey::derive(&parts, scope, Some(&run));
        prop_assert_eq!(key.digest().to_string(), reference_hex(&parts, scope, Some(&run)));
        prop_assert_eq!(key.options().unwrap().key(), parts.join("-"));
        prop_assert_eq!(key.options().unwrap().scope(), scope);
    }
}

#[test]
fn keys_of_extreme_lengths_and_contents_follow_the_reference_rule() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new())).with_run(RunContext::new("run_\u{0}\n", 7));
    let long = "k".repeat(1_000_000);
    let odd = ["", "a", "\u{0}", "line\nbreak", "\u{1F600}", "\u{FEFF}", "é\u{301}", "\u{FFFD}", &long];
    let lengths = [0usize, 1, 2_048, 2_049];
    let mut singles: Vec<String> = lengths.iter().map(|n| "x".repeat(*n)).collect();
    singles.extend(odd.iter().map(|s| (*s).to_owned()));
    for scope in Scope::ALL {
        for key in &singles {
            let derived = IdempotencyKey::derive(key.as_str(), scope, sdk.run());
            let parts = [key.clone()];
            assert_eq!(derived.digest().to_string(), reference_hex(&parts, scope, sdk.run()), "{} chars", key.len());
            assert_eq!(derived.options().unwrap().key(), key);
            // `create_key` makes the same key, of any length, but refuses empty material,
            // which makes no key (docs/configuration.md, "Key material").
            match sdk.create_key(key.as_str(), scope) {
                Ok(created) => {
                    assert_eq!(created, derived);
                    assert!(!key.is_empty(), "{} chars", key.len());
                }
                Err(Error::InvalidKeyMaterial { value, .. }) => {
                    assert!(key.is_empty(), "{} chars", key.len());
                    assert!(value.len() < 300, "the value is cut: {value}");
                }
                Err(other) => panic!("{other}"),
            }
        }
        for n in [0usize, 1, 100_000] {
            let parts: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let derived = IdempotencyKey::derive(&parts, scope, sdk.run());
            assert_eq!(derived.digest().to_string(), reference_hex(&parts, scope, sdk.run()), "{n} parts");
            // No parts: no key to create; one, or 100,000 (588,889 characters joined): a key.
            assert_eq!(sdk.create_key(&parts, scope).is_ok(), n > 0, "{n} parts");
        }
    }
}

#[test]
fn raw_keys_of_any_length_travel_as_64_character_digests() {
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    for n in [1usize, 63, 65, 2_048, 2_049, 1_000_000] {
        let raw = "r".repeat(n);
        let key = sdk.resolve(&KeyInput::from(raw.as_str())).unwrap().unwrap();
        assert_eq!(key.to_string().len(), 64);
        assert_eq!(key.options().unwrap().key(), raw);
    }
    // Exactly 64 characters: taken as a digest, so it must be one.
    assert!(sdk.resolve(&KeyInput::from("r".repeat(64))).is_err());
    assert!(sdk.resolve(&KeyInput::from("")).unwrap().is_none());
}
