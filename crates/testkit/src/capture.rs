use std::cell::RefCell;
use std::io;
use std::sync::Once;

thread_local! {
    static CAPTURED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Writes into this thread's capture buffer, if one is open; discards otherwise.
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

/// Runs `f` and returns what a global fmt subscriber printed on this thread meanwhile,
/// at every level (`TRACE` and above), without colours.
///
/// One global subscriber writes into a per-thread buffer. Scoped subscribers
/// (`with_default`) in parallel tests race with `tracing`'s callsite interest cache
/// and can miss a test's first events, so they are not used.
pub fn captured<R>(f: impl FnOnce() -> R) -> (R, String) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_ansi(false)
            .with_writer(|| ThreadSink)
            .init();
    });
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let out = f();
    let bytes = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, String::from_utf8(bytes).unwrap())
}

/// Runs `f` and returns the `WARN` and `ERROR` lines it printed.
pub fn warnings<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let (out, text) = captured(f);
    let lines = text.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).map(str::to_owned).collect();
    (out, lines)
}
