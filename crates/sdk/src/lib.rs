//! The task-SDK layer over [`idempotency_catalog`]: idempotency keys that carry their
//! own options, batch building sized to the batch, the wire format, and a local engine.
//!
//! A key is derived from key material and a scope exactly as the reference TypeScript
//! SDK derives it (SHA-256 of the parts and the run-context suffix joined with `-`).
//! Unlike the reference, an [`IdempotencyKey`] carries its original key and scope, so a
//! batch never depends on the catalog to find them; the catalog is only needed for
//! keys passed around as bare digest strings. Inside a run ([`Sdk::with_run`]) the
//! catalog holds every key the run registers until the run ends, as the reference SDK
//! does since 4.5, within the catalog's bound; a batch resolves digest strings as its
//! items are added.
//!
//! | step | type |
//! |---|---|
//! | the run a task executes in | [`RunContext`] |
//! | keys: derive, create (and register), resolve raw input | [`IdempotencyKey`], [`Sdk`], [`KeyInput`] |
//! | batches: items, TTLs, the report, what a loss does | [`BatchBuilder`], [`ItemOptions`], [`Ttl`], [`BatchReport`], [`LossPolicy`] |
//! | the wire format, NDJSON | [`WireItem`], [`WireOptions`] |
//! | running batches in-process | [`Engine`], [`RunId`], [`RunStatus`], [`RunView`] |
//!
//! Its `tracing` events (a batch that lost options, unreadable TTLs) come from
//! `idempotency_sdk::batch` and `idempotency_sdk::engine`.
//!
//! # Features
//!
//! | feature | default | what it adds | cost |
//! |---|---|---|---|
//! | `metrics` | no | counters on the [`metrics`](https://docs.rs/metrics) facade (batch items, items without options, cached answers) and the catalog's own metrics (`idempotency-catalog/metrics`); names in `docs/telemetry.md` | the `metrics` crate; an atomic add per batch and per trigger |
//! | `redis` | no | fleet mode: `Engine::on_redis` claims keys and records runs on Redis 7, shared by every worker, and the catalog's `RedisCatalog` (`idempotency-catalog/redis`); see `docs/fleet.md` | the [`redis`](https://docs.rs/redis) crate's sync client; a round trip per 10,000 claims |
//! | `tokio` | no | `redis`, and the engine's async forms: `Engine::on_redis_async`, `trigger_async`, `trigger_owned_async`, `trigger_items_async`, `run_async`, `read_runs_async`, `set_status_async`, `reset_key_async` (and the catalog's `tokio`) | `tokio` and the catalog's; a round trip per 250 claims, with a yield between them |
//! | `cluster` | no | `redis` on a Redis Cluster (the catalog's `cluster`) | the catalog's |
//! | `tls` | no | `redis` over TLS (the catalog's `tls`) | the catalog's |
//!
//! # Examples
//!
//! ```
//! use idempotency_sdk::{Engine, ItemOptions, RunContext, Scope, Sdk, Ttl};
//! use serde_json::json;
//!
//! let sdk = Sdk::from_env()?.with_run(RunContext::new("run_abc123", 1));
//! let mut batch = sdk.batch("child-task", 100);
//! for i in 0..100 {
//!     let key = sdk.create_key(["item", &i.to_string()], Scope::Global)?;
//!     batch.item(json!({ "i": i }), ItemOptions::new().key(key).ttl("7d".parse::<Ttl>()?));
//! }
//! let batch = batch.build()?;
//! assert_eq!(batch.report().with_options, 100);
//!
//! let engine = Engine::new();
//! engine.trigger(&batch)?;
//! assert_eq!(engine.runs()[42].idempotency_key.as_deref(), Some("item-42"));
//! # Ok::<(), idempotency_sdk::Error>(())
//! ```
#![forbid(unsafe_code)]
// On docs.rs (nightly, `--cfg docsrs`): each item gated by a feature says which.
#![cfg_attr(docsrs, feature(doc_cfg))]
// No panic on any input path: beside the workspace's `unwrap_used`, `expect_used` and
// `panic` lints, indexing and the panicking macros are refused in library code.
#![deny(clippy::indexing_slicing, clippy::unreachable, clippy::todo, clippy::unimplemented)]

mod batch;
mod blocks;
mod context;
pub mod defaults;
mod engine;
pub mod env;
mod error;
mod from_catalog;
mod key;
mod key_input;
mod message;
mod meter;
mod payload;
mod run_id;
mod sdk;
mod wire;

pub use batch::{Batch, BatchBuilder, BatchReport, ItemOptions, LossPolicy};
pub use context::RunContext;
pub use engine::{BudgetPolicy, Engine, EngineStats, KeyTarget, RunRecord, RunStatus, RunView, Triggered};
pub use error::Error;
/// The catalog crate, re-exported so that one dependency is enough.
pub use idempotency_catalog as catalog;
pub use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, Scope, Ttl};
pub use key::{IdempotencyKey, KeyParts};
pub use key_input::KeyInput;
pub use payload::PayloadPolicy;
pub use run_id::RunId;
pub use sdk::Sdk;
pub use wire::{WireItem, WireOptions};

/// The crate's README, compiled and run as a doctest so that its example stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
