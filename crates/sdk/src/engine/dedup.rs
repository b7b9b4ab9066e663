//! The in-memory store's claims: which run holds each (task, key) and until when, in
//! this process.
//!
//! Laid out for millions of keys: a `hashbrown::HashTable` of 4-byte slot numbers
//! (a digest hashed by its own bytes, see `idempotency_catalog::hash`), the slots themselves in one vector (task id, key as 32 bytes, run id,
//! expiry), and one first-in-first-out queue of slots per distinct TTL, from which
//! expired entries are pruned: each entry is queued once and popped once, so pruning
//! costs nothing per trigger beyond what expired. A queue keeps claims made one after
//! another (the next slot by the next run, as a fan-out's are) as one place: a
//! million-key batch queues in a few bytes, not 16 MB.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use super::budget::claim_bytes;
use super::clock::Millis;
use super::key::{KeyRef, StoredKey};
use super::run::NO_CLAIM;
use crate::payload::Fingerprint;
use crate::run_id::RunId;
use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};
use idempotency_catalog::hash::DigestState;

#[derive(Debug)]
struct Slot {
    task: u32,
    key: StoredKey,
    /// The number of the run that holds it: in this process ids are numbers, and 8
    /// bytes rather than a 24-byte id keep a slot at 64 bytes.
    run: u64,
    /// The entry is expired once this is before now (the server's `expiresAt < now`).
    expires_at: Millis,
    /// The payload fingerprint of the item that made the run (in the slot's spare
    /// bytes: it stays at 64).
    fingerprint: u32,
}

/// What a trigger found for its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// A live entry: this run is the answer; it was made with a payload of this
    /// fingerprint.
    Cached(RunId, Fingerprint),
    /// None: the new run now holds the key, in this slot ([`NO_CLAIM`] when it holds
    /// nothing: a TTL of zero).
    Claimed(u32),
}

#[derive(Debug, Default)]
pub(crate) struct Dedup {
    table: HashTable<u32>,
    hasher: Hashers,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Per TTL, the slots in the order their entries were made, with the run that made
    /// each: a slot reused or renewed since is recognised by its run and skipped.
    queues: Vec<(Millis, Queue)>,
    live: usize,
    /// What the live entries cost, as `budget` counts them.
    bytes: usize,
}

/// A live entry forgotten to make room: how old it was, and the TTL it was held for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Forgot {
    /// Whether its TTL had not passed yet: a loss (an expired one is only pruned early).
    pub(crate) live: bool,
    pub(crate) age: Millis,
    pub(crate) ttl: Millis,
}

impl Dedup {
    /// Entries held (expired ones not yet pruned included).
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// What the entries held cost, as `budget` counts them.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The run number of the oldest entry held, dropping the queue places of entries
    /// renewed or freed since.
    pub(crate) fn oldest(&mut self) -> Option<u64> {
        let mut oldest = None;
        for (_, queue) in &mut self.queues {
            while let Some((at, run)) = queue.front() {
                match self.slots.get(at as usize).and_then(Option::as_ref) {
                    Some(slot) if slot.run == run => break,
                    _ => {
                        queue.pop_front();
                    }
                }
            }
            if let Some((_, run)) = queue.front() {
                oldest = Some(oldest.map_or(run, |o: u64| o.min(run)));
            }
        }
        oldest
    }

    /// Forgets the oldest entry held, to make room; what it was.
    pub(crate) fn evict_oldest(&mut self, now: Millis) -> Option<Forgot> {
        let oldest = self.oldest()?;
        let q = self.queues.iter().position(|(_, queue)| queue.front().is_some_and(|(_, run)| run == oldest))?;
        let (ttl, queue) = self.queues.get_mut(q)?;
        let ttl = *ttl;
        let (at, _) = queue.pop_front()?;
        let slot = self.slots.get(at as usize)?.as_ref()?;
        let forgot =
            Forgot { live: slot.expires_at >= now, age: now.saturating_sub(slot.expires_at.saturating_sub(ttl)), ttl };
        let hash = hash(&self.hasher, slot.task, slot.key.as_key_ref());
        if let Ok(entry) = self.table.find_entry(hash, |&other| other == at) {
            entry.remove();
        }
        self.vacate(at);
        Some(forgot)
    }

