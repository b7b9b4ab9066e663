//! What a catalog tells its users: counters, removal causes and the [`Listener`]
//! hook. The `tracing` events and their rate limiting are in `events`.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::key_options::KeyOptions;

/// Why an entry left a catalog.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::RemovalCause;
///
/// assert!(RemovalCause::Capacity.was_evicted());
/// assert!(!RemovalCause::Released.was_evicted());
/// assert!(!RemovalCause::Explicit.was_evicted());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// The catalog was full (or a batch-scaled catalog at its ceiling) and a newer
    /// entry took the room: metadata that may still be needed was dropped.
    Capacity,
    /// The reservation (run or batch) that held the entry ended, and the catalog went
    /// back toward its base: an expected release, not a loss.
    Released,
    /// [`Catalog::remove`](crate::Catalog::remove) was called.
    Explicit,
    /// The digest was registered again with new options.
    Replaced,
    /// [`Catalog::clear`](crate::Catalog::clear) was called.
    Cleared,
}

impl RemovalCause {
    /// Whether the catalog dropped the entry on its own while it may still have been
    /// needed. Only these causes reach a [`Listener`] and the warnings.
    pub const fn was_evicted(self) -> bool {
        matches!(self, RemovalCause::Capacity)
    }
}

/// A hook told of what a catalog loses: every eviction ([`on_evict`](Self::on_evict)),
/// and, for a catalog or engine on Redis (feature `redis`), every failed operation
/// ([`on_fault`](Self::on_fault)). Called after the catalog's lock is released.
///
/// Because the lock is released, a listener may call back into the catalog. A listener
/// that panics is disabled, and the panic is reported once as an `ERROR` event and in
/// [`Stats::listener_panics`]; the catalog keeps working.
///
/// Any `Fn(&Digest, &KeyOptions, RemovalCause) + Send + Sync` is a listener.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, Scope};
///
/// let evicted = Arc::new(AtomicU64::new(0));
/// let seen = Arc::clone(&evicted);
/// let catalog = CatalogBuilder::new()
///     .kind(CatalogKind::Lru)
///     .capacity(1)
///     .listener(move |_: &Digest, _: &KeyOptions, cause: idempotency_catalog::RemovalCause| {
///         assert!(cause.was_evicted());
///         seen.fetch_add(1, Ordering::Relaxed);
///     })
///     .build()?;
/// catalog.register(Digest::from_bytes([1; 32]), KeyOptions::new("a", Scope::Run));
/// catalog.register(Digest::from_bytes([2; 32]), KeyOptions::new("b", Scope::Run));
/// assert_eq!(evicted.load(Ordering::Relaxed), 1);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
pub trait Listener: Send + Sync {
    /// Called once per evicted entry with the options it held and why it left.
    fn on_evict(&self, digest: &Digest, options: &KeyOptions, cause: RemovalCause);

    /// Called once per failed operation on a shared store (feature `redis`): the
    /// error, timeout or rejection, counted in [`Stats::faults`] and covered by a
    /// warning. Does nothing unless implemented; a closure listener sees evictions only.
    fn on_fault(&self, fault: &Fault) {
        let _ = fault;
    }
}

/// A failed operation on a shared store: what was being done, what kind of failure,
/// and the store's message. See [`Listener::on_fault`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fault {
    /// The store, as its URL with any password redacted.
    pub store: String,
    /// What was being done: `connect`, `write catalog entries`, `create runs`, …
    pub operation: &'static str,
    /// What kind of failure.
    pub kind: FaultKind,
    /// The store's or the connection's message.
    pub message: String,
}

