//! For implementors of [`Catalog`]: the reservation bookkeeping every catalog keeps,
//! which [`Reservation`] calls and users never need to. A type is a catalog when it
//! implements [`Reservations`] and [`Catalog`].
//!
//! # Examples
//!
//! A catalog that counts registrations on top of another, delegating the rest:
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use idempotency_catalog::implement::{ReservationId, Reservations};
//! use idempotency_catalog::{
//!     Catalog, CatalogKind, Digest, Error, KeyOptions, LruCatalog, Reservation, Scope, Stats,
//! };
//!
//! #[derive(Debug)]
//! struct Counted {
//!     inner: LruCatalog,
//!     registered: AtomicU64,
//! }
//!
//! impl Reservations for Counted {
//!     fn open_reservation(&self, additional: usize) -> (ReservationId, usize) {
//!         self.inner.open_reservation(additional)
//!     }
//!     fn close_reservation(&self, id: ReservationId) {
//!         self.inner.close_reservation(id)
//!     }
//!     fn register_held(&self, holder: ReservationId, digest: Digest, options: KeyOptions) {
//!         self.registered.fetch_add(1, Ordering::Relaxed);
//!         self.inner.register_held(holder, digest, options)
//!     }
//! }
//!
//! impl Catalog for Counted {
//!     fn register(&self, digest: Digest, options: KeyOptions) {
//!         self.registered.fetch_add(1, Ordering::Relaxed);
//!         self.inner.register(digest, options)
//!     }
//!     fn get(&self, digest: &Digest) -> Option<KeyOptions> { self.inner.get(digest) }
//!     fn remove(&self, digest: &Digest) -> Option<KeyOptions> { self.inner.remove(digest) }
//!     fn clear(&self) { self.inner.clear() }
//!     fn flush(&self) -> Result<(), Error> { self.inner.flush() }
//!     fn len(&self) -> usize { self.inner.len() }
//!     fn capacity(&self) -> Option<usize> { self.inner.capacity() }
//!     fn kind(&self) -> CatalogKind { self.inner.kind() }
//!     fn stats(&self) -> Stats { self.inner.stats() }
//!     fn reserve(&self, additional: usize) -> Reservation<'_> { Reservation::new(self, additional) }
//! }
//!
//! let catalog = Counted { inner: LruCatalog::with_capacity(10)?, registered: AtomicU64::new(0) };
//! {
//!     let run = catalog.reserve(0);
//!     run.register(Digest::from_bytes([1; 32]), KeyOptions::new("a", Scope::Run));
//! }
//! catalog.register(Digest::from_bytes([2; 32]), KeyOptions::new("b", Scope::Run));
//! assert_eq!(catalog.registered.load(Ordering::Relaxed), 2);
//! # Ok::<(), Error>(())
//! ```

#[cfg(doc)]
use crate::catalog::{Catalog, Reservation};
use crate::digest::Digest;
use crate::key_options::KeyOptions;

/// The reservation bookkeeping of a [`Catalog`] (its supertrait): opening and closing
/// a reservation, and registering an entry it holds. [`Reservation`] calls these; a
/// user calls [`Catalog::reserve`], [`Reservation::shared`] and
/// [`Reservation::register`] instead, which close what they open.
///
/// # Examples
///
/// See [the module](self) for a catalog that implements it.
pub trait Reservations {
    /// Opens a reservation of room for `additional` more entries: its id, and how many
    /// of them will not fit (its shortfall).
    fn open_reservation(&self, additional: usize) -> (ReservationId, usize);

    /// Ends the reservation `id`, releasing what it held; an unknown or ended `id` is
    /// ignored.
    fn close_reservation(&self, id: ReservationId);

    /// Records `options` for `digest`, held by the live reservation `holder` until it
    /// ends (what [`Reservation::register`] does). A `holder` that has ended, or that
    /// this catalog did not open, holds nothing: the entry is registered as by
    /// [`Catalog::register`].
    fn register_held(&self, holder: ReservationId, digest: Digest, options: KeyOptions);
}

/// Names a live reservation of one catalog; see [`Reservations::register_held`].
///
/// # Examples
///
/// ```
/// use idempotency_catalog::implement::ReservationId;
///
/// assert_eq!(ReservationId::new(7).get(), 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(u64);

impl ReservationId {
    /// An id with the number `n`, for implementors of [`Catalog`].
    pub const fn new(n: u64) -> Self {
        ReservationId(n)
    }

    /// The id's number.
    pub const fn get(self) -> u64 {
        self.0
    }
}
