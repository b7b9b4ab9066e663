//! Counters and gauges on the `metrics` facade (feature `metrics`). Without the
//! feature every method is empty and inlined away.
//!
//! Handles are registered once, when a catalog is built: install the recorder (for
//! example `metrics-exporter-prometheus`) before building catalogs, or their metrics
//! go nowhere. Labels are the catalog's kind and name, never a key or a digest.

use crate::kind::CatalogKind;

/// Every metric of the crate, with its unit and description: one place for the names
/// `docs/telemetry.md` lists.
#[cfg(feature = "metrics")]
mod names {
    pub(super) const REGISTRATIONS: &str = "idempotency_catalog_registrations_total";
    pub(super) const REPLACEMENTS: &str = "idempotency_catalog_replacements_total";
    pub(super) const HITS: &str = "idempotency_catalog_hits_total";
    pub(super) const MISSES: &str = "idempotency_catalog_misses_total";
    pub(super) const REMOVALS: &str = "idempotency_catalog_removals_total";
    pub(super) const LISTENER_PANICS: &str = "idempotency_catalog_listener_panics_total";
    pub(super) const ENTRIES: &str = "idempotency_catalog_entries";
    pub(super) const CAPACITY: &str = "idempotency_catalog_capacity_entries";
    pub(super) const MAX_CAPACITY: &str = "idempotency_catalog_max_capacity_entries";
    pub(super) const RESERVED: &str = "idempotency_catalog_reserved_entries";
    pub(super) const BYTES: &str = "idempotency_catalog_bytes";
    pub(super) const MAX_BYTES: &str = "idempotency_catalog_max_bytes";
    pub(super) const FAULTS: &str = "idempotency_catalog_faults_total";
    pub(super) const UNSHARED: &str = "idempotency_catalog_unshared_total";
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Handles {
    registrations: metrics::Counter,
    replacements: metrics::Counter,
    hits: metrics::Counter,
    misses: metrics::Counter,
    evicted: metrics::Counter,
    released: metrics::Counter,
    removed: metrics::Counter,
    cleared: metrics::Counter,
    listener_panics: metrics::Counter,
    entries: metrics::Gauge,
    capacity: metrics::Gauge,
    max_capacity: metrics::Gauge,
    reserved: metrics::Gauge,
    bytes: metrics::Gauge,
    max_bytes: metrics::Gauge,
}

/// A catalog's metric handles.
#[derive(Debug)]
pub(crate) struct Meter {
    #[cfg(feature = "metrics")]
    handles: Handles,
}

impl Meter {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(kind: CatalogKind, name: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            use names::*;
            describe();
            let labels = [("kind", kind.as_str().to_owned()), ("catalog", name.to_owned())];
            let removal = |cause: &'static str| {
                let mut labels = labels.to_vec();
                labels.push(("cause", cause.to_owned()));
                metrics::counter!(REMOVALS, &labels)
            };
            Meter {
                handles: Handles {
                    registrations: metrics::counter!(REGISTRATIONS, &labels),
                    replacements: metrics::counter!(REPLACEMENTS, &labels),
                    hits: metrics::counter!(HITS, &labels),
                    misses: metrics::counter!(MISSES, &labels),
                    evicted: removal("capacity"),
                    released: removal("released"),
                    removed: removal("explicit"),
                    cleared: removal("cleared"),
                    listener_panics: metrics::counter!(LISTENER_PANICS, &labels),
                    entries: metrics::gauge!(ENTRIES, &labels),
                    capacity: metrics::gauge!(CAPACITY, &labels),
                    max_capacity: metrics::gauge!(MAX_CAPACITY, &labels),
                    reserved: metrics::gauge!(RESERVED, &labels),
                    bytes: metrics::gauge!(BYTES, &labels),
                    max_bytes: metrics::gauge!(MAX_BYTES, &labels),
                },
            }
        }
        #[cfg(not(feature = "metrics"))]
        Meter {}
    }
}

/// Each counter: what `Stats` counts, on the facade as well.
macro_rules! counters {
    ($($method:ident => $field:ident),* $(,)?) => {
        impl Meter {
            $(
                #[inline]
                #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
                pub(crate) fn $method(&self, n: u64) {
                    #[cfg(feature = "metrics")]
                    if n > 0 {
                        self.handles.$field.increment(n);
                    }
                }
            )*
        }
    };
}

