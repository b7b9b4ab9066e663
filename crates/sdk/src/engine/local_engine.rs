use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idempotency_catalog::{Digest, Scope};
use parking_lot::Mutex;

use super::budget::{self, Budget, BudgetPolicy, EngineStats};
use super::incoming::{Incoming, WireGroups, millis};
use super::key::KeyRef;
use super::log::Log;
use super::memory::{Claim, Dedup, Millis};
use super::mismatch::Mismatches;
use super::run::{Run, RunHandle, RunId, RunRecord, RunStatus, RunView};
use super::shared::{Answer, Holder, NewRun, Partial, SharedStore};
use crate::batch::Batch;
use crate::context::RunContext;
use crate::error::Error;
use crate::key::IdempotencyKey;
use crate::key_input::is_digest_length;
use crate::payload::PayloadPolicy;
use crate::wire::WireItem;

/// What to reset: which key's cached run to forget.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ResetTarget<'a> {
    /// A key made by the SDK.
    Key(&'a IdempotencyKey),
    /// Key material with the scope it was created in, and the run context when the
    /// scope needs it (`run`: the run id; `attempt`: run id and attempt number).
    ///
    /// As in the reference SDK (4.5 and later), one string of 64 characters is first
    /// tried as it is (it may be a digest already), and only when nothing is found is
    /// the key derived from it in `scope` tried.
    Raw {
        /// The key material's parts.
        parts: &'a [&'a str],
        /// The scope it was created with.
        scope: Scope,
        /// The run it was created in.
        run: Option<&'a RunContext>,
    },
    /// A digest, as 32 bytes.
    Digest(Digest),
}

type Clock = Box<dyn Fn() -> Duration + Send + Sync>;

/// The embedded engine: triggers batches in-process, deduplicates by (task, key) within
/// the key's TTL with the reference server's rules, and records every run.
///
/// - A key is expired only once its TTL has passed (`expiresAt < now`): at exactly the
///   TTL the run is still the answer. Wire TTLs follow the server's grammar
///   (`^(\d+)([smhd])$`; `"0s"` expires the key at once); other forms get the default
///   of 30 days.
/// - A run that ends in failure or expires releases its key ([`RunStatus::releases_key`]);
///   see [`set_status`](Self::set_status).
/// - Expired keys are pruned as later triggers come, at a cost proportional to what
///   expired: memory follows the live keys, not the history.
/// - Run records are compact (the task as a number, the key as 32 bytes), can be read
///   in place ([`for_each_run`](Self::for_each_run)) or one at a time
///   ([`run`](Self::run)), and can be capped ([`with_max_runs`](Self::with_max_runs)).
/// - Keys and records held in this process are bounded in bytes
///   ([`with_max_bytes`](Self::with_max_bytes), `IDEMPOTENCY_ENGINE_MAX_BYTES` through
///   [`from_env`](Self::from_env), 256 MiB by default): at the budget the oldest go
///   first, a key forgotten before its TTL is counted ([`stats`](Self::stats)) and
///   warned about once with the dedup window kept, or under [`BudgetPolicy::Refuse`]
///   the trigger is refused.
///
/// With feature `redis`, `LocalEngine::on_redis` puts keys and run records on a
/// Redis shared by every worker of a fleet.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{ItemOptions, LocalEngine, RunStatus, Scope, Sdk};
///
/// let sdk = Sdk::from_env()?;
/// let engine = LocalEngine::new();
/// let key = sdk.create_key("order-7", Scope::Global)?;
/// let mut batch = sdk.batch("charge", 1);
/// batch.item(None, ItemOptions::new().key(&key));
/// let batch = batch.build()?;
///
/// let first = engine.trigger(&batch)?;
/// let again = engine.trigger(&batch)?;
/// assert!(!first[0].cached && again[0].cached && first[0].id == again[0].id);
/// assert_eq!(engine.run(first[0].id)?.unwrap().idempotency_key.as_deref(), Some("order-7"));
///
/// // A failed run releases its key: the next trigger makes a new run.
/// engine.set_status(first[0].id, RunStatus::Failed)?;
/// assert!(!engine.trigger(&batch)?[0].cached);
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
pub struct LocalEngine {
    state: Mutex<State>,
    clock: Clock,
    /// Where keys are claimed and runs recorded when they are shared with other
    /// processes; `None`: in `state.dedup`, in this process.
    shared: Option<Box<dyn SharedStore>>,
    /// Whether run records on the shared store keep their payload.
    share_payloads: bool,
    payload_policy: PayloadPolicy,
    payload_mismatches: AtomicU64,
    /// The in-memory engine's byte budget (keys and run records held here).
    budget: Budget,
}

#[derive(Default)]
struct State {
    log: Log,
    /// The keys, when they are held in this process.
    dedup: Dedup,
    /// What the budget cost so far.
    spent: Spent,
}

/// What the in-memory engine's budget cost: keys and records it dropped, and items it
/// refused.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    evicted_keys: u64,
    evicted_runs: u64,
    refused: u64,
    /// How long the latest key forgotten before its TTL had been held.
    remembered: Option<Millis>,
    /// Whether the one warning was emitted.
    warned: bool,
}

/// The warning a trigger owes, taken under the lock and emitted after: the first key
/// forgotten before its TTL, how long it had been held, and its TTL.
type Forgotten = Option<(Millis, Millis)>;

impl LocalEngine {
    /// An engine on the system clock.
    pub fn new() -> Self {
        Self::with_clock(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
    }

    /// An engine on `clock`, the time since some fixed origin: lets tests move time.
    pub fn with_clock(clock: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        LocalEngine {
            state: Mutex::new(State::default()),
            clock: Box::new(clock),
            shared: None,
            share_payloads: false,
            payload_policy: PayloadPolicy::default(),
            payload_mismatches: AtomicU64::new(0),
            budget: Budget::default(),
        }
    }

    /// An engine on the system clock whose byte budget is read from
    /// [`ENV_ENGINE_MAX_BYTES`](crate::ENV_ENGINE_MAX_BYTES) when it is set (a number
    /// of bytes, optionally with a `KiB`, `MiB` or `GiB` suffix, from 64 KiB), else
    /// [`DEFAULT_ENGINE_MAX_BYTES`](crate::DEFAULT_ENGINE_MAX_BYTES), and whose payload
    /// policy is read from [`ENV_PAYLOAD_POLICY`](crate::ENV_PAYLOAD_POLICY) as
    /// [`PayloadPolicy::from_env`] reads it. [`with_max_bytes`](Self::with_max_bytes)
    /// and [`with_payload_policy`](Self::with_payload_policy) win over them.
    ///
    /// # Errors
    ///
    /// [`Error::Catalog`] with an `InvalidConfig` naming the variable and its value
    /// when it is not a budget; [`Error::InvalidPayloadPolicy`] naming the other.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::{LocalEngine, catalog::Source};
    ///
    /// let env = |name: &str| (name == "IDEMPOTENCY_ENGINE_MAX_BYTES").then(|| "32MiB".to_owned());
    /// let stats = LocalEngine::from_env_with(env)?.stats();
    /// assert_eq!((stats.max_bytes, stats.max_bytes_source), (32 << 20, Source::Env));
    /// let bad = |_: &str| Some("32MB".to_owned());
    /// let err = LocalEngine::from_env_with(bad).unwrap_err().to_string();
    /// assert!(err.starts_with(r#"invalid IDEMPOTENCY_ENGINE_MAX_BYTES "32MB": expected a number of bytes"#));
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn from_env() -> Result<Self, Error> {
        Self::from_env_with(|name| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned()))
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let budget = Budget::from_env_with(&lookup)?;
        let payload_policy = PayloadPolicy::from_env_with(&lookup)?;
        Ok(LocalEngine { budget, payload_policy, ..Self::new() })
    }

    /// The same engine holding at most `max_bytes` of keys and run records in memory
    /// (from 64 KiB), whatever [`ENV_ENGINE_MAX_BYTES`](crate::ENV_ENGINE_MAX_BYTES)
    /// says. At the budget the oldest keys and records go first
    /// ([`BudgetPolicy::Evict`], the default) or new triggers are refused
    /// ([`BudgetPolicy::Refuse`]). Default:
    /// [`DEFAULT_ENGINE_MAX_BYTES`](crate::DEFAULT_ENGINE_MAX_BYTES) (256 MiB). Does not
    /// apply on a shared store, where keys live in Redis.
    ///
    /// # Errors
    ///
    /// [`Error::Catalog`] with an `InvalidConfig` naming this call and the value when
    /// it is below 64 KiB (a unit mistake, not a budget).
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::{IdempotencyKey, ItemOptions, LocalEngine, Scope, Sdk};
    ///
    /// let engine = LocalEngine::new().with_max_bytes(64 << 10)?;
    /// let sdk = Sdk::from_env()?;
    /// let mut batch = sdk.batch("child-task", 1_000);
    /// for i in 0..1_000 {
    ///     let key = IdempotencyKey::derive(["item", &i.to_string()], Scope::Global, None);
    ///     batch.item(None, ItemOptions::new().key(key));
    /// }
    /// engine.trigger_owned(batch.build()?)?;
    /// let stats = engine.stats();
    /// assert!(stats.bytes <= 64 << 10 && stats.evicted_keys > 0, "{stats:?}");
    /// assert!(LocalEngine::new().with_max_bytes(1_000).is_err());
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Result<Self, Error> {
        self.budget = self.budget.code(max_bytes)?;
        Ok(self)
    }

