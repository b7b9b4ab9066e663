//! The connections a handle keeps: a few sync ones, so that threads do not take turns
//! on one, and (feature `tokio`) one multiplexed async one, which every task shares.
//! Both are opened when first needed and again after an error that may have broken
//! them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use super::link::SyncConn;

/// After a failed connect, how long calls fail at once instead of trying again: a
/// server that is down must not cost every registration a connect timeout.
pub(super) const RECONNECT_AFTER: Duration = super::REDIS_RECONNECT_PAUSE;

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
        *self.0.lock() = why.map(|why| (Instant::now() + RECONNECT_AFTER, why));
    }
}

/// Sync connections, each in a slot of its own: a call takes a free slot, or waits for
/// one when all are busy.
pub(super) struct Pool {
    slots: Box<[Mutex<Option<SyncConn>>]>,
    /// Where the next call starts looking, so that calls spread over the slots.
    next: AtomicUsize,
    pub(super) down: Down,
}

impl Pool {
    pub(super) fn new(size: usize) -> Self {
        Pool {
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            down: Down::default(),
        }
    }

    /// A slot: the first free one holding a connection, from a rotating start; else
    /// the first free one; else, when all are busy, the one at the start, waited for.
    /// Open connections are reused before new ones are opened.
    #[expect(clippy::indexing_slicing, reason = "a pool has at least one slot (`new`), and `% n` is below n")]
    pub(super) fn slot(&self) -> MutexGuard<'_, Option<SyncConn>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        let mut empty = None;
        for i in 0..n {
            let at = (start + i) % n;
            if let Some(guard) = self.slots[at].try_lock() {
                if guard.is_some() {
                    return guard;
                }
                empty = empty.or(Some(at));
            }
        }
        empty.and_then(|at| self.slots[at].try_lock()).unwrap_or_else(|| self.slots[start % n].lock())
    }

    /// How many slots hold an open connection (busy ones count as open).
    pub(super) fn open(&self) -> usize {
        self.slots.iter().filter(|slot| slot.try_lock().is_none_or(|conn| conn.is_some())).count()
    }
}

/// The async connection: one, multiplexed, shared by clones.
#[cfg(feature = "tokio")]
pub(super) struct AsyncSlot {
    /// A tokio lock: held while a connection opens, so that one task opens it and the
    /// others wait for it rather than each opening one.
    pub(super) conn: tokio::sync::Mutex<Option<super::link::AsyncConn>>,
    pub(super) down: Down,
}

#[cfg(feature = "tokio")]
impl AsyncSlot {
    pub(super) fn new() -> Self {
        AsyncSlot { conn: tokio::sync::Mutex::new(None), down: Down::default() }
    }
}
