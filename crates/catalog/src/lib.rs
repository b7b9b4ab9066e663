//! A bounded-but-configurable catalog of idempotency keys, with eviction telemetry.
//!
//! A task SDK turns key material (`["item", "42"]`) and a scope into a SHA-256
//! [`Digest`]; the digest deduplicates, and the human-readable [`KeyOptions`]
//! (`item-42`, `global`) travel beside it so run records show a key rather than a hash.
//! A [`Catalog`] remembers digest → options for keys passed around as bare digests.
//!
//! The reference SDK (Trigger.dev) kept that mapping in a silent LRU of 1,000 entries
//! up to 4.4: a fan-out of 6,235 items lost the metadata of 5,235 runs and said
//! nothing. Since 4.5 it keeps an unbounded map that it clears when each run ends: a
//! run keeps every key, and memory is whatever the run creates. Here a run keeps every
//! key too, memory stays bounded and configurable, and nothing is lost silently:
//!
//! | kind | type | capacity | when full |
//! |---|---|---|---|
//! | `batch-scaled` (default) | [`BatchScaledCatalog`] | base + what live runs and batches hold, up to a ceiling | evicts the oldest free entry, warns |
//! | `lru` | [`LruCatalog`] | fixed (default 1,000: the reference up to 4.4) | evicts least recently used, warns |
//! | `unbounded` | [`UnboundedCatalog`] | none: the reference since 4.5 | never evicts |
//!
//! Runs and batches are [`Reservation`]s: what they register through
//! [`Reservation::register`] is kept until they end, then released (counted in
//! [`Stats::released`], logged at `DEBUG`). Every eviction that drops metadata that
//! may still be needed is counted in [`Stats::evicted`], passed to the catalog's
//! [`Listener`] with its [`RemovalCause`], and covered by a `tracing` `WARN`
//! event (the first at once, later ones summarised; select them with
//! `RUST_LOG=idempotency_catalog=warn`).
//!
//! Configure with [`CatalogBuilder`], or from the environment: [`env::KIND`],
//! [`env::CAPACITY`], [`env::MAX_CAPACITY`] …; what is set neither way takes its
//! value from [`defaults`].
//!
//! Beside the types above, the modules: [`env`](mod@env) and [`defaults`] (the variables read
//! and the default of each setting), [`budget`] (how a byte budget counts memory),
//! [`implement`] (for implementors of [`Catalog`]) and, with feature `redis`, `fleet`
//! (the handle, the catalog on Redis, the connection stores build on, and
//! `fleet::layout`, the name of every key written).
//!
//! # Features
//!
//! | feature | default | what it adds | cost |
//! |---|---|---|---|
//! | `metrics` | no | counters and gauges on the [`metrics`](https://docs.rs/metrics) facade, labelled by kind and [`CatalogBuilder::name`] (names in `docs/telemetry.md`); install the recorder before building catalogs | the `metrics` crate; a few atomic adds per operation |
//! | `redis` | no | fleet mode (module `fleet`): `Redis`, `RedisBuilder` and `RedisCatalog`, one catalog shared by every process on Redis 7, with a local catalog in front (`docs/fleet.md`) | the [`redis`](https://docs.rs/redis) crate's sync client, and `url` and `sha2`, which `redis` and the SDK build anyway; a round trip per 1,024 registrations and per local miss, a few at startup to check the server's configuration |
//! | `tokio` | no | `redis`, and async forms of every call that touches the network: `RedisBuilder::build_async`, `CatalogBuilder::redis_async` (writes sent from a task of the catalog's own), `RedisCatalog::prefetch_async` and `flush_async` | `tokio` and `futures-util`, and the `redis` crate's tokio support |
//! | `cluster` | no | `redis` on a Redis Cluster, found from any node's URL, sync and (with `tokio`) async: commands routed by slot, `MOVED`/`ASK` followed, failovers waited out | `crc16`; a round trip per master at startup |
//! | `tls` | no | `redis` over TLS (`rediss://`), with a CA file and a client certificate if asked: `RedisBuilder::tls_ca`, `tls_client_cert` | `rustls` with `ring` (a C compiler to build), `tokio-rustls`, `rustls-native-certs` |
//!
//! `serde` is not optional: digests and key options exist to travel in the wire format,
//! and [`Stats`] serializes for status endpoints; every user of the crate has `serde` in
//! its tree already.
//!
//! # Examples
//!
//! ```
//! use idempotency_catalog::{Catalog, CatalogBuilder, Digest, KeyOptions, Scope};
//!
//! let catalog = CatalogBuilder::from_env().build()?;
//! let digest: Digest = "69b65bbed30ca00a0c4bbebbfd780cbd0d20cf36422420b8093fd92e47f3f9e9".parse()?;
//! {
//!     let run = catalog.reserve(0); // a run: its keys are kept until it ends
//!     run.register(digest, KeyOptions::new("item-0", Scope::Global));
//!     assert_eq!(catalog.get(&digest).map(|o| o.key().to_owned()), Some("item-0".to_owned()));
//! }
//! assert_eq!(catalog.stats().registered, 1);
//! # Ok::<(), idempotency_catalog::Error>(())
//! ```
#![forbid(unsafe_code)]
// On docs.rs (nightly, `--cfg docsrs`): each item gated by a feature says which.
#![cfg_attr(docsrs, feature(doc_cfg))]
// No panic on any input path: beside the workspace's `unwrap_used`, `expect_used` and
// `panic` lints, indexing and the panicking macros are refused in library code.
#![deny(clippy::indexing_slicing, clippy::unreachable, clippy::todo, clippy::unimplemented)]

mod batch_scaled;
pub mod budget;
mod builder;
mod catalog;
pub mod defaults;
mod digest;
mod digest_hash;
pub mod env;
mod error;
mod events;
#[cfg(feature = "redis")]
pub mod fleet;
mod global;
pub mod hash {
    //! Hashing digests for your own maps: see [`DigestState`].
    pub use crate::digest_hash::{DigestHasher, DigestState};
}
pub mod implement;
mod key_options;
mod kind;
mod ledger;
mod lru;
mod meter;
mod remedy;
mod scope;
mod store;
mod telemetry;
mod ttl;
mod unbounded;

pub use batch_scaled::BatchScaledCatalog;
pub use builder::CatalogBuilder;
pub use catalog::{Catalog, Reservation};
pub use digest::Digest;
pub use error::{Error, shown};
#[cfg(feature = "redis")]
pub use fleet::{Redis, RedisBuilder, RedisCatalog};
pub use global::{default_catalog, set_default_catalog};
pub use key_options::KeyOptions;
pub use kind::CatalogKind;
pub use lru::LruCatalog;
pub use scope::Scope;
pub use telemetry::{Fault, FaultKind, Forgotten, Limit, Listener, RemovalCause, Source, Sources, Stats};
pub use ttl::Ttl;
pub use unbounded::UnboundedCatalog;

/// The crate's README, compiled and run as a doctest so that its example stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
