//! Counters, removal causes, the eviction listener hook and the `tracing` events.
//!
//! Every event of this crate is emitted from this module, so its target,
//! `idempotency_catalog::telemetry`, is stable; `RUST_LOG=idempotency_catalog=warn`
//! selects them all.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::CatalogKind;
use crate::digest::Digest;
use crate::key_options::KeyOptions;

/// Why an entry left a catalog.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::RemovalCause;
///
/// assert!(RemovalCause::Capacity.was_evicted());
/// assert!(RemovalCause::Shrink.was_evicted());
/// assert!(!RemovalCause::Explicit.was_evicted());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// The catalog was full and a newer entry took the room.
    Capacity,
    /// A batch-scaled catalog shrank back when a reservation ended.
    Shrink,
    /// [`Catalog::remove`](crate::Catalog::remove) was called.
    Explicit,
    /// The digest was registered again with new options.
    Replaced,
    /// [`Catalog::clear`](crate::Catalog::clear) was called.
    Cleared,
}

impl RemovalCause {
    /// Whether the catalog dropped the entry on its own, losing metadata nobody asked
    /// to drop. Only these causes reach an [`EvictionListener`] and the warnings.
    pub const fn was_evicted(self) -> bool {
        matches!(self, RemovalCause::Capacity | RemovalCause::Shrink)
    }
}

/// A hook called for every eviction, after the catalog's lock is released.
///
/// Because the lock is released, a listener may call back into the catalog. A listener
/// that panics is disabled, and the panic is reported once as an `ERROR` event and in
/// [`Stats::listener_panics`]; the catalog keeps working.
///
/// Any `Fn(&Digest, &KeyOptions, RemovalCause) + Send + Sync` is a listener.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, Scope};
///
/// let evicted = Arc::new(AtomicU64::new(0));
/// let seen = Arc::clone(&evicted);
/// let catalog = CatalogBuilder::new()
///     .kind(CatalogKind::Lru)
///     .capacity(1)
///     .listener(move |_: &Digest, _: &KeyOptions, cause: idempotency_catalog::RemovalCause| {
///         assert!(cause.was_evicted());
///         seen.fetch_add(1, Ordering::Relaxed);
///     })
///     .build()?;
/// catalog.register(Digest::from_bytes([1; 32]), KeyOptions::new("a", Scope::Run));
/// catalog.register(Digest::from_bytes([2; 32]), KeyOptions::new("b", Scope::Run));
/// assert_eq!(evicted.load(Ordering::Relaxed), 1);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
pub trait EvictionListener: Send + Sync {
    /// Called once per evicted entry with the options it held and why it left.
    fn on_evict(&self, digest: &Digest, options: &KeyOptions, cause: RemovalCause);
}

impl<F> EvictionListener for F
where
    F: Fn(&Digest, &KeyOptions, RemovalCause) + Send + Sync,
{
    fn on_evict(&self, digest: &Digest, options: &KeyOptions, cause: RemovalCause) {
        self(digest, options, cause)
    }
}

/// A snapshot of a catalog's counters, taken under its lock so that they agree:
/// `registered - evictions() - removed - cleared == len`.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{Catalog, Digest, KeyOptions, LruCatalog, Scope};
///
/// let catalog = LruCatalog::with_capacity(1)?;
/// catalog.register(Digest::from_bytes([1; 32]), KeyOptions::new("a", Scope::Run));
/// catalog.register(Digest::from_bytes([2; 32]), KeyOptions::new("b", Scope::Run));
/// let stats = catalog.stats();
/// assert_eq!((stats.registered, stats.evicted_capacity, stats.len), (2, 1, 1));
/// assert_eq!(stats.registered - stats.evictions() - stats.removed - stats.cleared, stats.len as u64);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Registrations of a digest that was not held.
    pub registered: u64,
    /// Registrations of a digest that was held: its options were replaced.
    pub replaced: u64,
    /// Lookups that found their digest.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Entries evicted because the catalog was full.
    pub evicted_capacity: u64,
    /// Entries evicted because a batch-scaled catalog shrank after a reservation.
    pub evicted_shrink: u64,
    /// Entries removed by [`Catalog::remove`](crate::Catalog::remove).
    pub removed: u64,
    /// Entries removed by [`Catalog::clear`](crate::Catalog::clear).
    pub cleared: u64,
    /// Entries held now.
    pub len: usize,
    /// The most entries ever held at once.
    pub peak_len: usize,
    /// The current capacity; `None` when unbounded.
    pub capacity: Option<usize>,
    /// Entries asked for by live reservations (batch-scaled catalogs grow by this much,
    /// up to their ceiling).
    pub reserved: usize,
    /// Eviction listener calls that panicked (the listener is disabled after the first).
    pub listener_panics: u64,
}

impl Stats {
    /// Every entry the catalog dropped on its own: capacity plus shrink evictions.
    pub fn evictions(&self) -> u64 {
        self.evicted_capacity + self.evicted_shrink
    }
}

/// The listener, if any, and whether it has been disabled by a panic.
pub(crate) struct ListenerSlot {
    listener: Option<Arc<dyn EvictionListener>>,
    disabled: AtomicBool,
    panics: AtomicU64,
}

