//! The edges of key material, beside what the reference SDK does with them
//! (`data/reference_edges.json`, made by `data/reference_edges.cjs` with
//! `@trigger.dev/core` and `@trigger.dev/sdk` 4.8.3): an empty key, and key material
//! past the wire's 2,048-character limit (taken whole, as the reference takes it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;

use idempotency_catalog::UnboundedCatalog;
use idempotency_sdk::{Error, IdempotencyKey, ItemOptions, KeyInput, Scope, Sdk, WireItem};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(include_str!("data/reference_edges.json")).unwrap()
}

#[test]
fn empty_key_material_means_no_key_and_create_key_refuses_it() {
    let reference = reference();
    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    // The reference's createIdempotencyKey("") is the digest of the empty string; the
    // derivation here computes the same digest...
    let hash = reference["create_empty"]["hash"].as_str().unwrap();
    assert_eq!(IdempotencyKey::derive("", Scope::Global, None).to_string(), hash);
    // ...but an empty string where a key is expected is no key, there as here...
    assert!(reference["flatten_empty"].as_bool().unwrap() && reference["make_empty"].as_bool().unwrap());
    assert_eq!(sdk.resolve(&KeyInput::from("")).unwrap(), None);
    let mut batch = sdk.batch("child-task", 1);
    batch.item(None, ItemOptions::new().key(""));
    assert_eq!(batch.build().unwrap().report().keyed, 0);
    // ...so `create_key` refuses to make a key of it, rather than give `""` two meanings.
    for empty in [sdk.create_key("", Scope::Global), sdk.create_key(Vec::<String>::new(), Scope::Run)] {
        let err = empty.unwrap_err();
        assert!(matches!(err, Error::InvalidKeyMaterial { .. }), "{err}");
        assert!(err.to_string().starts_with(r#"invalid key material "": empty key material makes no key"#), "{err}");
    }
    assert_eq!(sdk.catalog().len(), 0, "nothing registered");
}

#[test]
fn key_material_past_2048_characters_is_taken_whole_as_the_reference_takes_it() {
    let reference = reference();
    // The reference hashes 100 KiB of material and keeps it whole as the options' key,
    // and its schema accepts that; only `idempotencyKey` is capped at 2,048.
    assert_eq!(reference["create_long"]["material_chars"], 102_400);
    assert_eq!(reference["wire_long_options_key"]["accepted"], true);
    assert_eq!(reference["wire_long_idempotency_key"]["accepted"], false);
    assert_eq!(reference["wire_2048_idempotency_key"]["accepted"], true);

    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let long = "k".repeat(102_400);
    let created = sdk.create_key(long.as_str(), Scope::Global).unwrap();
    assert_eq!(created.to_string().len() as u64, reference["create_long"]["hash_length"].as_u64().unwrap());
    assert_eq!(
        created,
        IdempotencyKey::derive(long.as_str(), Scope::Global, None),
        "the reference's rule (hostile.rs)"
    );
    assert_eq!(created.options().map(|o| o.key().len()), Some(102_400), "the material whole");
    // Every way into a batch takes it: a raw string, a list, a typed key, a batch key.
    let inputs: [ItemOptions; 4] = [
        ItemOptions::new().key(long.as_str()),
        ItemOptions::new().key(vec![long.as_str()]),
        ItemOptions::new().key(created.clone()),
        ItemOptions::new().key(sdk.create_key(long.as_str(), Scope::Global)),
    ];
    for options in inputs {
        let mut batch = sdk.batch("child-task", 1);
        batch.item(None, options);
        let batch = batch.build().unwrap();
        let item = batch.wire_items().next().unwrap();
        let options = item.options.as_ref().unwrap();
        assert_eq!(options.idempotency_key.as_deref().map(str::len), Some(64), "the digest travels as the key");
        assert_eq!(options.idempotency_key_options.as_ref().map(|o| o.key().len()), Some(102_400));
    }
    let mut batch = sdk.batch("child-task", 1);
    batch.batch_key("b".repeat(2_048)).item(None, ItemOptions::new());
    assert_eq!(batch.build().unwrap().report().with_options, 1);
    // On the wire, the engine reads what the server reads: the same caps.
    let item = |key: &str| format!(r#"{{"index":0,"task":"t","options":{{"idempotencyKey":"{key}"}}}}"#);
    assert!(WireItem::from_json(&item(&"k".repeat(2_048))).is_ok());
    assert!(matches!(WireItem::from_json(&item(&"k".repeat(2_049))), Err(Error::KeyTooLong { len: 2_049, .. })));
}
