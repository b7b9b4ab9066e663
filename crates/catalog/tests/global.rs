//! The process-global default catalog. One test only: the default is set once per process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use idempotency_catalog::{CatalogBuilder, CatalogKind, Error, default_catalog, set_default_catalog};

#[test]
fn the_default_can_be_replaced_before_first_use_and_not_after() {
    let mine = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(42).build().unwrap();
    set_default_catalog(mine).unwrap();
    let used = default_catalog().unwrap();
    assert_eq!((used.kind(), used.capacity()), (CatalogKind::Lru, Some(42)));

    let late = CatalogBuilder::new().build().unwrap();
    let err = set_default_catalog(late).unwrap_err();
    assert_eq!(err, Error::DefaultCatalogInUse { kind: "lru".into() });
    assert_eq!(
        err.to_string(),
        "the default catalog is already in use (lru); call `set_default_catalog` before the first use"
    );
    assert_eq!(default_catalog().unwrap().capacity(), Some(42));
}
