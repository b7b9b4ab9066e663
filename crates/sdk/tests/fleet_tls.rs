//! Fleet mode over TLS (feature `tls`), against `redis-server`s that speak TLS only,
//! with certificates the test harness makes: `rediss://` with the CA from the builder or
//! `IDEMPOTENCY_REDIS_TLS_CA`, mutual TLS with a client certificate, a wrong CA refused
//! naming the URL and the certificate problem, and the async client (feature `tokio`).
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;

use idempotency_catalog::{CatalogBuilder, CatalogKind, RedisBuilder};
use idempotency_sdk::{Engine, ItemOptions, KeyInput, RunId, Scope, Sdk};
use testkit::TlsServer;

/// Triggers a few keys through `redis` and reads them back; mints a digest in one
/// catalog and resolves it in another.
fn works(redis: &idempotency_catalog::Redis, task: &str) {
    let engine = Engine::on_redis(redis).unwrap();
    let sdk = Sdk::new(CatalogBuilder::new().redis(redis.clone()).build().unwrap());
    let mut batch = sdk.batch(task, 3);
    let key = sdk.create_key("over-tls", Scope::Global).unwrap();
    batch.item(None, ItemOptions::new().key(&key));
    for i in 0..2 {
        batch.item(None, ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global)));
    }
    let handles = engine.trigger_owned(batch.build().unwrap()).unwrap();
    assert!(handles.iter().all(|h| !h.cached));
    let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    assert!(engine.read_runs(&ids).unwrap().iter().all(Option::is_some));
    sdk.catalog().flush().unwrap();
    let elsewhere = Sdk::new(CatalogBuilder::new().kind(CatalogKind::Lru).redis(redis.clone()).build().unwrap());
    let found = elsewhere.resolve(&KeyInput::from(key.to_string().as_str())).unwrap().unwrap();
    assert_eq!(found.options().map(|o| o.key().to_owned()).as_deref(), Some("over-tls"));
    assert_eq!(redis.faults(), 0);
}

#[test]
fn rediss_works_with_the_ca_from_the_builder_or_the_environment() {
    let server = TlsServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).tls_ca(server.ca_cert_path()).build().unwrap();
    works(&redis, "from-the-builder");
    let ca = server.ca_cert_path().display().to_string();
    let env = |name: &str| match name {
        "IDEMPOTENCY_REDIS_URL" => Some(server.url()),
        "IDEMPOTENCY_REDIS_TLS_CA" => Some(ca.clone()),
        _ => None,
    };
    works(&RedisBuilder::from_env_with(env).build().unwrap(), "from-the-environment");
    // Three claims for each task, three catalog entries for the three digests.
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "9", "both handles wrote over TLS");
}

#[test]
fn a_server_that_asks_for_a_client_certificate_gets_one() {
    let server = TlsServer::start_mutual(&[]);
    let with = RedisBuilder::new(server.url())
        .tls_ca(server.ca_cert_path())
        .tls_client_cert(server.client_cert_path(), server.client_key_path())
        .build()
        .unwrap();
    works(&with, "mutual");
    let without = RedisBuilder::new(server.url()).tls_ca(server.ca_cert_path()).build().unwrap_err().to_string();
    assert!(without.starts_with(&format!("redis at {}: cannot connect: ", server.url())), "{without}");
}

#[test]
fn a_wrong_ca_is_refused_naming_the_url_and_the_certificate_problem() {
    let server = TlsServer::start(&[]);
    let err = RedisBuilder::new(server.url()).tls_ca(server.other_ca_cert_path()).build().unwrap_err().to_string();
    assert!(err.starts_with(&format!("redis at {}: cannot connect: ", server.url())), "{err}");
    assert!(err.contains("invalid peer certificate: UnknownIssuer"), "the certificate problem is named: {err}");
}

#[test]
fn a_missing_ca_file_is_refused_naming_the_path() {
    let err = RedisBuilder::new("rediss://127.0.0.1:1/").tls_ca("/nonexistent/ca.pem").build().unwrap_err();
    let err = err.to_string();
    assert!(err.starts_with(r#"invalid RedisBuilder::tls_ca "/nonexistent/ca.pem": cannot read it: "#), "{err}");
    let env = |name: &str| match name {
        "IDEMPOTENCY_REDIS_URL" => Some("rediss://127.0.0.1:1/".to_owned()),
        "IDEMPOTENCY_REDIS_TLS_CERT" => Some("/tmp/cert.pem".to_owned()),
        _ => None,
    };
    let err = RedisBuilder::from_env_with(env).build().unwrap_err().to_string();
    assert!(
        err.starts_with(r#"invalid IDEMPOTENCY_REDIS_TLS_CERT "/tmp/cert.pem": set without IDEMPOTENCY_REDIS_TLS_KEY"#),
        "{err}"
    );
}

#[cfg(feature = "tokio")]
#[test]
fn the_async_client_speaks_tls_too() {
    let server = TlsServer::start_mutual(&[]);
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let redis = RedisBuilder::new(server.url())
            .tls_ca(server.ca_cert_path())
            .tls_client_cert(server.client_cert_path(), server.client_key_path())
            .build_async()
            .await
            .unwrap();
        let engine = Engine::on_redis_async(&redis).await.unwrap();
        let catalog = CatalogBuilder::new().redis_async(redis.clone()).build_redis().unwrap();
        let sdk = Sdk::new(Arc::clone(&catalog) as Arc<dyn idempotency_catalog::Catalog>);
        let mut batch = sdk.batch("tls-task", 1);
        batch.item(None, ItemOptions::new().key(sdk.create_key("async-over-tls", Scope::Global)));
        let handles = engine.trigger_owned_async(batch.build().unwrap()).await.unwrap();
        assert!(engine.run_async(handles[0].id).await.unwrap().is_some());
        catalog.flush_async().await.unwrap();
        assert_eq!(redis.faults(), 0);
    });
}