    /// Whether `(task, key)` is held by a live, unexpired run; for the cost of a
    /// trigger before it claims.
    pub(crate) fn holds(&self, task: u32, key: KeyRef<'_>, now: Millis) -> bool {
        self.peek(task, key, now).is_some()
    }

    /// Room for `additional` more entries without growing.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let slots = &self.slots;
        let hasher = &self.hasher;
        self.table.reserve(additional, |&slot| rehash(hasher, slots, slot));
        self.slots.reserve(additional.saturating_sub(self.free.len()));
    }

    /// The live, unexpired run of `(task, key)`, or, when there is none, records that
    /// `run` holds it for `ttl` from `now` (a TTL of zero records nothing: the key
    /// expires at once).
    pub(crate) fn claim(
        &mut self,
        task: u32,
        key: KeyRef<'_>,
        now: Millis,
        ttl: Millis,
        run: RunId,
        fingerprint: Fingerprint,
    ) -> Claim {
        let run = run.nonce();
        let hash = hash(&self.hasher, task, key);
        let slots = &self.slots;
        let hasher = &self.hasher;
        let found =
            self.table.entry(hash, |&slot| matches(slots, slot, task, key), |&slot| rehash(hasher, slots, slot));
        let expires_at = now.saturating_add(ttl);
        match found {
            Entry::Occupied(entry) => {
                let at = *entry.get();
                let Some(held) = self.slots.get_mut(at as usize).and_then(Option::as_mut) else {
                    return Claim::Claimed(NO_CLAIM);
                };
                if held.expires_at >= now {
                    return Claim::Cached(RunId::new(held.run), Fingerprint(held.fingerprint));
                }
                if ttl == 0 {
                    // Expired, and the new run does not hold the key either.
                    entry.remove();
                    self.vacate(at);
                    return Claim::Claimed(NO_CLAIM);
                }
                held.run = run;
                held.expires_at = expires_at;
                held.fingerprint = fingerprint.0;
                self.enqueue(ttl, at, run);
                Claim::Claimed(at)
            }
            Entry::Vacant(_) if ttl == 0 => Claim::Claimed(NO_CLAIM),
            Entry::Vacant(vacant) => {
                let slot = Slot { task, key: key.to_stored(), run, expires_at, fingerprint: fingerprint.0 };
                self.bytes += claim_bytes(&slot.key);
                let at = match self.free.pop() {
                    Some(at) => {
                        if let Some(free) = self.slots.get_mut(at as usize) {
                            *free = Some(slot);
                        }
                        at
                    }
                    None => {
                        // Slot numbers are 32 bits: past four billion live keys the
                        // entry is not kept, which only means a repeat makes a new run.
                        let Some(at) = u32::try_from(self.slots.len()).ok().filter(|&at| at != NO_CLAIM) else {
                            return Claim::Claimed(NO_CLAIM);
                        };
                        self.slots.push(Some(slot));
                        at
                    }
                };
                vacant.insert(at);
                self.live += 1;
                self.enqueue(ttl, at, run);
                Claim::Claimed(at)
            }
        }
    }

    /// Forgets the entry in slot `at` if run `run` holds it there (a run that ended in
    /// a way that releases its key, found by the slot its claim returned); whether it
    /// did.
    pub(crate) fn release_slot(&mut self, at: u32, run: RunId) -> bool {
        let Some(slot) = self.slots.get(at as usize).and_then(Option::as_ref).filter(|slot| slot.run == run.nonce())
        else {
            return false;
        };
        let hash = hash(&self.hasher, slot.task, slot.key.as_key_ref());
        if let Ok(entry) = self.table.find_entry(hash, |&other| other == at) {
            entry.remove();
        }
        self.vacate(at);
        true
    }

    /// Forgets the entry of `(task, key)` if `run` holds it (a run that ended in a way
    /// that releases its key); whether it did.
    pub(crate) fn release(&mut self, task: u32, key: KeyRef<'_>, run: RunId) -> bool {
        self.remove_if(task, key, |slot| slot.run == run.nonce())
    }

    /// The live, unexpired run of `(task, key)` and its payload's fingerprint, if any;
    /// changes nothing.
    pub(crate) fn peek(&self, task: u32, key: KeyRef<'_>, now: Millis) -> Option<(RunId, Fingerprint)> {
        let hash = hash(&self.hasher, task, key);
        let at = *self.table.find(hash, |&slot| matches(&self.slots, slot, task, key))?;
        let held = self.slots.get(at as usize)?.as_ref()?;
        (held.expires_at >= now).then(|| (RunId::new(held.run), Fingerprint(held.fingerprint)))
    }

    /// Forgets the entry of `(task, key)`; whether there was one. An entry whose TTL
    /// has passed but that no trigger has pruned yet counts: the reference server
    /// clears the key of every run that matches, expired or not.
    pub(crate) fn reset(&mut self, task: u32, key: KeyRef<'_>) -> bool {
        self.remove_if(task, key, |_| true)
    }

    fn remove_if(&mut self, task: u32, key: KeyRef<'_>, when: impl FnOnce(&Slot) -> bool) -> bool {
        let hash = hash(&self.hasher, task, key);
        let slots = &self.slots;
        let Ok(entry) = self.table.find_entry(hash, |&slot| matches(slots, slot, task, key)) else { return false };
        let at = *entry.get();
        match self.slots.get(at as usize).and_then(Option::as_ref) {
            Some(slot) if when(slot) => {
                entry.remove();
                self.vacate(at);
                true
            }
            _ => false,
        }
    }

    /// Drops every entry that expired before `now`, oldest first in each TTL's queue.
    pub(crate) fn prune(&mut self, now: Millis) {
        for q in 0..self.queues.len() {
            while let Some((at, run)) = self.queues.get(q).and_then(|(_, queue)| queue.front()) {
                match self.slots.get(at as usize).and_then(Option::as_ref) {
                    // Reused or renewed since it was queued: its newer entry is queued too.
                    Some(slot) if slot.run != run => {}
                    Some(slot) if slot.expires_at < now => {
                        let hash = hash(&self.hasher, slot.task, slot.key.as_key_ref());
                        if let Ok(entry) = self.table.find_entry(hash, |&other| other == at) {
                            entry.remove();
                        }
                        self.vacate(at);
                    }
                    // The oldest entry of this TTL is live: so are the rest.
                    Some(_) => break,
                    None => {}
                }
                if let Some((_, queue)) = self.queues.get_mut(q) {
                    queue.pop_front();
                }
            }
        }
    }

    fn vacate(&mut self, at: u32) {
        if let Some(slot) = self.slots.get_mut(at as usize) {
            if let Some(held) = slot.as_ref() {
                self.bytes -= claim_bytes(&held.key);
            }
            *slot = None;
            self.free.push(at);
            self.live -= 1;
        }
    }

    #[inline]
    fn enqueue(&mut self, ttl: Millis, at: u32, run: u64) {
        // A process uses a handful of TTLs, usually the same one for a whole batch.
        let queue = match self.queues.iter().position(|(t, _)| *t == ttl) {
            Some(q) => self.queues.get_mut(q),
            None => {
                self.queues.push((ttl, Queue::default()));
                self.queues.last_mut()
            }
        };
        if let Some((_, queue)) = queue {
            queue.push_back(at, run);
        }
    }
}

