//! Every digest the reference SDK produced (`tests/data/hash_vectors.jsonl`, copied
//! from the project's shared vectors) is reproduced, with its recorded user key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use idempotency_catalog::UnboundedCatalog;
use idempotency_sdk::{IdempotencyKey, KeyInput, RunContext, Scope, Sdk};
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
            (_, Material::One(s)) => sdk.create_key(s.as_str(), v.scope),
            (_, Material::Many(parts)) => sdk.create_key(parts, v.scope),
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
