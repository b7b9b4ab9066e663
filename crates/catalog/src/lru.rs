use std::num::NonZeroUsize;
use std::sync::Arc;

use crate::budget::Limits;
use crate::error::Error;
use crate::kind::DEFAULT_BASE;
use crate::remedy::Origins;
use crate::store::{DEFAULT_NAME, Policy, Store, delegate_catalog};
use crate::telemetry::{Listener, Source};

/// A catalog with a fixed capacity that evicts the least recently used entry when full:
/// the reference SDK's behaviour (capacity 1,000), made visible.
///
/// A [`reserve`](crate::Catalog::reserve) cannot grow it, nor keep a run's entries
/// apart, but it tells how many entries of a batch will not fit (counting every other
/// live reservation), so a caller can warn before anything is lost. Every eviction is
/// a possible loss, and warns.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{Catalog, Digest, KeyOptions, LruCatalog, Scope};
///
/// let catalog = LruCatalog::with_capacity(1_000)?;
/// for i in 0..6_235u32 {
///     let mut bytes = [0; 32];
///     bytes[..4].copy_from_slice(&i.to_be_bytes());
///     catalog.register(Digest::from_bytes(bytes), KeyOptions::new(&format!("item-{i}"), Scope::Global));
/// }
/// assert_eq!(catalog.len(), 1_000);
/// assert_eq!(catalog.stats().evicted, 5_235);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Debug)]
pub struct LruCatalog {
    store: Store,
}

impl LruCatalog {
    /// A catalog holding at most `capacity` entries.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `capacity` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::{Catalog, LruCatalog};
    ///
    /// assert_eq!(LruCatalog::with_capacity(64)?.capacity(), Some(64));
    /// assert!(LruCatalog::with_capacity(0).is_err());
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    pub fn with_capacity(capacity: usize) -> Result<Self, Error> {
        let capacity = NonZeroUsize::new(capacity)
            .ok_or_else(|| Error::config("LruCatalog::with_capacity capacity", "0", "expected at least 1"))?;
        Ok(Self::from_parts(capacity, Limits::default(), None, false, DEFAULT_NAME)
            .origins(Origins::constructed(CALL, Source::Builder)))
    }

    pub(crate) fn from_parts(
        capacity: NonZeroUsize,
        limits: Limits,
        listener: Option<Arc<dyn Listener>>,
        log_keys: bool,
        name: &str,
    ) -> Self {
        LruCatalog { store: Store::new(Policy::Fixed(capacity), limits, listener, log_keys, name) }
    }
}

impl Default for LruCatalog {
    /// A catalog of [`defaults::CAPACITY`](crate::defaults::CAPACITY) (1,000) entries, the
    /// reference SDK's figure.
    fn default() -> Self {
        Self::from_parts(DEFAULT_BASE, Limits::default(), None, false, DEFAULT_NAME)
            .origins(Origins::constructed(CALL, Source::Default))
    }
}

/// The constructor a remedy names for a catalog made without the builder.
const CALL: &str = "LruCatalog::with_capacity";

delegate_catalog!(LruCatalog);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, KeyOptions, Scope};

    use crate::digest::test_digest as digest;

    #[test]
    fn holds_exactly_the_newest_entries() {
        let catalog = LruCatalog::default();
        for i in 0..6_235 {
            catalog.register(digest(i), KeyOptions::new(&format!("item-{i}"), Scope::Global));
        }
        assert_eq!(catalog.len(), 1_000);
        for i in 0..5_235 {
            assert!(catalog.get(&digest(i)).is_none(), "{i} should be gone");
        }
        for i in 5_235..6_235 {
            assert_eq!(catalog.get(&digest(i)).map(|o| o.key().to_owned()), Some(format!("item-{i}")));
        }
        let stats = catalog.stats();
        assert_eq!((stats.registered, stats.evicted, stats.hits, stats.misses), (6_235, 5_235, 1_000, 5_235));
    }

    #[test]
    fn stats_serialize_as_an_object_of_their_fields() {
        let catalog = LruCatalog::with_capacity(1).unwrap();
        catalog.register(digest(1), KeyOptions::new("a", Scope::Run));
        catalog.register(digest(2), KeyOptions::new("b", Scope::Run));
        let json = serde_json::to_value(catalog.stats()).unwrap();
        assert_eq!((json["registered"].as_u64(), json["evicted"].as_u64()), (Some(2), Some(1)));
        assert_eq!((json["capacity"].as_u64(), json["len"].as_u64()), (Some(1), Some(1)));
    }

    #[test]
    fn a_lookup_refreshes_recency() {
        let catalog = LruCatalog::with_capacity(2).unwrap();
        catalog.register(digest(1), KeyOptions::new("a", Scope::Run));
        catalog.register(digest(2), KeyOptions::new("b", Scope::Run));
        assert!(catalog.get(&digest(1)).is_some());
        catalog.register(digest(3), KeyOptions::new("c", Scope::Run));
        assert!(catalog.get(&digest(1)).is_some());
        assert!(catalog.get(&digest(2)).is_none());
    }

    #[test]
    fn re_registering_replaces_without_evicting() {
        let catalog = LruCatalog::with_capacity(1).unwrap();
        catalog.register(digest(1), KeyOptions::new("a", Scope::Run));
        catalog.register(digest(1), KeyOptions::new("a", Scope::Global));
        assert_eq!(catalog.get(&digest(1)).map(|o| o.scope()), Some(Scope::Global));
        let stats = catalog.stats();
        assert_eq!((stats.registered, stats.replaced, stats.evicted), (1, 1, 0));
    }

    #[test]
    fn a_reservation_reports_the_shortfall_but_does_not_grow() {
        let catalog = LruCatalog::with_capacity(1_000).unwrap();
        let guard = catalog.reserve(6_235);
        assert_eq!((guard.requested(), guard.shortfall()), (6_235, 5_235));
        assert_eq!(catalog.capacity(), Some(1_000));
        assert_eq!(catalog.stats().reserved, 6_235);
        drop(guard);
        assert_eq!(catalog.stats().reserved, 0);
        assert_eq!(catalog.reserve(1_000).shortfall(), 0);
    }

    #[test]
    fn a_shortfall_counts_the_other_live_reservations() {
        let catalog = LruCatalog::with_capacity(1_000).unwrap();
        let first = catalog.reserve(600);
        assert_eq!(first.shortfall(), 0);
        assert_eq!(catalog.reserve(600).shortfall(), 200);
        drop(first);
        assert_eq!(catalog.reserve(600).shortfall(), 0);
    }
}
