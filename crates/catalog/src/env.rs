//! The names of the environment variables this crate reads, each in a constant: for
//! deployment manifests, and for lookups given to
//! [`CatalogBuilder::from_env_with`](crate::CatalogBuilder::from_env_with) and
//! `RedisBuilder::from_env_with` (feature `redis`). A builder call wins over the
//! variable for its setting, and the variable over [the default](crate::defaults).
//!
//! # Examples
//!
//! ```
//! use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, env};
//!
//! let vars = [(env::KIND, "lru"), (env::CAPACITY, "5000")];
//! let lookup = |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
//! let catalog = CatalogBuilder::from_env_with(lookup).build()?;
//! assert_eq!((catalog.kind(), catalog.capacity()), (CatalogKind::Lru, Some(5_000)));
//! assert_eq!(env::KIND, "IDEMPOTENCY_CATALOG_KIND");
//! # Ok::<(), idempotency_catalog::Error>(())
//! ```

/// The variable that picks the catalog kind: `lru`, `unbounded` or `batch-scaled`.
pub const KIND: &str = "IDEMPOTENCY_CATALOG_KIND";
/// The variable that sets the capacity (the base capacity of a batch-scaled catalog).
pub const CAPACITY: &str = "IDEMPOTENCY_CATALOG_CAPACITY";
/// The variable that sets the ceiling of a batch-scaled catalog.
pub const MAX_CAPACITY: &str = "IDEMPOTENCY_CATALOG_MAX_CAPACITY";
/// The variable that sets the byte budget: a number of bytes, optionally with a `KiB`,
/// `MiB` or `GiB` suffix (`64MiB`).
pub const MAX_BYTES: &str = "IDEMPOTENCY_CATALOG_MAX_BYTES";
/// The variable that sets how long a batch-scaled catalog keeps free keys past its
/// base: `30s`, `10m`, `2h`, `1d`, or `0s` for not at all.
pub const RETAIN: &str = "IDEMPOTENCY_CATALOG_RETAIN";

/// The variable that names the Redis server (feature `redis`):
/// `redis://[user:password@]host:port[/db]`, `rediss://…` (TLS, feature `tls`) or
/// `redis+unix:///path/to/socket`; for a Redis Cluster (feature `cluster`), any one
/// node, or several separated by commas.
#[cfg(feature = "redis")]
pub const REDIS_URL: &str = "IDEMPOTENCY_REDIS_URL";
/// The variable that names the PEM file of the certificate authority a `rediss://`
/// server's certificate must chain to (feature `tls`); without it, the system's roots.
#[cfg(feature = "redis")]
pub const REDIS_TLS_CA: &str = "IDEMPOTENCY_REDIS_TLS_CA";
/// The variable that names the PEM file of the client certificate, for a server that
/// asks for one (mutual TLS, feature `tls`); with [`REDIS_TLS_KEY`].
#[cfg(feature = "redis")]
pub const REDIS_TLS_CERT: &str = "IDEMPOTENCY_REDIS_TLS_CERT";
/// The variable that names the PEM file of the client certificate's private key.
#[cfg(feature = "redis")]
pub const REDIS_TLS_KEY: &str = "IDEMPOTENCY_REDIS_TLS_KEY";
/// The variable that sets the prefix of every Redis key this crate and the SDK write
/// (feature `redis`).
#[cfg(feature = "redis")]
pub const REDIS_PREFIX: &str = "IDEMPOTENCY_REDIS_PREFIX";
/// The variable that sets how long a catalog entry lives in Redis (feature `redis`): a
/// whole number followed by `s`, `m`, `h` or `d`, such as `24h`.
#[cfg(feature = "redis")]
pub const REDIS_CATALOG_TTL: &str = "IDEMPOTENCY_REDIS_CATALOG_TTL";
/// The variable that sets how long the SDK engine keeps a run record on Redis when its
/// key's TTL is shorter, in the grammar of [`REDIS_CATALOG_TTL`], such as `30d`.
#[cfg(feature = "redis")]
pub const REDIS_RUN_TTL: &str = "IDEMPOTENCY_REDIS_RUN_TTL";
/// The variable that sets how many copies of a claim a master must have before it is
/// reported created: `auto`, `none`, `replicas:N` or `aof:N` (see
/// [`Durability`](crate::fleet::Durability)).
#[cfg(feature = "redis")]
pub const REDIS_DURABILITY: &str = "IDEMPOTENCY_REDIS_DURABILITY";
/// The variable that sets how long a call waits for a Redis Cluster failover before it
/// fails, in the grammar of [`REDIS_CATALOG_TTL`], such as `20s`.
#[cfg(feature = "redis")]
pub const REDIS_FAILOVER_WINDOW: &str = "IDEMPOTENCY_REDIS_FAILOVER_WINDOW";
