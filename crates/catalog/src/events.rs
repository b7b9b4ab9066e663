//! The `tracing` events of this crate and when they are due, and the listener slot.
//!
//! Every event of this crate is emitted from this module, so its target,
//! `idempotency_catalog::events`, is stable; `RUST_LOG=idempotency_catalog=warn`
//! selects them all.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::error::shown;
use crate::key_options::KeyOptions;
use crate::kind::CatalogKind;
use crate::remedy::{self, Origins, Values};
use crate::telemetry::{Limit, Listener, RemovalCause, Source};

/// The listener, if any, and whether it has been disabled by a panic.
pub(crate) struct ListenerSlot {
    listener: Option<Arc<dyn Listener>>,
    disabled: AtomicBool,
    panics: AtomicU64,
}

impl ListenerSlot {
    pub(crate) fn new(listener: Option<Arc<dyn Listener>>) -> Self {
        ListenerSlot { listener, disabled: AtomicBool::new(false), panics: AtomicU64::new(0) }
    }

    /// Whether evicted entries need to be kept until the lock is released.
    pub(crate) fn wants_entries(&self) -> bool {
        self.listener.is_some() && !self.disabled.load(Ordering::Relaxed)
    }

    pub(crate) fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Calls the listener for each entry. Must be called without the catalog's lock.
    pub(crate) fn notify<'a>(
        &self,
        kind: CatalogKind,
        entries: impl IntoIterator<Item = &'a (Digest, KeyOptions)>,
        cause: RemovalCause,
    ) {
        let Some(listener) = self.listener.as_deref() else { return };
        for (digest, options) in entries {
            if self.disabled.load(Ordering::Relaxed) {
                return;
            }
            let call = catch_unwind(AssertUnwindSafe(|| listener.on_evict(digest, options, cause)));
            if call.is_err() && !self.disabled.swap(true, Ordering::Relaxed) {
                self.panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    %kind,
                    %digest,
                    ?cause,
                    "eviction listener panicked; it is disabled and evictions are still counted and logged"
                );
            }
        }
    }
}

impl ListenerSlot {
    /// Calls the listener's `on_fault`, with the same panic rule as evictions.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn notify_fault(&self, fault: &crate::telemetry::Fault) {
        let Some(listener) = self.listener.as_deref() else { return };
        if self.disabled.load(Ordering::Relaxed) {
            return;
        }
        let call = catch_unwind(AssertUnwindSafe(|| listener.on_fault(fault)));
        if call.is_err() && !self.disabled.swap(true, Ordering::Relaxed) {
            self.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                store = %fault.store,
                "eviction listener panicked on a fault; it is disabled and faults are still counted and logged"
            );
        }
    }
}

impl fmt::Debug for ListenerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerSlot")
            .field("set", &self.listener.is_some())
            .field("disabled", &self.disabled.load(Ordering::Relaxed))
            .finish()
    }
}

/// Decides when evictions are worth a log line: the first at once, then one
/// summary each time the total reaches the next power of ten, or at the first eviction
/// ten seconds or more after the last line (in a burst, within 64 evictions of it). What is left over is summarised on
/// [`flush`](Self::flush) (a reservation ending, `clear`, `Catalog::flush`, the catalog
/// being dropped). So every eviction is covered by a line, and a million evictions
/// print a handful.
#[derive(Debug)]
pub(crate) struct EvictionLog {
    total: u64,
    unreported: u64,
    next_report_at: u64,
    last_report: Option<Instant>,
}

/// In a burst of evictions, how often the clock is read.
const CLOCK_EVERY: u64 = 64;
const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

impl EvictionLog {
    pub(crate) const fn new() -> Self {
        EvictionLog { total: 0, unreported: 0, next_report_at: 1, last_report: None }
    }

    /// Counts `n` more evictions; returns the line to print, if one is due.
    #[inline]
    pub(crate) fn record(&mut self, n: u64) -> Option<EvictionSummary> {
        // The common case in a burst, inline: no clock to read and no line due.
        let before = self.unreported;
        let (total, unreported) = (self.total.saturating_add(n), before.saturating_add(n));
        if before >= CLOCK_EVERY && before / CLOCK_EVERY == unreported / CLOCK_EVERY && total < self.next_report_at {
            (self.total, self.unreported) = (total, unreported);
            return None;
        }
        self.record_with(n, Instant::now)
    }

