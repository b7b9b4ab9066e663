//! What the catalog's test files share, beside `testkit` (servers, log capture):
//! numbered digests, a variable lookup, a fault listener, and where the catalog's
//! entries are on Redis.
#![allow(dead_code)] // each test file uses a part of it

use std::sync::{Arc, Mutex};

use idempotency_catalog::{Digest, Fault, FaultKind, KeyOptions, Listener, RemovalCause};

/// The digest numbered `i`: `i` in its first four bytes, big-endian, the rest zero.
pub(crate) fn digest(i: u32) -> Digest {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    Digest::from_bytes(bytes)
}

/// A lookup for `from_env_with` that sees `vars` and nothing else.
pub(crate) fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// A listener that records the kind of every fault.
#[derive(Clone, Default)]
pub(crate) struct Faults(Arc<Mutex<Vec<FaultKind>>>);

impl Faults {
    pub(crate) fn kinds(&self) -> Vec<FaultKind> {
        self.0.lock().unwrap().clone()
    }
}

impl Listener for Faults {
    fn on_evict(&self, _: &Digest, _: &KeyOptions, _: RemovalCause) {}
    fn on_fault(&self, fault: &Fault) {
        self.0.lock().unwrap().push(fault.kind);
    }
}

/// The Redis key of `digest`'s catalog entry under the default prefix.
#[cfg(feature = "redis")]
pub(crate) fn entry_key(digest: &Digest) -> String {
    idempotency_catalog::fleet::layout::entry_key(idempotency_catalog::defaults::REDIS_PREFIX, digest)
}

/// The `SCAN`/`KEYS` pattern of every catalog entry under the default prefix.
#[cfg(feature = "redis")]
pub(crate) fn entries() -> String {
    use idempotency_catalog::fleet::layout;
    format!("{}{}*", idempotency_catalog::defaults::REDIS_PREFIX, layout::ENTRY)
}
