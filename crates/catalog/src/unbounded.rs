use std::fmt;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::store::{Policy, Store, delegate_catalog};
use crate::telemetry::EvictionListener;

/// A catalog that never evicts. Its memory is bounded only by clearing it, which a
/// [`RunBoundary`] does when a run ends.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{Catalog, Digest, KeyOptions, Scope, UnboundedCatalog};
///
/// let catalog = UnboundedCatalog::new();
/// {
///     let _run = catalog.run_boundary();
///     for i in 0..10_000u32 {
///         let mut bytes = [0; 32];
///         bytes[..4].copy_from_slice(&i.to_be_bytes());
///         catalog.register(Digest::from_bytes(bytes), KeyOptions::new("k", Scope::Run));
///     }
///     assert_eq!(catalog.len(), 10_000);
///     assert_eq!(catalog.capacity(), None);
/// }
/// assert!(catalog.is_empty());
/// assert_eq!(catalog.stats().evictions(), 0);
/// ```
#[derive(Debug)]
pub struct UnboundedCatalog {
    store: Store,
}

impl UnboundedCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::from_parts(None, false)
    }

    pub(crate) fn from_parts(listener: Option<Arc<dyn EvictionListener>>, log_keys: bool) -> Self {
        UnboundedCatalog { store: Store::new(Policy::Unbounded, listener, log_keys) }
    }

    /// A guard that clears this catalog when the run ends (when it is dropped).
    pub fn run_boundary(&self) -> RunBoundary<'_> {
        RunBoundary::new(self)
    }
}

impl Default for UnboundedCatalog {
    fn default() -> Self {
        Self::new()
    }
}

delegate_catalog!(UnboundedCatalog);

/// Clears a catalog when dropped: the end of a run, after which no key created in it
/// is looked up again. Works with any catalog, and is what keeps an unbounded one
/// bounded.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, RunBoundary, Scope};
///
/// let catalog: Arc<dyn Catalog> = CatalogBuilder::new().kind(CatalogKind::Unbounded).build()?;
/// {
///     let _run = RunBoundary::new(catalog.as_ref());
///     catalog.register(Digest::from_bytes([1; 32]), KeyOptions::new("k", Scope::Run));
/// }
/// assert_eq!(catalog.stats().cleared, 1);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[must_use = "the catalog is cleared as soon as the boundary is dropped"]
pub struct RunBoundary<'a> {
    catalog: &'a dyn Catalog,
}

impl<'a> RunBoundary<'a> {
    /// Starts a run on `catalog`; it is cleared when the guard is dropped.
    pub fn new(catalog: &'a dyn Catalog) -> Self {
        RunBoundary { catalog }
    }
}

impl Drop for RunBoundary<'_> {
    fn drop(&mut self) {
        self.catalog.clear();
    }
}

impl fmt::Debug for RunBoundary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunBoundary").field("catalog", &self.catalog.kind()).finish()
    }
}
