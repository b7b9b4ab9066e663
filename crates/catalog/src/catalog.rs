use std::fmt;

use crate::config::CatalogKind;
use crate::digest::Digest;
use crate::key_options::KeyOptions;
use crate::telemetry::Stats;

/// A shared map from idempotency-key digests to their [`KeyOptions`], with a capacity
/// policy and eviction telemetry.
///
/// Every method takes `&self`: a catalog is meant to be shared between threads, usually
/// as an `Arc<dyn Catalog>`. The trait is object safe.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{Catalog, Digest, KeyOptions, LruCatalog, Scope};
///
/// let catalog = LruCatalog::with_capacity(2)?;
/// let digest = Digest::from_bytes([1; 32]);
/// catalog.register(digest, KeyOptions::new("item-1", Scope::Global));
///
/// assert_eq!(catalog.get(&digest).map(|o| o.scope()), Some(Scope::Global));
/// assert_eq!(catalog.len(), 1);
/// assert_eq!(catalog.stats().hits, 1);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
pub trait Catalog: Send + Sync + fmt::Debug {
    /// Records `options` for `digest`, replacing what was there. May evict older
    /// entries when the catalog is full; every eviction is counted, passed to the
    /// eviction listener and covered by a `tracing` warning.
    fn register(&self, digest: Digest, options: KeyOptions);

    /// The options recorded for `digest`, if still held. Counts a hit or a miss.
    ///
    /// The returned value shares the stored key rather than copying it (see
    /// [`KeyOptions`]), so looking costs no allocation.
    fn get(&self, digest: &Digest) -> Option<KeyOptions>;

    /// Removes `digest`, returning its options if it was held.
    fn remove(&self, digest: &Digest) -> Option<KeyOptions>;

    /// Removes every entry. Also emits the summary of any evictions not yet reported.
    fn clear(&self);

    /// How many entries are held.
    fn len(&self) -> usize;

    /// Whether no entries are held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries fit before the next registration evicts: `None` when unbounded.
    /// For a batch-scaled catalog this moves with its live reservations.
    fn capacity(&self) -> Option<usize>;

    /// Which capacity policy this catalog follows.
    fn kind(&self) -> CatalogKind;

    /// A consistent snapshot of the counters.
    fn stats(&self) -> Stats;

    /// Holds room for `additional` more entries until the returned guard is dropped.
    ///
    /// What that means depends on the kind: a batch-scaled catalog grows (up to its
    /// ceiling), an LRU catalog cannot grow but the guard says how many of the
    /// `additional` entries will not fit, and an unbounded catalog always has room.
    /// Dropping the guard also reports any evictions that are still unreported.
    fn reserve(&self, additional: usize) -> Reservation<'_>;
}

/// Room held in a catalog for a batch of entries, released when dropped.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{BatchScaledCatalog, Catalog, LruCatalog};
///
/// let lru = LruCatalog::with_capacity(1_000)?;
/// let guard = lru.reserve(6_235);
/// assert_eq!(guard.shortfall(), 5_235); // the caller can warn before anything is lost
///
/// let scaled = BatchScaledCatalog::new(1_000, 100_000)?;
/// {
///     let guard = scaled.reserve(6_235);
///     assert_eq!(guard.shortfall(), 0);
///     assert_eq!(scaled.capacity(), Some(7_235));
/// }
/// assert_eq!(scaled.capacity(), Some(1_000));
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[must_use = "the room is released as soon as the reservation is dropped"]
pub struct Reservation<'a> {
    requested: usize,
    shortfall: usize,
    release: Option<Box<dyn FnOnce() + Send + 'a>>,
}

impl<'a> Reservation<'a> {
    /// A reservation of `requested` entries of which `shortfall` will not fit, that
    /// runs `release` once when dropped. For implementors of [`Catalog`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use idempotency_catalog::Reservation;
    ///
    /// let released = AtomicUsize::new(0);
    /// let guard = Reservation::new(10, 0, || { released.fetch_add(1, Ordering::Relaxed); });
    /// drop(guard);
    /// assert_eq!(released.load(Ordering::Relaxed), 1);
    /// ```
    pub fn new(requested: usize, shortfall: usize, release: impl FnOnce() + Send + 'a) -> Self {
        Reservation { requested, shortfall: shortfall.min(requested), release: Some(Box::new(release)) }
    }

    /// How many entries were asked for.
    pub fn requested(&self) -> usize {
        self.requested
    }

    /// How many of the requested entries will not fit: registering all of them, with
    /// nothing else registered meanwhile, evicts this many of them before the last one
    /// is in. Zero means the whole batch fits.
    pub fn shortfall(&self) -> usize {
        self.shortfall
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("requested", &self.requested)
            .field("shortfall", &self.shortfall)
            .finish_non_exhaustive()
    }
}