/// What kind of failure a [`Fault`] is.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::FaultKind;
///
/// // The `fault` label of `idempotency_catalog_faults_total` (feature `metrics`).
/// assert_eq!(FaultKind::Foreign.as_str(), "foreign");
/// assert_eq!(FaultKind::OutOfMemory.as_str(), "out-of-memory");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// The store could not be reached, or the connection broke.
    Unreachable,
    /// The store did not answer within the timeout.
    Timeout,
    /// The store refused a write because it is at its memory limit (`OOM`).
    OutOfMemory,
    /// Any other error the store answered with.
    Rejected,
    /// A value under one of this crate's keys that it did not write: foreign or
    /// corrupt data (another application's key under the prefix, a value copied from
    /// another key, one of the wrong type or size). Never used as data.
    Foreign,
    /// Writes that did not reach as many replicas (or append-only files) as the
    /// handle's `Durability` asks (feature `redis`), within the failover window: not
    /// reported done, since a failover could lose them.
    NotDurable,
}

impl FaultKind {
    /// The kind's name: `unreachable`, `timeout`, `out-of-memory`, `rejected`,
    /// `foreign`, `not-durable`; the `fault` label of `idempotency_catalog_faults_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultKind::Unreachable => "unreachable",
            FaultKind::Timeout => "timeout",
            FaultKind::OutOfMemory => "out-of-memory",
            FaultKind::Rejected => "rejected",
            FaultKind::Foreign => "foreign",
            FaultKind::NotDurable => "not-durable",
        }
    }
}

impl<F> Listener for F
where
    F: Fn(&Digest, &KeyOptions, RemovalCause) + Send + Sync,
{
    fn on_evict(&self, digest: &Digest, options: &KeyOptions, cause: RemovalCause) {
        self(digest, options, cause)
    }
}

/// A snapshot of a catalog's counters, taken under its lock so that they agree:
/// `registered - evicted - released - removed - cleared == len`.
///
/// Serializes as an object of its fields (`{"registered":2,…,"capacity":null,…}`), for
/// a status endpoint or a log line.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{Catalog, Digest, KeyOptions, LruCatalog, Scope};
///
/// let catalog = LruCatalog::with_capacity(1)?;
/// catalog.register(Digest::from_bytes([1; 32]), KeyOptions::new("a", Scope::Run));
/// catalog.register(Digest::from_bytes([2; 32]), KeyOptions::new("b", Scope::Run));
/// let stats = catalog.stats();
/// assert_eq!((stats.registered, stats.evicted, stats.len), (2, 1, 1));
/// assert_eq!(stats.registered - stats.evicted - stats.released - stats.removed - stats.cleared, stats.len as u64);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Registrations of a digest that was not held.
    pub registered: u64,
    /// Registrations of a digest that was held: its options were replaced.
    pub replaced: u64,
    /// Lookups that found their digest.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Entries evicted while their metadata may still have been needed: the catalog
    /// was full, or a batch-scaled catalog met its ceiling. Each is covered by a warning.
    pub evicted: u64,
    /// Entries released because the run or batch that held them ended (and the catalog
    /// went back toward its base): expected, logged below `WARN`.
    pub released: u64,
    /// Entries removed by [`Catalog::remove`](crate::Catalog::remove).
    pub removed: u64,
    /// Entries removed by [`Catalog::clear`](crate::Catalog::clear).
    pub cleared: u64,
    /// Entries held now.
    pub len: usize,
    /// The most entries ever held at once.
    pub peak_len: usize,
    /// The current capacity; `None` when unbounded.
    pub capacity: Option<usize>,
    /// The most entries the catalog may hold: a batch-scaled catalog's ceiling (its
    /// capacity reaches it when live runs and batches need that much), an LRU's
    /// capacity; `None` when unbounded.
    pub max_capacity: Option<usize>,
    /// Entries asked for by live reservations.
    pub reserved: usize,
    /// Free entries kept past the base until their retention ends (a batch-scaled
    /// catalog built with a retention, as [`CatalogBuilder`](crate::CatalogBuilder)
    /// builds one by default); counted in `len`.
    pub retained: usize,
    /// The memory the entries take, in bytes, counted per entry from what it holds (its
    /// node, its slot in the hash table at the table's lowest load, a long key's heap
    /// string).
    pub bytes: usize,
    /// The byte budget; `None` when the catalog has none.
    pub max_bytes: Option<usize>,
    /// Eviction listener calls that panicked (the listener is disabled after the first).
    /// In fleet mode this includes the `on_fault` calls of the listener given to
    /// `RedisBuilder::listener` (feature `redis`).
    pub listener_panics: u64,
    /// Operations on the shared store that failed (feature `redis`): errors, timeouts,
    /// out-of-memory rejections. Each is passed to [`Listener::on_fault`] and
    /// covered by a warning. Always 0 for a catalog that lives in this process.
    pub faults: u64,
    /// Registrations that never reached the shared store: queued while it failed (or,
    /// in async mode, after its sender's runtime stopped) and dropped, oldest first,
    /// once the queue was full; or holding a key longer than the shared store takes
    /// (`RedisCatalog::MAX_KEY_BYTES`). Each is covered by a warning. Always 0 for a
    /// catalog that lives in this process.
    pub unshared: u64,
    /// Where each limit's value came from, so that a remedy can name the call or the
    /// variable that would change it.
    pub sources: Sources,
}

