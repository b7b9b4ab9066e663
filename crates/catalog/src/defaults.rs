//! The value of each setting that neither a builder call nor its
//! [variable](crate::env) sets, under the same name as the variable's constant.
//!
//! # Examples
//!
//! ```
//! use idempotency_catalog::{Catalog, CatalogBuilder, defaults};
//!
//! let catalog = CatalogBuilder::new().build()?;
//! assert_eq!(catalog.capacity(), Some(defaults::CAPACITY));
//! assert_eq!(catalog.stats().max_bytes, Some(defaults::MAX_BYTES));
//! # Ok::<(), idempotency_catalog::Error>(())
//! ```

use std::time::Duration;

/// The default capacity, the reference SDK's figure (its 4.4 LRU held 1,000 entries).
pub const CAPACITY: usize = 1_000;
/// The default ceiling of a batch-scaled catalog: about 115 MB of entries at most
/// (see `docs/performance.md`).
pub const MAX_CAPACITY: usize = 1_000_000;

/// The byte budget of a batch-scaled catalog built by [`CatalogBuilder`] when none is
/// given: 128 MiB, which holds a run of 1,000,000 keys of up to 22 bytes (119 bytes
/// each), the default entry ceiling, and bounds one of long keys to the same memory.
///
/// [`CatalogBuilder`]: crate::CatalogBuilder
pub const MAX_BYTES: usize = 128 << 20;

/// How long a batch-scaled catalog built by [`CatalogBuilder`] keeps a free key that
/// newer free keys pushed out of its base, when none is given: ten minutes.
///
/// Keys made outside any run are usually used within the request or job that made
/// them, seconds later; ten minutes covers a slow job with a wide margin, while at a
/// steady 1,000 keys a second it holds about 600,000 keys (some 72 MB, within
/// [`MAX_BYTES`]).
///
/// [`CatalogBuilder`]: crate::CatalogBuilder
pub const RETAIN: Duration = Duration::from_secs(600);

/// The default key prefix of a Redis handle (feature `redis`).
#[cfg(feature = "redis")]
pub const REDIS_PREFIX: &str = "idempotency:";
/// How long a catalog entry lives in Redis by default (feature `redis`): a day. A
/// shared entry exists so that a digest minted by one worker shows its key in another;
/// that happens while the fan-out that minted it is being processed, which the
/// reference platform bounds far below a day (its runs time out, its batches are
/// triggered at once). A day covers retries and slow queues with room, and bounds Redis
/// at a day of keys (`docs/fleet.md` has the bytes per entry). Raise it when digests
/// are stored and resolved later.
#[cfg(feature = "redis")]
pub const REDIS_CATALOG_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long, at least, the SDK engine keeps a run record on Redis by default (feature
/// `redis`): a day. A record also lives as long as its key is held (30 days by
/// default, the item's TTL), since a cached answer must name a run that can be read;
/// this bounds the records of runs that hold no key (no key, a TTL of `0s`, a key
/// released or reset) and of keys held for less. Records exist so that every worker
/// and dashboard reads a run while it is processed, which, as for catalog entries, the
/// reference platform bounds far below a day. At the default, a key held a day or more
/// costs one command to claim; a shorter one, a script that also writes the record
/// apart (`docs/fleet.md`).
#[cfg(feature = "redis")]
pub const REDIS_RUN_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long connecting to Redis may take by default, at startup and when reconnecting
/// (feature `redis`).
#[cfg(feature = "redis")]
pub const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a Redis command or pipeline may wait for its answer by default (feature
/// `redis`).
#[cfg(feature = "redis")]
pub const REDIS_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How many sync connections a Redis handle keeps open at most by default (feature
/// `redis`): threads beyond them take turns. The async client needs one, multiplexed.
#[cfg(feature = "redis")]
pub const REDIS_POOL_SIZE: usize = 8;
/// How long a Redis master waits for its replicas to acknowledge a pipeline's writes
/// by default (the timeout of its `WAIT`; feature `redis`). Replicas on a healthy
/// network answer within milliseconds; a second tells a replica that is gone from one
/// that is slow, and keeps a failover's pause short.
#[cfg(feature = "redis")]
pub const REDIS_DURABILITY_TIMEOUT: Duration = Duration::from_secs(1);