counters! {
    registered => registrations,
    replaced => replacements,
    hit => hits,
    missed => misses,
    evicted => evicted,
    released => released,
    removed => removed,
    cleared => cleared,
    listener_panicked => listener_panics,
}

impl Meter {
    /// Sets the gauges: entries held, the capacity (`+Inf` when unbounded), the room
    /// live reservations asked for, the bytes held and the budget.
    /// Only with the feature: the store computes the values only then.
    #[cfg(feature = "metrics")]
    #[inline]
    pub(crate) fn publish(
        &self,
        len: usize,
        capacity: Option<usize>,
        reserved: usize,
        bytes: usize,
        max_bytes: Option<usize>,
    ) {
        self.handles.entries.set(len as f64);
        self.handles.capacity.set(capacity.map_or(f64::INFINITY, |c| c as f64));
        self.handles.reserved.set(reserved as f64);
        self.handles.bytes.set(bytes as f64);
        self.handles.max_bytes.set(max_bytes.map_or(f64::INFINITY, |b| b as f64));
    }

    /// Sets the ceiling gauge: the most entries the catalog may ever hold. Fixed for a
    /// catalog's life, so set once, when it is built, not on every change.
    #[cfg(feature = "metrics")]
    pub(crate) fn publish_ceiling(&self, ceiling: Option<usize>) {
        self.handles.max_capacity.set(ceiling.map_or(f64::INFINITY, |c| c as f64));
    }
}

/// Describes every metric once per process, with its unit.
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::Unit;
    use names::*;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(REGISTRATIONS, Unit::Count, "registrations of a digest the catalog did not hold");
        metrics::describe_counter!(REPLACEMENTS, Unit::Count, "registrations of a digest the catalog held");
        metrics::describe_counter!(HITS, Unit::Count, "lookups that found their digest");
        metrics::describe_counter!(MISSES, Unit::Count, "lookups that did not find their digest");
        metrics::describe_counter!(
            REMOVALS,
            Unit::Count,
            "entries that left the catalog, by cause: capacity (a possible loss, warned), released (the end of a run or batch), explicit, cleared"
        );
        metrics::describe_counter!(LISTENER_PANICS, Unit::Count, "eviction listener calls that panicked");
        metrics::describe_gauge!(ENTRIES, Unit::Count, "entries held");
        metrics::describe_gauge!(CAPACITY, Unit::Count, "entries that fit before the next registration evicts");
        metrics::describe_gauge!(
            MAX_CAPACITY,
            Unit::Count,
            "the most entries the catalog may grow to: a batch-scaled catalog's ceiling, an LRU's capacity (+Inf when unbounded)"
        );
        metrics::describe_gauge!(RESERVED, Unit::Count, "entries asked for by live reservations");
        metrics::describe_gauge!(BYTES, Unit::Bytes, "memory the entries take, counted per entry");
        metrics::describe_gauge!(MAX_BYTES, Unit::Bytes, "the byte budget (+Inf without one)");
        metrics::describe_counter!(
            FAULTS,
            Unit::Count,
            "fleet mode: failed operations on Redis, by fault: unreachable, timeout, out-of-memory, rejected, foreign"
        );
        metrics::describe_counter!(
            UNSHARED,
            Unit::Count,
            "fleet mode: registrations dropped from a full write queue while Redis failed"
        );
    });
}

/// Fleet mode: a failed operation on Redis. Looked up per call: faults are rare, and a
/// handle may fail before any catalog is built on it.
#[cfg(feature = "redis")]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn fault(kind: crate::telemetry::FaultKind) {
    #[cfg(feature = "metrics")]
    {
        describe();
        metrics::counter!(names::FAULTS, "fault" => kind.as_str()).increment(1);
    }
}

/// Fleet mode: registrations dropped from a full write queue.
#[cfg(feature = "redis")]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn unshared(n: u64) {
    #[cfg(feature = "metrics")]
    {
        describe();
        metrics::counter!(names::UNSHARED).increment(n);
    }
}
