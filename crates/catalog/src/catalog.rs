use std::fmt;
use std::sync::Arc;

use crate::digest::Digest;
use crate::implement::{ReservationId, Reservations};
use crate::key_options::KeyOptions;
use crate::kind::CatalogKind;
use crate::telemetry::{Forgotten, Limit, Stats};

/// A shared map from idempotency-key digests to their [`KeyOptions`], with a capacity
/// policy and eviction telemetry.
///
/// Every method takes `&self`: a catalog is meant to be shared between threads, usually
/// as an `Arc<dyn Catalog>`. The trait is object safe. What only [`Reservation`] calls
/// is in its supertrait, [`Reservations`], for implementors (see
/// [`implement`](crate::implement)).
///
/// Entries are either held by a live [`Reservation`] (a batch being built, or a run:
/// see [`Reservation`]) or free. What a catalog may drop depends on its kind; what a
/// live reservation holds is dropped only when a batch-scaled catalog meets its ceiling.
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
pub trait Catalog: Reservations + Send + Sync + fmt::Debug {
    /// Records `options` for `digest`, held by no reservation, replacing what was
    /// there. May evict older free entries when the catalog is full; every eviction is
    /// counted, passed to the eviction listener and covered by a `tracing` warning.
    fn register(&self, digest: Digest, options: KeyOptions);

    /// The options recorded for `digest`, if still held. Counts a hit or a miss.
    ///
    /// The returned value shares the stored key rather than copying it (see
    /// [`KeyOptions`]), so looking costs no allocation.
    fn get(&self, digest: &Digest) -> Option<KeyOptions>;

    /// Removes `digest`, returning its options if it was held.
    fn remove(&self, digest: &Digest) -> Option<KeyOptions>;

    /// Removes every entry, held or free; live reservations stay live. Also writes the
    /// summary of any evictions not yet reported, as [`flush`](Self::flush) does.
    fn clear(&self);

    /// Writes what is pending: the summary of evictions not yet reported, and, for a
    /// catalog on a shared store (`RedisCatalog`, feature
    /// `redis`), the registrations not yet sent. Ending a reservation,
    /// [`clear`](Self::clear) and dropping the catalog do it too; a catalog that is
    /// never dropped, such as the process-global [`default_catalog`](crate::default_catalog),
    /// should be flushed before the process exits so that its last evictions reach the log.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis) when the shared store could not be written;
    /// the registrations stay queued (up to a bound, see [`Stats::unshared`]) and are
    /// sent again at the next flush. A catalog that lives in this process never fails.
    fn flush(&self) -> Result<(), crate::Error>;

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

    /// Opens a reservation of room for `additional` more entries, held until the
    /// returned guard is dropped; see [`Reservation`].
    fn reserve(&self, additional: usize) -> Reservation<'_>;

    /// What the catalog remembers of `digest` if it dropped it without being asked to
    /// (evicted at a limit, or released when its retention ended): the limit, and the
    /// eviction count at the time, so that a batch can say whether an item lost its
    /// options before it opened or while it was built. `None` for a digest it never
    /// dropped, or dropped too long ago to remember (all but about one in a thousand
    /// of its last 10,000 drops, in a table of 512 KiB allocated at the first one).
    /// The default remembers nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::{Catalog, Digest, KeyOptions, Limit, LruCatalog, Scope};
    ///
    /// let catalog = LruCatalog::with_capacity(1)?;
    /// catalog.register(Digest::from_bytes([1; 32]), KeyOptions::new("a", Scope::Run));
    /// catalog.register(Digest::from_bytes([2; 32]), KeyOptions::new("b", Scope::Run));
    /// let forgotten = catalog.forgotten(&Digest::from_bytes([1; 32])).unwrap();
    /// assert_eq!((forgotten.limit, forgotten.evicted), (Limit::Entries, 1));
    /// assert!(catalog.forgotten(&Digest::from_bytes([3; 32])).is_none());
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    fn forgotten(&self, digest: &Digest) -> Option<Forgotten> {
        let _ = digest;
        None
    }

    /// How to raise `limit` from where it was set, as this catalog's warnings say it:
    /// the builder call when code set it (the variable would be ignored), the variable
    /// when the environment did, both at the default. `None` when the catalog cannot
    /// say (the default).
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Limit};
    ///
    /// let catalog = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(100).build()?;
    /// let remedy = catalog.remedy(Limit::Entries).unwrap();
    /// assert!(remedy.starts_with("raise CatalogBuilder::capacity (set in code to 100;"), "{remedy}");
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    fn remedy(&self, limit: Limit) -> Option<String> {
        let _ = limit;
        None
    }
}

