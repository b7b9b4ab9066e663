//! A trigger on a store across the network (Redis, and the tests' fake store): its
//! items go in calls of a bounded size, each item numbered before it is sent (a run's
//! id, made from its number, is in the record the call writes), and what the store
//! answered is recorded as each call comes back. [`Sending`] holds these rules and does
//! no I/O; [`trigger`] drives it from sync code, `future.rs` from async code.
//!
//! Numbers are taken per item sent, so the numbers of items answered from cache stay
//! unused, and the engine's lock is never held across a call.

// Without feature `redis`, only the tests' fake store sends.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use idempotency_catalog::KeyOptions;
use parking_lot::Mutex;
use serde_json::value::RawValue;

use super::clock::Millis;
use super::incoming::Incoming;
use super::key::KeyRef;
use super::log::Log;
use super::run::NO_CLAIM;
use super::store::Store;
use super::trigger::Trigger;
use crate::error::Error;
use crate::payload::{Fingerprint, Payload};
use crate::run_id::RunId;

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

/// The answers to one call, one per item, in order; when anything failed, the
/// answers known and why.
pub(crate) type Created = Result<Vec<Answer>, Partial>;

/// A call that failed part-way.
#[derive(Debug)]
pub(crate) struct Partial {
    /// Per item: `None` when it failed or its answer was lost (its run may exist).
    pub(crate) answers: Vec<Option<Answer>>,
    pub(crate) error: Error,
}

/// One trigger's calls: the items of the call under way, numbered.
pub(crate) struct Sending<'a> {
    /// Items per call.
    size: usize,
    items: Vec<Incoming<'a>>,
    /// The number of the first, and each one's id.
    first: u64,
    ids: Vec<RunId>,
}

impl<'a> Sending<'a> {
    /// Calls of `size` items for a trigger of `len`.
    pub(crate) fn new(size: usize, len: usize) -> Self {
        let size = size.max(1);
        Sending { size, items: Vec::with_capacity(len.min(size)), first: 0, ids: Vec::new() }
    }

    /// Takes the next call's items from `trigger` and a number for each; `false` when
    /// every item was sent.
    pub(crate) fn next(&mut self, store: &dyn Store, log: &Mutex<Log>, trigger: &mut Trigger<'a>) -> bool {
        self.items.extend(trigger.items.by_ref().take(self.size));
        if self.items.is_empty() {
            return false;
        }
        self.first = log.lock().take(self.items.len());
        self.ids =
            (self.first..).zip(&self.items).map(|(number, item)| store.id(number, trigger.task, item.key)).collect();
        true
    }

    /// The runs the call creates; with their payloads when `share_payloads`.
    pub(crate) fn runs(&self, share_payloads: bool) -> Vec<NewRun<'_>> {
        self.ids
            .iter()
            .zip(&self.items)
            .map(|(&id, item)| NewRun {
                id,
                key: item.key,
                ttl: item.ttl,
                options: item.options.as_ref(),
                payload: item.payload.as_ref().filter(|_| share_payloads).and_then(Payload::raw),
                fingerprint: item.fingerprint,
            })
            .collect()
    }

    /// Records what the store answered for the call, in `log` and in `trigger`; the
    /// store's error when the call failed (after recording what it confirmed).
    pub(crate) fn record(
        &mut self,
        store: &dyn Store,
        log: &Mutex<Log>,
        trigger: &mut Trigger<'a>,
        created: Created,
    ) -> Result<(), Error> {
        let (answers, error) = match created {
            Ok(answers) => (answers.into_iter().map(Some).collect(), None),
            Err(Partial { answers, error }) => (answers, Some(error)),
        };
        let mut log = log.lock();
        let task = log.tasks.id(trigger.task);
        for (((number, &id), item), answer) in (self.first..).zip(&self.ids).zip(self.items.drain(..)).zip(answers) {
            match answer {
                Some(Answer::Created) => {
                    trigger.created(id);
                    log.put(number, id.tag(), item.into_run(task, NO_CLAIM));
                }
                Some(Answer::Cached(held, fingerprint)) => {
                    trigger.cached(&item, held, fingerprint);
                    // A run of this engine whose answer was lost in an earlier call: it
                    // exists, so it is cached, and it belongs in the log (with this
                    // item's payload, the same key's).
                    if let Some(earlier) = store.number(held)
                        && log.is_gap(earlier)
                        && store.id(earlier, trigger.task, item.key) == held
                        // This item's payload, if it is the one the run was made with.
                        && fingerprint.is_none_or(|fingerprint| fingerprint == item.fingerprint)
                    {
                        log.put(earlier, held.tag(), item.into_run(task, NO_CLAIM));
                    }
                }
                None => {}
            }
        }
        log.trim();
        error.map_or(Ok(()), Err)
    }
}

/// Triggers `trigger` on `store` from sync code, `size` items a call, each call made by
/// `create` (the store's own: its task, its runs, the time). Under
/// [`PayloadPolicy::Fail`](crate::PayloadPolicy::Fail) the items are checked first,
/// against their keys' holders as the store reads them now: a process claiming a key
/// with another payload between that check and the claim is counted and warned about,
/// not refused.
pub(crate) fn trigger(
    store: &dyn Store,
    log: &Mutex<Log>,
    trigger: &mut Trigger<'_>,
    size: usize,
    create: impl Fn(&str, &[NewRun<'_>], Millis) -> Created,
) -> Result<(), Error> {
    if trigger.checks_first() {
        let keys = trigger.keys();
        trigger.check(&store.peek(log, trigger.task, &keys, trigger.now)?)?;
    }
    let mut sending = Sending::new(size, trigger.len);
    while sending.next(store, log, trigger) {
        let created = create(trigger.task, &sending.runs(trigger.share_payloads), trigger.now);
        sending.record(store, log, trigger, created)?;
    }
    Ok(())
}