/// A TTL's queue of claims, oldest first: slot numbers and the runs that claimed them,
/// kept as stretches of consecutive slots claimed by consecutive runs.
#[derive(Debug, Default)]
struct Queue(VecDeque<Stretch>);

/// Places `(slot + i, run + i)` for `i` in `0..len`.
#[derive(Clone, Copy, Debug)]
struct Stretch {
    slot: u32,
    len: u32,
    run: u64,
}

impl Queue {
    fn push_back(&mut self, slot: u32, run: u64) {
        if let Some(last) = self.0.back_mut()
            && last.len < u32::MAX
            && last.slot.checked_add(last.len) == Some(slot)
            && last.run.checked_add(u64::from(last.len)) == Some(run)
        {
            last.len += 1;
            return;
        }
        self.0.push_back(Stretch { slot, len: 1, run });
    }

    /// The oldest place: its slot and run.
    fn front(&self) -> Option<(u32, u64)> {
        self.0.front().map(|first| (first.slot, first.run))
    }

    fn pop_front(&mut self) -> Option<(u32, u64)> {
        let first = self.0.front_mut()?;
        let place = (first.slot, first.run);
        first.len -= 1;
        if first.len == 0 {
            self.0.pop_front();
        } else {
            first.slot += 1;
            first.run += 1;
        }
        Some(place)
    }
}

