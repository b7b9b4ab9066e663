use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::batch_scaled::BatchScaledCatalog;
use crate::budget::{self, Limits, MIN_MAX_BYTES};
use crate::catalog::Catalog;
use crate::defaults;
use crate::env;
use crate::error::Error;
#[cfg(feature = "redis")]
use crate::fleet::{Redis, RedisCatalog};
use crate::kind::{CatalogKind, DEFAULT_BASE, DEFAULT_CEILING};
use crate::lru::LruCatalog;
use crate::remedy::Origins;
use crate::store::DEFAULT_NAME;
use crate::telemetry::{Listener, Source};
use crate::ttl::Ttl;
use crate::unbounded::UnboundedCatalog;

/// Builds a catalog of any kind, from code, from the environment, or both.
///
/// One rule decides each setting: a builder call wins over the environment for that
/// setting, and the environment wins over the default. A variable that a builder call
/// overrides, or that does not apply to the chosen kind, is not read at all, so it
/// cannot fail the build. A builder call that does not apply to the chosen kind is a
/// mistake in the code, and [`build`](Self::build) refuses it.
///
/// | setting | builder | variable | default | applies to |
/// |---|---|---|---|---|
/// | kind | [`kind`](Self::kind) | [`env::KIND`] | `batch-scaled` | every kind |
/// | capacity | [`capacity`](Self::capacity) | [`env::CAPACITY`] | [`defaults::CAPACITY`](crate::defaults::CAPACITY) | `lru`, `batch-scaled` (its base) |
/// | ceiling | [`max_capacity`](Self::max_capacity) | [`env::MAX_CAPACITY`] | [`defaults::MAX_CAPACITY`](crate::defaults::MAX_CAPACITY), or the capacity if larger | `batch-scaled` |
/// | byte budget | [`max_bytes`](Self::max_bytes) | [`env::MAX_BYTES`] | [`defaults::MAX_BYTES`](crate::defaults::MAX_BYTES) for `batch-scaled`, none for the others | every kind |
/// | retention of free keys past the base | [`retain`](Self::retain) | [`env::RETAIN`] | [`defaults::RETAIN`](crate::defaults::RETAIN) | `batch-scaled` |
///
/// Nothing is checked until [`build`](Self::build), which reports the first bad value
/// naming where it came from (the variable or the builder method) and what is accepted.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind};
///
/// let catalog = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(5_000).build()?;
/// assert_eq!((catalog.kind(), catalog.capacity()), (CatalogKind::Lru, Some(5_000)));
///
/// // Variables are read through a lookup, so a test need not touch the process.
/// let env = |name: &str| (name == "IDEMPOTENCY_CATALOG_CAPACITY").then(|| "abc".to_owned());
/// let err = CatalogBuilder::from_env_with(env).build().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"invalid IDEMPOTENCY_CATALOG_CAPACITY "abc": expected a whole number from 1 to 18446744073709551615"#
/// );
/// // A capacity does not apply to an unbounded catalog: the variable is not read.
/// let unbounded = CatalogBuilder::from_env_with(env).kind(CatalogKind::Unbounded).build()?;
/// assert_eq!(unbounded.capacity(), None);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct CatalogBuilder {
    kind: Option<CatalogKind>,
    capacity: Option<usize>,
    max_capacity: Option<usize>,
    max_bytes: Option<usize>,
    retain: Option<Duration>,
    env: Env,
    listener: Option<Arc<dyn Listener>>,
    log_keys: bool,
    name: Option<String>,
    /// The handle to put the catalog in front of, and how (sync or async mode).
    #[cfg(feature = "redis")]
    redis: Option<(Redis, InFront)>,
}

/// The variables as read, checked only when they decide a setting.
#[derive(Clone, Debug, Default)]
struct Env {
    kind: Option<String>,
    capacity: Option<String>,
    max_capacity: Option<String>,
    max_bytes: Option<String>,
    retain: Option<String>,
}

