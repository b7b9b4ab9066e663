//! The in-memory store: keys claimed, and runs recorded, in this process. Its claims
//! ([`Dedup`]) and the engine's log of runs (its records) change together under the
//! engine's lock: nothing comes between a trigger's checks, its claims and its records,
//! and the byte budget is kept as they are made.

use parking_lot::Mutex;

use super::budget::{self, BudgetPolicy, Spent};
use super::clock::Millis;
use super::dedup::{Claim, Dedup};
use super::key::KeyRef;
use super::log::Log;
use super::run::{NO_CLAIM, RunRecord, RunStatus, RunView};
use super::store::{Held, Holder, Store};
use super::trigger::Trigger;
use crate::error::Error;
use crate::run_id::RunId;

#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    /// Locked after the engine's log, never before.
    claims: Mutex<Claims>,
}

#[derive(Debug, Default)]
struct Claims {
    dedup: Dedup,
    /// What the byte budget cost.
    spent: Spent,
}

impl Store for MemoryStore {
    fn name(&self) -> (&'static str, Option<&'static str>) {
        ("memory", None)
    }

    /// Runs are numbered in the order they are created: the id is the number.
    fn tag(&self, _number: u64, _task: &str, _key: Option<KeyRef<'_>>) -> u128 {
        0
    }

    fn nonce(&self, number: u64) -> u64 {
        number
    }

    fn number(&self, id: RunId) -> Option<u64> {
        (!id.is_fleet()).then(|| id.nonce())
    }

    fn trigger(&self, log: &Mutex<Log>, trigger: &mut Trigger<'_>) -> Result<(), Error> {
        let mut log = log.lock();
        let mut claims = self.claims.lock();
        let Claims { dedup, spent } = &mut *claims;
        let now = trigger.now;
        dedup.prune(now);
        let task = log.tasks.id(trigger.task);
        if trigger.checks_first() {
            // Checked again under the lock the claims are made under: another thread's
            // trigger may have claimed a key since the engine checked.
            let held: Vec<Holder> = trigger.keys().into_iter().map(|key| holder(dedup, task, key, now)).collect();
            trigger.check(&held)?;
        }
        if trigger.budget.policy == BudgetPolicy::Refuse {
            budget::check_room(&log, dedup, spent, &trigger.budget, task, trigger.items.held(), now)?;
        }
        dedup.reserve(trigger.len);
        log.reserve(trigger.len);
        trigger.handles.reserve(trigger.len);
        let max_bytes = trigger.budget.max_bytes;
        let mut forgotten = None;
        while let Some(item) = trigger.items.next() {
            let id = RunId::new(log.next());
            let claim = match item.key.map(|key| dedup.claim(task, key, now, item.ttl, id, item.fingerprint)) {
                Some(Claim::Cached(held, fingerprint)) => {
                    trigger.cached(&item, held, Some(fingerprint));
                    continue;
                }
                Some(Claim::Claimed(at)) => at,
                None => NO_CLAIM,
            };
            log.push(item.into_run(task, claim));
            trigger.created(id);
            if dedup.bytes() + log.bytes() > max_bytes {
                forgotten = forgotten.or(budget::make_room(&mut log, dedup, spent, max_bytes, now));
            }
        }
        log.trim();
        let bytes = dedup.bytes() + log.bytes();
        crate::meter::engine_bytes(bytes, max_bytes);
        drop(claims);
        drop(log);
        if let Some((remembered, ttl)) = forgotten {
            budget::warn_forgotten(&trigger.budget, remembered, ttl, bytes);
        }
        Ok(())
    }

    fn peek(&self, log: &Mutex<Log>, task: &str, keys: &[KeyRef<'_>], now: Millis) -> Result<Vec<Holder>, Error> {
        let log = log.lock();
        let claims = self.claims.lock();
        let held = |key| log.tasks.find(task).and_then(|task| holder(&claims.dedup, task, key, now));
        Ok(keys.iter().map(|&key| held(key)).collect())
    }

    fn read(&self, log: &Mutex<Log>, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error> {
        let log = log.lock();
        Ok(ids.iter().map(|&id| self.view(&log, id).map(|view| view.to_record())).collect())
    }

    fn set_status(&self, log: &Mutex<Log>, id: RunId, status: RunStatus) -> Result<bool, Error> {
        let mut log = log.lock();
        let Some(run) = self.number(id).and_then(|number| log.get_mut(number)) else { return Ok(false) };
        run.status = status;
        if status.releases_key() {
            self.claims.lock().dedup.release_slot(run.claim, id);
        }
        Ok(true)
    }

    fn reset(&self, log: &Mutex<Log>, task: &str, key: KeyRef<'_>, held_by: Option<RunId>) -> Result<bool, Error> {
        let log = log.lock();
        let Some(task) = log.tasks.find(task) else { return Ok(false) };
        let dedup = &mut self.claims.lock().dedup;
        Ok(match held_by {
            None => dedup.reset(task, key),
            // An id of a shared store's is never a run of this engine's.
            Some(run) => !run.is_fleet() && dedup.release(task, key, run),
        })
    }

    fn held(&self) -> Held {
        let claims = self.claims.lock();
        Held { keys: claims.dedup.len(), bytes: claims.dedup.bytes(), spent: claims.spent }
    }
}

impl MemoryStore {
    /// Run `id`, in place.
    fn view<'l>(&self, log: &'l Log, id: RunId) -> Option<RunView<'l>> {
        let run = log.get(self.number(id)?)?;
        Some(RunView { id, task: log.tasks.name(run.task), run })
    }
}

/// The live run of `(task, key)` at `now`, and its payload's fingerprint.
fn holder(dedup: &Dedup, task: u32, key: KeyRef<'_>, now: Millis) -> Holder {
    dedup.peek(task, key, now).map(|(id, fingerprint)| (id, Some(fingerprint)))
}