    #[inline(never)]
    fn record_with(&mut self, n: u64, clock: impl Fn() -> Instant) -> Option<EvictionSummary> {
        let before = self.unreported;
        self.total = self.total.saturating_add(n);
        self.unreported = self.unreported.saturating_add(n);
        // Reading the clock costs about 40 ns on the project's machine, more than half
        // of a raw LRU insert. While few evictions are unreported (a trickle, which the
        // interval exists for) it is read at every one; in a burst, at every
        // `CLOCK_EVERY`th, which delays a due line by microseconds.
        let read_clock = before < CLOCK_EVERY || before / CLOCK_EVERY != self.unreported / CLOCK_EVERY;
        let now = read_clock.then(&clock);
        let late = matches!((now, self.last_report), (Some(now), Some(at)) if now.saturating_duration_since(at) >= SUMMARY_INTERVAL);
        let due = self.total >= self.next_report_at || late;
        due.then(|| self.take(now.unwrap_or_else(clock)))
    }

    /// The line covering every eviction not yet reported, if there are any.
    pub(crate) fn flush(&mut self) -> Option<EvictionSummary> {
        (self.unreported > 0).then(|| self.take(Instant::now()))
    }

    fn take(&mut self, now: Instant) -> EvictionSummary {
        let summary = EvictionSummary { first: self.last_report.is_none(), count: self.unreported, total: self.total };
        self.unreported = 0;
        self.last_report = Some(now);
        while self.next_report_at <= self.total {
            self.next_report_at = self.next_report_at.saturating_mul(10);
        }
        summary
    }
}

/// A due log line about capacity evictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EvictionSummary {
    first: bool,
    count: u64,
    total: u64,
}

/// What the warnings need to know about the catalog, read under the lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WarnContext {
    pub(crate) kind: CatalogKind,
    pub(crate) capacity: Option<usize>,
    /// What the latest eviction made room under.
    pub(crate) limit: Limit,
    pub(crate) bytes: usize,
    pub(crate) max_bytes: Option<usize>,
    /// The settings' values and where each came from, for the remedy.
    pub(crate) values: Values,
    pub(crate) origins: Origins,
}

impl WarnContext {
    fn remedy(&self) -> String {
        remedy::remedy(self.limit, self.values, &self.origins)
    }

    /// Where the limit that bound came from.
    fn source(&self) -> Source {
        let origin = match self.limit {
            Limit::Entries => self.origins.capacity,
            Limit::Ceiling => self.origins.max_capacity,
            Limit::Bytes => self.origins.max_bytes,
            Limit::Retention => self.origins.retain,
        };
        origin.source
    }
}

/// Emits the warning for capacity evictions. `last` is the most recent evicted entry,
/// shown by digest; its key only when `log_keys` is on, since keys often hold emails
/// or order numbers.
pub(crate) fn warn_capacity(
    catalog: &str,
    ctx: WarnContext,
    summary: EvictionSummary,
    last: Option<&(Digest, KeyOptions)>,
    log_keys: bool,
) {
    let message = if summary.first {
        "catalog full: idempotency key metadata evicted; later evictions are summarised"
    } else {
        "catalog full: more idempotency key metadata evicted since the last warning"
    };
    // Key material is the caller's text: escaped and cut, as every message shows it.
    let key = last.filter(|_| log_keys).map(|(_, options)| shown(options.key()));
    let (digest, remedy) = (last.map(|(digest, _)| digest), ctx.remedy());
    // Every field is documented in `docs/telemetry.md`.
    tracing::warn!(
        catalog,
        kind = %ctx.kind,
        capacity = ctx.capacity.unwrap_or(usize::MAX),
        bytes = ctx.bytes,
        max_bytes = ctx.max_bytes,
        evicted = summary.count,
        total_evicted = summary.total,
        limit = %ctx.limit,
        source = %ctx.source(),
        digest = digest.map(tracing::field::display),
        key = key.as_deref().map(tracing::field::display),
        remedy = remedy.as_str(),
        "{message}"
    );
}

/// Emits the warning for failed operations on a shared store: the first at once,
/// later ones summarised by the same rule as evictions. `last` is the most recent.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn warn_fault(summary: EvictionSummary, last: &crate::telemetry::Fault) {
    let message = if summary.first {
        "shared store failed: operations on it are failing; later failures are summarised"
    } else {
        "shared store failed: more failed operations since the last warning"
    };
    // Every field is documented in `docs/telemetry.md`.
    tracing::warn!(
        store = %last.store,
        operation = %last.operation,
        fault = %last.kind.as_str(),
        error = %last.message,
        faults = summary.count,
        total_faults = summary.total,
        "{message}"
    );
}

/// Emits the warning for registrations that never reached the shared store: queued
/// while it failed, then dropped because the queue was full.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn warn_unshared(summary: EvictionSummary, store: &str, queue: usize) {
    tracing::warn!(
        store,
        unshared = summary.count,
        total_unshared = summary.total,
        queue,
        remedy = "bring the shared store back; other workers cannot resolve these digests",
        "shared store unreachable for long: idempotency key metadata dropped from the write queue"
    );
}