    /// The same engine doing `policy` at its byte budget: [`BudgetPolicy::Evict`] by
    /// default.
    #[must_use]
    pub fn with_budget_policy(mut self, policy: BudgetPolicy) -> Self {
        self.budget.policy = policy;
        self
    }

    /// What the engine holds against its byte budget, and what the budget cost.
    pub fn stats(&self) -> EngineStats {
        let state = self.state.lock();
        EngineStats {
            keys: state.dedup.len(),
            runs_retained: state.log.retained(),
            bytes: state.dedup.bytes() + state.log.bytes(),
            max_bytes: self.budget.max_bytes,
            max_bytes_source: self.budget.source,
            evicted_keys: state.spent.evicted_keys,
            evicted_runs: state.spent.evicted_runs,
            refused: state.spent.refused,
            remembered_ms: state.spent.remembered,
        }
    }

    /// An engine whose keys and runs live on a shared store.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // without it, only tests have one
    pub(crate) fn on_shared(shared: Box<dyn SharedStore>) -> Self {
        LocalEngine { shared: Some(shared), ..Self::new() }
    }

    /// An engine whose keys are claimed, and runs recorded, on Redis (feature
    /// `redis`), shared with every engine on the same server and prefix: a key
    /// triggered by two processes makes one run, and every process reads every run.
    ///
    /// - **A claim and its run are one step**: the run's record is the value of its
    ///   key's claim, written by one `SET … NX GET`, so no key is ever held by a run
    ///   that was never recorded, whatever fails. A cached answer carries the record
    ///   of the run that holds the key.
    /// - **Runs are readable from every process**: [`run`](Self::run),
    ///   [`read_runs`](Self::read_runs), [`set_status`](Self::set_status) and
    ///   [`reset_key`](Self::reset_key) work for any run of the fleet. A record lives
    ///   as long as its key is held and at least
    ///   [`Redis::run_ttl`](idempotency_catalog::Redis::run_ttl) (a day by default),
    ///   also once its run released the key or the key was reset, and for a run
    ///   without a key or with a TTL of `0s`.
    ///   Records hold the task, the key, its options, the status and when the run was
    ///   created; payloads only with [`with_payloads_on_redis`](Self::with_payloads_on_redis).
    /// - **Ids never name two runs**, even after Redis loses its data: an id is where
    ///   the record lives (a hash of task and key) and a number drawn from a random
    ///   base this engine picked at creation, never from state on the server.
    /// - [`for_each_run`](Self::for_each_run), [`run_count`](Self::run_count) and
    ///   [`with_max_runs`](Self::with_max_runs) concern the runs this engine created,
    ///   as it recorded them (another process's status changes show in
    ///   [`run`](Self::run), not there).
    ///
    /// Expiry follows Redis's clock, the same for every process, not this engine's
    /// [`with_clock`](Self::with_clock); [`key_count`](Self::key_count) counts only
    /// keys held in memory (0 here). When Redis fails, the call fails with
    /// [`Error::Catalog`] naming the URL and the Redis key at fault, after recording
    /// the runs whose creation Redis confirmed; the connection is made again at the
    /// next call.
    ///
    /// # Errors
    ///
    /// The Redis error, naming the URL, when the server cannot be reached or refuses
    /// the engine's scripts (an ACL user without `EVAL`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_sdk::LocalEngine;
    /// use idempotency_sdk::catalog::RedisBuilder;
    ///
    /// let redis = RedisBuilder::new("redis://127.0.0.1:6379").build()?;
    /// let engine = LocalEngine::on_redis(&redis)?;
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    #[cfg(feature = "redis")]
    pub fn on_redis(redis: &idempotency_catalog::Redis) -> Result<Self, Error> {
        Ok(Self::on_shared(Box::new(super::redis::RedisStore::connect(redis)?)))
    }

    /// The same engine keeping each run's payload in its record on Redis too, for
    /// every process to read (feature `redis`). Off by default: a payload is the
    /// caller's data, possibly large, and the other promises do not need it.
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn with_payloads_on_redis(mut self) -> Self {
        self.share_payloads = true;
        self
    }

    /// The same engine keeping at most `max_runs` run records, the newest: older
    /// records are dropped (their keys still deduplicate until they expire). By
    /// default every record is kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// use idempotency_sdk::LocalEngine;
    ///
    /// let engine = LocalEngine::new().with_max_runs(NonZeroUsize::new(10_000).unwrap());
    /// # let _ = engine;
    /// ```
    #[must_use]
    pub fn with_max_runs(self, max_runs: NonZeroUsize) -> Self {
        self.state.lock().log.max_runs = Some(max_runs);
        self
    }

    /// The same engine answering items whose key is held by a run made with another
    /// payload (or that repeat within their trigger with another one) under `policy`:
    /// [`PayloadPolicy::Warn`] by default. Payloads are compared by fingerprint, in
    /// memory and on Redis alike (see [`PayloadPolicy`]).
    #[must_use]
    pub fn with_payload_policy(mut self, policy: PayloadPolicy) -> Self {
        self.payload_policy = policy;
        self
    }

    /// Items answered (or, under [`PayloadPolicy::Fail`], refused) because their key
    /// was held by a run made with another payload, or repeated within their trigger
    /// with another one; under every policy.
    pub fn payload_mismatches(&self) -> u64 {
        self.payload_mismatches.load(Ordering::Relaxed)
    }

    /// Counts a trigger's mismatches, found as it claimed, and warns about them
    /// under the policy. Call without the engine's lock: the counter is user code.
    fn settle(&self, task: &str, mismatches: &Mismatches) {
        self.count_mismatches(mismatches);
        mismatches.warn(task, self.payload_policy);
    }

    fn count_mismatches(&self, mismatches: &Mismatches) {
        if mismatches.count > 0 {
            self.payload_mismatches.fetch_add(mismatches.count as u64, Ordering::Relaxed);
            crate::meter::payload_mismatches(mismatches.count);
        }
    }

    /// Under [`PayloadPolicy::Fail`], checked before claiming: counts `mismatches` and
    /// returns the refusal when there are any (no warning: the caller gets the error).
    /// Call without the engine's lock.
    fn refuse(&self, task: &str, mismatches: &Mismatches) -> Result<(), Error> {
        self.count_mismatches(mismatches);
        mismatches.refusal(task).map_or(Ok(()), Err)
    }

