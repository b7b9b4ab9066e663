//! Every digest the reference SDK produced (`tests/data/hash_vectors.jsonl`, copied
//! from the project's shared vectors) is reproduced, with its recorded user key; and
//! every batch item key the reference derived from a batch key
//! (`tests/data/batch_key_vectors.jsonl`, made by `generate-batch-key-vectors.cjs`
//! beside it with the published `@trigger.dev/core` 4.8.3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use idempotency_catalog::UnboundedCatalog;
use idempotency_sdk::{IdempotencyKey, ItemOptions, KeyInput, RunContext, Scope, Sdk};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(untagged)]
enum Material {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Vector {
    key: Material,
    scope: Scope,
    run_id: Option<String>,
    attempt: Option<u32>,
    hash: String,
    user_key: Option<String>,
    #[serde(rename = "fn")]
    function: String,
}

fn vectors() -> Vec<Vector> {
    include_str!("data/hash_vectors.jsonl").lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn every_reference_vector_reproduces() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 36);
    for v in vectors {
        let run = v.run_id.as_ref().map(|id| RunContext::new(id.clone(), v.attempt.unwrap_or(1)));
        let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
        let sdk = match run {
            Some(run) => sdk.with_run(run),
            None => sdk,
        };
        let key = match (v.function.as_str(), &v.key) {
            // Raw input passed where a key is expected: the reference's makeIdempotencyKey.
            ("makeIdempotencyKey", Material::One(s)) => sdk.resolve(&KeyInput::from(s.as_str())).unwrap().unwrap(),
            ("makeIdempotencyKey", Material::Many(parts)) => {
                sdk.resolve(&KeyInput::from(parts.clone())).unwrap().unwrap()
            }
            (_, Material::One(s)) => sdk.create_key(s.as_str(), v.scope).unwrap(),
            (_, Material::Many(parts)) => sdk.create_key(parts, v.scope).unwrap(),
        };
        let context = format!("{} {:?} {:?}", v.function, v.scope, v.run_id);
        assert_eq!(key.digest().to_string(), v.hash, "{context}");
        assert_eq!(key.options().map(|o| o.key().to_owned()), v.user_key, "{context}");
        assert_eq!(key.options().map(|o| o.scope()), Some(v.scope), "{context}");
        // The pure derivation agrees with the registering one.
        if v.function != "makeIdempotencyKey" {
            let parts: Vec<String> = match &v.key {
                Material::One(s) => vec![s.clone()],
                Material::Many(p) => p.clone(),
            };
            assert_eq!(IdempotencyKey::derive(&parts, v.scope, sdk.run()), key, "{context}");
        }
    }
}

#[test]
fn the_vectors_cover_every_scope_inside_and_outside_a_run() {
    let vectors = vectors();
    for scope in Scope::ALL {
        assert!(vectors.iter().any(|v| v.scope == scope && v.run_id.is_some()));
        assert!(vectors.iter().any(|v| v.scope == scope && v.run_id.is_none()));
    }
}

#[derive(Deserialize)]
struct Created {
    key: String,
    scope: Scope,
    hash: String,
}

#[derive(Deserialize)]
struct BatchVector {
    batch_key: Option<Material>,
    batch_key_kind: String,
    created: Option<Created>,
    item_key: Option<String>,
    index: usize,
    run_id: Option<String>,
    attempt: Option<u32>,
    hash: Option<String>,
    user_key: Option<String>,
    scope: Option<Scope>,
}

#[test]
fn every_reference_batch_key_derivation_reproduces() {
    let vectors: Vec<BatchVector> =
        include_str!("data/batch_key_vectors.jsonl").lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(vectors.len(), 120);
    for kind in ["string", "list", "created", "none"] {
        assert!(vectors.iter().any(|v| v.batch_key_kind == kind && v.run_id.is_some()), "{kind}");
        assert!(vectors.iter().any(|v| v.batch_key_kind == kind && v.run_id.is_none()), "{kind}");
    }
    for v in vectors {
        let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
        let sdk = match &v.run_id {
            Some(id) => sdk.with_run(RunContext::new(id.clone(), v.attempt.unwrap())),
            None => sdk,
        };
        let batch_key: Option<KeyInput> = match (v.batch_key_kind.as_str(), &v.batch_key, &v.created) {
            ("created", _, Some(created)) => {
                let key = sdk.create_key(created.key.as_str(), created.scope).unwrap();
                assert_eq!(key.to_string(), created.hash);
                Some(key.into())
            }
            (_, Some(Material::One(s)), _) => Some(s.as_str().into()),
            (_, Some(Material::Many(parts)), _) => Some(parts.clone().into()),
            _ => None,
        };
        let mut batch = sdk.batch("child-task", v.index + 1);
        if let Some(batch_key) = batch_key {
            batch.batch_key(batch_key);
        }
        for _ in 0..=v.index {
            let options = match &v.item_key {
                Some(own) => ItemOptions::new().key(own.as_str()),
                None => ItemOptions::new(),
            };
            batch.item(None, options);
        }
        let batch = batch.build().unwrap();
        let key = batch.keys().nth(v.index).unwrap();
        let context = format!(
            "{} {:?} item {:?} index {} run {:?}",
            v.batch_key_kind,
            v.batch_key.as_ref().map(|_| ()),
            v.item_key,
            v.index,
            v.run_id
        );
        assert_eq!(key.map(|k| k.to_string()), v.hash, "{context}");
        assert_eq!(key.and_then(|k| k.options()).map(|o| o.key().to_owned()), v.user_key, "{context}");
        assert_eq!(key.and_then(|k| k.options()).map(|o| o.scope()), v.scope, "{context}");
    }
}