/// Emits the warning for an evicting `maxmemory-policy` that the builder was told to
/// accept.
#[cfg(feature = "redis")]
pub(crate) fn evicting_policy_accepted(store: &str, policy: &str) {
    tracing::warn!(
        store = %store,
        maxmemory_policy = %policy,
        remedy = "CONFIG SET maxmemory-policy noeviction",
        "evicting maxmemory-policy accepted: an evicted claim runs its key twice"
    );
}

/// Emits the warning for a server whose persistence may lose claims; `cost` says what.
#[cfg(feature = "redis")]
pub(crate) fn weak_persistence(store: &str, appendonly: &str, appendfsync: &str, save: &str, cost: &str) {
    tracing::warn!(
        store = %store,
        appendonly = %appendonly,
        appendfsync = %appendfsync,
        save = ?save,
        remedy = "CONFIG SET appendonly yes and CONFIG SET appendfsync always, unless duplicates after a crash are acceptable",
        "{cost}"
    );
}

/// Emits the warning for settings the connection's user may not read.
#[cfg(feature = "redis")]
pub(crate) fn configuration_unchecked(store: &str, unchecked: &str, error: &str) {
    tracing::warn!(
        store = %store,
        unchecked = %unchecked,
        error = %error,
        remedy = "make sure of maxmemory-policy noeviction, appendonly yes and appendfsync always, or allow this user INFO and CONFIG GET",
        "redis configuration not checked: the server would not tell"
    );
}

/// Emits the `DEBUG` event for free entries released when their retention ended.
pub(crate) fn retention_ended(kind: CatalogKind, released: u64, retained: usize) {
    tracing::debug!(
        kind = %kind,
        released,
        retained,
        "retention ended: released idempotency key metadata kept past the base"
    );
}

