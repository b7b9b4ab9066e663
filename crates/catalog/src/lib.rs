//! A bounded-but-configurable catalog of idempotency keys, with eviction telemetry.
//!
//! A task SDK turns key material (`["item", "42"]`) and a scope into a SHA-256
//! [`Digest`]; the digest deduplicates, and the human-readable [`KeyOptions`]
//! (`item-42`, `global`) travel beside it so run records show a key rather than a hash.
//! A [`Catalog`] remembers digest → options for keys passed around as bare digests.
//!
//! The reference SDK kept that mapping in a silent LRU of 1,000 entries: a fan-out of
//! 6,235 items lost the metadata of 5,235 runs and said nothing. Here the memory stays
//! bounded and configurable, and nothing is lost silently:
//!
//! | kind | type | capacity | when full |
//! |---|---|---|---|
//! | `batch-scaled` (default) | [`BatchScaledCatalog`] | base + live reservations (more if unreserved keys need it), up to a ceiling | evicts oldest, warns |
//! | `lru` | [`LruCatalog`] | fixed (default 1,000) | evicts least recently used, warns |
//! | `unbounded` | [`UnboundedCatalog`] | none; cleared by a [`RunBoundary`] | never evicts |
//!
//! Every eviction is counted in [`Stats`], passed to an [`EvictionListener`] with its
//! [`RemovalCause`], and covered by a `tracing` `WARN` event of target
//! `idempotency_catalog::telemetry` (the first at once, later ones summarised; select
//! them with `RUST_LOG=idempotency_catalog=warn`).
//!
//! Configure with [`CatalogBuilder`], or from the environment: [`ENV_KIND`],
//! [`ENV_CAPACITY`], [`ENV_MAX_CAPACITY`]. The crate has no cargo features.
//!
//! # Examples
//!
//! ```
//! use idempotency_catalog::{Catalog, CatalogBuilder, Digest, KeyOptions, Scope};
//!
//! let catalog = CatalogBuilder::from_env()?.build()?;
//! let digest: Digest = "69b65bbed30ca00a0c4bbebbfd780cbd0d20cf36422420b8093fd92e47f3f9e9".parse()?;
//! {
//!     let _batch = catalog.reserve(1); // room for the batch while it is built
//!     catalog.register(digest, KeyOptions::new("item-0", Scope::Global));
//!     assert_eq!(catalog.get(&digest).map(|o| o.key().to_owned()), Some("item-0".to_owned()));
//! }
//! assert_eq!(catalog.stats().registered, 1);
//! # Ok::<(), idempotency_catalog::Error>(())
//! ```
#![forbid(unsafe_code)]
// No panic on any input path: beside the workspace's `unwrap_used`, `expect_used` and
// `panic` lints, indexing and the panicking macros are refused in library code.
#![deny(clippy::indexing_slicing, clippy::unreachable, clippy::todo, clippy::unimplemented)]

mod batch_scaled;
mod catalog;
mod config;
mod digest;
mod error;
mod global;
mod key_options;
mod lru;
mod scope;
mod store;
mod telemetry;
mod unbounded;

pub use batch_scaled::BatchScaledCatalog;
pub use catalog::{Catalog, Reservation};
pub use config::{
    CatalogBuilder, CatalogKind, DEFAULT_CAPACITY, DEFAULT_MAX_CAPACITY, ENV_CAPACITY, ENV_KIND, ENV_MAX_CAPACITY,
};
pub use digest::Digest;
pub use error::Error;
pub use global::{default_catalog, set_default_catalog};
pub use key_options::KeyOptions;
pub use lru::LruCatalog;
pub use scope::Scope;
pub use telemetry::{EvictionListener, RemovalCause, Stats};
pub use unbounded::{RunBoundary, UnboundedCatalog};
