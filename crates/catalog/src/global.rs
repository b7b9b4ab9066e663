use std::sync::Arc;

use once_cell::sync::OnceCell;

use crate::builder::CatalogBuilder;
use crate::catalog::Catalog;
use crate::error::Error;

static DEFAULT: OnceCell<Arc<dyn Catalog>> = OnceCell::new();

/// The process-global catalog, built from the environment on first use
/// ([`CatalogBuilder::from_env`]) unless [`set_default_catalog`] put one in place first.
///
/// It is never dropped, so the summary of its last evictions is written only when
/// something flushes it: a reservation ending, [`Catalog::clear`], or
/// [`Catalog::flush`]. Call `default_catalog()?.flush()` before the process exits
/// (at the end of `main`, or in a shutdown hook) so that every eviction reaches the log.
///
/// # Errors
///
/// The configuration error when a variable holds a bad value. Nothing is cached then:
/// the next call reads the environment again.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{Catalog, default_catalog};
///
/// let catalog = default_catalog()?;
/// assert!(std::sync::Arc::ptr_eq(&catalog, &default_catalog()?));
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
pub fn default_catalog() -> Result<Arc<dyn Catalog>, Error> {
    DEFAULT.get_or_try_init(|| CatalogBuilder::from_env().build()).cloned()
}

/// Puts `catalog` in place as the process-global default. Call it before anything
/// uses the default, typically first thing in `main`.
///
/// # Errors
///
/// [`Error::DefaultCatalogInUse`] when the default has already been used or set; the
/// catalog in place stays.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, default_catalog, set_default_catalog};
///
/// let mine = CatalogBuilder::new().kind(CatalogKind::Unbounded).build()?;
/// set_default_catalog(mine)?;
/// assert_eq!(default_catalog()?.kind(), CatalogKind::Unbounded);
///
/// let late = CatalogBuilder::new().build()?;
/// assert!(set_default_catalog(late).is_err());
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
pub fn set_default_catalog(catalog: Arc<dyn Catalog>) -> Result<(), Error> {
    DEFAULT.set(catalog).map_err(|_| Error::DefaultCatalogInUse {
        kind: DEFAULT.get().map_or_else(String::new, |current| current.kind().to_string()),
    })
}
