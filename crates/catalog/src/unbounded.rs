use std::sync::Arc;

use crate::budget::Limits;
use crate::store::{DEFAULT_NAME, Policy, Store, delegate_catalog};
use crate::telemetry::Listener;

/// A catalog that never evicts: the reference SDK's behaviour since 4.5, where every
/// key of a run is kept until the run ends.
///
/// Keys registered through a run's [`Reservation`](crate::Reservation) are released
/// when it ends, which is what keeps memory in step with the runs in flight. Keys
/// registered outside any reservation stay until removed or [`clear`](crate::Catalog::clear)ed:
/// nothing else bounds them.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{Catalog, Digest, KeyOptions, Scope, UnboundedCatalog};
///
/// let catalog = UnboundedCatalog::new();
/// {
///     let run = catalog.reserve(0);
///     for i in 0..10_000u32 {
///         let mut bytes = [0; 32];
///         bytes[..4].copy_from_slice(&i.to_be_bytes());
///         run.register(Digest::from_bytes(bytes), KeyOptions::new("k", Scope::Run));
///     }
///     assert_eq!(catalog.len(), 10_000);
///     assert_eq!(catalog.capacity(), None);
/// }
/// assert!(catalog.is_empty()); // the run ended: its keys were released
/// let stats = catalog.stats();
/// assert_eq!((stats.released, stats.evicted), (10_000, 0));
/// ```
#[derive(Debug)]
pub struct UnboundedCatalog {
    store: Store,
}

impl UnboundedCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::from_parts(Limits::default(), None, false, DEFAULT_NAME)
    }

    pub(crate) fn from_parts(limits: Limits, listener: Option<Arc<dyn Listener>>, log_keys: bool, name: &str) -> Self {
        UnboundedCatalog { store: Store::new(Policy::Unbounded, limits, listener, log_keys, name) }
    }
}

impl Default for UnboundedCatalog {
    fn default() -> Self {
        Self::new()
    }
}

delegate_catalog!(UnboundedCatalog);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::test_digest as digest;
    use crate::{Catalog, KeyOptions, Scope};

    #[test]
    fn each_run_releases_its_own_keys_and_nothing_else() {
        let catalog = UnboundedCatalog::new();
        catalog.register(digest(0), KeyOptions::new("outside", Scope::Global));
        let a = catalog.reserve(0);
        let b = catalog.reserve(0);
        a.register(digest(1), KeyOptions::new("a", Scope::Run));
        b.register(digest(2), KeyOptions::new("b", Scope::Run));
        drop(a);
        assert!(catalog.get(&digest(1)).is_none());
        assert!(catalog.get(&digest(0)).is_some() && catalog.get(&digest(2)).is_some());
        drop(b);
        assert_eq!((catalog.len(), catalog.stats().released), (1, 2));
    }
}