/// Emits the event for entries released when a reservation ended: expected, so
/// below `WARN`.
pub(crate) fn released(ctx: WarnContext, released: u64, kept: usize) {
    tracing::debug!(
        kind = %ctx.kind,
        capacity = ctx.capacity.unwrap_or(usize::MAX),
        released,
        kept,
        "reservation ended: released the idempotency key metadata it held"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{Fault, FaultKind};

    /// Counts its calls; panics on faults when told to.
    #[derive(Default)]
    struct Counting {
        faults: AtomicU64,
        evictions: AtomicU64,
        panic_on_fault: bool,
    }

    impl Listener for Counting {
        fn on_evict(&self, _: &Digest, _: &KeyOptions, _: RemovalCause) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        fn on_fault(&self, _: &Fault) {
            self.faults.fetch_add(1, Ordering::Relaxed);
            assert!(!self.panic_on_fault, "a listener that panics on faults");
        }
    }

    fn fault() -> Fault {
        Fault {
            store: "redis://127.0.0.1:6379".into(),
            operation: "create runs",
            kind: FaultKind::Timeout,
            message: "no answer within 1s".into(),
        }
    }

    fn entry() -> (Digest, KeyOptions) {
        (Digest::from_bytes([7; 32]), KeyOptions::new("order-7", crate::Scope::Global))
    }

    #[test]
    fn every_fault_reaches_the_listener_and_a_listener_that_returns_stays_enabled() {
        let listener = Arc::new(Counting::default());
        let slot = ListenerSlot::new(Some(listener.clone()));
        for _ in 0..3 {
            slot.notify_fault(&fault());
        }
        assert_eq!(listener.faults.load(Ordering::Relaxed), 3);
        assert_eq!(slot.panics(), 0);
        assert!(slot.wants_entries(), "still enabled");
        slot.notify(CatalogKind::Lru, [&entry()], RemovalCause::Capacity);
        assert_eq!(listener.evictions.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_listener_that_panics_on_a_fault_is_counted_once_and_disabled_for_evictions_too() {
        let listener = Arc::new(Counting { panic_on_fault: true, ..Counting::default() });
        let slot = ListenerSlot::new(Some(listener.clone()));
        for _ in 0..3 {
            slot.notify_fault(&fault());
        }
        assert_eq!(listener.faults.load(Ordering::Relaxed), 1, "not called once disabled");
        assert_eq!(slot.panics(), 1);
        assert!(!slot.wants_entries());
        slot.notify(CatalogKind::Lru, [&entry()], RemovalCause::Capacity);
        assert_eq!(listener.evictions.load(Ordering::Relaxed), 0);
    }

    fn lines_for(evictions: u64) -> Vec<EvictionSummary> {
        let mut log = EvictionLog::new();
        let mut lines: Vec<_> = (0..evictions).filter_map(|_| log.record(1)).collect();
        lines.extend(log.flush());
        lines
    }

    #[test]
    fn first_eviction_reports_at_once() {
        let mut log = EvictionLog::new();
        assert_eq!(log.record(1), Some(EvictionSummary { first: true, count: 1, total: 1 }));
        assert_eq!(log.record(1), None);
        assert_eq!(log.flush(), Some(EvictionSummary { first: false, count: 1, total: 2 }));
        assert_eq!(log.flush(), None);
    }

    #[test]
    fn every_eviction_is_covered_by_exactly_one_line() {
        for n in [1, 2, 9, 10, 11, 5_235, 100_000] {
            let lines = lines_for(n);
            assert_eq!(lines.iter().map(|l| l.count).sum::<u64>(), n, "{n}");
            assert_eq!(lines.iter().filter(|l| l.first).count(), 1);
        }
    }

    #[test]
    fn a_million_evictions_print_a_handful_of_lines() {
        let lines = lines_for(1_000_000);
        // 1, 10, 100, ..., 1_000_000: one line per power of ten.
        assert_eq!(lines.len(), 7, "{lines:?}");
    }

    #[test]
    fn a_trickle_is_reported_at_the_first_eviction_once_the_interval_has_passed() {
        let start = Instant::now();
        let mut log = EvictionLog::new();
        assert!(log.record_with(1, || start).is_some());
        // Far from the next power of ten: only the clock can make a line due.
        assert_eq!(log.record_with(1, || start + Duration::from_secs(1)), None);
        let late = log.record_with(1, || start + SUMMARY_INTERVAL);
        assert_eq!(late, Some(EvictionSummary { first: false, count: 2, total: 3 }));
    }

    #[test]
    fn a_burst_is_reported_within_a_few_evictions_once_the_interval_has_passed() {
        let start = Instant::now();
        let mut log = EvictionLog::new();
        for _ in 0..500 {
            log.record_with(1, || start);
        }
        // 500 unreported since the line at 100; the next power of ten is far away.
        let later = start + SUMMARY_INTERVAL;
        let waited = (1..=CLOCK_EVERY).find(|_| log.record_with(1, || later).is_some());
        assert!(waited.is_some(), "no line within {CLOCK_EVERY} evictions of the interval");
    }

    /// Counts its `on_fault` calls, and panics in them if asked to.
    #[derive(Default)]
    struct OnFault {
        calls: AtomicU64,
        panics: bool,
    }

    impl Listener for OnFault {
        fn on_evict(&self, _: &Digest, _: &KeyOptions, _: RemovalCause) {}
        #[allow(clippy::panic)] // the failure under test
        fn on_fault(&self, fault: &crate::telemetry::Fault) {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.panics {
                panic!("listener bug on {}", fault.operation);
            }
        }
    }

    fn notify_three_faults(listener: &Arc<OnFault>) -> (ListenerSlot, String) {
        let slot = ListenerSlot::new(Some(Arc::clone(listener) as Arc<dyn Listener>));
        let fault = crate::telemetry::Fault {
            store: "redis://127.0.0.1:6379/".to_owned(),
            operation: "connect",
            kind: crate::telemetry::FaultKind::Timeout,
            message: "no answer within 2s".to_owned(),
        };
        let ((), logged) = testkit::captured(|| (0..3).for_each(|_| slot.notify_fault(&fault)));
        (slot, logged)
    }

    #[test]
    fn on_fault_sees_every_fault_and_a_listener_that_returns_stays_enabled() {
        let listener = Arc::new(OnFault::default());
        let (slot, logged) = notify_three_faults(&listener);
        assert_eq!(listener.calls.load(Ordering::Relaxed), 3);
        assert_eq!(slot.panics(), 0);
        assert!(slot.wants_entries(), "still enabled");
        assert!(!logged.contains("ERROR"), "{logged}");
    }

    #[test]
    fn a_panicking_on_fault_is_disabled_counted_once_and_reported_once() {
        let listener = Arc::new(OnFault { panics: true, ..OnFault::default() });
        let (slot, logged) = notify_three_faults(&listener);
        assert_eq!(listener.calls.load(Ordering::Relaxed), 1, "disabled after the first panic");
        assert_eq!(slot.panics(), 1);
        assert!(!slot.wants_entries());
        assert_eq!(logged.matches(" ERROR ").count(), 1, "{logged}");
        assert!(logged.contains("eviction listener panicked on a fault"), "{logged}");
    }

    #[test]
    fn bulk_records_jump_past_several_powers() {
        let mut log = EvictionLog::new();
        assert!(log.record(5_000).is_some());
        assert!(log.record(4_000).is_none());
        assert!(log.record(1_000).is_some());
    }
}
