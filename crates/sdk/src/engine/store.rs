//! The seam between the engine and where keys are claimed and runs recorded: in this
//! process ([`MemoryStore`](super::memory::MemoryStore)), on Redis (`redis.rs`, feature
//! `redis`), or in the tests' fake store, with faults injected (`fake.rs`), so that
//! what the engine does when a store fails part-way is tested without a server.
//!
//! The engine holds the rules (what an answer means for the caller, the payload
//! policy, which keys a reset tries, whose record follows a status change) and never
//! asks which store it has; a store claims keys, keeps the records, and says what
//! became of each item.
//!
//! A store is handed the engine's log of its own runs, behind the engine's lock, and
//! takes that lock as its consistency needs: the memory store for a whole call (its
//! claims, its records and its byte budget are one step), a store across the network
//! only around its bookkeeping, never across a round trip.

use std::fmt;

use parking_lot::Mutex;

use super::budget::Spent;
use super::clock::Millis;
use super::key::KeyRef;
use super::log::Log;
use super::run::{RunRecord, RunStatus};
use super::trigger::Trigger;
use crate::error::Error;
use crate::payload::Fingerprint;
use crate::run_id::RunId;

pub(crate) trait Store: Send + Sync + fmt::Debug {
    /// What the trigger span calls the store (`store`), and the database behind it
    /// (`db.system`, for a store across the network).
    fn name(&self) -> (&'static str, Option<&'static str>);

    /// Where the record of this engine's run number `number`, for `key` of `task`,
    /// lives: the tag of its id. 0 for a store in this process, whose ids are numbers;
    /// never 0 for one across the network.
    fn tag(&self, number: u64, task: &str, key: Option<KeyRef<'_>>) -> u128;

    /// The nonce of this engine's run number `number`.
    fn nonce(&self, number: u64) -> u64;

    /// The number `id` has in this engine, if this engine may have made it (the caller
    /// checks that [`id`](Self::id) gives `id` back).
    fn number(&self, id: RunId) -> Option<u64>;

    /// The id of this engine's run number `number`, for `key` of `task`.
    fn id(&self, number: u64, task: &str, key: Option<KeyRef<'_>>) -> RunId {
        RunId::from_parts(self.tag(number, task, key), self.nonce(number))
    }

    /// Claims each item's key of `trigger`, or finds the run that holds it, creating a
    /// run (with its record, atomically per item: no key is ever held by a run that
    /// has no record) for each item not answered from cache; records this engine's
    /// runs in `log` and each item's answer in `trigger`. Items are applied in order,
    /// so a key twice in one trigger is held by the first. On an error, the answers of
    /// the items before it are in `trigger`.
    ///
    /// When [`Trigger::checks_first`] (under `PayloadPolicy::Fail`), the store first
    /// reads the holders of the items' keys and hands them to [`Trigger::check`], which
    /// refuses the trigger before anything is claimed: the memory store under the lock
    /// it claims under, a store across the network by reading them before its first
    /// call (another process may claim in between; that is counted and warned about).
    fn trigger(&self, log: &Mutex<Log>, trigger: &mut Trigger<'_>) -> Result<(), Error>;

    /// Which run holds each of `keys` of `task` at `now`, and its payload's
    /// fingerprint; changes nothing. For [`PayloadPolicy::Fail`](crate::PayloadPolicy::Fail),
    /// which checks a trigger before claiming anything, and for the holder of a key.
    fn peek(&self, log: &Mutex<Log>, task: &str, keys: &[KeyRef<'_>], now: Millis) -> Result<Vec<Holder>, Error>;

    /// The records of `ids`, in order; `None` for an id no record exists for.
    fn read(&self, log: &Mutex<Log>, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error>;

    /// Sets the status of run `id`, releasing its key if the status does and the run
    /// still holds it, in one step; whether the run exists.
    fn set_status(&self, log: &Mutex<Log>, id: RunId, status: RunStatus) -> Result<bool, Error>;

    /// Forgets the key of `task`, so the next trigger makes a new run; its run's
    /// record stays. Only while run `held_by` holds it, when given, checked and freed
    /// in one step. Whether a key was freed.
    fn reset(&self, log: &Mutex<Log>, task: &str, key: KeyRef<'_>, held_by: Option<RunId>) -> Result<bool, Error>;

    /// What the store holds in this process against the engine's byte budget, and
    /// what the budget cost; nothing for a store across the network.
    fn held(&self) -> Held {
        Held::default()
    }
}

/// The run holding a key, and the fingerprint of the payload it was made with (`None`
/// for a record that does not say); `None` when the key is free.
pub(crate) type Holder = Option<(RunId, Option<Fingerprint>)>;

/// What a store holds in this process, and what the byte budget cost it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Held {
    /// Keys held for deduplication.
    pub(crate) keys: usize,
    /// What they cost, as the budget counts them.
    pub(crate) bytes: usize,
    pub(crate) spent: Spent,
}

/// The store as the engine holds it: with its async forms when the engine has them.
#[cfg(feature = "tokio")]
pub(crate) type DynStore = dyn super::future::AsyncStore;
#[cfg(not(feature = "tokio"))]
pub(crate) type DynStore = dyn Store;
