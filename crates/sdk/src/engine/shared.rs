//! The seam between the engine and a store shared by many processes: the engine
//! numbers runs, keeps its log and turns answers into handles; the store claims keys,
//! keeps the records every process reads, and says what happened to each item.
//!
//! Redis implements it (feature `redis`); the engine's tests implement it in memory,
//! with faults injected, so that what the engine does when a store fails part-way is
//! tested without a server.

// Without feature `redis`, only those tests implement the seam.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use std::fmt;

use idempotency_catalog::KeyOptions;
use serde_json::value::RawValue;

use super::key::KeyRef;
use super::memory::Millis;
use super::run::{RunId, RunRecord, RunStatus};
use crate::error::Error;

/// A run to create, if its key is free.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewRun<'a> {
    pub(crate) id: RunId,
    pub(crate) key: Option<KeyRef<'a>>,
    /// How long the key stays held; 0 holds nothing.
    pub(crate) ttl: Millis,
    pub(crate) options: Option<&'a KeyOptions>,
    /// The payload, when records keep it.
    pub(crate) payload: Option<&'a RawValue>,
}

/// What became of one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Its run was created, with its record, and holds its key.
    Created,
    /// Its key is held by this run, whose record exists.
    Cached(RunId),
    /// Unknown: the item failed, or its answer was lost (the run may exist).
    Failed,
}

/// The answers to one [`SharedStore::create`], in order, and the error that made any
/// of them `Failed`.
#[derive(Debug)]
pub(crate) struct Created {
    pub(crate) answers: Vec<Answer>,
    pub(crate) error: Option<Error>,
}

pub(crate) trait SharedStore: Send + Sync + fmt::Debug {
    /// Items per call to [`create`](Self::create).
    fn chunk(&self) -> usize;

    /// Where the record of this engine's run number `number`, for `key` of `task`,
    /// lives: the tag of its id, never 0.
    fn tag(&self, number: u64, task: &str, key: Option<KeyRef<'_>>) -> u128;

    /// The nonce of this engine's run number `number`.
    fn nonce(&self, number: u64) -> u64;

    /// The id of this engine's run number `number`, for `key` of `task`.
    fn id(&self, number: u64, task: &str, key: Option<KeyRef<'_>>) -> RunId {
        RunId::fleet(self.tag(number, task, key), self.nonce(number))
    }

    /// The number `id` has in this engine, if this engine may have made it (the caller
    /// checks that [`id`](Self::id) gives `id` back).
    fn number(&self, id: RunId) -> Option<u64>;

    /// Creates each run whose key is free, with its record, atomically per item: no
    /// key is ever held by a run that has no record. Items of one call are applied in
    /// order, so a key twice in one call is held by the first.
    fn create(&self, task: &str, runs: &[NewRun<'_>], now: Millis) -> Created;

    /// The records of `ids`, in order; `None` for an id no record exists for.
    fn read(&self, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error>;

    /// Sets the status of run `id`, releasing its key if the status does and the run
    /// still holds it, in one step; whether the run exists.
    fn set_status(&self, id: RunId, status: RunStatus) -> Result<bool, Error>;

    /// Forgets the key of `task`, so the next trigger makes a new run; its run's
    /// record stays. Whether a key was held.
    fn reset(&self, task: &str, key: KeyRef<'_>) -> Result<bool, Error>;
}
