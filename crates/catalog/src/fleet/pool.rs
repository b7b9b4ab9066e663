//! The sync connections a handle keeps: a few sets, so that threads do not take turns
//! on one (each set has a connection per node it has sent to), opened when first
//! needed and again after an error that may have broken them; and [`Down`], which both
//! these and the async ones (`future/pool.rs`, feature `tokio`) keep after a failed
//! connect.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ::redis::Connection;
use parking_lot::{Mutex, MutexGuard};

use super::deployment::Addr;

/// After a failed connect to one server: how long calls fail at once instead of trying
/// again, so that a server that is down does not cost every registration a connect
/// timeout. (A cluster's nodes are waited for through the failover window instead.)
pub(super) const RECONNECT_AFTER: Duration = Duration::from_millis(250);

/// After a failed connect: until when calls fail at once, and why.
#[derive(Default)]
pub(super) struct Down(Mutex<Option<(Instant, String)>>);

impl Down {
    /// Why calls fail at once, if a connect failed less than [`RECONNECT_AFTER`] ago.
    pub(super) fn get(&self) -> Option<String> {
        let down = self.0.lock();
        down.as_ref().filter(|(until, _)| Instant::now() < *until).map(|(_, why)| why.clone())
    }

    /// A connect failed (`Some`), or succeeded.
    pub(super) fn set(&self, why: Option<String>) {
        let mut down = self.0.lock();
        if why.is_some() || down.is_some() {
            *down = why.map(|why| (Instant::now() + RECONNECT_AFTER, why));
        }
    }
}

/// One thread's sync connections: one per node it has sent to.
pub(super) type Links = HashMap<Addr, Connection>;

/// Sets of sync connections, each in a slot of its own: a call takes a free slot, or
/// waits for one when all are busy.
pub(super) struct Pool {
    first: Mutex<Links>,
    rest: Box<[Mutex<Links>]>,
    /// Where the next call starts looking, so that calls spread over the slots.
    next: AtomicUsize,
    pub(super) down: Down,
}

impl Pool {
    pub(super) fn new(size: usize) -> Self {
        Pool {
            first: Mutex::new(Links::new()),
            rest: (1..size).map(|_| Mutex::new(Links::new())).collect(),
            next: AtomicUsize::new(0),
            down: Down::default(),
        }
    }

    fn slots(&self) -> impl Iterator<Item = &Mutex<Links>> + Clone {
        std::iter::once(&self.first).chain(self.rest.iter())
    }

    /// A slot: the first free one holding connections, from a rotating start; else the
    /// first free one; else, when all are busy, the one at the start, waited for. Open
    /// connections are reused before new ones are opened.
    pub(super) fn slot(&self) -> MutexGuard<'_, Links> {
        let n = 1 + self.rest.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut empty = None;
        for slot in self.slots().cycle().skip(start).take(n) {
            if let Some(guard) = slot.try_lock() {
                if !guard.is_empty() {
                    return guard;
                }
                empty = empty.or(Some(slot));
            }
        }
        let waited = self.slots().nth(start).unwrap_or(&self.first);
        empty.and_then(Mutex::try_lock).unwrap_or_else(|| waited.lock())
    }

    /// How many connections are open (those of busy slots count as open).
    pub(super) fn open(&self) -> usize {
        self.slots().map(|slot| slot.try_lock().map_or(1, |links| links.len())).sum()
    }
}
