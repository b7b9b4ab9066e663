use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::error::{Error, shown};

/// [`defaults::CAPACITY`] as the type the catalogs take.
pub(crate) const DEFAULT_BASE: NonZeroUsize = NonZeroUsize::new(defaults::CAPACITY).expect("1,000 is not zero");
/// [`defaults::MAX_CAPACITY`] as the type the catalogs take.
pub(crate) const DEFAULT_CEILING: NonZeroUsize =
    NonZeroUsize::new(defaults::MAX_CAPACITY).expect("1,000,000 is not zero");

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
/// Serializes as its name (`"batch-scaled"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CatalogKind {
    /// [`LruCatalog`](crate::LruCatalog): fixed capacity, least recently used entry
    /// evicted.
    Lru,
    /// [`UnboundedCatalog`](crate::UnboundedCatalog): never evicts; a run's keys are
    /// released when it ends.
    Unbounded,
    /// [`BatchScaledCatalog`](crate::BatchScaledCatalog): a base, plus what live runs
    /// and reservations hold, up to a ceiling.
    #[default]
    BatchScaled,
}

impl CatalogKind {
    /// Every kind.
    pub const ALL: [CatalogKind; 3] = [CatalogKind::Lru, CatalogKind::Unbounded, CatalogKind::BatchScaled];

    /// The name accepted by [`env::KIND`](crate::env::KIND).
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
