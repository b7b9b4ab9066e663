//! The in-memory engine's byte budget: what a claim and a run record cost, where the
//! budget came from, what happens at it, and the one warning that says the dedup
//! window it kept.
//!
//! Costs are counted from what each entry holds, as the catalog counts its entries:
//! a claim is its 64-byte slot, its place in the hash table at the table's lowest load
//! (a 4-byte slot number and a control byte, at 7/16), its place in its TTL's queue
//! (16 bytes, twice: a ring buffer's capacity reaches twice its length) and in the
//! free list, and a raw key's heap string; a run record is its place in the log (twice
//! the record, for the same reason), and what its key and payload hold on the heap
//! (nothing for a key with its options and a payload of up to 23 bytes), rounded as the
//! allocator rounds them. The `engine_worker` example checks
//! the count against resident memory.

use std::mem::size_of;
use std::time::Duration;

use idempotency_catalog::{Digest, Source};
use serde::Serialize;

use super::clock::Millis;
use super::dedup::Dedup;
use super::incoming::Incoming;
use super::key::{KeyRef, StoredKey};
use super::log::Log;
use super::run::{Run, RunKey};
use crate::error::Error;
use crate::from_catalog::{MIN_MAX_BYTES, chunk, heap_bytes, parse_bytes, show_bytes};
use crate::payload::Payload;
use crate::{defaults, env};

/// A claim: its slot, its table slot at 7/16 load, its queue place twice, its free-list place.
const CLAIM: usize = 64 + (5 * 16usize).div_ceil(7) + 2 * 16 + 4;

/// A run record's place in the log, twice (a ring buffer's capacity).
const RECORD: usize = 2 * size_of::<Run>();

/// What the in-memory engine does at its byte budget.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{BudgetPolicy, Engine};
///
/// let engine = Engine::new().with_max_bytes(64 << 10)?.with_budget_policy(BudgetPolicy::Refuse);
/// assert_eq!(engine.stats().max_bytes, 64 << 10);
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BudgetPolicy {
    /// Forget the oldest keys and run records to make room: a key forgotten before its
    /// TTL may run twice, so each is counted ([`EngineStats::evicted_keys`]) and the
    /// first is warned about, with the dedup window actually kept.
    ///
    /// [`EngineStats::evicted_keys`]: crate::EngineStats::evicted_keys
    #[default]
    Evict,
    /// Refuse a trigger that would go past the budget with
    /// [`Error::EngineFull`](crate::Error::EngineFull), before anything of it is
    /// claimed; keys are never forgotten before their TTL.
    Refuse,
}

/// What the in-memory engine holds against its byte budget, and what the budget cost:
/// [`Engine::stats`](crate::Engine::stats). Serializes as an object of its
/// fields, for a status endpoint.
///
/// On a shared store (`Engine::on_redis`, feature `redis`) keys live in Redis:
/// `keys` is 0, `bytes` counts this engine's run records, and no budget applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EngineStats {
    /// Keys held for deduplication (expired ones not yet pruned included).
    pub keys: usize,
    /// Run records retained.
    pub runs_retained: usize,
    /// What keys and records cost, counted per entry from what each holds.
    pub bytes: usize,
    /// The byte budget.
    pub max_bytes: usize,
    /// Where the budget came from: `Engine::with_max_bytes`, the variable, or the default.
    pub max_bytes_source: Source,
    /// Keys forgotten at the budget before their TTL: each may run twice if triggered
    /// again. The first is covered by one `WARN`.
    pub evicted_keys: u64,
    /// Run records dropped at the budget (their runs cannot be read any more).
    pub evicted_runs: u64,
    /// Items of triggers refused at the budget under [`BudgetPolicy::Refuse`].
    pub refused: u64,
    /// How long the most recently forgotten key had been held: the dedup window the
    /// budget keeps, in milliseconds; `None` until a key is forgotten.
    pub remembered_ms: Option<u64>,
}