impl ListenerSlot {
    pub(crate) fn new(listener: Option<Arc<dyn EvictionListener>>) -> Self {
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

impl fmt::Debug for ListenerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerSlot")
            .field("set", &self.listener.is_some())
            .field("disabled", &self.disabled.load(Ordering::Relaxed))
            .finish()
    }
}

/// Decides when evictions are worth a log line: the first at once, then one
/// summary each time the total reaches the next power of ten, or when ten seconds have
/// passed since the last line. What is left over is summarised on [`flush`](Self::flush)
/// (a reservation ending, `clear`, the catalog being dropped). So every eviction is
/// covered by a line, and a million evictions print a handful.
#[derive(Debug)]
pub(crate) struct EvictionLog {
    total: u64,
    unreported: u64,
    next_report_at: u64,
    last_report: Option<Instant>,
}

/// How often the clock is read while evictions go unreported: often enough for the
/// interval to matter, rarely enough to stay off the register path's cost.
const CLOCK_EVERY: u64 = 1024;
const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

impl EvictionLog {
    pub(crate) const fn new() -> Self {
        EvictionLog { total: 0, unreported: 0, next_report_at: 1, last_report: None }
    }

    /// Counts `n` more evictions; returns the line to print, if one is due.
    pub(crate) fn record(&mut self, n: u64) -> Option<EvictionSummary> {
        let before = self.unreported;
        self.total = self.total.saturating_add(n);
        self.unreported = self.unreported.saturating_add(n);
        // Read the clock each time the unreported count passes a multiple of
        // `CLOCK_EVERY`, whether it got there one by one or in bulk.
        let clock = before / CLOCK_EVERY != self.unreported / CLOCK_EVERY;
        let due = self.total >= self.next_report_at
            || (clock && self.last_report.is_some_and(|at| at.elapsed() >= SUMMARY_INTERVAL));
        due.then(|| self.take())
    }

    /// The line covering every eviction not yet reported, if there are any.
    pub(crate) fn flush(&mut self) -> Option<EvictionSummary> {
        (self.unreported > 0).then(|| self.take())
    }

    fn take(&mut self) -> EvictionSummary {
        let summary = EvictionSummary { first: self.last_report.is_none(), count: self.unreported, total: self.total };
        self.unreported = 0;
        self.last_report = Some(Instant::now());
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
    pub(crate) at_ceiling: bool,
}

impl WarnContext {
    fn remedy(&self) -> &'static str {
        match (self.kind, self.at_ceiling) {
            (CatalogKind::BatchScaled, true) => {
                "raise IDEMPOTENCY_CATALOG_MAX_CAPACITY or CatalogBuilder::max_capacity"
            }
            (CatalogKind::BatchScaled, false) => {
                "reserve room for batches with Catalog::reserve, or raise IDEMPOTENCY_CATALOG_CAPACITY or CatalogBuilder::capacity"
            }
            _ => {
                "raise IDEMPOTENCY_CATALOG_CAPACITY or CatalogBuilder::capacity, or use IDEMPOTENCY_CATALOG_KIND=batch-scaled"
            }
        }
    }
}

/// Emits the warning for capacity evictions. `last` is the most recent evicted entry,
/// shown by digest; its key only when `log_keys` is on, since keys often hold emails
/// or order numbers.
pub(crate) fn warn_capacity(
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
    let key = last.filter(|_| log_keys).map(|(_, options)| options.key());
    warn_evicted(ctx, summary, message, ctx.remedy(), last.map(|(digest, _)| digest), key);
}

/// Emits the warning for the entries a batch-scaled catalog shed when reservations
/// ended: the first shrink at once, later ones summarised like capacity evictions.
pub(crate) fn warn_shrink(ctx: WarnContext, summary: EvictionSummary) {
    let message = if summary.first {
        "reservation ended: catalog shrank back and evicted the oldest idempotency key metadata; later shrinks are summarised"
    } else {
        "reservations ended: catalog shrank back again; more idempotency key metadata evicted since the last warning"
    };
    let remedy = "raise IDEMPOTENCY_CATALOG_CAPACITY or CatalogBuilder::capacity to keep more entries between batches";
    warn_evicted(ctx, summary, message, remedy, None, None);
}

/// The one `WARN` event behind both: every field documented in `docs/telemetry.md`.
fn warn_evicted(
    ctx: WarnContext,
    summary: EvictionSummary,
    message: &str,
    remedy: &str,
    digest: Option<&Digest>,
    key: Option<&str>,
) {
    tracing::warn!(
        kind = %ctx.kind,
        capacity = ctx.capacity.unwrap_or(usize::MAX),
        evicted = summary.count,
        total_evicted = summary.total,
        digest = digest.map(tracing::field::display),
        key,
        remedy,
        "{message}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn bulk_records_jump_past_several_powers() {
        let mut log = EvictionLog::new();
        assert!(log.record(5_000).is_some());
        assert!(log.record(4_000).is_none());
        assert!(log.record(1_000).is_some());
    }
}
