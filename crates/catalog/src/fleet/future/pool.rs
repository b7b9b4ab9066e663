//! The async connections a handle keeps: one multiplexed connection per node, which
//! every task shares; the counterpart of `pool.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::link::AsyncConn;
use crate::fleet::deployment::Addr;
use crate::fleet::pool::Down;

/// One node's async connection, with the number it was opened under; a tokio lock, held
/// while the connection opens, so that one task opens it and the others wait for it
/// rather than each opening one.
pub(in crate::fleet) type AsyncSlot = Arc<tokio::sync::Mutex<Option<(AsyncConn, u64)>>>;

/// The async connections: one per node, multiplexed, shared by clones.
#[derive(Default)]
pub(in crate::fleet) struct AsyncLinks {
    nodes: Mutex<HashMap<Addr, AsyncSlot>>,
    pub(in crate::fleet) down: Down,
}

impl AsyncLinks {
    /// The slot of `addr`'s connection.
    pub(in crate::fleet) fn node(&self, addr: &Addr) -> AsyncSlot {
        Arc::clone(self.nodes.lock().entry(Arc::clone(addr)).or_default())
    }
}

/// A number for each async connection opened, so that a task drops only the one that
/// failed it.
pub(in crate::fleet) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
