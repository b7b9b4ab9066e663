use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::Arc;

use crate::batch_scaled::BatchScaledCatalog;
use crate::catalog::Catalog;
use crate::error::{Error, shown};
use crate::lru::LruCatalog;
use crate::telemetry::EvictionListener;
use crate::unbounded::UnboundedCatalog;

/// The variable that picks the catalog kind: `lru`, `unbounded` or `batch-scaled`.
pub const ENV_KIND: &str = "IDEMPOTENCY_CATALOG_KIND";
/// The variable that sets the capacity (the base capacity of a batch-scaled catalog).
pub const ENV_CAPACITY: &str = "IDEMPOTENCY_CATALOG_CAPACITY";
/// The variable that sets the ceiling of a batch-scaled catalog.
pub const ENV_MAX_CAPACITY: &str = "IDEMPOTENCY_CATALOG_MAX_CAPACITY";

/// The default capacity, the reference SDK's figure.
pub const DEFAULT_CAPACITY: usize = 1_000;
/// The default ceiling of a batch-scaled catalog: about 115 MB of entries at most
/// (see `docs/performance.md`).
pub const DEFAULT_MAX_CAPACITY: usize = 1_000_000;

/// Which capacity policy a catalog follows.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::CatalogKind;
///
/// assert_eq!(CatalogKind::default(), CatalogKind::BatchScaled);
/// assert_eq!("batch-scaled".parse::<CatalogKind>()?, CatalogKind::BatchScaled);
/// assert_eq!(CatalogKind::Lru.to_string(), "lru");
/// assert!("LRU ".parse::<CatalogKind>().is_err());
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CatalogKind {
    /// [`LruCatalog`]: fixed capacity, least recently used entry evicted.
    Lru,
    /// [`UnboundedCatalog`]: never evicts; cleared at run boundaries.
    Unbounded,
    /// [`BatchScaledCatalog`]: grows with reservations, shrinks back after them.
    #[default]
    BatchScaled,
}

impl CatalogKind {
    /// Every kind.
    pub const ALL: [CatalogKind; 3] = [CatalogKind::Lru, CatalogKind::Unbounded, CatalogKind::BatchScaled];

    /// The name accepted by [`ENV_KIND`].
    pub const fn as_str(self) -> &'static str {
        match self {
            CatalogKind::Lru => "lru",
            CatalogKind::Unbounded => "unbounded",
            CatalogKind::BatchScaled => "batch-scaled",
        }
    }
}

impl fmt::Display for CatalogKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CatalogKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CatalogKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| Error::InvalidKind { value: shown(s) })
    }
}

/// One setting and where it came from, so that an error can name its source.
#[derive(Clone, Copy, Debug)]
struct Setting<T> {
    value: T,
    source: &'static str,
}

/// Builds a catalog of any kind, from code, from the environment, or both (builder
/// calls override environment variables).
///
/// Nothing is checked until [`build`](Self::build), which reports the first bad value
/// naming where it came from (the variable or the builder method) and what is accepted.
///
/// | setting | builder | variable | default |
/// |---|---|---|---|
/// | kind | [`kind`](Self::kind) | [`ENV_KIND`] | `batch-scaled` |
/// | capacity | [`capacity`](Self::capacity) | [`ENV_CAPACITY`] | [`DEFAULT_CAPACITY`] |
/// | ceiling | [`max_capacity`](Self::max_capacity) | [`ENV_MAX_CAPACITY`] | [`DEFAULT_MAX_CAPACITY`], or the capacity if larger |
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
/// let err = CatalogBuilder::from_env_with(env)?.build().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"invalid IDEMPOTENCY_CATALOG_CAPACITY "abc": expected a whole number from 1 to 18446744073709551615"#
/// );
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct CatalogBuilder {
    kind: Option<Setting<CatalogKind>>,
    capacity: Option<Setting<Result<usize, String>>>,
    max_capacity: Option<Setting<Result<usize, String>>>,
    listener: Option<Arc<dyn EvictionListener>>,
    log_keys: bool,
}

