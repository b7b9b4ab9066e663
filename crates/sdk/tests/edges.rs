//! The edges of key material, beside what the reference SDK does with them
//! (`data/reference_edges.json`, made by `data/reference_edges.cjs` with
//! `@trigger.dev/core` and `@trigger.dev/sdk` 4.8.3): an empty key, and key material
//! past the wire's 2,048-character limit.
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
fn key_material_past_2048_characters_is_refused_where_the_reference_sends_it_whole() {
    let reference = reference();
    // The reference hashes 100 KiB of material and keeps it whole as the options' key,
    // and its schema accepts that; only `idempotencyKey` is capped at 2,048.
    assert_eq!(reference["create_long"]["material_chars"], 102_400);
    assert_eq!(reference["wire_long_options_key"]["accepted"], true);
    assert_eq!(reference["wire_long_idempotency_key"]["accepted"], false);
    assert_eq!(reference["wire_2048_idempotency_key"]["accepted"], true);

    let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
    let long = "k".repeat(102_400);
    let err = sdk.create_key(long.as_str(), Scope::Global).unwrap_err().to_string();
    assert!(err.contains("102400 characters joined; at most 2048 are accepted"), "{err}");
    assert!(err.len() < 400, "the material is cut in the message: {} bytes", err.len());
    // Every way into a batch refuses it, naming the item: a raw string, a list, a
    // typed key derived without the check, a key that could not be created.
    let derived = IdempotencyKey::derive(long.as_str(), Scope::Global, None);
    let inputs: [ItemOptions; 4] = [
        ItemOptions::new().key(long.as_str()),
        ItemOptions::new().key(vec![long.as_str()]),
        ItemOptions::new().key(derived),
        ItemOptions::new().key(sdk.create_key(long.as_str(), Scope::Global)),
    ];
    for options in inputs {
        let mut batch = sdk.batch("child-task", 2);
        batch.item(None, ItemOptions::new().key("fine"));
        batch.item(None, options);
        let err = batch.build().unwrap_err().to_string();
        assert!(err.starts_with("item 1: invalid key material") && err.contains("102400 characters"), "{err}");
    }
    // A batch key whose derived keys would be too long: refused too.
    let mut batch = sdk.batch("child-task", 1);
    batch.batch_key("b".repeat(2_048)).item(None, ItemOptions::new());
    assert!(batch.build().unwrap_err().to_string().starts_with("item 0: invalid key material"));
    // 2,048 characters is the longest accepted, emoji or not.
    assert!(sdk.create_key("k".repeat(2_048), Scope::Global).is_ok());
    assert!(sdk.create_key("😀".repeat(2_048), Scope::Global).is_ok());
    // On the wire, the engine reads what the server reads: the same caps.
    let item = |key: &str| format!(r#"{{"index":0,"task":"t","options":{{"idempotencyKey":"{key}"}}}}"#);
    assert!(WireItem::from_json(&item(&"k".repeat(2_048))).is_ok());
    assert!(matches!(WireItem::from_json(&item(&"k".repeat(2_049))), Err(Error::KeyTooLong { len: 2_049, .. })));
}
