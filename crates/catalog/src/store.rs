//! The one implementation behind every catalog kind: `lru::LruCache`s in a
//! `parking_lot::Mutex`, a capacity policy, exact counters and the telemetry hooks.
//!
//! Entries live in one of several maps: the free map, an LRU of the base capacity for
//! entries that no reservation holds, and one map per live reservation for the entries
//! registered through it. A digest is in at most one of them. Keeping each
//! reservation's entries apart is what lets one reservation end while others go on,
//! releasing exactly its own entries: room follows what is live, not history.
//!
//! Work under the lock is kept to the map operations and counter updates; listener
//! calls, events and dropping large maps happen after it is released.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::catalog::ReservationId;
use crate::digest::Digest;
use crate::events::{self, EvictionLog, ListenerSlot, WarnContext};
use crate::key_options::KeyOptions;
use crate::kind::CatalogKind;
use crate::meter::Meter;
use crate::telemetry::{EvictionListener, RemovalCause, Stats};

/// How the capacity moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// A fixed capacity; reservations cannot grow it, nor hold entries apart.
    Fixed(NonZeroUsize),
    /// No capacity; nothing is ever evicted, and a reservation's entries are released
    /// when it ends.
    Unbounded,
    /// `base` free entries plus what live reservations hold (their room, or their
    /// entries when those are more); never above `max` entries in all.
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

    /// The free map's capacity.
    fn free_capacity(self) -> NonZeroUsize {
        match self {
            Policy::Fixed(cap) | Policy::Scaled { base: cap, .. } => cap,
            Policy::Unbounded => NonZeroUsize::MAX,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Store {
    policy: Policy,
    state: Mutex<State>,
    listener: ListenerSlot,
    log_keys: bool,
    meter: Meter,
    /// A shared store keeps every entry (fleet mode): what this one drops for room is
    /// released, not lost.
    pub(crate) backed: bool,
}

#[derive(Debug)]
struct State {
    /// Entries no live reservation holds, least recently used first out.
    free: LruCache<Digest, KeyOptions>,
    /// Live reservations, oldest first. A process has few at once (its running tasks
    /// and their open batches), so a scan is cheaper than a map.
    holds: Vec<Hold>,
    next_id: u64,
    counters: Stats,
    /// When evictions are worth a log line.
    log: EvictionLog,
}

#[derive(Debug)]
struct Hold {
    id: ReservationId,
    /// Entries asked for when it opened.
    room: usize,
    /// Entries registered through it (always empty under a fixed policy).
    entries: LruCache<Digest, KeyOptions>,
}

impl Hold {
    /// The room it takes in a batch-scaled catalog's capacity.
    fn footprint(&self) -> usize {
        self.room.max(self.entries.len())
    }
}

/// Where an entry goes: the free map, or the hold at this index.
type Target = Option<usize>;

impl State {
    fn len(&self) -> usize {
        self.holds.iter().fold(self.free.len(), |len, hold| len + hold.entries.len())
    }

    fn position(&self, id: ReservationId) -> Option<usize> {
        self.holds.iter().position(|hold| hold.id == id)
    }

    fn map(&mut self, target: Target) -> &mut LruCache<Digest, KeyOptions> {
        match target.and_then(|at| self.holds.get_mut(at)) {
            Some(hold) => &mut hold.entries,
            None => &mut self.free,
        }
    }

    /// Removes `digest` from every map but `target`'s; whether it was found. Empty
    /// maps are skipped without hashing, which keeps a catalog without live
    /// reservations as cheap as the raw `lru` crate.
    fn take_elsewhere(&mut self, target: Target, digest: &Digest) -> bool {
        if target.is_some() && !self.free.is_empty() && self.free.pop(digest).is_some() {
            return true;
        }
        self.holds
            .iter_mut()
            .enumerate()
            .filter(|(at, hold)| Some(*at) != target && !hold.entries.is_empty())
            .any(|(_, hold)| hold.entries.pop(digest).is_some())
    }

    /// Records `options` for `digest` in `target`; returns whether the digest was new
    /// and what was evicted to make room for it.
    fn insert(
        &mut self,
        policy: Policy,
        target: Target,
        digest: Digest,
        options: KeyOptions,
    ) -> (bool, Option<(Digest, KeyOptions)>) {
        // Held elsewhere: it moves, and the newest registration holds it.
        let moved = self.take_elsewhere(target, &digest);
        let mut evicted = None;
        if let Policy::Scaled { max, .. } = policy
            && !moved
            && self.len() >= max.get()
            && !self.map(target).contains(&digest)
        {
            evicted = self.evict_for_ceiling(target);
        }
        let new = match self.map(target).push(digest, options) {
            Some((old, _)) if old == digest => false,
            // The free map was full: its least recently used entry made room.
            Some(lost) => {
                evicted = Some(lost);
                !moved
            }
            None => !moved,
        };
        (new, evicted)
    }

    /// At a batch-scaled catalog's ceiling: the least recently used free entry goes
    /// first, then the oldest entry of the reservation that needs the room, then the
    /// oldest of any other.
    fn evict_for_ceiling(&mut self, target: Target) -> Option<(Digest, KeyOptions)> {
        if let Some(lost) = self.free.pop_lru() {
            return Some(lost);
        }
        if let Some(lost) = target.and_then(|at| self.holds.get_mut(at)).and_then(|hold| hold.entries.pop_lru()) {
            return Some(lost);
        }
        self.holds.iter_mut().find_map(|hold| hold.entries.pop_lru())
    }

    fn capacity(&self, policy: Policy) -> Option<usize> {
        match policy {
            Policy::Fixed(cap) => Some(cap.get()),
            Policy::Unbounded => None,
            Policy::Scaled { base, max } => Some(base.get().saturating_add(self.footprint()).min(max.get())),
        }
    }

    /// The room every live reservation takes: its room or its entries, whichever is more.
    fn footprint(&self) -> usize {
        self.holds.iter().fold(0usize, |sum, hold| sum.saturating_add(hold.footprint()))
    }

    /// How many of `room` entries will not fit beside what every live reservation holds.
    fn shortfall(&self, policy: Policy, room: usize) -> usize {
        let others = self.footprint();
        let available = match policy {
            Policy::Unbounded => return 0,
            // Every reservation fills the same fixed map.
            Policy::Fixed(cap) => cap.get().saturating_sub(others),
            Policy::Scaled { base, max } => (max.get() - base.get()).saturating_sub(others),
        };
        room.saturating_sub(available)
    }

    fn reserved(&self) -> usize {
        self.holds.iter().fold(0usize, |sum, hold| sum.saturating_add(hold.room))
    }

    fn warn_context(&self, policy: Policy) -> WarnContext {
        WarnContext {
            kind: policy.kind(),
            capacity: self.capacity(policy),
            at_ceiling: matches!(policy, Policy::Scaled { max, .. } if self.len() >= max.get()),
        }
    }
}

impl Store {
    /// A store whose metrics carry the label `catalog="name"`.
    pub(crate) fn new(policy: Policy, listener: Option<Arc<dyn EvictionListener>>, log_keys: bool, name: &str) -> Self {
        let store = Store {
            policy,
            state: Mutex::new(State {
                free: new_map(policy.free_capacity()),
                holds: Vec::new(),
                next_id: 0,
                counters: Stats::default(),
                log: EvictionLog::new(),
            }),
            listener: ListenerSlot::new(listener),
            log_keys,
            meter: Meter::new(policy.kind(), name),
            backed: false,
        };
        // The gauges start at the empty catalog's values, not at zero.
        store.publish(&store.state.lock());
        store
    }

    /// Sets the metrics gauges from `state` (nothing without the `metrics` feature).
    #[inline]
    fn publish(&self, state: &State) {
        #[cfg(feature = "metrics")]
        self.meter.publish(state.len(), state.capacity(self.policy), state.reserved());
        #[cfg(not(feature = "metrics"))]
        let _ = state;
    }

    pub(crate) fn kind(&self) -> CatalogKind {
        self.policy.kind()
    }

    /// Registers `digest`, held by the reservation `holder` when it is live (and the
    /// policy holds entries apart), else free.
    pub(crate) fn register(&self, holder: Option<ReservationId>, digest: Digest, options: KeyOptions) {
        let mut state = self.state.lock();
        let target = match self.policy {
            Policy::Fixed(_) => None,
            _ => holder.and_then(|id| state.position(id)),
        };
        let (new, evicted) = state.insert(self.policy, target, digest, options);
        if new {
            state.counters.registered += 1;
            let len = state.len();
            state.counters.peak_len = state.counters.peak_len.max(len);
        } else {
            state.counters.replaced += 1;
        }
        self.meter.registered(u64::from(new));
        self.meter.replaced(u64::from(!new));
        self.publish(&state);
        let Some(evicted) = evicted else { return };
        if self.backed {
            state.counters.released += 1;
            self.meter.released(1);
            return;
        }
        state.counters.evicted += 1;
        self.meter.evicted(1);
        let due = state.log.record(1);
        let ctx = state.warn_context(self.policy);
        drop(state);

        if self.listener.wants_entries() {
            let before = self.listener.panics();
            self.listener.notify(ctx.kind, [&evicted], RemovalCause::Capacity);
            self.meter.listener_panicked(self.listener.panics() - before);
        }
        if let Some(summary) = due {
            events::warn_capacity(ctx, summary, Some(&evicted), self.log_keys);
        }
    }

    pub(crate) fn get(&self, digest: &Digest) -> Option<KeyOptions> {
        let mut state = self.state.lock();
        let State { free, holds, counters, .. } = &mut *state;
        let found = match free.get(digest) {
            Some(options) => Some(options.clone()),
            None => holds
                .iter_mut()
                .filter(|hold| !hold.entries.is_empty())
                .find_map(|hold| hold.entries.get(digest).cloned()),
        };
        match found {
            Some(_) => counters.hits += 1,
            None => counters.misses += 1,
        }
        self.meter.hit(u64::from(found.is_some()));
        self.meter.missed(u64::from(found.is_none()));
        found
    }

    pub(crate) fn remove(&self, digest: &Digest) -> Option<KeyOptions> {
        let mut state = self.state.lock();
        let State { free, holds, counters, .. } = &mut *state;
        let removed = free.pop(digest).or_else(|| holds.iter_mut().find_map(|hold| hold.entries.pop(digest)));
        counters.removed += u64::from(removed.is_some());
        self.meter.removed(u64::from(removed.is_some()));
        self.publish(&state);
        removed
    }

    pub(crate) fn clear(&self) {
        let mut state = self.state.lock();
        let old_free = std::mem::replace(&mut state.free, new_map(self.policy.free_capacity()));
        let old_held: Vec<_> =
            state.holds.iter_mut().map(|hold| std::mem::replace(&mut hold.entries, LruCache::unbounded())).collect();
        let cleared = old_held.iter().fold(old_free.len(), |len, map| len + map.len());
        state.counters.cleared += cleared as u64;
        self.meter.cleared(cleared as u64);
        self.publish(&state);
        let due = state.log.flush();
        let ctx = state.warn_context(self.policy);
        drop(state);
        // Freeing large maps takes a while; not under the lock.
        drop((old_free, old_held));
        if let Some(summary) = due {
            events::warn_capacity(ctx, summary, None, self.log_keys);
        }
    }

    pub(crate) fn flush(&self) {
        let mut state = self.state.lock();
        let due = state.log.flush();
        let ctx = state.warn_context(self.policy);
        drop(state);
        if let Some(summary) = due {
            events::warn_capacity(ctx, summary, None, self.log_keys);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().len()
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        self.state.lock().capacity(self.policy)
    }

    pub(crate) fn stats(&self) -> Stats {
        let state = self.state.lock();
        Stats {
            len: state.len(),
            capacity: state.capacity(self.policy),
            reserved: state.reserved(),
            listener_panics: self.listener.panics(),
            ..state.counters
        }
    }

    pub(crate) fn open(&self, room: usize) -> (ReservationId, usize) {
        let mut state = self.state.lock();
        let shortfall = state.shortfall(self.policy, room);
        let id = ReservationId::new(state.next_id);
        state.next_id += 1;
        state.holds.push(Hold { id, room, entries: LruCache::unbounded() });
        self.publish(&state);
        (id, shortfall)
    }

    /// Ends a reservation: a batch-scaled catalog keeps the newest of its entries, up
    /// to the base capacity, as free entries; the rest are released. Also reports
    /// every eviction still unreported.
    pub(crate) fn close(&self, id: ReservationId) {
        let mut state = self.state.lock();
        let Some(at) = state.position(id) else { return };
        let hold = state.holds.remove(at);
        let held = hold.entries.len();
        let keep = match self.policy {
            Policy::Scaled { base, .. } => base.get().min(held),
            Policy::Fixed(_) | Policy::Unbounded => 0,
        };
        // `iter` runs newest first; pushing oldest first leaves the newest most recent.
        let kept: Vec<_> = hold.entries.iter().take(keep).map(|(digest, options)| (*digest, options.clone())).collect();
        let mut released = (held - keep) as u64;
        for (digest, options) in kept.into_iter().rev() {
            // The free entries this pushes out are older than what the run kept.
            released += u64::from(state.free.push(digest, options).is_some());
        }
        state.counters.released += released;
        self.meter.released(released);
        self.publish(&state);
        let due = state.log.flush();
        let ctx = state.warn_context(self.policy);
        drop(state);
        drop(hold);

        if held > 0 {
            events::released(ctx, released, keep);
        }
        if let Some(summary) = due {
            events::warn_capacity(ctx, summary, None, self.log_keys);
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        let ctx = state.warn_context(self.policy);
        if let Some(summary) = state.log.flush() {
            events::warn_capacity(ctx, summary, None, self.log_keys);
        }
    }
}

fn new_map(cap: NonZeroUsize) -> LruCache<Digest, KeyOptions> {
    // A small capacity is allocated up front, as the raw crate does, since a catalog
    // usually fills; a large one grows with what is held, so that a generous base
    // costs nothing until it is used.
    if cap.get() <= PREALLOCATE_UP_TO { LruCache::new(cap) } else { LruCache::sparse(cap) }
}

/// The `catalog` label of a catalog built without a name.
pub(crate) const DEFAULT_NAME: &str = "default";

/// About 1.2 MB of map at most, allocated when a catalog is built.
const PREALLOCATE_UP_TO: usize = 65_536;

/// Implements [`Catalog`](crate::Catalog) for a wrapper around a `store: Store` field.
macro_rules! delegate_catalog {
    ($ty:ty) => {
        impl $ty {
            /// The same catalog in front of a shared store, which keeps every entry:
            /// entries it drops for room count as released, not evicted.
            #[cfg_attr(not(feature = "redis"), allow(dead_code))]
            pub(crate) fn backed(mut self, backed: bool) -> Self {
                self.store.backed = backed;
                self
            }
        }

        impl $crate::Catalog for $ty {
            fn register(&self, digest: $crate::Digest, options: $crate::KeyOptions) {
                self.store.register(None, digest, options)
            }
            fn register_held(
                &self,
                holder: $crate::ReservationId,
                digest: $crate::Digest,
                options: $crate::KeyOptions,
            ) {
                self.store.register(Some(holder), digest, options)
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
            fn flush(&self) -> Result<(), $crate::Error> {
                self.store.flush();
                Ok(())
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
                $crate::Reservation::new(self, additional)
            }
            fn open_reservation(&self, additional: usize) -> ($crate::ReservationId, usize) {
                self.store.open(additional)
            }
            fn close_reservation(&self, id: $crate::ReservationId) {
                self.store.close(id)
            }
        }
    };
}
pub(crate) use delegate_catalog;
