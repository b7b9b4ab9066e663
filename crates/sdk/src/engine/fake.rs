//! A store across the network, in memory, with faults to order: what the engine does
//! when a store fails part-way, tested without a server. It sends a trigger's items
//! as Redis does (`remote.rs`), in calls of a size the test picks.

use std::collections::HashMap;
use std::sync::Arc;

use idempotency_catalog::KeyOptions;
use parking_lot::Mutex;

use super::clock::Millis;
use super::key::KeyRef;
use super::log::Log;
use super::remote::{self, Answer, Created, NewRun, Partial};
use super::run::{RunRecord, RunStatus};
use super::store::{Holder, Store};
use super::trigger::Trigger;
use crate::error::Error;
use crate::payload::Fingerprint;
use crate::run_id::RunId;

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
    /// A store taking `chunk` items a call.
    pub(crate) fn new(chunk: usize) -> Self {
        FakeStore { chunk, ..FakeStore::default() }
    }

    /// One call: creates each run whose key is free, with its record, in order.
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
}

fn fault(operation: &'static str) -> Error {
    idempotency_catalog::Error::Redis { url: "fake://".into(), operation, message: "injected".into() }.into()
}

impl Store for FakeStore {
    fn name(&self) -> (&'static str, Option<&'static str>) {
        ("fake", None)
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

    fn trigger(&self, log: &Mutex<Log>, trigger: &mut Trigger<'_>) -> Result<(), Error> {
        remote::trigger(self, log, trigger, self.chunk, |task, runs, now| self.create(task, runs, now))
    }

    fn peek(&self, _: &Mutex<Log>, task: &str, keys: &[KeyRef<'_>], _: Millis) -> Result<Vec<Holder>, Error> {
        let claims = self.claims.lock();
        Ok(keys
            .iter()
            .map(|key| claims.get(&(task.to_owned(), key.text().into_owned())).map(|&(id, fp)| (id, Some(fp))))
            .collect())
    }

    fn read(&self, _: &Mutex<Log>, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error> {
        let records = self.records.lock();
        Ok(ids.iter().map(|id| records.get(id).cloned()).collect())
    }

    fn set_status(&self, _: &Mutex<Log>, id: RunId, status: RunStatus) -> Result<bool, Error> {
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

    fn reset(&self, _: &Mutex<Log>, task: &str, key: KeyRef<'_>, held_by: Option<RunId>) -> Result<bool, Error> {
        let mut claims = self.claims.lock();
        let key = (task.to_owned(), key.text().into_owned());
        if held_by.is_some_and(|run| claims.get(&key).is_some_and(|&(held, _)| held != run)) {
            return Ok(false);
        }
        Ok(claims.remove(&key).is_some())
    }
}

/// So that a test keeps the store it gives the engine.
impl<T: Store> Store for Arc<T> {
    fn name(&self) -> (&'static str, Option<&'static str>) {
        (**self).name()
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
    fn trigger(&self, log: &Mutex<Log>, trigger: &mut Trigger<'_>) -> Result<(), Error> {
        (**self).trigger(log, trigger)
    }
    fn peek(&self, log: &Mutex<Log>, task: &str, keys: &[KeyRef<'_>], now: Millis) -> Result<Vec<Holder>, Error> {
        (**self).peek(log, task, keys, now)
    }
    fn read(&self, log: &Mutex<Log>, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error> {
        (**self).read(log, ids)
    }
    fn set_status(&self, log: &Mutex<Log>, id: RunId, status: RunStatus) -> Result<bool, Error> {
        (**self).set_status(log, id, status)
    }
    fn reset(&self, log: &Mutex<Log>, task: &str, key: KeyRef<'_>, held_by: Option<RunId>) -> Result<bool, Error> {
        (**self).reset(log, task, key, held_by)
    }
}

#[cfg(feature = "tokio")]
impl<T: super::future::AsyncStore> super::future::AsyncStore for Arc<T> {}
#[cfg(feature = "tokio")]
impl super::future::AsyncStore for FakeStore {}
