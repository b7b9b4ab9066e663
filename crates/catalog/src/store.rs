//! The one implementation behind every catalog kind: `lru::LruCache`s in a
//! `parking_lot::Mutex`, a capacity policy, exact counters and the telemetry hooks.
//!
//! Entries live in one of several maps: the free map, an LRU of the base capacity for
//! entries that no reservation holds, and one map per live reservation for the entries
//! registered through it, and, in a batch-scaled catalog with a retention, the
//! retained map: free entries newer ones pushed out of the base, kept for the retention
//! time. A digest is in at most one of them. Keeping each
//! reservation's entries apart is what lets one reservation end while others go on,
//! releasing exactly its own entries: room follows what is live, not history.
//!
//! Work under the lock is kept to the map operations and counter updates; listener
//! calls, events and dropping large maps happen after it is released.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::digest_hash::DigestState;
use parking_lot::{Mutex, MutexGuard};

use crate::budget::{self, Limits};
use crate::digest::Digest;
use crate::events::{self, EvictionLog, EvictionSummary, ListenerSlot, WarnContext};
use crate::implement::ReservationId;
use crate::key_options::KeyOptions;
use crate::kind::CatalogKind;
use crate::ledger::Ledger;
use crate::meter::Meter;
use crate::remedy::{Origins, Values};
use crate::telemetry::{Forgotten, Limit, Listener, RemovalCause, Stats};

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

    /// The most entries the catalog may hold; `None` when unbounded.
    pub(crate) fn ceiling(self) -> Option<usize> {
        match self {
            Policy::Fixed(cap) | Policy::Scaled { max: cap, .. } => Some(cap.get()),
            Policy::Unbounded => None,
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
    limits: Limits,
    state: Mutex<State>,
    listener: ListenerSlot,
    log_keys: bool,
    /// `CatalogBuilder::name`, in warnings and metrics.
    name: Box<str>,
    meter: Meter,
    /// A shared store keeps every entry (fleet mode): what this one drops for room is
    /// released, not lost.
    pub(crate) backed: bool,
    /// Where each setting came from, for the remedies.
    pub(crate) origins: Origins,
}

#[derive(Debug)]
struct State {
    /// Entries no live reservation holds, least recently used first out.
    free: Map<KeyOptions>,
    /// Free entries that newer ones pushed out of the base, with when, oldest first
    /// out: kept for the retention time (batch-scaled catalogs with a retention).
    retained: Map<(KeyOptions, Instant)>,
    /// The most entries `retained` held since its table was last rebuilt.
    retained_peak: usize,
    /// Free entries that a run or batch left behind when it ended (its newest, up to
    /// the base), while they are free; only kept with a retention. Pushed out of the
    /// base, they are released rather than retained: what is kept past the base is
    /// what was made outside runs.
    from_runs: HashSet<Digest, DigestState>,
    /// Live reservations, oldest first. A process has few at once (its running tasks
    /// and their open batches), so a scan is cheaper than a map.
    holds: Vec<Hold>,
    next_id: u64,
    /// What every entry takes, as `budget` counts it.
    bytes: usize,
    /// What the latest eviction made room under, for the warning's remedy.
    limit: Limit,
    /// Retained entries released since the last `retention ended` event, which is
    /// emitted once the lock is released.
    retention_released: u64,
    counters: Stats,
    /// When evictions are worth a log line.
    log: EvictionLog,
    /// The digests dropped without being asked to, for `Catalog::forgotten`.
    ledger: Ledger,
}

#[derive(Debug)]
struct Hold {
    id: ReservationId,
    /// Entries asked for when it opened.
    room: usize,
    /// Entries registered through it (always empty under a fixed policy).
    entries: Map<KeyOptions>,
}

impl Hold {
    /// The room it takes in a batch-scaled catalog's capacity.
    fn footprint(&self) -> usize {
        self.room.max(self.entries.len())
    }
}

/// Where an entry goes: the free map, or the hold at this index.
type Target = Option<usize>;

/// Entries a registration pushed out while they may still have been needed.
#[derive(Debug, Default)]
enum Lost {
    #[default]
    None,
    One((Digest, KeyOptions)),
    Many(Vec<(Digest, KeyOptions)>),
}

impl Lost {
    fn push(&mut self, entry: (Digest, KeyOptions)) {
        match self {
            Lost::None => *self = Lost::One(entry),
            Lost::Many(all) => all.push(entry),
            Lost::One(_) => {
                if let Lost::One(first) = std::mem::take(self) {
                    *self = Lost::Many(vec![first, entry]);
                }
            }
        }
    }

    fn as_slice(&self) -> &[(Digest, KeyOptions)] {
        match self {
            Lost::None => &[],
            Lost::One(entry) => std::slice::from_ref(entry),
            Lost::Many(all) => all,
        }
    }
}

/// What one registration did.
#[derive(Debug)]
struct Inserted {
    /// The digest was not held before.
    new: bool,
    lost: Lost,
    /// Retained entries whose time was up.
    released: u64,
}

impl State {
    fn len(&self) -> usize {
        self.holds.iter().fold(self.free.len() + self.retained.len(), |len, hold| len + hold.entries.len())
    }

    fn position(&self, id: ReservationId) -> Option<usize> {
        self.holds.iter().position(|hold| hold.id == id)
    }

    fn map(&mut self, target: Target) -> &mut Map<KeyOptions> {
        match target.and_then(|at| self.holds.get_mut(at)) {
            Some(hold) => &mut hold.entries,
            None => &mut self.free,
        }
    }

    /// Removes `digest` from every map but `target`'s; whether it was found. Empty
    /// maps are skipped without hashing, which keeps a catalog without live
    /// reservations as cheap as the raw `lru` crate.
    fn take_elsewhere(&mut self, target: Target, digest: &Digest) -> bool {
        let State { free, retained, holds, bytes, from_runs, .. } = self;
        let taken = if target.is_some() && !free.is_empty() { free.pop(digest) } else { None };
        if taken.is_some() {
            forget(from_runs, digest);
        }
        let taken = taken.or_else(|| {
            holds
                .iter_mut()
                .enumerate()
                .filter(|(at, hold)| Some(*at) != target && !hold.entries.is_empty())
                .find_map(|(_, hold)| hold.entries.pop(digest))
        });
        if let Some(options) = taken {
            *bytes -= budget::entry_bytes(&options);
            return true;
        }
        if retained.is_empty() {
            return false;
        }
        match retained.pop(digest) {
            Some((options, _)) => {
                *bytes -= budget::retained_bytes(&options);
                true
            }
            None => false,
        }
    }

    /// Records `options` for `digest` in `target` (`cost` is what it takes).
    fn insert(
        &mut self,
        policy: Policy,
        limits: Limits,
        target: Target,
        digest: Digest,
        options: KeyOptions,
        cost: usize,
    ) -> Inserted {
        // Held elsewhere: it moves, and the newest registration holds it.
        let mut out = Inserted { new: !self.take_elsewhere(target, &digest), lost: Lost::None, released: 0 };
        if let Policy::Scaled { max, .. } = policy
            && out.new
            && self.len() >= max.get()
            && !self.map(target).contains(&digest)
            && let Some(lost) = self.evict_oldest(target)
        {
            self.limit = Limit::Ceiling;
            out.lost.push(lost);
        }
        self.bytes += cost;
        match self.map(target).push(digest, options) {
            Some((old, previous)) if old == digest => {
                out.new = false;
                self.bytes -= budget::entry_bytes(&previous);
                if target.is_none() {
                    // Registered again outside a run: it is a free key of its own now.
                    forget(&mut self.from_runs, &digest);
                }
            }
            // The free map was full: its least recently used entry made room.
            Some(pushed) => {
                self.bytes -= budget::entry_bytes(&pushed.1);
                let from_run = forget(&mut self.from_runs, &pushed.0);
                match limits.retain {
                    // What a run left behind is released; what was made outside runs kept.
                    Some(_) if from_run => out.released += 1,
                    Some(retain) => out.released += self.keep(pushed, retain, Instant::now()),
                    // No retention: the base alone decided (a batch-scaled catalog
                    // with its retention off; an LRU takes the other path).
                    None => {
                        self.limit = match policy {
                            Policy::Scaled { .. } => Limit::Retention,
                            _ => Limit::Entries,
                        };
                        out.lost.push(pushed);
                    }
                }
            }
            None => {}
        }
        self.fit(limits, target, &mut out.lost);
        out
    }

    /// Evicts the oldest entries (for `target`, as [`evict_oldest`](Self::evict_oldest)
    /// orders them) until the entries fit the byte budget.
    fn fit(&mut self, limits: Limits, target: Target, lost: &mut Lost) {
        let Some(max) = limits.max_bytes else { return };
        while self.bytes > max.get() {
            let Some(entry) = self.evict_oldest(target) else { break };
            self.limit = Limit::Bytes;
            lost.push(entry);
        }
    }

    /// Keeps a free entry pushed out of the base until `retain` has passed; releases
    /// those whose time is up, and returns how many.
    fn keep(&mut self, (digest, options): (Digest, KeyOptions), retain: Duration, now: Instant) -> u64 {
        self.bytes += budget::retained_bytes(&options);
        // Never full (unbounded), and the digest was in the free map, not here.
        drop(self.retained.push(digest, (options, now)));
        self.retained_peak = self.retained_peak.max(self.retained.len());
        self.expire(retain, now)
    }

    /// Releases retained entries older than `retain`; how many.
    fn expire(&mut self, retain: Duration, now: Instant) -> u64 {
        let mut released = 0;
        while let Some((_, (_, at))) = self.retained.peek_lru()
            && now.saturating_duration_since(*at) >= retain
        {
            if let Some((digest, (options, _))) = self.retained.pop_lru() {
                self.bytes -= budget::retained_bytes(&options);
                // Released, not evicted; but a batch that needs it later should say
                // that the retention ended.
                self.ledger.record(&digest, Limit::Retention, self.counters.evicted);
                released += 1;
            }
        }
        if released > 0 {
            self.shrink_retained();
        }
        released
    }

    /// A hash table keeps its size when emptied: once `retained` holds a quarter of
    /// its peak, it moves to a table its size, so that memory follows what is kept.
    fn shrink_retained(&mut self) {
        let len = self.retained.len();
        if self.retained_peak < SHRINK_FROM || len * 4 > self.retained_peak {
            return;
        }
        let mut smaller = unbounded();
        // `iter` runs newest first; pushing oldest first keeps the order.
        for (digest, entry) in self.retained.iter().rev() {
            drop(smaller.push(*digest, entry.clone()));
        }
        self.retained = smaller;
        self.retained_peak = len;
    }

    /// For room: the oldest retained entry goes first, then the least recently used
    /// free entry, then the oldest entry of the reservation that needs the room, then
    /// the oldest of any other.
    fn evict_oldest(&mut self, target: Target) -> Option<(Digest, KeyOptions)> {
        if let Some((digest, (options, _))) = self.retained.pop_lru() {
            self.bytes -= budget::retained_bytes(&options);
            return Some((digest, options));
        }
        let free = self.free.pop_lru().inspect(|(digest, _)| {
            forget(&mut self.from_runs, digest);
        });
        let lost = free
            .or_else(|| target.and_then(|at| self.holds.get_mut(at)).and_then(|hold| hold.entries.pop_lru()))
            .or_else(|| self.holds.iter_mut().find_map(|hold| hold.entries.pop_lru()))?;
        self.bytes -= budget::entry_bytes(&lost.1);
        Some(lost)
    }

    fn capacity(&self, policy: Policy) -> Option<usize> {
        match policy {
            Policy::Fixed(cap) => Some(cap.get()),
            Policy::Unbounded => None,
            Policy::Scaled { base, max } => {
                Some(base.get().saturating_add(self.retained.len()).saturating_add(self.footprint()).min(max.get()))
            }
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
            // A reservation's entries are held apart from the free ones, which give
            // way first: the whole ceiling is there beside the other reservations.
            Policy::Scaled { max, .. } => max.get().saturating_sub(others),
        };
        room.saturating_sub(available)
    }

    fn reserved(&self) -> usize {
        self.holds.iter().fold(0usize, |sum, hold| sum.saturating_add(hold.room))
    }

    fn warn_context(&self, policy: Policy, limits: Limits, origins: Origins) -> WarnContext {
        WarnContext {
            kind: policy.kind(),
            capacity: self.capacity(policy),
            limit: self.limit,
            bytes: self.bytes,
            max_bytes: limits.max_bytes.map(NonZeroUsize::get),
            values: values(policy, limits),
            origins,
        }
    }

    /// Counts `lost` as evictions under the latest limit, and remembers them.
    fn evict(&mut self, lost: &[(Digest, KeyOptions)]) {
        for (digest, _) in lost {
            self.counters.evicted += 1;
            self.ledger.record(digest, self.limit, self.counters.evicted);
        }
    }
}

impl Store {
    /// A store whose metrics carry the label `catalog="name"`.
    pub(crate) fn new(
        policy: Policy,
        limits: Limits,
        listener: Option<Arc<dyn Listener>>,
        log_keys: bool,
        name: &str,
    ) -> Self {
        // Only a batch-scaled catalog keeps free entries past its base.
        let limits = Limits { retain: limits.retain.filter(|_| policy.kind() == CatalogKind::BatchScaled), ..limits };
        let store = Store {
            policy,
            limits,
            state: Mutex::new(State {
                free: new_map(policy.free_capacity()),
                retained: unbounded(),
                retained_peak: 0,
                from_runs: HashSet::default(),
                holds: Vec::new(),
                next_id: 0,
                bytes: 0,
                limit: Limit::Entries,
                retention_released: 0,
                counters: Stats::default(),
                log: EvictionLog::new(),
                ledger: Ledger::default(),
            }),
            listener: ListenerSlot::new(listener),
            log_keys,
            name: name.into(),
            meter: Meter::new(policy.kind(), name),
            backed: false,
            origins: Origins::builder(),
        };
        // The gauges start at the empty catalog's values, not at zero.
        store.publish(&store.state.lock());
        #[cfg(feature = "metrics")]
        store.meter.publish_ceiling(policy.ceiling());
        store
    }

    /// Sets the metrics gauges from `state` (nothing without the `metrics` feature).
    #[inline]
    fn publish(&self, state: &State) {
        #[cfg(feature = "metrics")]
        self.meter.publish(
            state.len(),
            state.capacity(self.policy),
            state.reserved(),
            state.bytes,
            self.limits.max_bytes.map(NonZeroUsize::get),
        );
        #[cfg(not(feature = "metrics"))]
        let _ = state;
    }

    pub(crate) fn kind(&self) -> CatalogKind {
        self.policy.kind()
    }

    /// The state, after releasing retained entries whose time is up.
    fn state(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock();
        if let Some(retain) = self.limits.retain
            && !state.retained.is_empty()
        {
            let released = state.expire(retain, Instant::now());
            self.count_retention(&mut state, released);
        }
        state
    }

    fn count_retention(&self, state: &mut State, released: u64) {
        if released > 0 {
            state.counters.released += released;
            state.retention_released += released;
            self.meter.released(released);
        }
    }

    /// The `retention ended` event due, taken from `state` before its lock is released.
    fn retention_event(state: &mut State) -> Option<(u64, usize)> {
        let released = std::mem::take(&mut state.retention_released);
        (released > 0).then(|| (released, state.retained.len()))
    }

    /// Emits the `retention ended` event taken under the lock, once it is released.
    fn emit_retention(&self, event: Option<(u64, usize)>) {
        if let Some((released, retained)) = event {
            events::retention_ended(self.policy.kind(), released, retained);
        }
    }

    /// Runs `f` on the state (after releasing retained entries whose time is up), then
    /// emits what that release owes once the lock is released.
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.state();
        let out = f(&mut state);
        let event = Self::retention_event(&mut state);
        drop(state);
        self.emit_retention(event);
        out
    }

    /// Registers `digest`, held by the reservation `holder` when it is live (and the
    /// policy holds entries apart), else free.
    pub(crate) fn register(&self, holder: Option<ReservationId>, digest: Digest, options: KeyOptions) {
        let cost = budget::entry_bytes(&options);
        if let Policy::Fixed(_) = self.policy {
            return self.register_fixed(digest, options, cost);
        }
        // Retained entries whose time is up go first: dropping one for room is then
        // the release it is, not a loss.
        let mut state = self.state();
        let target = match self.policy {
            Policy::Fixed(_) => None,
            _ => holder.and_then(|id| state.position(id)),
        };
        let Inserted { new, lost, released } = state.insert(self.policy, self.limits, target, digest, options, cost);
        if new {
            state.counters.registered += 1;
            let len = state.len();
            state.counters.peak_len = state.counters.peak_len.max(len);
        } else {
            state.counters.replaced += 1;
        }
        self.meter.registered(u64::from(new));
        self.meter.replaced(u64::from(!new));
        self.count_retention(&mut state, released);
        self.publish(&state);
        let event = Self::retention_event(&mut state);
        self.count_lost(state, lost);
        self.emit_retention(event);
    }

    /// [`register`](Self::register) for an LRU catalog: one map, at most one entry
    /// out (but at the byte budget), no reservation to look at. Kept apart because it
    /// is the raw `lru` crate's path, and every instruction on it shows against it.
    #[inline]
    fn register_fixed(&self, digest: Digest, options: KeyOptions, cost: usize) {
        let mut state = self.state.lock();
        state.bytes += cost;
        match state.free.push(digest, options) {
            None => {
                state.counters.registered += 1;
                state.counters.peak_len = state.counters.peak_len.max(state.free.len());
                self.meter.registered(1);
            }
            Some((old, previous)) if old == digest => {
                state.bytes -= budget::entry_bytes(&previous);
                state.counters.replaced += 1;
                self.meter.replaced(1);
            }
            // Full: the least recently used entry made room. Handled in place rather
            // than returned, so that the entry is not copied again on its way out.
            Some(lost) => {
                state.bytes -= budget::entry_bytes(&lost.1);
                state.counters.registered += 1;
                self.meter.registered(1);
                return self.evicted_one(state, lost);
            }
        }
        match self.limits.max_bytes {
            Some(max) if state.bytes > max.get() => self.over_budget(state, None, max),
            _ => self.publish(&state),
        }
    }

    /// Counts and reports the one entry an LRU catalog's registration pushed out.
    #[inline]
    fn evicted_one(&self, mut state: MutexGuard<'_, State>, evicted: (Digest, KeyOptions)) {
        if let Some(max) = self.limits.max_bytes
            && state.bytes > max.get()
        {
            return self.over_budget(state, Some(evicted), max);
        }
        self.publish(&state);
        state.limit = Limit::Entries;
        if self.backed {
            state.counters.released += 1;
            self.meter.released(1);
            return;
        }
        state.evict(std::slice::from_ref(&evicted));
        self.meter.evicted(1);
        let due = state.log.record(1);
        let wants_entries = self.listener.wants_entries();
        if due.is_none() && !wants_entries {
            return;
        }
        let ctx = state.warn_context(self.policy, self.limits, self.origins);
        drop(state);
        self.report(ctx, due, wants_entries, std::slice::from_ref(&evicted));
    }

    /// An LRU catalog over its byte budget after a registration.
    #[cold]
    fn over_budget(&self, mut state: MutexGuard<'_, State>, evicted: Option<(Digest, KeyOptions)>, max: NonZeroUsize) {
        let mut lost = Lost::None;
        if let Some(evicted) = evicted {
            lost.push(evicted);
        }
        let limits = Limits { max_bytes: Some(max), ..self.limits };
        state.fit(limits, None, &mut lost);
        self.publish(&state);
        self.count_lost(state, lost);
    }

    /// Counts entries a registration pushed out, and reports them.
    fn count_lost(&self, mut state: MutexGuard<'_, State>, lost: Lost) {
        let count = lost.as_slice().len() as u64;
        if count == 0 {
            return;
        }
        if self.backed {
            state.counters.released += count;
            self.meter.released(count);
            return;
        }
        state.evict(lost.as_slice());
        self.meter.evicted(count);
        let due = state.log.record(count);
        let wants_entries = self.listener.wants_entries();
        if due.is_none() && !wants_entries {
            return;
        }
        let ctx = state.warn_context(self.policy, self.limits, self.origins);
        drop(state);
        self.report(ctx, due, wants_entries, lost.as_slice());
    }

    /// Tells the listener and the log about evicted entries, without the lock.
    fn report(
        &self,
        ctx: WarnContext,
        due: Option<EvictionSummary>,
        wants_entries: bool,
        lost: &[(Digest, KeyOptions)],
    ) {
        if wants_entries {
            let before = self.listener.panics();
            self.listener.notify(ctx.kind, lost, RemovalCause::Capacity);
            self.meter.listener_panicked(self.listener.panics() - before);
        }
        if let Some(summary) = due {
            events::warn_capacity(&self.name, ctx, summary, lost.last(), self.log_keys);
        }
    }

    pub(crate) fn get(&self, digest: &Digest) -> Option<KeyOptions> {
        let mut state = self.state.lock();
        let State { free, retained, holds, counters, .. } = &mut *state;
        let found = match free.get(digest) {
            Some(options) => Some(options.clone()),
            None => holds
                .iter_mut()
                .filter(|hold| !hold.entries.is_empty())
                .find_map(|hold| hold.entries.get(digest).cloned())
                .or_else(|| (!retained.is_empty()).then(|| retained.peek(digest).map(|(o, _)| o.clone())).flatten()),
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
        let State { free, retained, holds, counters, bytes, from_runs, .. } = &mut *state;
        let removed = match free
            .pop(digest)
            .inspect(|_| {
                forget(from_runs, digest);
            })
            .or_else(|| holds.iter_mut().find_map(|hold| hold.entries.pop(digest)))
        {
            Some(options) => {
                *bytes -= budget::entry_bytes(&options);
                Some(options)
            }
            None => retained.pop(digest).map(|(options, _)| {
                *bytes -= budget::retained_bytes(&options);
                options
            }),
        };
        counters.removed += u64::from(removed.is_some());
        self.meter.removed(u64::from(removed.is_some()));
        self.publish(&state);
        removed
    }

    pub(crate) fn clear(&self) {
        let mut state = self.state.lock();
        let old_free = std::mem::replace(&mut state.free, new_map(self.policy.free_capacity()));
        let old_retained = std::mem::replace(&mut state.retained, unbounded());
        let old_held: Vec<_> =
            state.holds.iter_mut().map(|hold| std::mem::replace(&mut hold.entries, unbounded())).collect();
        let cleared = old_held.iter().fold(old_free.len() + old_retained.len(), |len, map| len + map.len());
        state.counters.cleared += cleared as u64;
        (state.bytes, state.retained_peak) = (0, 0);
        state.ledger.clear();
        state.from_runs.clear();
        self.meter.cleared(cleared as u64);
        self.publish(&state);
        let due = state.log.flush();
        let ctx = state.warn_context(self.policy, self.limits, self.origins);
        drop(state);
        // Freeing large maps takes a while; not under the lock.
        drop((old_free, old_retained, old_held));
        if let Some(summary) = due {
            events::warn_capacity(&self.name, ctx, summary, None, self.log_keys);
        }
    }

    pub(crate) fn flush(&self) {
        let _span = tracing::info_span!("idempotency.catalog.flush", catalog = &*self.name, kind = %self.policy.kind())
            .entered();
        let (due, ctx) =
            self.with_state(|state| (state.log.flush(), state.warn_context(self.policy, self.limits, self.origins)));
        if let Some(summary) = due {
            events::warn_capacity(&self.name, ctx, summary, None, self.log_keys);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.with_state(|state| state.len())
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        self.with_state(|state| state.capacity(self.policy))
    }

    pub(crate) fn stats(&self) -> Stats {
        self.with_state(|state| Stats {
            len: state.len(),
            capacity: state.capacity(self.policy),
            max_capacity: self.policy.ceiling(),
            reserved: state.reserved(),
            retained: state.retained.len(),
            bytes: state.bytes,
            max_bytes: self.limits.max_bytes.map(NonZeroUsize::get),
            listener_panics: self.listener.panics(),
            sources: self.origins.sources(),
            ..state.counters
        })
    }

    pub(crate) fn forgotten(&self, digest: &Digest) -> Option<Forgotten> {
        self.state.lock().ledger.get(digest)
    }

    pub(crate) fn remedy(&self, limit: Limit) -> String {
        crate::remedy::remedy(limit, values(self.policy, self.limits), &self.origins)
    }

    pub(crate) fn open(&self, room: usize) -> (ReservationId, usize) {
        self.with_state(|state| {
            let shortfall = state.shortfall(self.policy, room);
            let id = ReservationId::new(state.next_id);
            state.next_id += 1;
            state.holds.push(Hold { id, room, entries: unbounded() });
            self.publish(state);
            (id, shortfall)
        })
    }

    /// Ends a reservation: a batch-scaled catalog keeps the newest of its entries, up
    /// to the base capacity, as free entries; the rest are released. The free entries
    /// those push out are retained when the catalog has a retention, else released.
    /// Also reports every eviction still unreported.
    pub(crate) fn close(&self, id: ReservationId) {
        let mut state = self.state();
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
        let now = self.limits.retain.map(|_| Instant::now());
        for (digest, options) in kept.into_iter().rev() {
            state.bytes += budget::entry_bytes(&options);
            if now.is_some() {
                state.from_runs.insert(digest);
            }
            // The free entries this pushes out are older than what the run kept: those
            // made outside runs are retained (with a retention), the others released.
            let Some(pushed) = state.free.push(digest, options) else { continue };
            state.bytes -= budget::entry_bytes(&pushed.1);
            let from_run = forget(&mut state.from_runs, &pushed.0);
            match self.limits.retain.zip(now) {
                Some((retain, now)) if !from_run => released += state.keep(pushed, retain, now),
                _ => released += 1,
            }
        }
        // What the hold's own map counted goes with it (the kept entries were counted
        // again as they moved).
        state.bytes -= hold.entries.iter().map(|(_, options)| budget::entry_bytes(options)).sum::<usize>();
        // Retained entries take a little more than free ones: the budget may need room.
        let mut lost = Lost::None;
        state.fit(self.limits, None, &mut lost);
        let evicted = lost.as_slice().len() as u64;
        let mut due = None;
        if self.backed {
            released += evicted;
        } else if evicted > 0 {
            state.evict(lost.as_slice());
            self.meter.evicted(evicted);
            // A line due now covers everything unreported; else the flush below does.
            due = state.log.record(evicted);
        }
        state.counters.released += released;
        self.meter.released(released);
        self.publish(&state);
        let due = due.or_else(|| state.log.flush());
        let ctx = state.warn_context(self.policy, self.limits, self.origins);
        let event = Self::retention_event(&mut state);
        drop(state);
        drop(hold);
        self.emit_retention(event);

        if !self.backed && evicted > 0 && self.listener.wants_entries() {
            let before = self.listener.panics();
            self.listener.notify(ctx.kind, lost.as_slice(), RemovalCause::Capacity);
            self.meter.listener_panicked(self.listener.panics() - before);
        }
        if held > 0 {
            events::released(ctx, released, keep);
        }
        if let Some(summary) = due {
            events::warn_capacity(&self.name, ctx, summary, None, self.log_keys);
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        let ctx = state.warn_context(self.policy, self.limits, self.origins);
        if let Some(summary) = state.log.flush() {
            events::warn_capacity(&self.name, ctx, summary, None, self.log_keys);
        }
    }
}

/// The settings a remedy quotes.
fn values(policy: Policy, limits: Limits) -> Values {
    let (capacity, ceiling) = match policy {
        Policy::Fixed(cap) => (Some(cap.get()), Some(cap.get())),
        Policy::Scaled { base, max } => (Some(base.get()), Some(max.get())),
        Policy::Unbounded => (None, None),
    };
    Values {
        kind: policy.kind(),
        capacity,
        ceiling,
        max_bytes: limits.max_bytes.map(NonZeroUsize::get),
        retain: limits.retain,
    }
}

/// Forgets that a free entry came from a run, as it leaves the free map or is
/// registered again; whether it had.
#[inline]
fn forget(from_runs: &mut HashSet<Digest, DigestState>, digest: &Digest) -> bool {
    !from_runs.is_empty() && from_runs.remove(digest)
}

/// A digest-keyed LRU, hashing digests by their own bytes (`digest_hash.rs`).
type Map<V> = LruCache<Digest, V, DigestState>;

fn unbounded<V>() -> Map<V> {
    LruCache::unbounded_with_hasher(DigestState::default())
}

fn new_map(cap: NonZeroUsize) -> Map<KeyOptions> {
    // A small capacity is allocated up front, as the raw crate does, since a catalog
    // usually fills; a large one grows with what is held, so that a generous base
    // costs nothing until it is used.
    if cap.get() <= PREALLOCATE_UP_TO {
        LruCache::with_hasher(cap, DigestState::default())
    } else {
        let mut map = unbounded();
        map.resize(cap);
        map
    }
}

/// The `catalog` label of a catalog built without a name.
pub(crate) const DEFAULT_NAME: &str = "default";

/// About 1.2 MB of map at most, allocated when a catalog is built.
const PREALLOCATE_UP_TO: usize = 65_536;

/// Below this many retained entries at its peak, the table is not worth rebuilding.
const SHRINK_FROM: usize = 4_096;

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

            /// The same catalog, its settings from `origins` (for the remedies).
            pub(crate) fn origins(mut self, origins: $crate::remedy::Origins) -> Self {
                self.store.origins = origins;
                self
            }
        }

        impl $crate::implement::Reservations for $ty {
            fn open_reservation(&self, additional: usize) -> ($crate::implement::ReservationId, usize) {
                self.store.open(additional)
            }
            fn close_reservation(&self, id: $crate::implement::ReservationId) {
                self.store.close(id)
            }
            fn register_held(
                &self,
                holder: $crate::implement::ReservationId,
                digest: $crate::Digest,
                options: $crate::KeyOptions,
            ) {
                self.store.register(Some(holder), digest, options)
            }
        }

        impl $crate::Catalog for $ty {
            fn register(&self, digest: $crate::Digest, options: $crate::KeyOptions) {
                self.store.register(None, digest, options)
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
            fn forgotten(&self, digest: &$crate::Digest) -> Option<$crate::Forgotten> {
                self.store.forgotten(digest)
            }
            fn remedy(&self, limit: $crate::Limit) -> Option<String> {
                Some(self.store.remedy(limit))
            }
        }
    };
}
pub(crate) use delegate_catalog;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::test_digest as digest;
    use crate::{Catalog, LruCatalog, Scope};

    fn options(len: usize) -> KeyOptions {
        KeyOptions::new(&"k".repeat(len), Scope::Run)
    }

    #[test]
    fn a_catalog_in_front_of_a_shared_store_releases_what_it_drops() {
        // Fleet mode's front: the shared store keeps every entry, so room made here,
        // by the capacity or by the budget, is a release and never warns.
        let limits = Limits { max_bytes: NonZeroUsize::new(budget::MIN_MAX_BYTES), retain: None };
        let cap = NonZeroUsize::new(10).unwrap_or(NonZeroUsize::MIN);
        let catalog = LruCatalog::from_parts(cap, limits, None, false, DEFAULT_NAME).backed(true);
        let (_, lines) = testkit::warnings(|| {
            for i in 0..20 {
                catalog.register(digest(i), options(4));
            }
            for i in 20..60 {
                catalog.register(digest(i), options(10_000));
            }
        });
        let stats = catalog.stats();
        assert_eq!((stats.evicted, stats.released), (0, 60 - stats.len as u64));
        assert!(stats.len < 10 && stats.bytes <= budget::MIN_MAX_BYTES, "{stats:?}");
        assert!(lines.is_empty(), "{lines:?}");
    }

    #[test]
    fn an_lru_at_its_budget_evicts_the_oldest_until_the_new_entry_fits() {
        let limits = Limits { max_bytes: NonZeroUsize::new(budget::MIN_MAX_BYTES), retain: None };
        let cap = NonZeroUsize::new(1_000).unwrap_or(NonZeroUsize::MIN);
        let catalog = LruCatalog::from_parts(cap, limits, None, false, DEFAULT_NAME);
        for i in 0..500 {
            catalog.register(digest(i), options(4));
        }
        assert_eq!(catalog.stats().evicted, 0, "500 short entries fit 64 KiB");
        // One long key takes the room of many short ones: the oldest go, and only as
        // many as it needs.
        catalog.register(digest(1_000), options(20_000));
        let stats = catalog.stats();
        let short = options(4).entry_bytes();
        let needed = (500 * short + options(20_000).entry_bytes() - budget::MIN_MAX_BYTES).div_ceil(short);
        assert_eq!(stats.evicted, needed as u64);
        assert!(catalog.get(&digest(needed as u32 - 1)).is_none() && catalog.get(&digest(needed as u32)).is_some());
        assert_eq!(stats.bytes, (500 - needed) * short + options(20_000).entry_bytes());
        // Replacing an entry counts its new size, not both.
        catalog.register(digest(1_000), options(4));
        assert_eq!(catalog.stats().bytes, (501 - needed) * short);
    }
}
