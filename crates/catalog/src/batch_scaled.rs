use std::num::NonZeroUsize;
use std::sync::Arc;

use crate::config::{DEFAULT_CAPACITY, DEFAULT_MAX_CAPACITY};
use crate::error::Error;
use crate::store::{Policy, Store, delegate_catalog};
use crate::telemetry::EvictionListener;

/// The default kind: a base capacity plus every live reservation, never above a
/// ceiling.
///
/// A batch of `n` keys reserves `n` entries before registering them, so the catalog
/// grows to hold the whole batch; growing never evicts. When the reservation ends,
/// the catalog shrinks back to its base and sheds the oldest entries, each counted,
/// passed to the listener and covered by a warning.
///
/// Concurrent reservations add up, and the room of overlapping reservations is
/// returned together, when the last of them ends: shrinking earlier would shed the
/// oldest entries, and those may belong to a batch that is still being built. For the
/// same reason, while any reservation is live, a new key that would evict (one that
/// nobody reserved room for, such as another task's) grows the catalog instead,
/// doubling up to the ceiling: a batch that reserved its room loses nothing unless the
/// ceiling is reached.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{BatchScaledCatalog, Catalog, Digest, KeyOptions, Scope};
///
/// let catalog = BatchScaledCatalog::new(1_000, 1_000_000)?;
/// {
///     let batch = catalog.reserve(6_235);
///     assert_eq!(batch.shortfall(), 0);
///     for i in 0..6_235u32 {
///         let mut bytes = [0; 32];
///         bytes[..4].copy_from_slice(&i.to_be_bytes());
///         catalog.register(Digest::from_bytes(bytes), KeyOptions::new("k", Scope::Global));
///     }
///     assert_eq!(catalog.len(), 6_235); // nothing lost while the batch is built
/// }
/// assert_eq!(catalog.len(), 1_000); // back to base: the oldest 5,235 were shed
/// assert_eq!(catalog.stats().evicted_shrink, 5_235);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Debug)]
pub struct BatchScaledCatalog {
    store: Store,
}

impl BatchScaledCatalog {
    /// A catalog of `capacity` entries between batches, growing with reservations up
    /// to `max_capacity`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `capacity` is zero or `max_capacity` is below it.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::BatchScaledCatalog;
    ///
    /// assert!(BatchScaledCatalog::new(1_000, 10_000).is_ok());
    /// let err = BatchScaledCatalog::new(1_000, 10).unwrap_err();
    /// assert_eq!(err.to_string(), r#"invalid BatchScaledCatalog::new max_capacity "10": expected at least the capacity, 1000"#);
    /// ```
    pub fn new(capacity: usize, max_capacity: usize) -> Result<Self, Error> {
        let base = NonZeroUsize::new(capacity)
            .ok_or_else(|| Error::config("BatchScaledCatalog::new capacity", "0", "expected at least 1"))?;
        let max = NonZeroUsize::new(max_capacity).filter(|max| *max >= base).ok_or_else(|| {
            Error::config(
                "BatchScaledCatalog::new max_capacity",
                max_capacity.to_string(),
                format!("expected at least the capacity, {capacity}"),
            )
        })?;
        Ok(Self::from_parts(base, max, None, false))
    }

    pub(crate) fn from_parts(
        base: NonZeroUsize,
        max: NonZeroUsize,
        listener: Option<Arc<dyn EvictionListener>>,
        log_keys: bool,
    ) -> Self {
        BatchScaledCatalog { store: Store::new(Policy::Scaled { base, max }, listener, log_keys) }
    }
}

impl Default for BatchScaledCatalog {
    /// Base [`DEFAULT_CAPACITY`] (1,000), ceiling [`DEFAULT_MAX_CAPACITY`] (1,000,000).
    fn default() -> Self {
        let base = NonZeroUsize::new(DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN);
        let max = NonZeroUsize::new(DEFAULT_MAX_CAPACITY).unwrap_or(NonZeroUsize::MAX);
        Self::from_parts(base, max, None, false)
    }
}

delegate_catalog!(BatchScaledCatalog);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, KeyOptions, Scope};

    use crate::digest::test_digest as digest;

    fn fill(catalog: &dyn Catalog, range: std::ops::Range<u32>) {
        for i in range {
            catalog.register(digest(i), KeyOptions::new("k", Scope::Run));
        }
    }

    #[test]
    fn overlapping_reservations_add_up_and_shrink_together() {
        let catalog = BatchScaledCatalog::new(10, 1_000).unwrap();
        let a = catalog.reserve(100);
        let b = catalog.reserve(50);
        assert_eq!(catalog.capacity(), Some(160));
        fill(&catalog, 0..160);
        assert_eq!(catalog.stats().evictions(), 0);
        // `b` is still live, and its entries may be the oldest: nothing is shed yet.
        drop(a);
        assert_eq!((catalog.capacity(), catalog.len()), (Some(160), 160));
        drop(b);
        assert_eq!((catalog.capacity(), catalog.len()), (Some(10), 10));
        // The newest survive the shrink.
        assert!(catalog.get(&digest(159)).is_some() && catalog.get(&digest(149)).is_none());
        assert_eq!(catalog.stats().evicted_shrink, 150);
    }

    #[test]
    fn unreserved_keys_during_a_batch_grow_the_catalog_rather_than_evict_the_batch() {
        // Found by the SDK's stress test: another task registering more keys than the
        // base holds, while a batch was being built, pushed out the batch's oldest keys.
        let catalog = BatchScaledCatalog::new(10, 1_000).unwrap();
        let batch = catalog.reserve(100);
        for i in 0..100 {
            catalog.register(digest(i), KeyOptions::new("batch", Scope::Run));
            catalog.register(digest(10_000 + i), KeyOptions::new("unreserved", Scope::Run));
        }
        assert!((0..100).all(|i| catalog.get(&digest(i)).is_some()));
        assert_eq!(catalog.stats().evicted_capacity, 0);
        assert_eq!(catalog.capacity(), Some(220), "110 doubled once");
        drop(batch);
        assert_eq!((catalog.len(), catalog.capacity()), (10, Some(10)));
    }

    #[test]
    fn the_ceiling_caps_growth_and_the_shortfall_says_so() {
        let catalog = BatchScaledCatalog::new(10, 100).unwrap();
        let guard = catalog.reserve(500);
        assert_eq!(catalog.capacity(), Some(100));
        assert_eq!(guard.shortfall(), 400);
        fill(&catalog, 0..500);
        assert_eq!(catalog.stats().evicted_capacity, 400);
    }

    #[test]
    fn without_a_reservation_it_behaves_like_an_lru_of_its_base() {
        let catalog = BatchScaledCatalog::new(3, 100).unwrap();
        fill(&catalog, 0..5);
        assert_eq!(catalog.len(), 3);
        assert_eq!(catalog.stats().evicted_capacity, 2);
    }

    #[test]
    fn zero_capacity_is_refused_naming_the_value() {
        let err = BatchScaledCatalog::new(0, 10).unwrap_err().to_string();
        assert_eq!(err, r#"invalid BatchScaledCatalog::new capacity "0": expected at least 1"#);
    }
}
