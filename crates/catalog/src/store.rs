//! The one implementation behind every catalog kind: an `lru::LruCache` in a
//! `parking_lot::Mutex`, a capacity policy, exact counters and the telemetry hooks.
//!
//! Work under the lock is kept to the map operation and counter updates; listener
//! calls, warnings and dropping large maps happen after it is released.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::catalog::Reservation;
use crate::config::CatalogKind;
use crate::digest::Digest;
use crate::key_options::KeyOptions;
use crate::telemetry::{self, EvictionListener, EvictionLog, ListenerSlot, RemovalCause, Stats, WarnContext};

/// How the capacity moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// A fixed capacity; reservations cannot grow it.
    Fixed(NonZeroUsize),
    /// No capacity; nothing is ever evicted.
    Unbounded,
    /// `base` plus every reservation of the current overlap, growing further while one
    /// is live if unreserved keys need it; never above `max`.
    Scaled { base: NonZeroUsize, max: NonZeroUsize },
}

impl Policy {
    pub(crate) fn kind(self) -> CatalogKind {
        match self {
            Policy::Fixed(_) => CatalogKind::Lru,
            Policy::Unbounded => CatalogKind::Unbounded,
            Policy::Scaled { .. } => CatalogKind::BatchScaled,
        }
    }

    /// The capacity once reservations have asked for `grown` more entries.
    fn capacity(self, grown: usize) -> NonZeroUsize {
        match self {
            Policy::Fixed(cap) => cap,
            Policy::Unbounded => NonZeroUsize::MAX,
            Policy::Scaled { base, max } => base.saturating_add(grown).min(max),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Store {
    policy: Policy,
    state: Mutex<State>,
    listener: ListenerSlot,
    log_keys: bool,
}

#[derive(Debug)]
struct State {
    entries: LruCache<Digest, KeyOptions>,
    /// Entries asked for by live reservations.
    reserved: usize,
    /// Live reservations.
    live: usize,
    /// Entries asked for by every reservation since none was live: what a batch-scaled
    /// catalog has grown by. Returned only when the last overlapping reservation ends,
    /// because shrinking earlier would shed the oldest entries, which may belong to a
    /// batch that is still being built.
    grown: usize,
    counters: Stats,
    /// When capacity evictions are worth a log line.
    log: EvictionLog,
    /// The same for what shrinking sheds: one line per batch would flood the log.
    shrink_log: EvictionLog,
}

impl State {
    /// While a reservation is live, a new digest that would evict grows a batch-scaled
    /// catalog instead (doubling, up to its ceiling). The least recently used entry may
    /// belong to a batch still being built, and a registration nobody reserved room for
    /// (another task's key) must not push it out.
    fn make_room(&mut self, digest: &Digest, max: NonZeroUsize) {
        let cap = self.entries.cap();
        if self.live > 0 && self.entries.len() >= cap.get() && cap < max && !self.entries.contains(digest) {
            self.entries.resize(cap.saturating_add(cap.get()).min(max));
        }
    }

    /// The capacity as the catalog reports it: `None` when unbounded (the map's own
    /// capacity is then `usize::MAX`, which means nothing to a reader).
    fn capacity(&self, policy: Policy) -> Option<usize> {
        (policy != Policy::Unbounded).then_some(self.entries.cap().get())
    }

    fn warn_context(&self, policy: Policy) -> WarnContext {
        WarnContext {
            kind: policy.kind(),
            capacity: self.capacity(policy),
            at_ceiling: matches!(policy, Policy::Scaled { max, .. } if self.entries.cap() >= max),
        }
    }
}

impl Store {
    pub(crate) fn new(policy: Policy, listener: Option<Arc<dyn EvictionListener>>, log_keys: bool) -> Self {
        let entries = new_map(policy.capacity(0));
        Store {
            policy,
            state: Mutex::new(State {
                entries,
                reserved: 0,
                live: 0,
                grown: 0,
                counters: Stats::default(),
                log: EvictionLog::new(),
                shrink_log: EvictionLog::new(),
            }),
            listener: ListenerSlot::new(listener),
            log_keys,
        }
    }

    pub(crate) fn kind(&self) -> CatalogKind {
        self.policy.kind()
    }

    pub(crate) fn register(&self, digest: Digest, options: KeyOptions) {
        let mut state = self.state.lock();
        if let Policy::Scaled { max, .. } = self.policy {
            state.make_room(&digest, max);
        }
        let Some((old_digest, old_options)) = state.entries.push(digest, options) else {
            state.counters.registered += 1;
            let len = state.entries.len();
            state.counters.peak_len = state.counters.peak_len.max(len);
            return;
        };
        if old_digest == digest {
            state.counters.replaced += 1;
            return;
        }
        // A new digest pushed out the least recently used one.
        state.counters.registered += 1;
        state.counters.evicted_capacity += 1;
        let due = state.log.record(1);
        let ctx = state.warn_context(self.policy);
        drop(state);

        let evicted = (old_digest, old_options);
        if self.listener.wants_entries() {
            self.listener.notify(ctx.kind, [&evicted], RemovalCause::Capacity);
        }
        if let Some(summary) = due {
            telemetry::warn_capacity(ctx, summary, Some(&evicted), self.log_keys);
        }
    }

    pub(crate) fn get(&self, digest: &Digest) -> Option<KeyOptions> {
        let mut state = self.state.lock();
        let found = state.entries.get(digest).cloned();
        match found {
            Some(_) => state.counters.hits += 1,
            None => state.counters.misses += 1,
        }
        found
    }

    pub(crate) fn remove(&self, digest: &Digest) -> Option<KeyOptions> {
        let mut state = self.state.lock();
        let removed = state.entries.pop(digest);
        state.counters.removed += u64::from(removed.is_some());
        removed
    }

    pub(crate) fn clear(&self) {
        let mut state = self.state.lock();
        let cap = state.entries.cap();
        let old = std::mem::replace(&mut state.entries, new_map(cap));
        state.counters.cleared += old.len() as u64;
        let due = state.log.flush();
        let shrink_due = state.shrink_log.flush();
        let ctx = state.warn_context(self.policy);
        drop(state);
        // Freeing a large map takes a while; not under the lock.
        drop(old);
        if let Some(summary) = due {
            telemetry::warn_capacity(ctx, summary, None, self.log_keys);
        }
        if let Some(summary) = shrink_due {
            telemetry::warn_shrink(ctx, summary);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        self.state.lock().capacity(self.policy)
    }

    pub(crate) fn stats(&self) -> Stats {
        let state = self.state.lock();
        Stats {
            len: state.entries.len(),
            capacity: state.capacity(self.policy),
            reserved: state.reserved,
            listener_panics: self.listener.panics(),
            ..state.counters
        }
    }

    pub(crate) fn reserve(&self, additional: usize) -> Reservation<'_> {
        let capacity = {
            let mut state = self.state.lock();
            state.reserved = state.reserved.saturating_add(additional);
            state.live += 1;
            state.grown = state.grown.saturating_add(additional);
            // Never below the current capacity: it may have grown for unreserved keys.
            let capacity = self.policy.capacity(state.grown).max(state.entries.cap());
            // Growing never evicts, so there is nothing to report here. A batch much
            // larger than what is held gets its map allocated now, rather than
            // rehashed again and again as it fills.
            let preallocate = capacity > state.entries.cap()
                && capacity.get() / 2 > state.entries.len()
                && capacity.get() <= PREALLOCATE_RESERVED_UP_TO;
            let old = if preallocate {
                let fresh = rebuilt(&state.entries, state.entries.len(), LruCache::new(capacity));
                Some(std::mem::replace(&mut state.entries, fresh))
            } else {
                state.entries.resize(capacity);
                None
            };
            drop(state);
            drop(old);
            capacity
        };
        let shortfall = match self.policy {
            Policy::Unbounded => 0,
            _ => additional.saturating_sub(capacity.get()),
        };
        Reservation::new(additional, shortfall, move || self.release(additional))
    }

    /// Ends a reservation: when it was the last live one, shrinks back, evicting the
    /// excess oldest-first; in any case reports every eviction still unreported.
    fn release(&self, additional: usize) {
        let mut state = self.state.lock();
        state.reserved = state.reserved.saturating_sub(additional);
        state.live = state.live.saturating_sub(1);
        if state.live == 0 {
            state.grown = 0;
        }
        // Only the end of the last live reservation shrinks anything.
        let capacity = if state.live == 0 { self.policy.capacity(0) } else { state.entries.cap() };
        let keep_entries = self.listener.wants_entries();
        let excess = state.entries.len().saturating_sub(capacity.get());
        let mut shed = Vec::new();
        let mut old = None;
        if excess > capacity.get() {
            // Shedding most of the map: moving the few survivors into a new one is
            // cheaper than a hash removal per shed entry, and frees the large table.
            if keep_entries {
                shed = state.entries.iter().rev().take(excess).map(|(d, o)| (*d, o.clone())).collect();
            }
            let fresh = rebuilt(&state.entries, capacity.get(), new_map(capacity));
            old = Some(std::mem::replace(&mut state.entries, fresh));
        } else {
            for _ in 0..excess {
                let Some(entry) = state.entries.pop_lru() else { break };
                if keep_entries {
                    shed.push(entry);
                }
            }
            state.entries.resize(capacity);
        }
        let shed_count = excess as u64;
        state.counters.evicted_shrink += shed_count;
        let shrink_due = if shed_count > 0 { state.shrink_log.record(shed_count) } else { None };
        let due = state.log.flush();
        let ctx = state.warn_context(self.policy);
        drop(state);
        drop(old);

        self.listener.notify(ctx.kind, &shed, RemovalCause::Shrink);
        if let Some(summary) = shrink_due {
            telemetry::warn_shrink(ctx, summary);
        }
        if let Some(summary) = due {
            telemetry::warn_capacity(ctx, summary, None, self.log_keys);
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        let ctx = state.warn_context(self.policy);
        if let Some(summary) = state.log.flush() {
            telemetry::warn_capacity(ctx, summary, None, self.log_keys);
        }
        if let Some(summary) = state.shrink_log.flush() {
            telemetry::warn_shrink(ctx, summary);
        }
    }
}

/// `into`, holding the newest `keep` entries of `from` in the same recency order.
fn rebuilt(
    from: &LruCache<Digest, KeyOptions>,
    keep: usize,
    mut into: LruCache<Digest, KeyOptions>,
) -> LruCache<Digest, KeyOptions> {
    // `iter` runs newest first; pushing oldest first leaves the newest most recent.
    let newest: Vec<_> = from.iter().take(keep).collect();
    for (digest, options) in newest.into_iter().rev() {
        into.push(*digest, options.clone());
    }
    into
}

fn new_map(cap: NonZeroUsize) -> LruCache<Digest, KeyOptions> {
    // A small capacity is allocated up front, as the raw crate does, since a catalog
    // usually fills; a large one grows with what is held, so that a generous ceiling
    // costs nothing until it is used.
    if cap.get() <= PREALLOCATE_UP_TO { LruCache::new(cap) } else { LruCache::sparse(cap) }
}

/// About 1.2 MB of map at most, allocated when a catalog is built.
const PREALLOCATE_UP_TO: usize = 65_536;

/// About 70 MB of map at most, allocated when a reservation grows the catalog; a
/// larger one grows as it fills, so that a huge reservation cannot exhaust memory
/// before a single key is registered.
const PREALLOCATE_RESERVED_UP_TO: usize = 1 << 21;

/// Implements [`Catalog`](crate::Catalog) for a wrapper around a `store: Store` field.
macro_rules! delegate_catalog {
    ($ty:ty) => {
        impl $crate::Catalog for $ty {
            fn register(&self, digest: $crate::Digest, options: $crate::KeyOptions) {
                self.store.register(digest, options)
            }
            fn get(&self, digest: &$crate::Digest) -> Option<$crate::KeyOptions> {
                self.store.get(digest)
            }
            fn remove(&self, digest: &$crate::Digest) -> Option<$crate::KeyOptions> {
                self.store.remove(digest)
            }
            fn clear(&self) {
                self.store.clear()
            }
            fn len(&self) -> usize {
                self.store.len()
            }
            fn capacity(&self) -> Option<usize> {
                self.store.capacity()
            }
            fn kind(&self) -> $crate::CatalogKind {
                self.store.kind()
            }
            fn stats(&self) -> $crate::Stats {
                self.store.stats()
            }
            fn reserve(&self, additional: usize) -> $crate::Reservation<'_> {
                self.store.reserve(additional)
            }
        }
    };
}
pub(crate) use delegate_catalog;