/// The budget, where it came from, and what happens at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) max_bytes: usize,
    pub(crate) source: Source,
    pub(crate) policy: BudgetPolicy,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { max_bytes: defaults::ENGINE_MAX_BYTES, source: Source::Default, policy: BudgetPolicy::Evict }
    }
}

const CALL: &str = "Engine::with_max_bytes";

impl Budget {
    /// The budget from the variable read through `lookup`, else the default.
    pub(crate) fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let Some(raw) = lookup(env::ENGINE_MAX_BYTES) else { return Ok(Budget::default()) };
        let max_bytes = parse_bytes(&raw).filter(|n| *n >= MIN_MAX_BYTES).ok_or_else(|| {
            invalid(env::ENGINE_MAX_BYTES, &raw, ", optionally with a KiB, MiB or GiB suffix (32MiB)")
        })?;
        Ok(Budget { max_bytes, source: Source::Env, ..Budget::default() })
    }

    /// The budget set in code.
    pub(crate) fn code(self, max_bytes: usize) -> Result<Self, Error> {
        if max_bytes < MIN_MAX_BYTES {
            return Err(invalid(CALL, &max_bytes.to_string(), ""));
        }
        Ok(Budget { max_bytes, source: Source::Builder, ..self })
    }

    /// How to raise the budget, from where it was set.
    pub(crate) fn remedy(&self) -> String {
        let (now, var) = (show_bytes(self.max_bytes), env::ENGINE_MAX_BYTES);
        match self.source {
            Source::Env => format!("raise {var} (set to {now})"),
            Source::Builder => {
                format!("raise {CALL} (set in code to {now}; {var} is not read while code sets it)")
            }
            _ => format!("raise the budget with {var} or {CALL} (the default, {now})"),
        }
    }
}

fn invalid(source_name: &'static str, value: &str, also: &str) -> Error {
    idempotency_catalog::Error::InvalidConfig {
        source_name,
        value: idempotency_catalog::shown(value),
        reason: format!("expected a number of bytes from {MIN_MAX_BYTES} (64KiB){also}"),
    }
    .into()
}

/// What the in-memory engine's budget cost: keys and records it dropped, and items it
/// refused.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Spent {
    pub(crate) evicted_keys: u64,
    pub(crate) evicted_runs: u64,
    pub(crate) refused: u64,
    /// How long the latest key forgotten before its TTL had been held.
    pub(crate) remembered: Option<Millis>,
    /// Whether the one warning was emitted.
    pub(crate) warned: bool,
}

/// The warning a trigger owes, taken under the lock and emitted after: how long the
/// first key forgotten before its TTL had been held, and its TTL.
pub(crate) type Forgotten = Option<(Millis, Millis)>;