    /// What [`PayloadPolicy::Fail`] checks before a shared store claims `items`: their
    /// keys' holders, read from the store.
    fn check_shared(&self, shared: &dyn SharedStore, task: &str, items: &[Incoming<'_>]) -> Result<Mismatches, Error> {
        let keys = Mismatches::keyed(items);
        let mut held = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(shared.chunk().max(1)) {
            held.extend(shared.peek(task, chunk)?);
        }
        Ok(Mismatches::before_claiming(items, &held))
    }

    /// The same, in memory: under the engine's lock, which the caller holds.
    fn check_in_memory(state: &State, task: &str, items: &[Incoming<'_>], now: Millis) -> Mismatches {
        let Some(task) = state.log.tasks.find(task) else { return Mismatches::default() };
        let held: Vec<Holder> = Mismatches::keyed(items)
            .into_iter()
            .map(|key| state.dedup.peek(task, key, now).map(|(id, fp)| (id, Some(fp))))
            .collect();
        Mismatches::before_claiming(items, &held)
    }

    /// Under [`PayloadPolicy::Fail`], wire items of several tasks are checked together,
    /// before any group is claimed (each group is checked again as it is claimed).
    fn refuse_groups(&self, groups: &[(&str, Vec<Incoming<'_>>)]) -> Result<(), Error> {
        let mut all = Mismatches::default();
        let mut first_task = "";
        let now = millis((self.clock)());
        for (task, items) in groups {
            let found = match &self.shared {
                Some(shared) => self.check_shared(shared.as_ref(), task, items)?,
                None => Self::check_in_memory(&self.state.lock(), task, items, now),
            };
            Self::gather(&mut all, &mut first_task, task, found);
        }
        self.refuse(first_task, &all)
    }

    /// Adds one group's mismatches to a trigger's, remembering the task of the first.
    fn gather<'t>(all: &mut Mismatches, first_task: &mut &'t str, task: &'t str, found: Mismatches) {
        if found.count > 0 && all.count == 0 {
            *first_task = task;
        }
        all.add(found);
    }

    /// Triggers every item of `batch`, returning one handle per item, in order. The
    /// payloads are copied into the run records; [`trigger_owned`](Self::trigger_owned)
    /// moves them instead.
    ///
    /// # Errors
    ///
    /// On a shared store (`on_redis`, feature `redis`), the Redis error naming the
    /// URL. Items are sent 10,000 at a time; the runs whose creation was confirmed
    /// before the failure are recorded, and every run that was created, confirmed or
    /// not, answers later triggers as cached, readable from every process. In memory,
    /// none: a built batch's keys are always valid. Under [`PayloadPolicy::Fail`],
    /// [`Error::PayloadMismatch`] when an item's key is held by a run made with
    /// another payload, or repeats in the batch with another one: then nothing was
    /// claimed or created (on Redis, checked before claiming: a process claiming the
    /// same key with another payload between that check and this claim is counted
    /// and warned about, not refused).
    pub fn trigger(&self, batch: &Batch) -> Result<Vec<RunHandle>, Error> {
        let items = batch.entries().map(|(key, ttl, payload, fingerprint)| {
            Incoming::from_batch(key, ttl, payload.map(ToOwned::to_owned), fingerprint)
        });
        self.run_items(batch.task(), batch.len(), items)
    }

    /// Triggers every item of `batch`, moving the payloads into the run records.
    ///
    /// # Errors
    ///
    /// As [`trigger`](Self::trigger).
    pub fn trigger_owned(&self, batch: Batch) -> Result<Vec<RunHandle>, Error> {
        let (task, len) = (batch.task().to_owned(), batch.len());
        let items = batch
            .into_entries()
            .map(|(key, ttl, payload, fingerprint)| Incoming::from_batch(key.as_ref(), ttl, payload, fingerprint));
        self.run_items(&task, len, items)
    }

    /// Triggers wire items, as received from elsewhere (see [`WireItem::from_json`]).
    /// A TTL outside the server's grammar gets the default of 30 days, as on the
    /// server, and one warning per call says how many.
    ///
    /// # Errors
    ///
    /// [`Error::KeyTooLong`] when an item fails validation; nothing is triggered then.
    /// On a shared store, as [`trigger`](Self::trigger).
    pub fn trigger_items(&self, items: &[WireItem]) -> Result<Vec<RunHandle>, Error> {
        let mut groups = WireGroups::new(items)?;
        let mut all = Vec::new();
        while let Some(group) = groups.next_group() {
            all.push(group);
        }
        if self.payload_policy == PayloadPolicy::Fail
            && let Err(err) = self.refuse_groups(&all)
        {
            groups.warn();
            return Err(err);
        }
        let mut handles = Vec::with_capacity(items.len());
        let mut result = Ok(());
        for (task, group) in all {
            match self.run_items(task, group.len(), group.into_iter()) {
                Ok(group) => handles.extend(group),
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        groups.warn();
        result.map(|()| handles)
    }

    /// The span every trigger runs in (named and shaped as `docs/telemetry.md` lists).
    fn trigger_span(&self, task: &str, items: usize) -> tracing::Span {
        let policy = self.payload_policy.as_str();
        match &self.shared {
            // The only shared store is Redis (the tests' fake aside).
            Some(_) => {
                tracing::info_span!("idempotency.trigger", task, items, store = "redis", db.system = "redis", policy)
            }
            None => tracing::info_span!("idempotency.trigger", task, items, store = "memory", policy),
        }
    }

    fn run_items<'a>(
        &self,
        task: &str,
        len: usize,
        items: impl Iterator<Item = Incoming<'a>>,
    ) -> Result<Vec<RunHandle>, Error> {
        let _span = self.trigger_span(task, len).entered();
        let handles = match &self.shared {
            Some(shared) if self.payload_policy == PayloadPolicy::Fail => {
                let items: Vec<Incoming<'a>> = items.collect();
                self.refuse(task, &self.check_shared(shared.as_ref(), task, &items)?)?;
                self.run_shared(shared.as_ref(), task, len, items.into_iter())?
            }
            Some(shared) => self.run_shared(shared.as_ref(), task, len, items)?,
            None => self.run_in_memory(task, len, items)?,
        };
        crate::meter::answered(&handles);
        Ok(handles)
    }

    fn run_in_memory<'a>(
        &self,
        task_name: &str,
        len: usize,
        items: impl Iterator<Item = Incoming<'a>>,
    ) -> Result<Vec<RunHandle>, Error> {
        let now = millis((self.clock)());
        let mut state = self.state.lock();
        state.dedup.prune(now);
        let task = state.log.tasks.id(task_name);
        let checks = self.payload_policy == PayloadPolicy::Fail || self.budget.policy == BudgetPolicy::Refuse;
        let (handles, mismatches, forgotten) = if checks {
            // Checked under the same lock as the claims: nothing can come between.
            let items: Vec<Incoming<'a>> = items.collect();
            if self.payload_policy == PayloadPolicy::Fail {
                let found = Self::check_in_memory(&state, task_name, &items, now);
                if found.count > 0 {
                    drop(state);
                    return self.refuse(task_name, &found).map(|()| Vec::new());
                }
            }
            if self.budget.policy == BudgetPolicy::Refuse {
                self.check_room(&mut state, task, &items, now)?;
            }
            self.claim_in_memory(&mut state, task, now, len, items.into_iter())
        } else {
            self.claim_in_memory(&mut state, task, now, len, items)
        };
        let bytes = state.dedup.bytes() + state.log.bytes();
        crate::meter::engine_bytes(bytes, self.budget.max_bytes);
        drop(state);
        if let Some((remembered, ttl)) = forgotten {
            budget::warn_forgotten(&self.budget, Duration::from_millis(remembered), Duration::from_millis(ttl), bytes);
        }
        self.settle(task_name, &mismatches);
        Ok(handles)
    }

    /// Under [`BudgetPolicy::Refuse`], before anything is claimed: whether `items` fit
    /// the budget, counting a claim for each key not held (once per key) and a record
    /// for each run they would make.
    fn check_room(&self, state: &mut State, task: u32, items: &[Incoming<'_>], now: Millis) -> Result<(), Error> {
        let mut new_keys = std::collections::HashSet::new();
        let needed: usize = items
            .iter()
            .map(|item| match item.key.filter(|_| item.ttl > 0) {
                Some(key) if state.dedup.holds(task, key, now) || !new_keys.insert(key) => 0,
                Some(_) => budget::item_bytes(item, true),
                None => budget::item_bytes(item, false),
            })
            .sum();
        let held = state.dedup.bytes() + state.log.bytes();
        if held + needed <= self.budget.max_bytes {
            return Ok(());
        }
        state.spent.refused += items.len() as u64;
        crate::meter::engine_refused(items.len());
        Err(Error::EngineFull {
            max_bytes: self.budget.max_bytes,
            origin: self.budget.source,
            items: items.len(),
            needed: (held + needed).saturating_sub(self.budget.max_bytes),
            remedy: format!(
                "{}, or let keys expire (a shorter idempotencyKeyTTL), or BudgetPolicy::Evict to forget the oldest",
                self.budget.remedy()
            ),
        })
    }

    /// The in-memory trigger's loop, under the engine's lock: claims each item's key
    /// or answers with the run holding it, and keeps the budget.
    fn claim_in_memory<'a>(
        &self,
        state: &mut State,
        task: u32,
        now: Millis,
        len: usize,
        items: impl Iterator<Item = Incoming<'a>>,
    ) -> (Vec<RunHandle>, Mismatches, Forgotten) {
        let State { log, dedup, spent } = state;
        dedup.reserve(len);
        log.reserve(len);
        let mut handles = Vec::with_capacity(len);
        let mut mismatches = Mismatches::default();
        let mut forgotten = None;
        for item in items {
            let id = RunId::new(log.next());
            if let Some(key) = item.key
                && let Claim::Cached(cached, fingerprint) = dedup.claim(task, key, now, item.ttl, id, item.fingerprint)
            {
                mismatches.check(&item, cached, Some(fingerprint));
                handles.push(RunHandle { id: cached, cached: true });
                continue;
            }
            log.push(run(task, item));
            handles.push(RunHandle { id, cached: false });
            if dedup.bytes() + log.bytes() > self.budget.max_bytes {
                forgotten = forgotten.or(Self::make_room(log, dedup, spent, self.budget.max_bytes, now));
            }
        }
        log.trim();
        (handles, mismatches, forgotten)
    }

    /// Drops the oldest keys and records, whichever is older, until what is held fits
    /// `max_bytes`; the warning due, if this forgot the first key before its TTL.
    #[cold]
    fn make_room(log: &mut Log, dedup: &mut Dedup, spent: &mut Spent, max_bytes: usize, now: Millis) -> Forgotten {
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

    /// Triggers on a shared store, a chunk at a time, without holding the engine's
    /// lock over the store's calls. Each chunk takes one run number per item first;
    /// the numbers of items answered from cache stay unused.
    fn run_shared<'a>(
        &self,
        shared: &dyn SharedStore,
        task: &str,
        len: usize,
        mut items: impl Iterator<Item = Incoming<'a>>,
    ) -> Result<Vec<RunHandle>, Error> {
        let mut handles = Vec::with_capacity(len);
        let mut chunk: Vec<Incoming<'a>> = Vec::with_capacity(len.min(shared.chunk()));
        let mut mismatches = Mismatches::default();
        let result = loop {
            chunk.extend(items.by_ref().take(shared.chunk()));
            if chunk.is_empty() {
                break Ok(handles);
            }
            let (first, runs) = self.numbered(shared, task, &chunk);
            let created = shared.create(task, &runs, millis((self.clock)()));
            let ids: Vec<RunId> = runs.iter().map(|run| run.id).collect();
            drop(runs);
            let recorded = self.record(shared, task, first, &ids, &mut chunk, created, &mut handles, &mut mismatches);
            if let Err(err) = recorded {
                break Err(err);
            }
        };
        self.settle(task, &mismatches);
        result
    }

    /// Takes a number per item of `chunk`, and the runs to create for them.
    fn numbered<'c>(&self, shared: &dyn SharedStore, task: &str, chunk: &'c [Incoming<'_>]) -> (u64, Vec<NewRun<'c>>) {
        let first = self.state.lock().log.take(chunk.len());
        let runs = (first..)
            .zip(chunk)
            .map(|(number, item)| NewRun {
                id: shared.id(number, task, item.key),
                key: item.key,
                ttl: item.ttl,
                options: item.options.as_ref(),
                payload: item.payload.as_deref().filter(|_| self.share_payloads),
                fingerprint: item.fingerprint,
            })
            .collect();
        (first, runs)
    }

    /// Records what the store answered for `chunk` (numbered from `first`, with
    /// `ids`), emptying it, and adds the handles; the store's error, if it failed.
    #[allow(clippy::too_many_arguments)] // one step of two loops, sync and async
    fn record(
        &self,
        shared: &dyn SharedStore,
        task: &str,
        first: u64,
        ids: &[RunId],
        chunk: &mut Vec<Incoming<'_>>,
        created: super::shared::Created,
        handles: &mut Vec<RunHandle>,
        mismatches: &mut Mismatches,
    ) -> Result<(), Error> {
        let (answers, error) = match created {
            Ok(answers) => (answers.into_iter().map(Some).collect(), None),
            Err(Partial { answers, error }) => (answers, Some(error)),
        };
        let mut state = self.state.lock();
        let log = &mut state.log;
        let task_id = log.tasks.id(task);
        for (((number, &id), item), answer) in (first..).zip(ids).zip(chunk.drain(..)).zip(answers) {
            match answer {
                Some(Answer::Created) => {
                    log.put(number, id.tag(), run(task_id, item));
                    handles.push(RunHandle { id, cached: false });
                }
                Some(Answer::Cached(held, fingerprint)) => {
                    mismatches.check(&item, held, fingerprint);
                    // A run of this engine whose answer was lost in an earlier call: it
                    // exists, so it is cached, and it belongs in the log (with this
                    // item's payload, the same key's).
                    if let Some(earlier) = shared.number(held)
                        && log.is_gap(earlier)
                        && shared.id(earlier, task, item.key) == held
                        // This item's payload, if it is the one the run was made with.
                        && fingerprint.is_none_or(|fingerprint| fingerprint == item.fingerprint)
                    {
                        log.put(earlier, held.tag(), run(task_id, item));
                    }
                    handles.push(RunHandle { id: held, cached: true });
                }
                None => {}
            }
        }
        log.trim();
        drop(state);
        error.map_or(Ok(()), Err)
    }

    /// As [`run_shared`](Self::run_shared), from async code: the store's calls are
    /// awaited, and the task yields between chunks.
    #[cfg(feature = "tokio")]
    async fn run_shared_async<'a>(
        &self,
        shared: &dyn SharedStore,
        task: &str,
        len: usize,
        mut items: impl Iterator<Item = Incoming<'a>> + Send,
    ) -> Result<Vec<RunHandle>, Error> {
        let mut handles = Vec::with_capacity(len);
        let mut chunk: Vec<Incoming<'a>> = Vec::with_capacity(len.min(shared.async_chunk()));
        let mut mismatches = Mismatches::default();
        let result = loop {
            chunk.extend(items.by_ref().take(shared.async_chunk()));
            if chunk.is_empty() {
                break Ok(handles);
            }
            let (first, runs) = self.numbered(shared, task, &chunk);
            let created = shared.create_async(task, &runs, millis((self.clock)())).await;
            let ids: Vec<RunId> = runs.iter().map(|run| run.id).collect();
            drop(runs);
            let recorded = self.record(shared, task, first, &ids, &mut chunk, created, &mut handles, &mut mismatches);
            if let Err(err) = recorded {
                break Err(err);
            }
            tokio::task::yield_now().await;
        };
        self.settle(task, &mismatches);
        result
    }

    /// How many keys the engine holds for deduplication. Expired keys are dropped as
    /// later triggers come, so this follows the keys still live, not the history. On a
    /// shared store the keys are in Redis, and this is 0.
    pub fn key_count(&self) -> usize {
        self.state.lock().dedup.len()
    }

    /// How many run records the engine keeps (all of them, unless
    /// [`with_max_runs`](Self::with_max_runs) caps them).
    pub fn runs_retained(&self) -> usize {
        self.state.lock().log.retained()
    }

    /// How many runs the engine has created.
    pub fn run_count(&self) -> u64 {
        self.state.lock().log.created()
    }

    /// The run `id`, copied out, if its record is retained. On a shared store, read
    /// from the store: any run of the fleet, as it is now.
    ///
    /// # Errors
    ///
    /// On a shared store, the Redis error naming the URL, or naming the Redis key
    /// when its value is not a record this crate wrote. In memory, none.
    pub fn run(&self, id: RunId) -> Result<Option<RunRecord>, Error> {
        Ok(self.read_runs(&[id])?.pop().flatten())
    }

    /// The runs `ids`, in order, copied out; `None` for a run that has no retained
    /// record. On a shared store, one round trip for all of them.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::{ItemOptions, LocalEngine, RunId, Scope, Sdk};
    ///
    /// let sdk = Sdk::from_env()?;
    /// let mut batch = sdk.batch("child-task", 2);
    /// for i in 0..2 {
    ///     batch.item(None, ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global)));
    /// }
    /// let engine = LocalEngine::new();
    /// let handles = engine.trigger_owned(batch.build()?)?;
    /// let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    /// let runs = engine.read_runs(&ids)?;
    /// assert_eq!(runs[1].as_ref().and_then(|r| r.idempotency_key.as_deref()), Some("item-1"));
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn read_runs(&self, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error> {
        if let Some(shared) = &self.shared {
            return shared.read(ids);
        }
        let state = self.state.lock();
        Ok(ids.iter().map(|&id| state.view(id).map(|view| view.to_record())).collect())
    }

    /// Calls `f` with every retained run, oldest first, in place under the engine's
    /// lock: reading a million runs copies nothing. `f` must not call back into the
    /// engine.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::{ItemOptions, LocalEngine, Scope, Sdk};
    ///
    /// let sdk = Sdk::from_env()?;
    /// let mut batch = sdk.batch("child-task", 3);
    /// for i in 0..3 {
    ///     batch.item(None, ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global)));
    /// }
    /// let engine = LocalEngine::new();
    /// engine.trigger_owned(batch.build()?)?;
    /// let mut with_key = 0;
    /// engine.for_each_run(|run| with_key += usize::from(run.idempotency_key_scope().is_some()));
    /// assert_eq!(with_key, 3);
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn for_each_run(&self, mut f: impl FnMut(RunView<'_>)) {
        let state = self.state.lock();
        for (number, tag, run) in state.log.iter() {
            let id = self.id_of(number, tag);
            f(RunView { id, task: state.log.tasks.name(run.task), run });
        }
    }

    /// The id of this engine's run `number`, whose record was kept with `tag`.
    fn id_of(&self, number: u64, tag: u128) -> RunId {
        match &self.shared {
            Some(shared) => RunId::fleet(tag, shared.nonce(number)),
            None => RunId::new(number),
        }
    }

    /// Every retained run, copied out, oldest first. Convenient for tests and small
    /// engines; for many runs, [`for_each_run`](Self::for_each_run) copies nothing.
    pub fn runs(&self) -> Vec<RunRecord> {
        let mut records = Vec::new();
        self.for_each_run(|run| records.push(run.to_record()));
        records
    }

    /// Sets the status of run `id`. A status that ends a run in failure, or expiry,
    /// releases its key as the reference server does: the next trigger with that key
    /// makes a new run. Any status may follow any other.
    ///
    /// On a shared store the change and the release are one step on the store, for
    /// any run of the fleet, and this engine's own record changes only once the store
    /// has taken it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRun`] when the engine has no record of `id` (never created, or
    /// dropped by [`with_max_runs`](Self::with_max_runs); on a shared store, no
    /// process has a record of it). On a shared store, the Redis error naming the
    /// URL. Nothing has changed here then; on the store, nothing has changed when Redis
    /// refused the change (`NOPERM`, a foreign value), and when the answer was lost (a
    /// timeout) it may have been made: calling again is safe, and brings this engine's
    /// record in line.
    pub fn set_status(&self, id: RunId, status: RunStatus) -> Result<(), Error> {
        if let Some(shared) = &self.shared {
            let known = shared.set_status(id, status)?;
            return self.status_set(shared.as_ref(), id, status, known);
        }
        let mut state = self.state.lock();
        let State { log, dedup, .. } = &mut *state;
        let run = log.get_mut(id.nonce()).filter(|_| !id.is_fleet()).ok_or(Error::UnknownRun { id })?;
        run.status = status;
        if let Some(key) = run.key.as_ref().filter(|_| status.releases_key()) {
            dedup.release(run.task, key.as_key_ref(), id);
        }
        Ok(())
    }

    /// After the store took a status change: this engine's own record follows it.
    fn status_set(&self, shared: &dyn SharedStore, id: RunId, status: RunStatus, known: bool) -> Result<(), Error> {
        if !known {
            return Err(Error::UnknownRun { id });
        }
        let mut state = self.state.lock();
        if let Some(number) = shared.number(id).filter(|&n| self.id_of(n, state.log.tag(n)) == id)
            && let Some(run) = state.log.get_mut(number)
        {
            run.status = status;
        }
        Ok(())
    }

    /// Forgets the cached run of `task` for a key, whatever run holds it, so that the
    /// next trigger with it creates a new run. Returns whether there was one to forget.
    /// The run's record stays.
    ///
    /// It frees the key from whatever holds it **now**: a worker that meant to reset the
    /// run it saw, after that run's key expired and another worker's trigger made a
    /// newer run, frees the newer one, and a third trigger runs again. To reset only the
    /// run you mean, use [`reset_key_held_by`](Self::reset_key_held_by).
    ///
    /// # Errors
    ///
    /// [`Error::ScopeNeedsRun`] when a raw key's scope needs a run context that was not
    /// given (unless the key is one 64-character string, which is then tried as it is).
    /// On a shared store, the Redis error naming the URL; after a timeout the key may
    /// have been reset, and calling again is safe.
    pub fn reset_key(&self, task: &str, target: ResetTarget<'_>) -> Result<bool, Error> {
        self.reset(task, &target, None)
    }

    /// Forgets the cached run of `task` for a key only while run `run` holds it, in one
    /// step (on Redis a script that checks the holder and frees the key, in memory under
    /// the engine's lock); whether it did. A key held by another run, such as a newer
    /// one made after `run`'s TTL passed, stays held, and `false` says so.
    ///
    /// # Errors
    ///
    /// As [`reset_key`](Self::reset_key).
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::{ItemOptions, LocalEngine, ResetTarget, RunId, Scope, Sdk};
    ///
    /// let sdk = Sdk::from_env()?;
    /// let engine = LocalEngine::new();
    /// let key = sdk.create_key("order-7", Scope::Global)?;
    /// let mut batch = sdk.batch("charge", 1);
    /// batch.item(None, ItemOptions::new().key(&key));
    /// let run = engine.trigger(&batch.build()?)?[0].id;
    ///
    /// // Another run than the holder: nothing is freed.
    /// let stale: RunId = "run_7".parse()?;
    /// assert!(!engine.reset_key_held_by("charge", ResetTarget::Key(&key), stale)?);
    /// assert!(engine.reset_key_held_by("charge", ResetTarget::Key(&key), run)?);
    /// assert!(engine.holder("charge", ResetTarget::Key(&key))?.is_none());
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn reset_key_held_by(&self, task: &str, target: ResetTarget<'_>, run: RunId) -> Result<bool, Error> {
        self.reset(task, &target, Some(run))
    }

    /// A reset of `target`, of whatever holds it or only of `held_by`.
    fn reset(&self, task: &str, target: &ResetTarget<'_>, held_by: Option<RunId>) -> Result<bool, Error> {
        let keys = reset_keys(target)?;
        if let Some(shared) = &self.shared {
            for key in keys {
                if shared.reset(task, key, held_by)? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        let mut state = self.state.lock();
        let Some(task) = state.log.tasks.find(task) else { return Ok(false) };
        Ok(keys.into_iter().any(|key| match held_by {
            None => state.dedup.reset(task, key),
            // An id of a shared store's is never a run of this engine's.
            Some(run) => !run.is_fleet() && state.dedup.release(task, key, run),
        }))
    }

    /// The run of `task` that holds a key now, copied out, or `None` when the key is
    /// free (never claimed, expired, released or reset); changes nothing. The key is
    /// named as for [`reset_key`](Self::reset_key), and a 64-character raw key is tried
    /// as it is first, in the same way. For operators and tools: which run answers the
    /// next trigger of that key.
    ///
    /// On a shared store, the holder is read from the store: any run of the fleet, in
    /// two round trips (the key's claim, then the run's record). In memory, the live
    /// entry of this engine, as a trigger would see it now.
    ///
    /// # Errors
    ///
    /// As [`reset_key`](Self::reset_key): [`Error::ScopeNeedsRun`] for a raw key whose
    /// scope needs a run context that was not given; on a shared store, the Redis error
    /// naming the URL, or naming the Redis key when its value is not a record this
    /// crate wrote.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::{ItemOptions, LocalEngine, ResetTarget, RunStatus, Scope, Sdk};
    ///
    /// let sdk = Sdk::from_env()?;
    /// let engine = LocalEngine::new();
    /// let key = sdk.create_key("order-7", Scope::Global)?;
    /// let mut batch = sdk.batch("charge", 1);
    /// batch.item(None, ItemOptions::new().key(&key));
    /// let handles = engine.trigger(&batch.build()?)?;
    ///
    /// let holder = engine.holder("charge", ResetTarget::Key(&key))?.unwrap();
    /// assert_eq!((holder.id, holder.status), (handles[0].id, RunStatus::Pending));
    /// assert!(engine.holder("another-task", ResetTarget::Key(&key))?.is_none());
    ///
    /// engine.reset_key("charge", ResetTarget::Key(&key))?;
    /// assert!(engine.holder("charge", ResetTarget::Key(&key))?.is_none());
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn holder(&self, task: &str, target: ResetTarget<'_>) -> Result<Option<RunRecord>, Error> {
        let keys = reset_keys(&target)?;
        if let Some(shared) = &self.shared {
            for (id, _) in shared.peek(task, &keys)?.into_iter().flatten() {
                if let Some(record) = shared.read(&[id])?.pop().flatten() {
                    return Ok(Some(record));
                }
            }
            return Ok(None);
        }
        let now = millis((self.clock)());
        let state = self.state.lock();
        let Some(task) = state.log.tasks.find(task) else { return Ok(None) };
        let held = keys.into_iter().find_map(|key| state.dedup.peek(task, key, now));
        Ok(held.and_then(|(id, _)| state.view(id)).map(|view| view.to_record()))
    }
}

/// The keys a reset of `target` tries, in order. As in the reference SDK (4.5 and
/// later), a 64-character string may be a digest already: tried as it is first.
fn reset_keys<'t>(target: &ResetTarget<'t>) -> Result<Vec<KeyRef<'t>>, Error> {
    let verbatim = match *target {
        ResetTarget::Raw { parts: [one], .. } if is_digest_length(one) => Some(*one),
        _ => None,
    };
    let derived = match *target {
        ResetTarget::Key(key) => Some(key.digest()),
        ResetTarget::Digest(digest) => Some(digest),
        ResetTarget::Raw { scope, run: None, .. } if scope != Scope::Global => match verbatim {
            Some(_) => None,
            None => return Err(Error::ScopeNeedsRun { scope }),
        },
        ResetTarget::Raw { parts, scope, run } => Some(IdempotencyKey::derive(parts, scope, run).digest()),
    };
    Ok(verbatim.map(KeyRef::from_wire).into_iter().chain(derived.map(KeyRef::Digest)).collect())
}

/// The async forms (feature `tokio`): every call that may touch the network, awaited
/// on the redis crate's multiplexed connection instead of blocking a thread. In memory
/// they do what the sync calls do.
#[cfg(feature = "tokio")]
impl LocalEngine {
    /// As [`on_redis`](Self::on_redis), from async code.
    ///
    /// # Errors
    ///
    /// As [`on_redis`](Self::on_redis).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_sdk::catalog::{CatalogBuilder, RedisBuilder};
    /// use idempotency_sdk::{ItemOptions, LocalEngine, Scope, Sdk};
    ///
    /// # async fn handler() -> Result<(), idempotency_sdk::Error> {
    /// let redis = RedisBuilder::from_env().build_async().await?;
    /// let catalog = CatalogBuilder::from_env().redis_async(redis.clone()).build()?;
    /// let engine = LocalEngine::on_redis_async(&redis).await?;
    /// let sdk = Sdk::new(catalog);
    /// let mut batch = sdk.batch("child-task", 1);
    /// batch.item(None, ItemOptions::new().key(sdk.create_key("order-7", Scope::Global)));
    /// let handles = engine.trigger_owned_async(batch.build()?).await?;
    /// let run = engine.run_async(handles[0].id).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn on_redis_async(redis: &idempotency_catalog::Redis) -> Result<Self, Error> {
        Ok(Self::on_shared(Box::new(super::redis::RedisStore::connect_async(redis).await?)))
    }

    /// As [`trigger`](Self::trigger), from async code.
    ///
    /// # Errors
    ///
    /// As [`trigger`](Self::trigger).
    pub async fn trigger_async(&self, batch: &Batch) -> Result<Vec<RunHandle>, Error> {
        let items = batch.entries().map(|(key, ttl, payload, fingerprint)| {
            Incoming::from_batch(key, ttl, payload.map(ToOwned::to_owned), fingerprint)
        });
        self.run_items_async(batch.task(), batch.len(), items).await
    }

    /// As [`trigger_owned`](Self::trigger_owned), from async code.
    ///
    /// # Errors
    ///
    /// As [`trigger`](Self::trigger).
    pub async fn trigger_owned_async(&self, batch: Batch) -> Result<Vec<RunHandle>, Error> {
        let (task, len) = (batch.task().to_owned(), batch.len());
        let items = batch
            .into_entries()
            .map(|(key, ttl, payload, fingerprint)| Incoming::from_batch(key.as_ref(), ttl, payload, fingerprint));
        self.run_items_async(&task, len, items).await
    }

    /// As [`trigger_items`](Self::trigger_items), from async code.
    ///
    /// # Errors
    ///
    /// As [`trigger_items`](Self::trigger_items).
    pub async fn trigger_items_async(&self, items: &[WireItem]) -> Result<Vec<RunHandle>, Error> {
        let mut groups = WireGroups::new(items)?;
        let mut all = Vec::new();
        while let Some(group) = groups.next_group() {
            all.push(group);
        }
        if self.payload_policy == PayloadPolicy::Fail
            && let Err(err) = self.refuse_groups_async(&all).await
        {
            groups.warn();
            return Err(err);
        }
        let mut handles = Vec::with_capacity(items.len());
        let mut result = Ok(());
        for (task, group) in all {
            match self.run_items_async(task, group.len(), group.into_iter()).await {
                Ok(group) => handles.extend(group),
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        groups.warn();
        result.map(|()| handles)
    }

    /// As [`refuse_groups`](Self::refuse_groups), reading a shared store from async code.
    async fn refuse_groups_async(&self, groups: &[(&str, Vec<Incoming<'_>>)]) -> Result<(), Error> {
        let mut all = Mismatches::default();
        let mut first_task = "";
        let now = millis((self.clock)());
        for (task, items) in groups {
            let found = match &self.shared {
                Some(shared) => self.check_shared_async(shared.as_ref(), task, items).await?,
                None => Self::check_in_memory(&self.state.lock(), task, items, now),
            };
            Self::gather(&mut all, &mut first_task, task, found);
        }
        self.refuse(first_task, &all)
    }

    /// As [`check_shared`](Self::check_shared), from async code.
    async fn check_shared_async(
        &self,
        shared: &dyn SharedStore,
        task: &str,
        items: &[Incoming<'_>],
    ) -> Result<Mismatches, Error> {
        let keys = Mismatches::keyed(items);
        let mut held = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(shared.async_chunk().max(1)) {
            held.extend(shared.peek_async(task, chunk).await?);
        }
        Ok(Mismatches::before_claiming(items, &held))
    }

    async fn run_items_async<'a>(
        &self,
        task: &str,
        len: usize,
        items: impl Iterator<Item = Incoming<'a>> + Send,
    ) -> Result<Vec<RunHandle>, Error> {
        use tracing::Instrument as _;
        self.run_items_in_span(task, len, items).instrument(self.trigger_span(task, len)).await
    }

    async fn run_items_in_span<'a>(
        &self,
        task: &str,
        len: usize,
        items: impl Iterator<Item = Incoming<'a>> + Send,
    ) -> Result<Vec<RunHandle>, Error> {
        let handles = match &self.shared {
            Some(shared) if self.payload_policy == PayloadPolicy::Fail => {
                let items: Vec<Incoming<'a>> = items.collect();
                self.refuse(task, &self.check_shared_async(shared.as_ref(), task, &items).await?)?;
                self.run_shared_async(shared.as_ref(), task, len, items.into_iter()).await?
            }
            Some(shared) => self.run_shared_async(shared.as_ref(), task, len, items).await?,
            None => self.run_in_memory(task, len, items)?,
        };
        crate::meter::answered(&handles);
        Ok(handles)
    }

    /// As [`run`](Self::run), from async code.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn run_async(&self, id: RunId) -> Result<Option<RunRecord>, Error> {
        Ok(self.read_runs_async(&[id]).await?.pop().flatten())
    }

    /// As [`read_runs`](Self::read_runs), from async code.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn read_runs_async(&self, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error> {
        match &self.shared {
            Some(shared) => shared.read_async(ids).await,
            None => self.read_runs(ids),
        }
    }

    /// As [`set_status`](Self::set_status), from async code.
    ///
    /// # Errors
    ///
    /// As [`set_status`](Self::set_status).
    pub async fn set_status_async(&self, id: RunId, status: RunStatus) -> Result<(), Error> {
        match &self.shared {
            Some(shared) => {
                let known = shared.set_status_async(id, status).await?;
                self.status_set(shared.as_ref(), id, status, known)
            }
            None => self.set_status(id, status),
        }
    }

    /// As [`reset_key`](Self::reset_key), from async code.
    ///
    /// # Errors
    ///
    /// As [`reset_key`](Self::reset_key).
    pub async fn reset_key_async(&self, task: &str, target: ResetTarget<'_>) -> Result<bool, Error> {
        self.reset_async(task, &target, None).await
    }

    /// As [`reset_key_held_by`](Self::reset_key_held_by), from async code.
    ///
    /// # Errors
    ///
    /// As [`reset_key`](Self::reset_key).
    pub async fn reset_key_held_by_async(
        &self,
        task: &str,
        target: ResetTarget<'_>,
        run: RunId,
    ) -> Result<bool, Error> {
        self.reset_async(task, &target, Some(run)).await
    }

    async fn reset_async(&self, task: &str, target: &ResetTarget<'_>, held_by: Option<RunId>) -> Result<bool, Error> {
        let Some(shared) = &self.shared else { return self.reset(task, target, held_by) };
        for key in reset_keys(target)? {
            if shared.reset_async(task, key, held_by).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl State {
    /// Run `id` of this in-memory engine, in place.
    fn view(&self, id: RunId) -> Option<RunView<'_>> {
        let run = self.log.get(id.nonce()).filter(|_| !id.is_fleet())?;
        Some(RunView { id, task: self.log.tasks.name(run.task), run })
    }
}

fn run(task: u32, item: Incoming<'_>) -> Run {
    Run {
        task,
        status: RunStatus::Pending,
        key: item.key.map(KeyRef::to_stored),
        options: item.options,
        payload: item.payload,
    }
}

impl Default for LocalEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("LocalEngine")
            .field("runs", &state.log.created())
            .field("retained", &state.log.retained())
            .field("keys", &state.dedup.len())
            .field("bytes", &(state.dedup.bytes() + state.log.bytes()))
            .field("budget", &self.budget)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use idempotency_catalog::UnboundedCatalog;

    use super::*;
    use crate::batch::ItemOptions;
    use crate::engine::shared::fake::{FakeStore, Faults};
    use crate::sdk::Sdk;

    /// An engine on a fake shared store sending `chunk` items a call, and the store.
    fn on_fake(chunk: usize) -> (LocalEngine, Arc<FakeStore>) {
        let store = Arc::new(FakeStore::new(chunk));
        (LocalEngine::on_shared(Box::new(Arc::clone(&store))), store)
    }

    fn batch(keys: std::ops::Range<usize>) -> Batch {
        let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
        let mut batch = sdk.batch("task", keys.len());
        for i in keys {
            batch.item(None, ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global)));
        }
        batch.build().unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn an_item_failing_part_way_records_what_was_created_and_stops_the_trigger() {
        let (engine, store) = on_fake(4);
        store.faults.lock().item = Some(2);
        let err = engine.trigger(&batch(0..10)).unwrap_err().to_string();
        assert!(err.contains("injected"), "{err}");
        // The first call's other three items were created and recorded; nothing more sent.
        assert_eq!((engine.run_count(), *store.calls.lock()), (3, 1));
        *store.faults.lock() = Faults::default();
        let handles = engine.trigger(&batch(0..10)).unwrap();
        let cached: Vec<bool> = handles.iter().map(|h| h.cached).collect();
        assert_eq!(cached, [true, true, false, true, false, false, false, false, false, false]);
        assert_eq!(engine.run_count(), 10);
        let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
        assert!(engine.read_runs(&ids).unwrap().iter().all(Option::is_some));
    }

    #[test]
    fn runs_whose_answers_were_lost_are_cached_next_time_and_counted_once() {
        let (engine, store) = on_fake(100);
        store.faults.lock().lose_answers = true;
        assert!(engine.trigger(&batch(0..5)).is_err());
        assert_eq!(engine.run_count(), 0, "no answer, no record here");
        store.faults.lock().lose_answers = false;
        let handles = engine.trigger(&batch(0..6)).unwrap();
        assert!(handles[..5].iter().all(|h| h.cached) && !handles[5].cached);
        // The five are this engine's runs: back in its log, in their places.
        assert_eq!(engine.run_count(), 6);
        let mut seen = Vec::new();
        engine.for_each_run(|run| seen.push(run.id()));
        assert_eq!(seen, handles.iter().map(|h| h.id).collect::<Vec<_>>());
        engine.trigger(&batch(0..6)).unwrap();
        assert_eq!(engine.run_count(), 6, "counted once");
    }

    #[test]
    fn a_status_change_the_store_refuses_changes_nothing_here() {
        let (engine, store) = on_fake(100);
        let run = engine.trigger(&batch(0..1)).unwrap()[0];
        store.faults.lock().status = true;
        assert!(engine.set_status(run.id, RunStatus::Failed).is_err());
        assert_eq!(engine.runs()[0].status, RunStatus::Pending);
        assert!(engine.trigger(&batch(0..1)).unwrap()[0].cached, "the key is still held");
        store.faults.lock().status = false;
        engine.set_status(run.id, RunStatus::Failed).unwrap();
        assert_eq!(engine.runs()[0].status, RunStatus::Failed);
        assert_eq!(engine.run(run.id).unwrap().map(|r| r.status), Some(RunStatus::Failed));
        assert!(!engine.trigger(&batch(0..1)).unwrap()[0].cached);
        let unknown = RunId::fleet(7, 7);
        assert!(
            matches!(engine.set_status(unknown, RunStatus::Failed), Err(Error::UnknownRun { id }) if id == unknown)
        );
    }

    #[test]
    fn a_shared_engine_numbers_its_runs_apart_from_the_items_it_was_answered_for() {
        let (engine, _) = on_fake(3);
        let first = engine.trigger(&batch(0..4)).unwrap();
        let again = engine.trigger(&batch(2..7)).unwrap();
        assert_eq!(again[0].id, first[2].id);
        assert_eq!(engine.run_count(), 7);
        // Each id read back through the store and through the log agrees.
        let mut from_log = Vec::new();
        engine.for_each_run(|run| from_log.push((run.id(), run.idempotency_key().map(|k| k.into_owned()))));
        let ids: Vec<RunId> = from_log.iter().map(|(id, _)| *id).collect();
        let from_store: Vec<_> =
            engine.read_runs(&ids).unwrap().into_iter().map(|r| r.unwrap().idempotency_key).collect();
        assert_eq!(from_log.into_iter().map(|(_, k)| k).collect::<Vec<_>>(), from_store);
    }

    /// A batch of `payloads.len()` items of task `pay`, item `i` keyed `order-<key(i)>`
    /// with payload `{"amount": payloads[i]}`.
    fn orders(keys: &[usize], payloads: &[u32]) -> Batch {
        let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
        let mut batch = sdk.batch("pay", keys.len());
        for (key, amount) in keys.iter().zip(payloads) {
            let key = sdk.create_key(["order", &key.to_string()], Scope::Global).unwrap();
            batch.item(serde_json::json!({ "amount": amount }), ItemOptions::new().key(key));
        }
        batch.build().unwrap_or_else(|err| panic!("{err}"))
    }

    /// Two engines on one store, as two processes of a fleet (in memory: one engine,
    /// twice, as a process triggers twice).
    fn pairs(policy: PayloadPolicy) -> Vec<(&'static str, LocalEngine, Option<LocalEngine>)> {
        let store = Arc::new(FakeStore::new(2));
        let fleet =
            |store: &Arc<FakeStore>| LocalEngine::on_shared(Box::new(Arc::clone(store))).with_payload_policy(policy);
        vec![
            ("memory", LocalEngine::new().with_payload_policy(policy), None),
            ("fake store", fleet(&store), Some(fleet(&store))),
        ]
    }

    #[test]
    fn the_same_key_with_another_payload_is_answered_and_counted_under_ignore_and_warn() {
        for policy in [PayloadPolicy::Ignore, PayloadPolicy::Warn] {
            for (name, first, second) in pairs(policy) {
                let first_runs = first.trigger(&orders(&[0, 1, 2], &[10, 20, 30])).unwrap();
                let second = second.as_ref().unwrap_or(&first);
                let again = second.trigger(&orders(&[0, 1, 2], &[10, 99, 30])).unwrap();
                assert!(again.iter().all(|h| h.cached), "{name}: the reference's answer");
                assert_eq!(
                    again.iter().map(|h| h.id).collect::<Vec<_>>(),
                    first_runs.iter().map(|h| h.id).collect::<Vec<_>>()
                );
                assert_eq!(second.payload_mismatches(), 1, "{name} {policy}");
            }
        }
    }

    #[test]
    fn under_fail_a_mismatch_refuses_the_whole_trigger_before_anything_is_claimed() {
        for (name, first, second) in pairs(PayloadPolicy::Fail) {
            let held = first.trigger(&orders(&[0, 1], &[10, 20])).unwrap();
            let second = second.as_ref().unwrap_or(&first);
            let runs_before = second.run_count();
            // Key 1 differs; keys 5 and 6 are new and must not be claimed.
            let err = second.trigger(&orders(&[5, 0, 1, 6], &[1, 10, 99, 2])).unwrap_err();
            match &err {
                Error::PayloadMismatch { task, key, run, items } => {
                    assert_eq!(
                        (task.as_str(), key.as_str(), *run, *items),
                        ("pay", r#""order-1" (global)"#, Some(held[1].id), 1),
                        "{name}"
                    );
                }
                other => panic!("{name}: {other}"),
            }
            assert_eq!(second.run_count(), runs_before, "{name}: no run created");
            assert_eq!(second.payload_mismatches(), 1);
            // Nothing was claimed: the new keys make runs now, the held ones answer.
            let fresh = second.trigger(&orders(&[5, 6, 0], &[1, 2, 10])).unwrap();
            assert_eq!(fresh.iter().map(|h| h.cached).collect::<Vec<_>>(), [false, false, true], "{name}");
        }
    }

    #[test]
    fn a_key_repeated_in_one_batch_with_another_payload_is_reported_and_follows_the_policy() {
        let batch = orders(&[3, 4, 3], &[1, 2, 7]);
        assert_eq!((batch.report().repeated, batch.report().payload_conflicts), (1, 1));
        assert_eq!(batch.report().first_payload_conflict, Some(2));
        let same = orders(&[3, 3], &[1, 1]);
        assert_eq!((same.report().repeated, same.report().payload_conflicts), (1, 0));
        for (name, engine, _) in pairs(PayloadPolicy::Warn) {
            let handles = engine.trigger(&batch).unwrap();
            assert!(handles[2].cached && handles[2].id == handles[0].id, "{name}: one run, the rest cached");
            assert_eq!(engine.payload_mismatches(), 1, "{name}");
        }
        for (name, engine, _) in pairs(PayloadPolicy::Fail) {
            let err = engine.trigger(&batch).unwrap_err();
            assert!(matches!(&err, Error::PayloadMismatch { run: None, items: 1, .. }), "{name}: {err}");
            assert!(
                err.to_string().contains(r#""order-3" (global) repeats in this trigger with another payload"#),
                "{err}"
            );
            assert_eq!(engine.run_count(), 0, "{name}");
        }
    }

    #[test]
    fn a_reset_finds_the_run_of_a_key_whose_ttl_passed_unpruned() {
        let now = Arc::new(std::sync::atomic::AtomicU64::new(1_000_000));
        let clock = Arc::clone(&now);
        let engine = LocalEngine::with_clock(move || Duration::from_millis(clock.load(Ordering::Relaxed)));
        let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
        let key = sdk.create_key("k", Scope::Global).unwrap();
        let mut batch = sdk.batch("task", 1);
        batch.item(None, ItemOptions::new().key(&key).ttl("1s".parse().unwrap_or_default()));
        engine.trigger(&batch.build().unwrap_or_else(|err| panic!("{err}"))).unwrap();
        now.fetch_add(5_000, Ordering::Relaxed);
        // Expired, and no trigger since to prune it: the server clears it all the same.
        assert!(engine.reset_key("task", ResetTarget::Key(&key)).unwrap());
        assert!(!engine.reset_key("task", ResetTarget::Key(&key)).unwrap());
    }

    /// A wire item of `task`, keyed `key`, with `payload` and `ttl`.
    fn wire(task: &str, key: &str, payload: &str, ttl: &str) -> WireItem {
        let line = format!(
            r#"{{"index":0,"task":"{task}","payload":{payload},"options":{{"idempotencyKey":"{key}","idempotencyKeyTTL":"{ttl}"}}}}"#
        );
        WireItem::from_json(&line).unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn under_fail_wire_items_of_several_tasks_are_checked_before_any_is_claimed() {
        for (name, engine, _) in pairs(PayloadPolicy::Fail) {
            engine.trigger_items(&[wire("b", "held", "1", "1h")]).unwrap();
            // Task a's item is new; task b's differs from the run holding its key.
            let err = engine.trigger_items(&[wire("a", "new", "1", "1h"), wire("b", "held", "2", "1h")]).unwrap_err();
            assert!(matches!(&err, Error::PayloadMismatch { task, .. } if task == "b"), "{name}: {err}");
            assert!(
                !engine.trigger_items(&[wire("a", "new", "1", "1h")]).unwrap()[0].cached,
                "{name}: task a was not claimed"
            );
        }
    }

    #[test]
    fn under_fail_an_item_with_a_ttl_of_zero_is_checked_too() {
        // A `0s` item claims nothing, but a run that holds its key still answers it.
        let engine = LocalEngine::new().with_payload_policy(PayloadPolicy::Fail);
        engine.trigger_items(&[wire("t", "k", "1", "1h")]).unwrap();
        let err = engine.trigger_items(&[wire("t", "k", "2", "0s")]).unwrap_err();
        assert!(matches!(err, Error::PayloadMismatch { items: 1, .. }), "{err}");
        // Within one trigger: a held-for-an-hour item answers a later `0s` one.
        let err = engine.trigger_items(&[wire("t", "j", "1", "1h"), wire("t", "j", "2", "0s")]).unwrap_err();
        assert!(matches!(err, Error::PayloadMismatch { run: None, .. }), "{err}");
        assert_eq!(engine.payload_mismatches(), 2);
        // The count does not depend on the policy: a key held with payload 1, then
        // [2, 1] under Warn and under Fail both count one.
        let warn = LocalEngine::new();
        warn.trigger_items(&[wire("t", "k", "1", "1h")]).unwrap();
        warn.trigger_items(&[wire("t", "k", "2", "1h"), wire("t", "k", "1", "1h")]).unwrap();
        let fail = LocalEngine::new().with_payload_policy(PayloadPolicy::Fail);
        fail.trigger_items(&[wire("t", "k", "1", "1h")]).unwrap();
        assert!(fail.trigger_items(&[wire("t", "k", "2", "1h"), wire("t", "k", "1", "1h")]).is_err());
        assert_eq!((warn.payload_mismatches(), fail.payload_mismatches()), (1, 1));
    }

    /// The key of item `i` of [`batch`], as the engine's callers name it.
    fn item_key(i: usize) -> IdempotencyKey {
        let sdk = Sdk::new(Arc::new(UnboundedCatalog::new()));
        sdk.create_key(["item", &i.to_string()], Scope::Global).unwrap()
    }

    #[test]
    fn holder_in_memory_is_the_live_run_until_released_reset_or_expired() {
        let now = Arc::new(AtomicU64::new(1_000));
        let clock = Arc::clone(&now);
        let engine = LocalEngine::with_clock(move || Duration::from_millis(clock.load(Ordering::Relaxed)));
        let key = item_key(0);
        assert!(engine.holder("task", ResetTarget::Key(&key)).unwrap().is_none(), "unknown task");
        let run = engine.trigger(&batch(0..2)).unwrap()[0];
        let held = engine.holder("task", ResetTarget::Key(&key)).unwrap().unwrap();
        assert_eq!(
            (held.id, held.status, held.idempotency_key.as_deref()),
            (run.id, RunStatus::Pending, Some("item-0"))
        );
        let by_digest = engine.holder("task", ResetTarget::Digest(key.digest())).unwrap();
        assert_eq!(by_digest.map(|r| r.id), Some(run.id));
        let raw = engine.holder("task", ResetTarget::Raw { parts: &["item-0"], scope: Scope::Global, run: None });
        assert_eq!(raw.unwrap().map(|r| r.id), Some(run.id));
        assert!(engine.holder("other", ResetTarget::Key(&key)).unwrap().is_none());
        assert!(matches!(
            engine.holder("task", ResetTarget::Raw { parts: &["item-0"], scope: Scope::Run, run: None }),
            Err(Error::ScopeNeedsRun { .. })
        ));
        // Executing keeps the key; a failure releases it.
        engine.set_status(run.id, RunStatus::Executing).unwrap();
        assert_eq!(
            engine.holder("task", ResetTarget::Key(&key)).unwrap().map(|r| r.status),
            Some(RunStatus::Executing)
        );
        engine.set_status(run.id, RunStatus::Failed).unwrap();
        assert!(engine.holder("task", ResetTarget::Key(&key)).unwrap().is_none());
        // Reset forgets the key; expiry (30 days by default) frees it too.
        assert!(engine.holder("task", ResetTarget::Key(&item_key(1))).unwrap().is_some());
        now.fetch_add(31 * 24 * 3_600_000, Ordering::Relaxed);
        assert!(engine.holder("task", ResetTarget::Key(&item_key(1))).unwrap().is_none(), "expired");
    }

    #[test]
    fn holder_on_a_shared_store_reads_the_claim_and_its_record() {
        let (engine, store) = on_fake(100);
        let key = item_key(0);
        assert!(engine.holder("task", ResetTarget::Key(&key)).unwrap().is_none());
        let run = engine.trigger(&batch(0..1)).unwrap()[0];
        let held = engine.holder("task", ResetTarget::Key(&key)).unwrap().unwrap();
        assert_eq!((held.id, held.task.as_str()), (run.id, "task"));
        // Another engine on the same store sees the same holder, read-only.
        let other = LocalEngine::on_shared(Box::new(Arc::clone(&store)));
        assert_eq!(other.holder("task", ResetTarget::Digest(key.digest())).unwrap().map(|r| r.id), Some(run.id));
        assert_eq!(other.run_count(), 0);
        assert!(engine.reset_key("task", ResetTarget::Key(&key)).unwrap());
        assert!(engine.holder("task", ResetTarget::Key(&key)).unwrap().is_none());
        assert!(engine.run(run.id).unwrap().is_some(), "the record stays");
    }
}