/// Where a setting's value came from.
///
/// A builder call wins over the variable, which wins over the default, so a remedy
/// must name the one that set the value: raising the variable does nothing while code
/// sets the setting. Serializes as `"builder"`, `"env"` or `"default"`.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{Catalog, CatalogBuilder, Source};
///
/// let catalog = CatalogBuilder::new().capacity(100).build()?;
/// assert_eq!(catalog.stats().sources.capacity, Source::Builder);
/// assert_eq!(catalog.stats().sources.max_bytes, Source::Default);
/// let env = |name: &str| (name == "IDEMPOTENCY_CATALOG_MAX_BYTES").then(|| "16MiB".to_owned());
/// let catalog = CatalogBuilder::from_env_with(env).build()?;
/// assert_eq!(catalog.stats().sources.max_bytes, Source::Env);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Source {
    /// Set in code: a builder call, or the constructor the catalog was made with.
    Builder,
    /// Read from an environment variable.
    Env,
    /// Neither: the documented default.
    #[default]
    Default,
}

impl Source {
    /// `builder`, `env` or `default`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Builder => "builder",
            Source::Env => "env",
            Source::Default => "default",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where each of a catalog's limits came from; see [`Source`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sources {
    /// The kind.
    pub kind: Source,
    /// The capacity (an LRU's) or base (a batch-scaled catalog's).
    pub capacity: Source,
    /// A batch-scaled catalog's ceiling.
    pub max_capacity: Source,
    /// The byte budget.
    pub max_bytes: Source,
    /// A batch-scaled catalog's retention of free keys past its base.
    pub retain: Source,
}

/// The limit that made a catalog drop an entry, and that a remedy says how to raise.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::Limit;
///
/// assert_eq!(Limit::Bytes.as_str(), "bytes");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Limit {
    /// The entry capacity: an LRU's.
    Entries,
    /// A batch-scaled catalog's entry ceiling.
    Ceiling,
    /// The byte budget.
    Bytes,
    /// A batch-scaled catalog's retention of free keys past its base: off (`0s`), so
    /// that the base alone decided, or over, so that the key was released.
    Retention,
}

impl Limit {
    /// `entries`, `ceiling`, `bytes` or `retention`: the `limit` field of the warnings.
    pub const fn as_str(self) -> &'static str {
        match self {
            Limit::Entries => "entries",
            Limit::Ceiling => "ceiling",
            Limit::Bytes => "bytes",
            Limit::Retention => "retention",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a catalog remembers of a digest it dropped without being asked to: see
/// [`Catalog::forgotten`](crate::Catalog::forgotten).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Forgotten {
    /// [`Stats::evicted`] just after the digest was dropped: compared with the count
    /// when a batch opened, it says whether the digest was dropped before or after.
    pub evicted: u64,
    /// The limit that dropped it.
    pub limit: Limit,
}
