//! The process-global default catalog. One test only: the default is set once per
//! process, and the log subscriber is global too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::io;
use std::sync::Mutex;

use idempotency_catalog::{
    CatalogBuilder, CatalogKind, Digest, Error, KeyOptions, Scope, default_catalog, set_default_catalog,
};

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Sink;

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The `evicted=` counts of every warning written so far.
fn evicted_in_log() -> u64 {
    let text = String::from_utf8(LOG.lock().unwrap().clone()).unwrap();
    text.lines()
        .filter(|l| l.contains(" WARN "))
        .filter_map(|l| l.split(" evicted=").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn the_default_is_replaceable_before_first_use_and_its_flush_reports_every_eviction() {
    tracing_subscriber::fmt().with_ansi(false).with_writer(|| Sink).init();
    let mine = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(1).build().unwrap();
    set_default_catalog(mine).unwrap();
    let used = default_catalog().unwrap();
    assert_eq!((used.kind(), used.capacity()), (CatalogKind::Lru, Some(1)));

    let late = CatalogBuilder::new().build().unwrap();
    let err = set_default_catalog(late).unwrap_err();
    assert_eq!(err, Error::DefaultCatalogInUse { kind: "lru".into() });
    assert_eq!(
        err.to_string(),
        "the default catalog is already in use (lru); call `set_default_catalog` before the first use"
    );

    for i in 0..50u8 {
        used.register(Digest::from_bytes([i; 32]), KeyOptions::new("k", Scope::Run));
    }
    assert_eq!(used.stats().evicted, 49);
    // Rate limiting held some back (the first, then 10): the default is never dropped,
    // so only a flush writes the rest.
    assert!(evicted_in_log() < 49, "{}", evicted_in_log());
    default_catalog().unwrap().flush().unwrap();
    assert_eq!(evicted_in_log(), 49);
    // Nothing is reported twice.
    default_catalog().unwrap().flush().unwrap();
    assert_eq!(evicted_in_log(), 49);
}
