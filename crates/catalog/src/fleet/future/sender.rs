//! [`Sender`]: the bell of an async-mode catalog's background sender, which a
//! registration rings and the catalog's drop closes; the task itself is in
//! `future/catalog.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// How often an async-mode catalog's sender sends what is queued, even when nothing
/// rang: registrations outside any run and batch go out within this.
const SEND_EVERY: Duration = Duration::from_millis(100);

/// The background sender of an async-mode catalog, as the catalog sees it.
#[derive(Default)]
pub(in crate::fleet) struct Sender {
    wake: Notify,
    closed: AtomicBool,
}

impl Sender {
    /// Asks the sender to send what is queued now.
    pub(in crate::fleet) fn ring(&self) {
        self.wake.notify_one();
    }

    /// The catalog is gone: the sender sends the rest, and stops.
    pub(in crate::fleet) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Waits until rung, or [`SEND_EVERY`] at most.
    pub(super) async fn rung(&self) {
        let _ = tokio::time::timeout(SEND_EVERY, self.wake.notified()).await;
    }

    /// Whether the catalog is gone.
    pub(super) fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