impl CatalogBuilder {
    /// A builder with every setting at its default; the environment is not read.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder seeded from the process environment ([`ENV_KIND`], [`ENV_CAPACITY`],
    /// [`ENV_MAX_CAPACITY`]). Unset variables keep their defaults; builder calls made
    /// afterwards override what was read.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKind`]-style [`Error::InvalidConfig`] naming the variable when
    /// one is set to a value that is not accepted (including an empty value or one
    /// that is not unicode). Numbers are checked by [`build`](Self::build).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_env_with(|name| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned()))
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`, which
    /// returns a variable's value or `None` when it is unset.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut builder = Self::new();
        if let Some(value) = lookup(ENV_KIND) {
            let kind = value
                .parse::<CatalogKind>()
                .map_err(|_| Error::config(ENV_KIND, &value, "expected one of `lru`, `unbounded`, `batch-scaled`"))?;
            builder.kind = Some(Setting { value: kind, source: ENV_KIND });
        }
        builder.capacity = lookup(ENV_CAPACITY).map(|raw| Setting { value: Err(raw), source: ENV_CAPACITY });
        builder.max_capacity =
            lookup(ENV_MAX_CAPACITY).map(|raw| Setting { value: Err(raw), source: ENV_MAX_CAPACITY });
        Ok(builder)
    }

    /// Sets the kind. Default: [`CatalogKind::BatchScaled`].
    pub fn kind(mut self, kind: CatalogKind) -> Self {
        self.kind = Some(Setting { value: kind, source: "CatalogBuilder::kind" });
        self
    }

    /// Sets the capacity of an LRU catalog, or the base capacity of a batch-scaled one.
    /// Must be at least 1; does not apply to an unbounded catalog.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(Setting { value: Ok(capacity), source: "CatalogBuilder::capacity" });
        self
    }

    /// Sets the ceiling of a batch-scaled catalog. Must be at least the capacity;
    /// applies to no other kind.
    pub fn max_capacity(mut self, max_capacity: usize) -> Self {
        self.max_capacity = Some(Setting { value: Ok(max_capacity), source: "CatalogBuilder::max_capacity" });
        self
    }

    /// Sets a hook called for every eviction.
    pub fn listener(mut self, listener: impl EvictionListener + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Whether eviction warnings show the evicted entry's original key beside its
    /// digest. Off by default: keys often hold emails or order numbers.
    pub fn log_keys(mut self, log_keys: bool) -> Self {
        self.log_keys = log_keys;
        self
    }

    /// Checks every setting and builds the catalog.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the source of the first bad value: a capacity
    /// that is not a whole number from 1 up, a ceiling below the capacity, or a
    /// setting that does not apply to the chosen kind.
    pub fn build(self) -> Result<Arc<dyn Catalog>, Error> {
        let kind = self.kind.map_or(CatalogKind::default(), |kind| kind.value);
        let capacity = self.capacity.map(number).transpose()?;
        let max_capacity = self.max_capacity.map(number).transpose()?;
        let not_for = |setting: Setting<NonZeroUsize>| {
            Error::config(
                setting.source,
                setting.value.to_string(),
                format!("does not apply to a catalog of kind `{kind}`"),
            )
        };
        let default_capacity = NonZeroUsize::new(DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN);
        let listener = self.listener;
        let log_keys = self.log_keys;
        Ok(match kind {
            CatalogKind::Lru => {
                if let Some(max) = max_capacity {
                    return Err(not_for(max));
                }
                let capacity = capacity.map_or(default_capacity, |c| c.value);
                Arc::new(LruCatalog::from_parts(capacity, listener, log_keys))
            }
            CatalogKind::Unbounded => {
                if let Some(setting) = capacity.or(max_capacity) {
                    return Err(not_for(setting));
                }
                Arc::new(UnboundedCatalog::from_parts(listener, log_keys))
            }
            CatalogKind::BatchScaled => {
                let base = capacity.map_or(default_capacity, |c| c.value);
                let max = match max_capacity {
                    Some(max) if max.value < base => {
                        return Err(Error::config(
                            max.source,
                            max.value.to_string(),
                            format!("expected at least the capacity, {base}"),
                        ));
                    }
                    Some(max) => max.value,
                    None => NonZeroUsize::new(DEFAULT_MAX_CAPACITY).unwrap_or(NonZeroUsize::MAX).max(base),
                };
                Arc::new(BatchScaledCatalog::from_parts(base, max, listener, log_keys))
            }
        })
    }
}

/// Checks a capacity: a builder value must be at least 1; a variable must be a whole
/// decimal number from 1 to `usize::MAX`, nothing else (no sign, no exponent, no
/// separators, no surrounding space).
fn number(setting: Setting<Result<usize, String>>) -> Result<Setting<NonZeroUsize>, Error> {
    let expected = || format!("expected a whole number from 1 to {}", usize::MAX);
    let parsed = match &setting.value {
        Ok(n) => NonZeroUsize::new(*n).ok_or_else(|| Error::config(setting.source, n.to_string(), expected()))?,
        Err(raw) if raw.is_empty() => {
            return Err(Error::config(
                setting.source,
                raw,
                format!("{}; unset the variable to use the default", expected()),
            ));
        }
        Err(raw) => raw
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| raw.parse::<NonZeroUsize>().ok())
            .flatten()
            .ok_or_else(|| Error::config(setting.source, raw, expected()))?,
    };
    Ok(Setting { value: parsed, source: setting.source })
}

impl fmt::Debug for CatalogBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogBuilder")
            .field("kind", &self.kind.map(|k| k.value))
            .field("capacity", &self.capacity.as_ref().map(|c| &c.value))
            .field("max_capacity", &self.max_capacity.as_ref().map(|c| &c.value))
            .field("listener", &self.listener.is_some())
            .field("log_keys", &self.log_keys)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn build(vars: &[(&str, &str)]) -> Result<Arc<dyn Catalog>, Error> {
        CatalogBuilder::from_env_with(env(vars))?.build()
    }

    #[test]
    fn unset_means_the_default() {
        let catalog = build(&[]).unwrap();
        assert_eq!((catalog.kind(), catalog.capacity()), (CatalogKind::BatchScaled, Some(DEFAULT_CAPACITY)));
    }

    #[test]
    fn every_kind_is_read_from_the_environment() {
        for kind in CatalogKind::ALL {
            assert_eq!(build(&[(ENV_KIND, kind.as_str())]).unwrap().kind(), kind);
        }
        let catalog = build(&[(ENV_KIND, "lru"), (ENV_CAPACITY, "6235")]).unwrap();
        assert_eq!(catalog.capacity(), Some(6_235));
    }

    #[test]
    fn bad_numbers_name_the_variable_the_value_and_the_range() {
        for bad in ["abc", "0", "-5", "1e3", "+5", " 5", "5 ", "1_000", "99999999999999999999999", "٣"] {
            for var in [ENV_CAPACITY, ENV_MAX_CAPACITY] {
                let err = build(&[(var, bad)]).unwrap_err().to_string();
                assert!(
                    err.starts_with(&format!("invalid {var} {bad:?}: expected a whole number from 1 to ")),
                    "{err}"
                );
            }
        }
        let err = build(&[(ENV_CAPACITY, "")]).unwrap_err().to_string();
        assert!(err.contains("unset the variable to use the default"), "{err}");
    }

    #[test]
    fn a_bad_kind_lists_what_is_accepted() {
        let err = build(&[(ENV_KIND, "LRU")]).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"invalid IDEMPOTENCY_CATALOG_KIND "LRU": expected one of `lru`, `unbounded`, `batch-scaled`"#
        );
    }

    #[test]
    fn a_ceiling_below_the_base_is_refused() {
        let err = build(&[(ENV_CAPACITY, "1000"), (ENV_MAX_CAPACITY, "500")]).unwrap_err().to_string();
        assert_eq!(err, r#"invalid IDEMPOTENCY_CATALOG_MAX_CAPACITY "500": expected at least the capacity, 1000"#);
    }

    #[test]
    fn settings_that_do_not_apply_are_refused() {
        let err = build(&[(ENV_KIND, "unbounded"), (ENV_CAPACITY, "10")]).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"invalid IDEMPOTENCY_CATALOG_CAPACITY "10": does not apply to a catalog of kind `unbounded`"#
        );
        let err = CatalogBuilder::new().kind(CatalogKind::Lru).max_capacity(10).build().unwrap_err().to_string();
        assert_eq!(err, r#"invalid CatalogBuilder::max_capacity "10": does not apply to a catalog of kind `lru`"#);
    }

    #[test]
    fn builder_calls_override_the_environment() {
        let catalog = CatalogBuilder::from_env_with(env(&[(ENV_KIND, "unbounded"), (ENV_CAPACITY, "abc")]))
            .unwrap()
            .kind(CatalogKind::Lru)
            .capacity(7)
            .build()
            .unwrap();
        assert_eq!((catalog.kind(), catalog.capacity()), (CatalogKind::Lru, Some(7)));
    }

    #[test]
    fn a_large_base_lifts_the_default_ceiling() {
        let catalog = CatalogBuilder::new().capacity(DEFAULT_MAX_CAPACITY * 2).build().unwrap();
        let _room = catalog.reserve(10);
        assert_eq!(catalog.capacity(), Some(DEFAULT_MAX_CAPACITY * 2));
    }
}