/// A key's hash in `task`'s part of the table: a digest by its own bytes, anything else
/// sent as a key through a general hasher.
fn hash(hasher: &Hashers, task: u32, key: KeyRef<'_>) -> u64 {
    match key {
        KeyRef::Digest(digest) => hasher.digests.hash_one((task, digest)),
        KeyRef::Raw(raw) => hasher.raw.hash_one((task, raw)),
    }
}

/// The table's hashers: one for digests, one for raw keys.
#[derive(Debug, Default)]
struct Hashers {
    digests: DigestState,
    raw: DefaultHashBuilder,
}

fn matches(slots: &[Option<Slot>], at: u32, task: u32, key: KeyRef<'_>) -> bool {
    slots
        .get(at as usize)
        .and_then(Option::as_ref)
        .is_some_and(|slot| slot.task == task && slot.key.as_key_ref() == key)
}

/// The hash of the entry in `at`, as it was inserted; a table that grows moves entries
/// by it.
fn rehash(hasher: &Hashers, slots: &[Option<Slot>], at: u32) -> u64 {
    slots.get(at as usize).and_then(Option::as_ref).map_or(0, |slot| hash(hasher, slot.task, slot.key.as_key_ref()))
}

#[cfg(test)]
mod tests {
    use idempotency_catalog::Digest;

    use super::*;

    const FP: Fingerprint = Fingerprint(7);

    fn key(i: u32) -> KeyRef<'static> {
        let mut bytes = [0; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        KeyRef::Digest(Digest::from_bytes(bytes))
    }

    #[test]
    fn a_slot_takes_64_bytes() {
        assert_eq!(std::mem::size_of::<Option<Slot>>(), 64);
    }

    #[test]
    fn claims_one_after_another_queue_as_one_place_and_pop_in_order() {
        let mut queue = Queue::default();
        let places = [(0, 1), (1, 2), (2, 3), (7, 4), (8, 5), (9, 7)];
        for (slot, run) in places {
            queue.push_back(slot, run);
        }
        // 0..3 by runs 1..4; 7..9 by runs 4..6; slot 9 by run 7 (run 6 made no claim).
        assert_eq!(queue.0.len(), 3);
        assert_eq!(queue.front(), Some((0, 1)));
        assert!(std::iter::from_fn(|| queue.pop_front()).eq(places));
        // A fan-out's claims: one place for all of them.
        let mut dedup = Dedup::default();
        for i in 0..10_000 {
            dedup.claim(0, key(i), 0, 1_000, RunId::new(u64::from(i) + 1), FP);
        }
        assert_eq!(dedup.queues.iter().map(|(_, queue)| queue.0.len()).sum::<usize>(), 1);
    }

    #[test]
    fn expiry_is_strictly_after_the_ttl() {
        let mut dedup = Dedup::default();
        assert!(matches!(dedup.claim(0, key(1), 1_000, 60_000, RunId::new(1), FP), Claim::Claimed(_)));
        // At exactly the TTL the run is still the answer; a millisecond later it is not.
        assert_eq!(dedup.claim(0, key(1), 61_000, 60_000, RunId::new(2), FP), Claim::Cached(RunId::new(1), FP));
        assert!(matches!(dedup.claim(0, key(1), 61_001, 60_000, RunId::new(3), FP), Claim::Claimed(_)));
        assert_eq!(dedup.claim(0, key(1), 61_002, 60_000, RunId::new(4), FP), Claim::Cached(RunId::new(3), FP));
    }