/// Room held in a catalog, and the entries registered through it, until dropped.
///
/// A reservation is how work tells the catalog what it still needs:
///
/// - **A batch** reserves room for its items before their keys are made, and learns its
///   [`shortfall`](Self::shortfall) at once.
/// - **A run** is a reservation of no room that lasts as long as the run: every key
///   registered through it keeps its options until the run ends, as the reference SDK
///   (4.5 and later) keeps a run's keys.
///
/// Under a batch-scaled catalog, what a live reservation holds is never evicted below
/// the ceiling. When it is dropped its entries are released: the newest of them, up to
/// the base capacity, stay as free entries, and the rest are counted in
/// [`Stats::released`], not as evictions (the work that needed them is over). An LRU
/// catalog cannot grow, so a reservation only tells how much will not fit; an unbounded
/// catalog releases a reservation's entries when it ends.
///
/// The guard is `Send + Sync`. [`Reservation::shared`] makes one that owns its catalog,
/// for a run or batch that outlives the borrow (a spawned task).
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{BatchScaledCatalog, Catalog, Digest, KeyOptions, LruCatalog, Scope};
///
/// let lru = LruCatalog::with_capacity(1_000)?;
/// let guard = lru.reserve(6_235);
/// assert_eq!(guard.shortfall(), 5_235); // the caller can warn before anything is lost
///
/// let scaled = BatchScaledCatalog::new(1_000, 100_000)?;
/// {
///     let run = scaled.reserve(0); // a run: no room asked, every key it registers kept
///     for i in 0..6_235u32 {
///         let mut bytes = [0; 32];
///         bytes[..4].copy_from_slice(&i.to_be_bytes());
///         run.register(Digest::from_bytes(bytes), KeyOptions::new("k", Scope::Global));
///     }
///     assert_eq!(scaled.len(), 6_235);
///     assert_eq!(scaled.capacity(), Some(7_235));
/// }
/// assert_eq!(scaled.capacity(), Some(1_000)); // back to the base
/// let stats = scaled.stats();
/// assert_eq!((stats.len, stats.released, stats.evicted), (1_000, 5_235, 0));
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[must_use = "the room is released as soon as the reservation is dropped"]
pub struct Reservation<'a> {
    catalog: Holder<'a>,
    id: ReservationId,
    requested: usize,
    shortfall: usize,
}

/// The catalog a reservation closes when dropped.
enum Holder<'a> {
    Borrowed(&'a dyn Catalog),
    Shared(Arc<dyn Catalog>),
}

impl<'a> Reservation<'a> {
    /// Opens a reservation of `additional` entries in `catalog`, borrowing it; what
    /// [`Catalog::reserve`] returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::{Catalog, LruCatalog, Reservation};
    ///
    /// let catalog = LruCatalog::with_capacity(10)?;
    /// let guard = Reservation::new(&catalog, 4);
    /// assert_eq!(catalog.stats().reserved, 4);
    /// drop(guard);
    /// assert_eq!(catalog.stats().reserved, 0);
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    pub fn new(catalog: &'a dyn Catalog, additional: usize) -> Self {
        Self::open(Holder::Borrowed(catalog), additional)
    }

    fn open(catalog: Holder<'a>, additional: usize) -> Self {
        let (id, shortfall) = catalog.get().open_reservation(additional);
        Reservation { catalog, id, requested: additional, shortfall: shortfall.min(additional) }
    }

    /// Registers `options` for `digest`, held until this reservation ends; see
    /// [`Reservations::register_held`].
    pub fn register(&self, digest: Digest, options: KeyOptions) {
        self.catalog.get().register_held(self.id, digest, options);
    }

    /// The catalog this reservation is in.
    pub fn catalog(&self) -> &dyn Catalog {
        self.catalog.get()
    }

    /// This reservation's id, for [`Reservations::register_held`].
    pub fn id(&self) -> ReservationId {
        self.id
    }

    /// How many entries were asked for.
    pub fn requested(&self) -> usize {
        self.requested
    }

    /// How many of the requested entries will not fit, given the catalog's capacity
    /// and the room every other live reservation holds: registering all of them, with
    /// nothing else registered meanwhile, evicts this many. Zero means the whole batch
    /// fits.
    pub fn shortfall(&self) -> usize {
        self.shortfall
    }
}

impl Reservation<'static> {
    /// Opens a reservation of `additional` entries that owns a handle to `catalog`, so
    /// that it can be kept in a struct or moved into a spawned task.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use idempotency_catalog::{Catalog, CatalogBuilder, Reservation};
    ///
    /// let catalog: Arc<dyn Catalog> = CatalogBuilder::new().build()?;
    /// let run = Reservation::shared(Arc::clone(&catalog), 0);
    /// std::thread::spawn(move || drop(run)).join().unwrap();
    /// assert_eq!(catalog.stats().reserved, 0);
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    pub fn shared(catalog: Arc<dyn Catalog>, additional: usize) -> Self {
        Self::open(Holder::Shared(catalog), additional)
    }
}

impl Holder<'_> {
    fn get(&self) -> &dyn Catalog {
        match self {
            Holder::Borrowed(catalog) => *catalog,
            Holder::Shared(catalog) => catalog.as_ref(),
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.catalog.get().close_reservation(self.id);
    }
}

impl fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("id", &self.id.get())
            .field("requested", &self.requested)
            .field("shortfall", &self.shortfall)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_can_cross_threads_and_awaits() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Reservation<'_>>();
        assert_send_sync::<Reservation<'static>>();
    }
}
