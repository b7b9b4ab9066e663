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
use crate::payload::Fingerprint;

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
    /// The payload's fingerprint, which the record always keeps.
    pub(crate) fingerprint: Fingerprint,
}

/// What became of one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Its run was created, with its record, and holds its key.
    Created,
    /// Its key is held by this run, whose record exists, made with a payload of this
    /// fingerprint (`None` for a record that does not say).
    Cached(RunId, Option<Fingerprint>),
}

/// The run holding a key, and the fingerprint of the payload it was made with (`None`
/// for a record that does not say); `None` when the key is free.
pub(crate) type Holder = Option<(RunId, Option<Fingerprint>)>;

/// The answers to one [`SharedStore::create`], one per item, in order; when anything
/// failed, the answers known and why.
pub(crate) type Created = Result<Vec<Answer>, Partial>;

/// A call that failed part-way.
#[derive(Debug)]
pub(crate) struct Partial {
    /// Per item: `None` when it failed or its answer was lost (its run may exist).
    pub(crate) answers: Vec<Option<Answer>>,
    pub(crate) error: Error,
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

    /// Which run holds each of `keys` of `task` now, and its payload's fingerprint;
    /// changes nothing. For [`PayloadPolicy::Fail`](crate::PayloadPolicy::Fail), which
    /// checks a trigger before claiming anything.
    fn peek(&self, task: &str, keys: &[KeyRef<'_>]) -> Result<Vec<Holder>, Error>;

    /// Sets the status of run `id`, releasing its key if the status does and the run
    /// still holds it, in one step; whether the run exists.
    fn set_status(&self, id: RunId, status: RunStatus) -> Result<bool, Error>;

    /// Forgets the key of `task`, so the next trigger makes a new run; its run's
    /// record stays. Only while run `held_by` holds it, when given, checked and freed
    /// in one step. Whether a key was freed.
    fn reset(&self, task: &str, key: KeyRef<'_>, held_by: Option<RunId>) -> Result<bool, Error>;

    /// Items per call to [`create_async`](Self::create_async): smaller than
    /// [`chunk`](Self::chunk), so that building a call's commands never holds a thread
    /// of the runtime long.
    #[cfg(feature = "tokio")]
    fn async_chunk(&self) -> usize {
        self.chunk()
    }

    /// As [`create`](Self::create), from async code. By default the sync call: for
    /// stores that never wait (the tests' fake).
    #[cfg(feature = "tokio")]
    fn create_async<'a>(&'a self, task: &'a str, runs: &'a [NewRun<'a>], now: Millis) -> BoxFuture<'a, Created> {
        let created = self.create(task, runs, now);
        Box::pin(async move { created })
    }

    /// As [`peek`](Self::peek), from async code.
    #[cfg(feature = "tokio")]
    fn peek_async<'a>(&'a self, task: &'a str, keys: &'a [KeyRef<'a>]) -> BoxFuture<'a, Result<Vec<Holder>, Error>> {
        let peek = self.peek(task, keys);
        Box::pin(async move { peek })
    }

    /// As [`read`](Self::read), from async code.
    #[cfg(feature = "tokio")]
    fn read_async<'a>(&'a self, ids: &'a [RunId]) -> BoxFuture<'a, Result<Vec<Option<RunRecord>>, Error>> {
        let read = self.read(ids);
        Box::pin(async move { read })
    }

    /// As [`set_status`](Self::set_status), from async code.
    #[cfg(feature = "tokio")]
    fn set_status_async(&self, id: RunId, status: RunStatus) -> BoxFuture<'_, Result<bool, Error>> {
        let set = self.set_status(id, status);
        Box::pin(async move { set })
    }

    /// As [`reset`](Self::reset), from async code.
    #[cfg(feature = "tokio")]
    fn reset_async<'a>(
        &'a self,
        task: &'a str,
        key: KeyRef<'a>,
        held_by: Option<RunId>,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        let reset = self.reset(task, key, held_by);
        Box::pin(async move { reset })
    }
}

/// A future a [`SharedStore`] returns: boxed, since the engine holds the store as a
/// trait object, and `Send`, so that the engine's own futures are.
#[cfg(feature = "tokio")]
pub(crate) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A shared store in memory, with faults to order: what the engine does when a store
/// fails part-way, tested without a server.
#[cfg(test)]
pub(crate) mod fake {
    use std::collections::HashMap;

    use parking_lot::Mutex;

    use super::*;

    /// What to break.
    #[derive(Clone, Copy, Debug, Default)]
    pub(crate) struct Faults {
        /// The item (by its place in the call) that fails, applied to nothing.
        pub(crate) item: Option<usize>,
        /// Apply every item, then lose every answer.
        pub(crate) lose_answers: bool,
        /// Refuse status changes, applying nothing.
        pub(crate) status: bool,
    }

    #[derive(Debug, Default)]
    pub(crate) struct FakeStore {
        chunk: usize,
        pub(crate) faults: Mutex<Faults>,
        /// Which run holds each (task, key), with its payload's fingerprint, and every
        /// record.
        claims: Mutex<HashMap<(String, String), (RunId, Fingerprint)>>,
        records: Mutex<HashMap<RunId, RunRecord>>,
        pub(crate) calls: Mutex<usize>,
    }

    impl FakeStore {
        pub(crate) fn new(chunk: usize) -> Self {
            FakeStore { chunk, ..FakeStore::default() }
        }
    }

    /// So that a test keeps the store it gives the engine.
    impl<T: SharedStore> SharedStore for std::sync::Arc<T> {
        fn chunk(&self) -> usize {
            (**self).chunk()
        }
        fn tag(&self, number: u64, task: &str, key: Option<KeyRef<'_>>) -> u128 {
            (**self).tag(number, task, key)
        }
        fn nonce(&self, number: u64) -> u64 {
            (**self).nonce(number)
        }
        fn number(&self, id: RunId) -> Option<u64> {
            (**self).number(id)
        }
        fn create(&self, task: &str, runs: &[NewRun<'_>], now: Millis) -> Created {
            (**self).create(task, runs, now)
        }
        fn read(&self, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error> {
            (**self).read(ids)
        }
        fn peek(&self, task: &str, keys: &[KeyRef<'_>]) -> Result<Vec<Holder>, Error> {
            (**self).peek(task, keys)
        }
        fn set_status(&self, id: RunId, status: RunStatus) -> Result<bool, Error> {
            (**self).set_status(id, status)
        }
        fn reset(&self, task: &str, key: KeyRef<'_>, held_by: Option<RunId>) -> Result<bool, Error> {
            (**self).reset(task, key, held_by)
        }
    }

    fn fault(operation: &'static str) -> Error {
        idempotency_catalog::Error::Redis { url: "fake://".into(), operation, message: "injected".into() }.into()
    }

    impl SharedStore for FakeStore {
        fn chunk(&self) -> usize {
            self.chunk
        }

        fn tag(&self, number: u64, task: &str, key: Option<KeyRef<'_>>) -> u128 {
            // Distinct per key, and per number for runs without a key.
            let text = key.map_or_else(|| format!("#{number}"), |k| k.text().into_owned());
            1 + u128::from(text.len() as u64)
                + task.len() as u128 * 1_000
                + text.bytes().map(u128::from).sum::<u128>() * 1_000_000
        }

        fn nonce(&self, number: u64) -> u64 {
            number + 5_000
        }

        fn number(&self, id: RunId) -> Option<u64> {
            id.nonce().checked_sub(5_000)
        }

        fn create(&self, task: &str, runs: &[NewRun<'_>], _now: Millis) -> Created {
            *self.calls.lock() += 1;
            let faults = *self.faults.lock();
            let mut answers = Vec::new();
            for (at, run) in runs.iter().enumerate() {
                if faults.item == Some(at) {
                    answers.push(None);
                    continue;
                }
                let held = run.key.filter(|_| run.ttl > 0).map(|key| (task.to_owned(), key.text().into_owned()));
                let answer = match held.as_ref().and_then(|k| self.claims.lock().get(k).copied()) {
                    Some((id, fingerprint)) => Answer::Cached(id, Some(fingerprint)),
                    None => {
                        if let Some(k) = held {
                            self.claims.lock().insert(k, (run.id, run.fingerprint));
                        }
                        let record = RunRecord {
                            id: run.id,
                            task: task.to_owned(),
                            idempotency_key: run
                                .options
                                .map(|o| o.key().to_owned())
                                .or_else(|| run.key.map(|k| k.text().into_owned())),
                            idempotency_key_scope: run.options.map(KeyOptions::scope),
                            payload: None,
                            status: RunStatus::Pending,
                        };
                        self.records.lock().insert(run.id, record);
                        Answer::Created
                    }
                };
                answers.push((!faults.lose_answers).then_some(answer));
            }
            if faults.item.is_some() || faults.lose_answers {
                return Err(Partial { answers, error: fault("create runs") });
            }
            Ok(answers.into_iter().flatten().collect())
        }

        fn read(&self, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error> {
            let records = self.records.lock();
            Ok(ids.iter().map(|id| records.get(id).cloned()).collect())
        }

        fn peek(&self, task: &str, keys: &[KeyRef<'_>]) -> Result<Vec<Holder>, Error> {
            let claims = self.claims.lock();
            Ok(keys
                .iter()
                .map(|key| claims.get(&(task.to_owned(), key.text().into_owned())).map(|&(id, fp)| (id, Some(fp))))
                .collect())
        }

        fn set_status(&self, id: RunId, status: RunStatus) -> Result<bool, Error> {
            if self.faults.lock().status {
                return Err(fault("change a run's status"));
            }
            let mut records = self.records.lock();
            let Some(record) = records.get_mut(&id) else { return Ok(false) };
            record.status = status;
            if status.releases_key() {
                self.claims.lock().retain(|_, (held, _)| *held != id);
            }
            Ok(true)
        }

        fn reset(&self, task: &str, key: KeyRef<'_>, held_by: Option<RunId>) -> Result<bool, Error> {
            let mut claims = self.claims.lock();
            let key = (task.to_owned(), key.text().into_owned());
            if held_by.is_some_and(|run| claims.get(&key).is_some_and(|&(held, _)| held != run)) {
                return Ok(false);
            }
            Ok(claims.remove(&key).is_some())
        }
    }
}