    #[test]
    fn a_zero_ttl_never_holds_the_key() {
        let mut dedup = Dedup::default();
        for run in 1..=3 {
            assert_eq!(dedup.claim(0, key(1), 5, 0, RunId::new(run), FP), Claim::Claimed(NO_CLAIM));
        }
        assert_eq!(dedup.len(), 0);
    }

    #[test]
    fn pruning_frees_exactly_the_expired_entries_and_slots_are_reused() {
        let mut dedup = Dedup::default();
        for i in 0..1_000 {
            dedup.claim(0, key(i), 0, 1_000, RunId::new(u64::from(i)), FP);
        }
        for i in 1_000..1_500 {
            dedup.claim(0, key(i), 500, 1_000, RunId::new(u64::from(i)), FP);
        }
        dedup.prune(1_001); // the first thousand expired at 1,000
        assert_eq!(dedup.len(), 500);
        assert!(
            (1_000..1_500)
                .all(|i| matches!(dedup.claim(0, key(i), 1_001, 1_000, RunId::new(0), FP), Claim::Cached(..)))
        );
        for i in 2_000..3_000 {
            dedup.claim(0, key(i), 1_001, 1_000, RunId::new(u64::from(i)), FP);
        }
        assert_eq!(dedup.slots.len(), 1_500, "freed slots were reused");
    }

    #[test]
    fn a_renewed_entry_is_not_pruned_by_its_old_queue_place() {
        let mut dedup = Dedup::default();
        dedup.claim(0, key(1), 0, 1_000, RunId::new(1), FP);
        // Expired at 1,001 and claimed again by run 2, until 2,001.
        assert!(matches!(dedup.claim(0, key(1), 1_001, 1_000, RunId::new(2), FP), Claim::Claimed(_)));
        dedup.prune(1_500);
        assert_eq!(dedup.claim(0, key(1), 1_500, 1_000, RunId::new(3), FP), Claim::Cached(RunId::new(2), FP));
    }

    #[test]
    fn pruning_skips_a_renewed_place_and_goes_on_freeing_what_expired_behind_it() {
        let mut dedup = Dedup::default();
        dedup.claim(0, key(1), 0, 1_000, RunId::new(1), FP);
        dedup.claim(0, key(2), 10, 1_000, RunId::new(2), FP);
        // Key 1 expired at 1,000 and is held again by run 3, in the same slot: its old
        // queue place comes first, before key 2's.
        assert!(matches!(dedup.claim(0, key(1), 1_001, 1_000, RunId::new(3), FP), Claim::Claimed(_)));
        dedup.prune(1_020);
        assert_eq!(dedup.len(), 1, "key 2 expired at 1,010 and was freed");
        assert_eq!(dedup.claim(0, key(1), 1_020, 1_000, RunId::new(4), FP), Claim::Cached(RunId::new(3), FP));
        assert!(matches!(dedup.claim(0, key(2), 1_020, 1_000, RunId::new(5), FP), Claim::Claimed(_)));
    }

    #[test]
    fn a_run_releases_its_claim_by_the_slot_it_was_given_only_while_it_holds_it() {
        let mut dedup = Dedup::default();
        let Claim::Claimed(at) = dedup.claim(0, key(1), 0, 1_000, RunId::new(1), FP) else { panic!("claimed") };
        assert!(!dedup.release_slot(at, RunId::new(9)), "another run");
        assert!(dedup.release_slot(at, RunId::new(1)));
        assert!(!dedup.release_slot(at, RunId::new(1)), "released already");
        // Slot reused by another key's run: the first run's release frees nothing.
        let Claim::Claimed(again) = dedup.claim(0, key(2), 0, 1_000, RunId::new(2), FP) else { panic!("claimed") };
        assert_eq!(again, at, "the freed slot is reused");
        assert!(!dedup.release_slot(at, RunId::new(1)));
        assert!(matches!(dedup.claim(0, key(2), 0, 1_000, RunId::new(3), FP), Claim::Cached(..)));
        assert!(matches!(dedup.claim(0, key(1), 0, 1_000, RunId::new(4), FP), Claim::Claimed(_)));
        assert!(!dedup.release_slot(NO_CLAIM, RunId::new(4)));
    }