impl CatalogBuilder {
    /// A builder with every setting at its default; the environment is not read.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder that falls back on the process environment ([`env::KIND`],
    /// [`env::CAPACITY`], [`env::MAX_CAPACITY`], [`env::MAX_BYTES`], [`env::RETAIN`]) for
    /// every setting no builder call makes.
    /// Values are checked by [`build`](Self::build); one that is not unicode is
    /// refused there, naming the variable.
    pub fn from_env() -> Self {
        Self::from_env_with(|name| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned()))
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`, which
    /// returns a variable's value or `None` when it is unset.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let env = Env {
            kind: lookup(env::KIND),
            capacity: lookup(env::CAPACITY),
            max_capacity: lookup(env::MAX_CAPACITY),
            max_bytes: lookup(env::MAX_BYTES),
            retain: lookup(env::RETAIN),
        };
        CatalogBuilder { env, ..Self::default() }
    }

    /// Sets the kind. Default: [`CatalogKind::BatchScaled`].
    #[must_use]
    pub fn kind(mut self, kind: CatalogKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Sets the capacity of an LRU catalog, or the base capacity of a batch-scaled one.
    /// Must be at least 1; does not apply to an unbounded catalog.
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Sets the byte budget: the entries' memory, counted per entry from what it holds,
    /// never exceeds it; at the budget the oldest entries are evicted (counted, and
    /// warned about naming the budget). At least 64 KiB; applies to every kind, beside
    /// an entry capacity or ceiling. Default: [`defaults::MAX_BYTES`](crate::defaults::MAX_BYTES)
    /// for a batch-scaled catalog, none for the other kinds.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::CatalogBuilder;
    ///
    /// let catalog = CatalogBuilder::new().max_bytes(64 << 20).build()?;
    /// assert_eq!(catalog.stats().max_bytes, Some(64 << 20));
    /// assert!(CatalogBuilder::new().max_bytes(64).build().is_err());
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    #[must_use]
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// Sets how long a batch-scaled catalog keeps a free key (one registered outside
    /// any run or batch) that newer free keys pushed out of its base: until then it is
    /// kept, within the ceiling and the byte budget, and dropping it for room is an
    /// eviction; after, it is released. `Duration::ZERO` keeps none: the base is an LRU.
    /// Applies to no other kind. Default: [`defaults::RETAIN`](crate::defaults::RETAIN).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use idempotency_catalog::{Catalog, CatalogBuilder, Digest, KeyOptions, Scope};
    ///
    /// let catalog = CatalogBuilder::new().capacity(10).retain(Duration::from_secs(60)).build()?;
    /// for i in 0..100u8 {
    ///     catalog.register(Digest::from_bytes([i; 32]), KeyOptions::new("k", Scope::Global));
    /// }
    /// // Past the base of 10, outside any run: all 100 kept for a minute.
    /// assert_eq!((catalog.len(), catalog.stats().retained, catalog.stats().evicted), (100, 90, 0));
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    #[must_use]
    pub fn retain(mut self, retain: Duration) -> Self {
        self.retain = Some(retain);
        self
    }

    /// Sets the ceiling of a batch-scaled catalog. Must be at least the capacity;
    /// applies to no other kind.
    #[must_use]
    pub fn max_capacity(mut self, max_capacity: usize) -> Self {
        self.max_capacity = Some(max_capacity);
        self
    }

    /// Sets a hook called for every eviction.
    #[must_use]
    pub fn listener(mut self, listener: impl Listener + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Puts the catalog in front of Redis (feature `redis`): [`build`](Self::build)
    /// returns a [`RedisCatalog`](crate::RedisCatalog) whose local catalog follows the
    /// other settings. What the local catalog drops for room is then counted as
    /// released, not evicted: Redis keeps it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_catalog::{CatalogBuilder, RedisBuilder};
    ///
    /// let redis = RedisBuilder::from_env().build()?; // IDEMPOTENCY_REDIS_URL, …
    /// let catalog = CatalogBuilder::from_env().redis(redis).build()?;
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn redis(self, redis: Redis) -> Self {
        self.in_front_of(redis, RedisCatalog::new)
    }

    /// As [`redis`](Self::redis), for a catalog used from async code (feature
    /// `tokio`): none of its [`Catalog`] methods touches the network, so none blocks
    /// the runtime. Writes go out from a task the catalog spawns on the current tokio
    /// runtime (when a run or batch ends, every 1,024 registrations and every 100 ms;
    /// the rest when the catalog is dropped); a local miss is a miss, so a batch of
    /// digests minted elsewhere is read first, in one round trip, with
    /// [`RedisCatalog::prefetch_async`](crate::RedisCatalog::prefetch_async). Build it
    /// inside the runtime, with [`build_redis`](Self::build_redis) to reach those
    /// methods.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_catalog::{CatalogBuilder, Digest, RedisBuilder};
    ///
    /// # async fn service() -> Result<(), idempotency_catalog::Error> {
    /// let redis = RedisBuilder::from_env().build_async().await?;
    /// let catalog = CatalogBuilder::from_env().redis_async(redis).build_redis()?;
    /// let digests: Vec<Digest> = Vec::new(); // from a request
    /// catalog.prefetch_async(&digests).await?;
    /// catalog.flush_async().await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    #[must_use]
    pub fn redis_async(self, redis: Redis) -> Self {
        self.in_front_of(redis, RedisCatalog::new_async)
    }

    /// The catalog in front of `redis`, made by `in_front` (sync or async mode).
    #[cfg(feature = "redis")]
    fn in_front_of(mut self, redis: Redis, in_front: InFront) -> Self {
        self.redis = Some((redis, in_front));
        self
    }

    /// Whether eviction warnings show the evicted entry's original key beside its
    /// digest. Off by default: keys often hold emails or order numbers.
    #[must_use]
    pub fn log_keys(mut self, log_keys: bool) -> Self {
        self.log_keys = log_keys;
        self
    }

    /// Names the catalog: the value of the `catalog` label on its metrics (feature
    /// `metrics`), to tell several catalogs of one process apart on a dashboard.
    /// Default: `default`. Choose a fixed name, never one made from keys or input: a
    /// label's values should be few.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Checks every setting that applies and builds the catalog.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the source of the first bad value: a kind that
    /// is not one of the three, a capacity that is not a whole number from 1 up, a
    /// ceiling below the capacity, or a builder call that does not apply to the chosen
    /// kind; for `redis_async` (feature `tokio`), a build outside a tokio runtime.
    pub fn build(self) -> Result<Arc<dyn Catalog>, Error> {
        #[cfg(feature = "redis")]
        if self.redis.is_some() {
            return Ok(self.build_redis()?);
        }
        self.build_local()
    }

    /// Builds the catalog in front of Redis given to [`redis`](Self::redis) or
    /// `redis_async` (feature `tokio`), as its own type: for
    /// [`prefetch`](crate::RedisCatalog::prefetch) and the async methods.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), and [`Error::InvalidConfig`] when no handle was given.
    #[cfg(feature = "redis")]
    pub fn build_redis(mut self) -> Result<Arc<RedisCatalog>, Error> {
        let Some((redis, in_front)) = self.redis.take() else {
            return Err(Error::config(
                "CatalogBuilder::build_redis",
                "",
                "no Redis handle: call CatalogBuilder::redis first",
            ));
        };
        self.redis = Some((redis.clone(), in_front));
        let local = self.build_local()?;
        Ok(Arc::new(in_front(local, &redis)?))
    }

    /// The catalog in this process: the whole catalog, or the one in front of Redis.
    fn build_local(&self) -> Result<Arc<dyn Catalog>, Error> {
        let kind = match (self.kind, &self.env.kind) {
            (Some(kind), _) => kind,
            (None, Some(raw)) => raw
                .parse()
                .map_err(|_| Error::config(env::KIND, raw, "expected one of `lru`, `unbounded`, `batch-scaled`"))?,
            (None, None) => CatalogKind::default(),
        };
        let code_only = |value: Option<String>, method: &'static str| match value {
            Some(n) => Err(Error::config(method, n, format!("does not apply to a catalog of kind `{kind}`"))),
            None => Ok(()),
        };
        let shown = |n: Option<usize>| n.map(|n| n.to_string());
        let max_bytes = || max_bytes(self.max_bytes, &self.env.max_bytes);
        let capacity = || setting(self.capacity, CAPACITY, &self.env.capacity, env::CAPACITY);
        let (listener, log_keys) = (self.listener.clone(), self.log_keys);
        let name = self.name.as_deref().unwrap_or(DEFAULT_NAME);
        // Where each setting comes from, by the same rule as its value.
        let mut origins = Origins::builder();
        origins.kind.source = source(self.kind.is_some(), self.env.kind.is_some());
        origins.capacity.source = source(self.capacity.is_some(), self.env.capacity.is_some());
        origins.max_capacity.source = source(self.max_capacity.is_some(), self.env.max_capacity.is_some());
        origins.max_bytes.source = source(self.max_bytes.is_some(), self.env.max_bytes.is_some());
        origins.retain.source = source(self.retain.is_some(), self.env.retain.is_some());
        #[cfg(feature = "redis")]
        let backed = self.redis.is_some();
        #[cfg(not(feature = "redis"))]
        let backed = false;
        let local: Arc<dyn Catalog> = match kind {
            CatalogKind::Lru => {
                code_only(shown(self.max_capacity), MAX_CAPACITY)?;
                code_only(self.retain.map(|d| format!("{d:?}")), RETAIN)?;
                let capacity = capacity()?.map_or(DEFAULT_BASE, |(n, _)| n);
                let limits = Limits { max_bytes: max_bytes()?, retain: None };
                Arc::new(
                    LruCatalog::from_parts(capacity, limits, listener, log_keys, name).backed(backed).origins(origins),
                )
            }
            CatalogKind::Unbounded => {
                code_only(shown(self.capacity), CAPACITY)?;
                code_only(shown(self.max_capacity), MAX_CAPACITY)?;
                code_only(self.retain.map(|d| format!("{d:?}")), RETAIN)?;
                let limits = Limits { max_bytes: max_bytes()?, retain: None };
                Arc::new(UnboundedCatalog::from_parts(limits, listener, log_keys, name).backed(backed).origins(origins))
            }
            CatalogKind::BatchScaled => {
                let base = capacity()?.map_or(DEFAULT_BASE, |(n, _)| n);
                let max = match setting(self.max_capacity, MAX_CAPACITY, &self.env.max_capacity, env::MAX_CAPACITY)? {
                    Some((max, source)) if max < base => {
                        return Err(Error::config(
                            source,
                            max.to_string(),
                            format!("expected at least the capacity, {base}"),
                        ));
                    }
                    Some((max, _)) => max,
                    None => DEFAULT_CEILING.max(base),
                };
                let limits = Limits {
                    max_bytes: max_bytes()?.or(Limits::DEFAULT.max_bytes),
                    retain: match self.retain {
                        Some(retain) => Some(retain).filter(|d| !d.is_zero()),
                        None => retain(&self.env.retain)?,
                    },
                };
                Arc::new(
                    BatchScaledCatalog::from_parts(base, max, limits, listener, log_keys, name)
                        .backed(backed)
                        .origins(origins),
                )
            }
        };
        Ok(local)
    }
}

/// Where a setting came from: the builder call wins over the variable.
fn source(code: bool, env: bool) -> Source {
    match (code, env) {
        (true, _) => Source::Builder,
        (false, true) => Source::Env,
        (false, false) => Source::Default,
    }
}

/// How a catalog is put in front of Redis: [`RedisCatalog`]'s sync or async constructor.
#[cfg(feature = "redis")]
type InFront = fn(Arc<dyn Catalog>, &Redis) -> Result<RedisCatalog, Error>;

const CAPACITY: &str = "CatalogBuilder::capacity";
const MAX_CAPACITY: &str = "CatalogBuilder::max_capacity";
const MAX_BYTES: &str = "CatalogBuilder::max_bytes";
const RETAIN: &str = "CatalogBuilder::retain";

/// The byte budget from the builder call, else the variable; `None` when neither is set.
fn max_bytes(code: Option<usize>, env: &Option<String>) -> Result<Option<NonZeroUsize>, Error> {
    let expected = |also: &str| format!("expected a number of bytes from {MIN_MAX_BYTES} (64KiB){also}");
    if let Some(n) = code {
        return match NonZeroUsize::new(n).filter(|n| n.get() >= MIN_MAX_BYTES) {
            Some(n) => Ok(Some(n)),
            None => Err(Error::config(MAX_BYTES, n.to_string(), expected(""))),
        };
    }
    let Some(raw) = env else { return Ok(None) };
    budget::parse_bytes(raw).filter(|n| *n >= MIN_MAX_BYTES).and_then(NonZeroUsize::new).map(Some).ok_or_else(|| {
        Error::config(env::MAX_BYTES, raw, expected(", optionally with a KiB, MiB or GiB suffix (64MiB)"))
    })
}

/// The retention from the variable, else the default; `None` for `0s`.
fn retain(env: &Option<String>) -> Result<Option<Duration>, Error> {
    let Some(raw) = env else { return Ok(Some(defaults::RETAIN)) };
    if Ttl::wire_millis(raw) == Some(0) {
        return Ok(None);
    }
    raw.parse::<Ttl>().map(|ttl| Some(Duration::from(ttl))).map_err(|_| {
        Error::config(
            env::RETAIN,
            raw,
            "expected a duration such as 30s, 10m, 2h or 1d, or 0s to keep no free key past the capacity",
        )
    })
}

/// One capacity setting and where it came from: the builder call if made, else the
/// variable if set, else `None` for the default. A variable is checked here, when it
/// decides the setting, and nowhere else.
fn setting(
    code: Option<usize>,
    method: &'static str,
    env: &Option<String>,
    variable: &'static str,
) -> Result<Option<(NonZeroUsize, &'static str)>, Error> {
    let expected = || format!("expected a whole number from 1 to {}", usize::MAX);
    if let Some(n) = code {
        let n = NonZeroUsize::new(n).ok_or_else(|| Error::config(method, n.to_string(), expected()))?;
        return Ok(Some((n, method)));
    }
    let Some(raw) = env else { return Ok(None) };
    if raw.is_empty() {
        return Err(Error::config(variable, raw, format!("{}; unset the variable to use the default", expected())));
    }
    // A whole decimal number and nothing else: no sign, exponent, separators or space.
    raw.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| raw.parse::<NonZeroUsize>().ok())
        .flatten()
        .map(|n| Some((n, variable)))
        .ok_or_else(|| Error::config(variable, raw, expected()))
}

impl fmt::Debug for CatalogBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogBuilder")
            .field("kind", &self.kind)
            .field("capacity", &self.capacity)
            .field("max_capacity", &self.max_capacity)
            .field("max_bytes", &self.max_bytes)
            .field("retain", &self.retain)
            .field("env", &self.env)
            .field("listener", &self.listener.is_some())
            .field("log_keys", &self.log_keys)
            .field("name", &self.name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn build(vars: &[(&str, &str)]) -> Result<Arc<dyn Catalog>, Error> {
        CatalogBuilder::from_env_with(env(vars)).build()
    }

    #[test]
    fn unset_means_the_default() {
        let catalog = build(&[]).unwrap();
        assert_eq!((catalog.kind(), catalog.capacity()), (CatalogKind::BatchScaled, Some(defaults::CAPACITY)));
    }

    #[test]
    fn every_kind_is_read_from_the_environment() {
        for kind in CatalogKind::ALL {
            assert_eq!(build(&[(env::KIND, kind.as_str())]).unwrap().kind(), kind);
        }
        let catalog = build(&[(env::KIND, "lru"), (env::CAPACITY, "6235")]).unwrap();
        assert_eq!(catalog.capacity(), Some(6_235));
    }

    #[test]
    fn bad_numbers_name_the_variable_the_value_and_the_range() {
        for bad in ["abc", "0", "-5", "1e3", "+5", " 5", "5 ", "1_000", "99999999999999999999999", "٣"] {
            for var in [env::CAPACITY, env::MAX_CAPACITY] {
                let err = build(&[(var, bad)]).unwrap_err().to_string();
                assert!(
                    err.starts_with(&format!("invalid {var} {bad:?}: expected a whole number from 1 to ")),
                    "{err}"
                );
            }
        }
        let err = build(&[(env::CAPACITY, "")]).unwrap_err().to_string();
        assert!(err.contains("unset the variable to use the default"), "{err}");
    }

    #[test]
    fn a_bad_kind_lists_what_is_accepted() {
        let err = build(&[(env::KIND, "LRU")]).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"invalid IDEMPOTENCY_CATALOG_KIND "LRU": expected one of `lru`, `unbounded`, `batch-scaled`"#
        );
    }

    #[test]
    fn a_ceiling_below_the_base_is_refused() {
        let err = build(&[(env::CAPACITY, "1000"), (env::MAX_CAPACITY, "500")]).unwrap_err().to_string();
        assert_eq!(err, r#"invalid IDEMPOTENCY_CATALOG_MAX_CAPACITY "500": expected at least the capacity, 1000"#);
    }

    #[test]
    fn builder_calls_that_do_not_apply_are_refused() {
        let err = CatalogBuilder::new().kind(CatalogKind::Lru).max_capacity(10).build().unwrap_err().to_string();
        assert_eq!(err, r#"invalid CatalogBuilder::max_capacity "10": does not apply to a catalog of kind `lru`"#);
        let err = CatalogBuilder::new().kind(CatalogKind::Unbounded).capacity(10).build().unwrap_err().to_string();
        assert_eq!(err, r#"invalid CatalogBuilder::capacity "10": does not apply to a catalog of kind `unbounded`"#);
    }

    #[test]
    fn variables_that_do_not_apply_to_the_kind_are_not_read() {
        let catalog = build(&[(env::KIND, "unbounded"), (env::CAPACITY, "5000"), (env::MAX_CAPACITY, "x")]).unwrap();
        assert_eq!(catalog.kind(), CatalogKind::Unbounded);
        let catalog = CatalogBuilder::from_env_with(env(&[(env::CAPACITY, "5000")]))
            .kind(CatalogKind::Unbounded)
            .build()
            .unwrap();
        assert_eq!(catalog.capacity(), None);
        let catalog = build(&[(env::KIND, "lru"), (env::CAPACITY, "7"), (env::MAX_CAPACITY, "1")]).unwrap();
        assert_eq!(catalog.capacity(), Some(7));
    }

    #[test]
    fn builder_calls_override_the_environment_setting_by_setting() {
        let vars = env(&[(env::KIND, "LRU"), (env::CAPACITY, "abc"), (env::MAX_CAPACITY, "50000")]);
        let catalog = CatalogBuilder::from_env_with(vars).kind(CatalogKind::BatchScaled).capacity(7).build().unwrap();
        assert_eq!((catalog.kind(), catalog.capacity()), (CatalogKind::BatchScaled, Some(7)));
        // The ceiling was not overridden: the variable decides it.
        let _room = catalog.reserve(100_000);
        assert_eq!(catalog.capacity(), Some(50_000));
        // A variable checked against a builder value names the variable.
        let vars = env(&[(env::MAX_CAPACITY, "500")]);
        let err = CatalogBuilder::from_env_with(vars).capacity(1_000).build().unwrap_err().to_string();
        assert_eq!(err, r#"invalid IDEMPOTENCY_CATALOG_MAX_CAPACITY "500": expected at least the capacity, 1000"#);
    }

    #[test]
    fn the_byte_budget_is_read_with_its_suffixes_and_bad_values_are_named() {
        for (raw, bytes) in [("65536", 65_536), ("64KiB", 64 << 10), ("64MiB", 64 << 20), ("2GiB", 2 << 30)] {
            for kind in CatalogKind::ALL {
                let vars = [(env::KIND, kind.as_str()), (env::MAX_BYTES, raw)];
                assert_eq!(build(&vars).unwrap().stats().max_bytes, Some(bytes), "{kind} {raw}");
            }
        }
        for bad in ["", "64MB", "64 MiB", "1024", "0", "-1", "1.5GiB", "64mib"] {
            let err = build(&[(env::MAX_BYTES, bad)]).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "invalid IDEMPOTENCY_CATALOG_MAX_BYTES {bad:?}: expected a number of bytes from 65536 (64KiB), \
                     optionally with a KiB, MiB or GiB suffix (64MiB)"
                )
            );
        }
        let err = CatalogBuilder::new().max_bytes(1_000).build().unwrap_err().to_string();
        assert_eq!(err, r#"invalid CatalogBuilder::max_bytes "1000": expected a number of bytes from 65536 (64KiB)"#);
        // The builder call wins over the variable, which is then not read.
        let catalog = CatalogBuilder::from_env_with(env(&[(env::MAX_BYTES, "x")])).max_bytes(1 << 20).build().unwrap();
        assert_eq!(catalog.stats().max_bytes, Some(1 << 20));
    }

    #[test]
    fn the_retention_is_read_as_a_duration_and_applies_to_batch_scaled_catalogs_only() {
        let retained = |vars: &[(&str, &str)]| {
            let catalog = CatalogBuilder::from_env_with(env(vars)).capacity(1).build().unwrap();
            for i in 0..3u8 {
                catalog.register(crate::Digest::from_bytes([i; 32]), crate::KeyOptions::new("k", crate::Scope::Run));
            }
            catalog.stats().retained
        };
        assert_eq!(retained(&[]), 2, "retained by default");
        assert_eq!(retained(&[(env::RETAIN, "10m")]), 2);
        assert_eq!(retained(&[(env::RETAIN, "0s")]), 0, "0s keeps none");
        for bad in ["", "10", "10 m", "1h30m", "-5s", "ten"] {
            let err = build(&[(env::RETAIN, bad)]).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "invalid IDEMPOTENCY_CATALOG_RETAIN {bad:?}: expected a duration such as 30s, 10m, 2h or 1d, \
                     or 0s to keep no free key past the capacity"
                )
            );
        }
        // Not read for the other kinds; refused as a builder call.
        assert!(build(&[(env::KIND, "lru"), (env::RETAIN, "bad")]).is_ok());
        for kind in [CatalogKind::Lru, CatalogKind::Unbounded] {
            let err = CatalogBuilder::new().kind(kind).retain(Duration::from_secs(1)).build().unwrap_err().to_string();
            assert_eq!(
                err,
                format!(r#"invalid CatalogBuilder::retain "1s": does not apply to a catalog of kind `{kind}`"#)
            );
        }
        // The builder call wins, and zero keeps none.
        let catalog =
            CatalogBuilder::from_env_with(env(&[(env::RETAIN, "bad")])).retain(Duration::ZERO).build().unwrap();
        assert_eq!(catalog.kind(), CatalogKind::BatchScaled);
    }

    #[test]
    fn a_large_base_lifts_the_default_ceiling() {
        let catalog = CatalogBuilder::new().capacity(defaults::MAX_CAPACITY * 2).build().unwrap();
        let _room = catalog.reserve(10);
        assert_eq!(catalog.capacity(), Some(defaults::MAX_CAPACITY * 2));
    }
}
