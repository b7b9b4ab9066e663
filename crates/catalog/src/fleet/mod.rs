//! Fleet mode (feature `redis`): one Redis shared by many worker processes.
//!
//! [`Redis`] is a handle on one server or a cluster: its address (any password redacted in every
//! message), the key prefix, timeouts, and the fault counter and warnings shared by
//! everything built on it. [`RedisCatalog`] puts a process-local catalog in front of
//! it; the SDK's engine claims keys on it through a [`RedisConnection`]. [`layout`]
//! names every key either writes.
//!
//! # Examples
//!
//! ```no_run
//! use idempotency_catalog::fleet::{Durability, RedisBuilder};
//! use idempotency_catalog::{Catalog, CatalogBuilder};
//!
//! let redis = RedisBuilder::from_env().durability(Durability::Replicas(1)).build()?;
//! let catalog = CatalogBuilder::from_env().redis(redis).build()?;
//! assert_eq!(catalog.stats().faults, 0);
//! # Ok::<(), idempotency_catalog::Error>(())
//! ```

// Each file imports only from the files on the lines above its own, or before it on
// its line (`future/x.rs` is the async side of `x.rs`, gated once here; `sync_only.rs`
// stands in for `future/` without `tokio`):
//
//   url, link, layout, fault, durability, env     what a handle is made of; no I/O
//   settings                                      the checked settings
//   deployment                                    where commands go (slot map)
//   pool                                          the sync connections kept
//   future/{link, pool, sender}                   the async ones, and a catalog's sender
//   dispatch                                      the sans-I/O rules of one call
//   handle                                        `Redis`: settings, deployment, pools, faults
//   connection, checks                            the sync driver; the startup checks
//   startup                                       the `Plan` and the steps of a build
//   builder                                       `RedisBuilder`: settings into a `Plan`
//   catalog                                       `RedisCatalog`
//   future/{connection, startup, catalog}         the async drivers

mod builder;
mod catalog;
mod checks;
mod connection;
mod deployment;
mod dispatch;
mod durability;
mod env;
mod fault;
#[cfg(feature = "tokio")]
mod future;
#[cfg(not(feature = "tokio"))]
#[path = "sync_only.rs"]
mod future;
mod handle;
pub mod layout;
mod link;
mod pool;
mod settings;
mod startup;
mod url;

pub use self::builder::RedisBuilder;
pub use self::catalog::RedisCatalog;
pub use self::connection::RedisConnection;
pub use self::durability::Durability;
pub use self::fault::server_error_of;
pub use self::handle::Redis;