/// Under [`BudgetPolicy::Refuse`], before anything is claimed: whether `items` of
/// `task` fit the budget beside what `log` and `dedup` hold, counting a claim for each
/// key not held (once per key) and a record for each run they would make. A refusal
/// is counted in `spent`.
pub(crate) fn check_room(
    log: &Log,
    dedup: &Dedup,
    spent: &mut Spent,
    budget: &Budget,
    task: u32,
    items: &[Incoming<'_>],
    now: Millis,
) -> Result<(), Error> {
    let mut new_keys = std::collections::HashSet::new();
    let needed: usize = items
        .iter()
        .map(|item| match item.key.filter(|_| item.ttl > 0) {
            Some(key) if dedup.holds(task, key, now) || !new_keys.insert(key) => 0,
            Some(_) => item_bytes(item, true),
            None => item_bytes(item, false),
        })
        .sum();
    let held = dedup.bytes() + log.bytes();
    if held + needed <= budget.max_bytes {
        return Ok(());
    }
    spent.refused += items.len() as u64;
    crate::meter::engine_refused(items.len());
    Err(Error::EngineFull {
        max_bytes: budget.max_bytes,
        origin: budget.source,
        items: items.len(),
        needed: (held + needed).saturating_sub(budget.max_bytes),
        remedy: format!(
            "{}, or let keys expire (a shorter idempotencyKeyTTL), or BudgetPolicy::Evict to forget the oldest",
            budget.remedy()
        ),
    })
}

/// Drops the oldest keys and records, whichever is older, until what is held fits
/// `max_bytes`; the warning due, if this forgot the first key before its TTL.
#[cold]
pub(crate) fn make_room(
    log: &mut Log,
    dedup: &mut Dedup,
    spent: &mut Spent,
    max_bytes: usize,
    now: Millis,
) -> Forgotten {
    let mut due = None;
    let (mut keys, mut runs) = (0u64, 0u64);
    while dedup.bytes() + log.bytes() > max_bytes {
        match (dedup.oldest(), log.oldest()) {
            // A record no older than the oldest key goes first: its run is done
            // with, where a key forgotten may run twice.
            (Some(key), Some(record)) if record <= key => runs += u64::from(log.pop_oldest()),
            (None, Some(_)) => runs += u64::from(log.pop_oldest()),
            (Some(_), _) => {
                let Some(forgot) = dedup.evict_oldest(now) else { break };
                if forgot.live {
                    keys += 1;
                    spent.remembered = Some(forgot.age);
                    if !spent.warned {
                        spent.warned = true;
                        due = Some((forgot.age, forgot.ttl));
                    }
                }
            }
            (None, None) => break,
        }
    }
    spent.evicted_keys += keys;
    spent.evicted_runs += runs;
    crate::meter::engine_evicted(keys, runs);
    due
}

/// What a claim of `key` costs.
#[inline]
pub(crate) fn claim_bytes(key: &StoredKey) -> usize {
    CLAIM + key_heap(key)
}

/// What the record of `run` costs.
pub(crate) fn record_bytes(run: &Run) -> usize {
    let key = match &run.key {
        RunKey::None => 0,
        RunKey::Options(options) => heap_bytes(options),
        RunKey::Digest(_) => chunk(size_of::<Digest>()),
        RunKey::Raw(raw) => chunk(raw.len()),
    };
    RECORD + key + run.payload.as_ref().map_or(0, Payload::heap_bytes)
}

/// What `item` would cost if it made a run, and claimed its key when `claims`: as
/// [`Incoming::into_run`] keeps it.
pub(crate) fn item_bytes(item: &Incoming<'_>, claims: bool) -> usize {
    let record_key = match (&item.options, item.key) {
        (Some(options), _) => heap_bytes(options),
        (None, Some(KeyRef::Digest(_))) => chunk(size_of::<Digest>()),
        (None, Some(KeyRef::Raw(raw))) => chunk(raw.len()),
        (None, None) => 0,
    };
    let record = RECORD + record_key + item.payload.as_ref().map_or(0, Payload::heap_bytes);
    let claim_key = match item.key {
        Some(KeyRef::Raw(raw)) => chunk(raw.len()),
        _ => 0,
    };
    if claims { record + CLAIM + claim_key } else { record }
}

fn key_heap(key: &StoredKey) -> usize {
    match key {
        StoredKey::Digest(_) => 0,
        StoredKey::Raw(raw) => chunk(raw.len()),
    }
}

/// A duration as people read it: `3h 10m`, `2d 4h`, `5m 12s`, `850ms`, at most two units.
pub(crate) fn human(duration: Duration) -> String {
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut left = ms / 1_000;
    let mut parts = Vec::new();
    for (name, secs) in units {
        if left >= secs || !parts.is_empty() {
            parts.push(format!("{}{name}", left / secs));
            left %= secs;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.retain(|part| !part.starts_with('0'));
    parts.join(" ")
}

/// Emits the one warning of an engine whose budget made it forget a key before its TTL,
/// held for `remembered` of its `ttl`.
pub(crate) fn warn_forgotten(budget: &Budget, remembered: Millis, ttl: Millis, bytes: usize) {
    let (remembered, ttl) = (human(Duration::from_millis(remembered)), human(Duration::from_millis(ttl)));
    // Every field is documented in `docs/telemetry.md`.
    tracing::warn!(
        max_bytes = %show_bytes(budget.max_bytes),
        source = %budget.source,
        bytes,
        remembered = %remembered,
        ttl = %ttl,
        remedy = budget.remedy().as_str(),
        "engine at its byte budget: idempotency keys forgotten before their ttl may run twice; keys are remembered {remembered}, not {ttl}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyed_run_with_a_small_payload_counts_240_bytes() {
        use idempotency_catalog::{KeyOptions, Scope};
        let key = StoredKey::Digest(Digest::from_bytes([1; 32]));
        assert_eq!(claim_bytes(&key), 112);
        let payload = Payload::of_value(&serde_json::json!({ "i": 123 }), &mut Vec::new()).ok();
        let run = Run {
            payload,
            key: RunKey::Options(KeyOptions::new("item-123", Scope::Global)),
            task: 0,
            claim: 0,
            status: super::super::run::RunStatus::Pending,
        };
        // Its log place twice (2 x 64); its key's options and its 9-byte payload inline.
        assert_eq!(record_bytes(&run), 2 * 64);
        assert_eq!(claim_bytes(&key) + record_bytes(&run), 240);
        // The default budget holds 1,118,481 of them (docs/configuration.md).
        assert_eq!(defaults::ENGINE_MAX_BYTES / 240, 1_118_481);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        let s = Duration::from_secs;
        assert_eq!(human(s(3 * 3_600 + 10 * 60 + 5)), "3h 10m");
        assert_eq!(human(s(30 * 86_400)), "30d");
        assert_eq!(human(s(86_400 + 3_600 * 4)), "1d 4h");
        assert_eq!(human(s(3_600 + 5)), "1h");
        assert_eq!(human(s(65)), "1m 5s");
        assert_eq!(human(Duration::from_millis(850)), "850ms");
    }

    #[test]
    fn the_variable_takes_binary_suffixes_and_bad_values_are_named() {
        let env = |value: &'static str| move |name: &str| (name == env::ENGINE_MAX_BYTES).then(|| value.to_owned());
        let budget = Budget::from_env_with(env("32MiB")).unwrap();
        assert_eq!((budget.max_bytes, budget.source), (32 << 20, Source::Env));
        assert_eq!(Budget::from_env_with(|_| None).unwrap(), Budget::default());
        for bad in ["", "32MB", "1024", "-1", "32 MiB"] {
            let err = Budget::from_env_with(env(bad)).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "invalid IDEMPOTENCY_ENGINE_MAX_BYTES {bad:?}: expected a number of bytes from 65536 (64KiB), \
                     optionally with a KiB, MiB or GiB suffix (32MiB)"
                )
            );
        }
        let err = Budget::default().code(100).unwrap_err().to_string();
        assert_eq!(err, r#"invalid Engine::with_max_bytes "100": expected a number of bytes from 65536 (64KiB)"#);
    }

    #[test]
    fn a_remedy_raises_the_budget_from_where_it_was_set() {
        let env = Budget { max_bytes: 32 << 20, source: Source::Env, ..Budget::default() };
        assert_eq!(env.remedy(), "raise IDEMPOTENCY_ENGINE_MAX_BYTES (set to 32MiB)");
        let code = Budget::default().code(1 << 20).unwrap();
        assert!(code.remedy().starts_with("raise Engine::with_max_bytes (set in code to 1MiB;"));
        assert!(Budget::default().remedy().contains("IDEMPOTENCY_ENGINE_MAX_BYTES or Engine::with_max_bytes"));
    }
}