    #[test]
    fn release_only_forgets_the_key_of_the_run_that_holds_it() {
        let mut dedup = Dedup::default();
        dedup.claim(0, key(1), 0, 1_000, RunId::new(1), FP);
        assert!(!dedup.release(0, key(1), RunId::new(9)));
        assert!(dedup.release(0, key(1), RunId::new(1)));
        assert!(matches!(dedup.claim(0, key(1), 0, 1_000, RunId::new(2), FP), Claim::Claimed(_)));
    }

    #[test]
    fn tasks_and_raw_keys_are_separate_keys() {
        let mut dedup = Dedup::default();
        dedup.claim(0, key(1), 0, 1_000, RunId::new(1), FP);
        assert!(matches!(dedup.claim(1, key(1), 0, 1_000, RunId::new(2), FP), Claim::Claimed(_)));
        dedup.claim(0, KeyRef::Raw("abc"), 0, 1_000, RunId::new(3), FP);
        assert_eq!(dedup.claim(0, KeyRef::Raw("abc"), 0, 1_000, RunId::new(4), FP), Claim::Cached(RunId::new(3), FP));
    }

    #[test]
    fn a_claim_keeps_its_payload_fingerprint_and_answers_with_it() {
        let mut dedup = Dedup::default();
        dedup.claim(0, key(1), 0, 1_000, RunId::new(1), Fingerprint(1));
        assert_eq!(
            dedup.claim(0, key(1), 10, 1_000, RunId::new(2), Fingerprint(2)),
            Claim::Cached(RunId::new(1), Fingerprint(1))
        );
        assert_eq!(dedup.peek(0, key(1), 10), Some((RunId::new(1), Fingerprint(1))));
        assert_eq!(dedup.peek(0, key(2), 10), None);
        // Expired: no answer, and a new claim takes the new payload's fingerprint.
        assert_eq!(dedup.peek(0, key(1), 1_001), None);
        dedup.claim(0, key(1), 1_001, 1_000, RunId::new(3), Fingerprint(3));
        assert_eq!(dedup.peek(0, key(1), 1_002), Some((RunId::new(3), Fingerprint(3))));
    }

    #[test]
    fn entries_are_counted_and_the_oldest_goes_first_whatever_its_ttl() {
        let mut dedup = Dedup::default();
        dedup.claim(0, key(1), 0, 60_000, RunId::new(1), FP);
        dedup.claim(0, key(2), 10, 1_000, RunId::new(2), FP);
        dedup.claim(0, KeyRef::Raw(&"r".repeat(100)), 20, 60_000, RunId::new(3), FP);
        let digest_claim = claim_bytes(&key(1).to_stored());
        assert_eq!(dedup.bytes(), 2 * digest_claim + claim_bytes(&KeyRef::Raw(&"r".repeat(100)).to_stored()));
        // Key 1 was released and claimed again by run 4: its old place is skipped.
        assert!(dedup.release(0, key(1), RunId::new(1)));
        dedup.claim(0, key(1), 30, 60_000, RunId::new(4), FP);
        assert_eq!(dedup.oldest(), Some(2));
        let forgot = dedup.evict_oldest(500).unwrap();
        assert_eq!(forgot, Forgot { live: true, age: 490, ttl: 1_000 });
        assert_eq!(dedup.evict_oldest(70_000).map(|f| (f.live, f.age)), Some((false, 69_980)));
        assert_eq!(dedup.oldest(), Some(4));
        assert!(matches!(dedup.claim(0, key(2), 600, 1_000, RunId::new(5), FP), Claim::Claimed(_)), "forgotten");
        dedup.reset(0, key(1));
        dedup.reset(0, key(2));
        assert_eq!((dedup.len(), dedup.bytes()), (0, 0));
    }

    #[test]
    fn a_reset_finds_a_key_whose_ttl_passed_but_that_no_trigger_pruned() {
        let mut dedup = Dedup::default();
        dedup.claim(0, key(1), 0, 1_000, RunId::new(1), FP);
        // Past its TTL, not pruned: still found and cleared, as the reference server does.
        assert!(dedup.reset(0, key(1)));
        assert!(!dedup.reset(0, key(1)), "cleared");
        assert_eq!(dedup.len(), 0);
    }
}
