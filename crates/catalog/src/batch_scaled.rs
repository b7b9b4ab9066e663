use std::num::NonZeroUsize;
use std::sync::Arc;

use crate::budget::Limits;
use crate::error::Error;
use crate::kind::{DEFAULT_BASE, DEFAULT_CEILING};
use crate::remedy::Origins;
use crate::store::{DEFAULT_NAME, Policy, Store, delegate_catalog};
use crate::telemetry::{Listener, Source};

/// The default kind: a base capacity for free entries, plus what live runs and
/// reservations hold, never above a ceiling.
///
/// - **A run keeps its keys.** Every key registered through a live
///   [`Reservation`](crate::Reservation) (a run, or a batch) keeps its options until
///   the reservation ends, whatever else is registered meanwhile, up to the ceiling.
/// - **Room follows what is live.** The capacity is the base plus, for each live
///   reservation, the room it asked for or the entries it holds, whichever is more; it
///   is back at the base as soon as nothing is live, however reservations overlapped.
/// - **Ending is a release, not a loss.** When a reservation ends, the newest of its
///   entries, up to the base, stay as free entries and the rest are released: counted
///   in [`Stats::released`](crate::Stats::released), logged at `DEBUG`.
/// - **Keys outside a run are kept a while.** Free entries (keys registered outside
///   any reservation) fill the base as an LRU; with a retention (the default
///   configuration: [`CatalogBuilder::retain`](crate::CatalogBuilder::retain), 10
///   minutes) those it pushes out are kept until their retention ends, then released.
///   Without one ([`new`](Self::new)), they are evicted.
/// - **Bounded in bytes too**, with a budget ([`CatalogBuilder::max_bytes`](crate::CatalogBuilder::max_bytes),
///   128 MiB under the default configuration): at the ceiling or the budget the oldest
///   retained entries go first, then the oldest free ones, then the oldest of the
///   reservation that needs the room.
/// - **Warnings mean a loss.** What is dropped while it may still be needed (a free
///   entry pushed out without a retention, anything dropped at the ceiling or the
///   budget) is counted in [`Stats::evicted`](crate::Stats::evicted), passed to the
///   listener and warned about.
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
///         batch.register(Digest::from_bytes(bytes), KeyOptions::new("k", Scope::Global));
///     }
///     assert_eq!(catalog.len(), 6_235); // nothing lost while the batch is built
/// }
/// assert_eq!(catalog.len(), 1_000); // back to base: the newest 1,000 stay
/// let stats = catalog.stats();
/// assert_eq!((stats.released, stats.evicted), (5_235, 0));
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Debug)]
pub struct BatchScaledCatalog {
    store: Store,
}

impl BatchScaledCatalog {
    /// A catalog of `capacity` free entries, growing with live reservations up to
    /// `max_capacity` entries in all; no retention and no byte budget (build one with
    /// [`CatalogBuilder`](crate::CatalogBuilder) for those).
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
        let origins = Origins::constructed("BatchScaledCatalog::new", Source::Builder);
        Ok(Self::from_parts(base, max, Limits::default(), None, false, DEFAULT_NAME).origins(origins))
    }

    pub(crate) fn from_parts(
        base: NonZeroUsize,
        max: NonZeroUsize,
        limits: Limits,
        listener: Option<Arc<dyn Listener>>,
        log_keys: bool,
        name: &str,
    ) -> Self {
        BatchScaledCatalog { store: Store::new(Policy::Scaled { base, max }, limits, listener, log_keys, name) }
    }
}

impl Default for BatchScaledCatalog {
    /// The default configuration: base [`defaults::CAPACITY`](crate::defaults::CAPACITY)
    /// (1,000), ceiling [`defaults::MAX_CAPACITY`](crate::defaults::MAX_CAPACITY)
    /// (1,000,000), budget [`defaults::MAX_BYTES`](crate::defaults::MAX_BYTES) (128 MiB),
    /// retention [`defaults::RETAIN`](crate::defaults::RETAIN) (10 minutes).
    fn default() -> Self {
        let origins = Origins::constructed("BatchScaledCatalog::new", Source::Default);
        Self::from_parts(DEFAULT_BASE, DEFAULT_CEILING, Limits::DEFAULT, None, false, DEFAULT_NAME).origins(origins)
    }
}

