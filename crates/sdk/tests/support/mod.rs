//! What several test binaries share: capturing `tracing` output, and (feature `redis`)
//! a real `redis-server`.

#![allow(dead_code)] // each test binary uses part of it
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support may; library code may not

#[cfg(feature = "redis")]
pub(crate) mod redis_server;

use std::cell::RefCell;
use std::io;
use std::sync::Once;

thread_local! {
    static CAPTURED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Writes into this thread's capture buffer, if one is open.
struct ThreadSink;

impl io::Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CAPTURED.with(|c| c.borrow_mut().as_mut().map(|out| out.extend_from_slice(buf)));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and returns what a global fmt subscriber printed on this thread. (A scoped
/// subscriber in parallel tests can miss events: `tracing` caches callsite interest
/// across threads.)
pub(crate) fn captured<R>(f: impl FnOnce() -> R) -> (R, String) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| tracing_subscriber::fmt().with_ansi(false).with_writer(|| ThreadSink).init());
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let out = f();
    let bytes = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, String::from_utf8(bytes).unwrap())
}