delegate_catalog!(BatchScaledCatalog);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::test_digest as digest;
    use crate::{Catalog, KeyOptions, Reservation, Scope};

    fn fill(reservation: &Reservation<'_>, range: std::ops::Range<u32>) {
        for i in range {
            reservation.register(digest(i), KeyOptions::new("k", Scope::Run));
        }
    }

    #[test]
    fn overlapping_reservations_each_release_their_own_entries() {
        let catalog = BatchScaledCatalog::new(10, 1_000).unwrap();
        let a = catalog.reserve(100);
        let b = catalog.reserve(50);
        assert_eq!(catalog.capacity(), Some(160));
        fill(&a, 0..100);
        fill(&b, 100..150);
        assert_eq!(catalog.stats().evicted, 0);
        // `a` ends while `b` goes on: `b`'s entries, older or not, all stay.
        drop(a);
        assert_eq!((catalog.capacity(), catalog.len()), (Some(60), 60));
        assert!((100..150).all(|i| catalog.get(&digest(i)).is_some()));
        drop(b);
        assert_eq!((catalog.capacity(), catalog.len()), (Some(10), 10));
        // The newest survive as free entries.
        assert!(catalog.get(&digest(149)).is_some() && catalog.get(&digest(139)).is_none());
        let stats = catalog.stats();
        assert_eq!((stats.released, stats.evicted), (140, 0));
    }

    #[test]
    fn a_run_keeps_its_keys_whatever_is_registered_outside_it() {
        let catalog = BatchScaledCatalog::new(10, 1_000).unwrap();
        let run = catalog.reserve(0);
        for i in 0..100 {
            run.register(digest(i), KeyOptions::new("run", Scope::Run));
            catalog.register(digest(10_000 + i), KeyOptions::new("outside", Scope::Run));
        }
        assert!((0..100).all(|i| catalog.get(&digest(i)).is_some()));
        // Outside any run the base is an LRU: 90 of the 100 were evicted, and warned.
        assert_eq!(catalog.stats().evicted, 90);
        assert_eq!(catalog.capacity(), Some(110));
        drop(run);
        assert_eq!((catalog.len(), catalog.capacity()), (10, Some(10)));
    }

    #[test]
    fn the_ceiling_caps_growth_and_the_shortfall_says_so() {
        let catalog = BatchScaledCatalog::new(10, 100).unwrap();
        let guard = catalog.reserve(500);
        assert_eq!(catalog.capacity(), Some(100));
        // 100 of the 500 fit beside nothing else: the 400 evicted below.
        assert_eq!(guard.shortfall(), 400);
        fill(&guard, 0..500);
        assert_eq!(catalog.len(), 100);
        assert_eq!(catalog.stats().evicted, 400);
        // The newest stay.
        assert!(catalog.get(&digest(499)).is_some() && catalog.get(&digest(399)).is_none());
    }

    #[test]
    fn a_shortfall_counts_every_other_live_reservation() {
        let catalog = BatchScaledCatalog::new(10, 100).unwrap();
        let first = catalog.reserve(90);
        let second = catalog.reserve(90);
        // The second fits 10 beside the first's 90: 80 are evicted if both fill.
        assert_eq!((first.shortfall(), second.shortfall()), (0, 80));
        for (i, guard) in [&first, &second].into_iter().enumerate() {
            for n in 0..90 {
                guard.register(digest(i as u32 * 1_000 + n), KeyOptions::new("k", Scope::Run));
            }
        }
        assert_eq!(catalog.stats().evicted, 80);
    }

    #[test]
    fn without_a_reservation_it_behaves_like_an_lru_of_its_base() {
        let catalog = BatchScaledCatalog::new(3, 100).unwrap();
        for i in 0..5 {
            catalog.register(digest(i), KeyOptions::new("k", Scope::Run));
        }
        assert_eq!(catalog.len(), 3);
        assert_eq!(catalog.stats().evicted, 2);
    }

    #[test]
    fn a_digest_registered_again_moves_to_the_newest_holder() {
        let catalog = BatchScaledCatalog::new(1, 100).unwrap();
        catalog.register(digest(1), KeyOptions::new("free", Scope::Run));
        let run = catalog.reserve(0);
        run.register(digest(1), KeyOptions::new("run", Scope::Run));
        catalog.register(digest(2), KeyOptions::new("other", Scope::Run));
        assert_eq!(catalog.get(&digest(1)).map(|o| o.key().to_owned()).as_deref(), Some("run"));
        let stats = catalog.stats();
        assert_eq!((stats.registered, stats.replaced, stats.len, stats.evicted), (2, 1, 2, 0));
    }

    #[test]
    fn zero_capacity_is_refused_naming_the_value() {
        let err = BatchScaledCatalog::new(0, 10).unwrap_err().to_string();
        assert_eq!(err, r#"invalid BatchScaledCatalog::new capacity "0": expected at least 1"#);
    }
}
