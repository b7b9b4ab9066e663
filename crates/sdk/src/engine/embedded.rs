//! The engine: the rules every trigger, read, status change and reset is held to,
//! over a [`Store`](super::store::Store) it never asks the kind of, and its sync face
//! (`future.rs` holds the async one).

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use idempotency_catalog::{Digest, Scope};
use parking_lot::Mutex;

use super::budget::{Budget, BudgetPolicy, EngineStats};
use super::clock::{self, Clock, Millis, millis};
use super::incoming::Incoming;
use super::key::KeyRef;
use super::log::Log;
use super::memory::MemoryStore;
use super::mismatch::Mismatches;
use super::run::{RunRecord, RunStatus, RunView, Triggered};
use super::store::DynStore;
use super::trigger::{Items, Trigger, WireTrigger};
use crate::batch::Batch;
use crate::context::RunContext;
use crate::error::Error;
use crate::key::IdempotencyKey;
use crate::key_input::is_digest_length;
use crate::payload::PayloadPolicy;
use crate::run_id::RunId;
use crate::wire::WireItem;

/// Which key of a task a call means: the key whose run [`Engine::reset_key`] and
/// [`Engine::reset_key_held_by`] forget, or whose holder [`Engine::holder`] reads.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{Engine, ItemOptions, KeyTarget, Scope, Sdk};
///
/// let sdk = Sdk::from_env()?;
/// let engine = Engine::new();
/// let key = sdk.create_key("order-7", Scope::Global)?;
/// let mut batch = sdk.batch("charge", 1);
/// batch.item(None, ItemOptions::new().key(&key));
/// let run = engine.trigger(&batch.build()?)?[0].id;
///
/// // The same key, named three ways.
/// let raw = KeyTarget::Raw { parts: &["order-7"], scope: Scope::Global, run: None };
/// for target in [KeyTarget::Key(&key), KeyTarget::Digest(key.digest()), raw] {
///     assert_eq!(engine.holder("charge", target)?.map(|r| r.id), Some(run));
/// }
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum KeyTarget<'a> {
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
/// With feature `redis`, `Engine::on_redis` puts keys and run records on a
/// Redis shared by every worker of a fleet.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{Engine, ItemOptions, RunStatus, Scope, Sdk};
///
/// let sdk = Sdk::from_env()?;
/// let engine = Engine::new();
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
pub struct Engine {
    /// This engine's runs, as it recorded them (on the memory store, their records),
    /// behind the lock every store takes as its consistency needs.
    pub(super) log: Mutex<Log>,
    /// Where keys are claimed and runs recorded: in this process, or on Redis.
    pub(super) store: Box<DynStore>,
    /// What the trigger span calls the store, and the database behind it.
    store_name: (&'static str, Option<&'static str>),
    clock: Clock,
    /// Whether run records on a store across the network keep their payload.
    share_payloads: bool,
    pub(super) payload_policy: PayloadPolicy,
    payload_mismatches: AtomicU64,
    /// The in-memory engine's byte budget (keys and run records held here).
    budget: Budget,
}

impl Engine {
    /// An engine on the system clock.
    pub fn new() -> Self {
        Self::on(Box::new(MemoryStore::default()), clock::system())
    }

    /// An engine on `clock`, the time since some fixed origin: lets tests move time.
    pub fn with_clock(clock: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        Self::on(Box::new(MemoryStore::default()), Box::new(clock))
    }

    /// An engine on `store` and `clock`, with the default settings.
    pub(super) fn on(store: Box<DynStore>, clock: Clock) -> Self {
        Engine {
            log: Mutex::new(Log::default()),
            store_name: store.name(),
            store,
            clock,
            share_payloads: false,
            payload_policy: PayloadPolicy::default(),
            payload_mismatches: AtomicU64::new(0),
            budget: Budget::default(),
        }
    }

    /// Items a trigger sends to Redis in one pipeline from sync code (feature `redis`):
    /// a pipeline must come back whole within the command timeout, so a batch of any
    /// size goes as many pipelines of this size, never one that grows with it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "redis")] {
    /// use idempotency_sdk::Engine;
    ///
    /// // A 100,000-item batch costs ten round trips.
    /// assert_eq!(100_000usize.div_ceil(Engine::REDIS_TRIGGER_PIPELINE), 10);
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    pub const REDIS_TRIGGER_PIPELINE: usize = super::redis::CHUNK;

    /// Runs (two `GET`s each) or keys (one `GET` each, the payload check) read in one
    /// pipeline from sync code (feature `redis`).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "redis")] {
    /// use idempotency_sdk::Engine;
    ///
    /// assert_eq!(Engine::REDIS_READ_PIPELINE * 2, Engine::REDIS_TRIGGER_PIPELINE);
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    pub const REDIS_READ_PIPELINE: usize = super::redis::READ_CHUNK;

    /// Items sent, runs read or keys checked in one pipeline from async code (feature
    /// `tokio`), with a yield between two pipelines.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use idempotency_sdk::Engine;
    ///
    /// assert!(Engine::REDIS_ASYNC_PIPELINE < Engine::REDIS_READ_PIPELINE);
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub const REDIS_ASYNC_PIPELINE: usize = super::redis::ASYNC_CHUNK;

    /// An engine on the system clock whose byte budget is read from
    /// [`env::ENGINE_MAX_BYTES`](crate::env::ENGINE_MAX_BYTES) when it is set (a number
    /// of bytes, optionally with a `KiB`, `MiB` or `GiB` suffix, from 64 KiB), else
    /// [`defaults::ENGINE_MAX_BYTES`](crate::defaults::ENGINE_MAX_BYTES), and whose payload
    /// policy is read from [`env::PAYLOAD_POLICY`](crate::env::PAYLOAD_POLICY) as
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
    /// use idempotency_sdk::{Engine, catalog::Source};
    ///
    /// let env = |name: &str| (name == "IDEMPOTENCY_ENGINE_MAX_BYTES").then(|| "32MiB".to_owned());
    /// let stats = Engine::from_env_with(env)?.stats();
    /// assert_eq!((stats.max_bytes, stats.max_bytes_source), (32 << 20, Source::Env));
    /// let bad = |_: &str| Some("32MB".to_owned());
    /// let err = Engine::from_env_with(bad).unwrap_err().to_string();
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
        Ok(Engine { budget, payload_policy, ..Self::new() })
    }

    /// The same engine holding at most `max_bytes` of keys and run records in memory
    /// (from 64 KiB), whatever [`env::ENGINE_MAX_BYTES`](crate::env::ENGINE_MAX_BYTES)
    /// says. At the budget the oldest keys and records go first
    /// ([`BudgetPolicy::Evict`], the default) or new triggers are refused
    /// ([`BudgetPolicy::Refuse`]). Default:
    /// [`defaults::ENGINE_MAX_BYTES`](crate::defaults::ENGINE_MAX_BYTES) (256 MiB). Does not
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
    /// use idempotency_sdk::{Engine, IdempotencyKey, ItemOptions, Scope, Sdk};
    ///
    /// let engine = Engine::new().with_max_bytes(64 << 10)?;
    /// let sdk = Sdk::from_env()?;
    /// let mut batch = sdk.batch("child-task", 1_000);
    /// for i in 0..1_000 {
    ///     let key = IdempotencyKey::derive(["item", &i.to_string()], Scope::Global, None);
    ///     batch.item(None, ItemOptions::new().key(key));
    /// }
    /// engine.trigger_owned(batch.build()?)?;
    /// let stats = engine.stats();
    /// assert!(stats.bytes <= 64 << 10 && stats.evicted_keys > 0, "{stats:?}");
    /// assert!(Engine::new().with_max_bytes(1_000).is_err());
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
        let log = self.log.lock();
        let held = self.store.held();
        EngineStats {
            keys: held.keys,
            runs_retained: log.retained(),
            bytes: held.bytes + log.bytes(),
            max_bytes: self.budget.max_bytes,
            max_bytes_source: self.budget.source,
            evicted_keys: held.spent.evicted_keys,
            evicted_runs: held.spent.evicted_runs,
            refused: held.spent.refused,
            remembered_ms: held.spent.remembered,
        }
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
    /// use idempotency_sdk::Engine;
    /// use idempotency_sdk::catalog::RedisBuilder;
    ///
    /// let redis = RedisBuilder::new("redis://127.0.0.1:6379").build()?;
    /// let engine = Engine::on_redis(&redis)?;
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    #[cfg(feature = "redis")]
    pub fn on_redis(redis: &idempotency_catalog::Redis) -> Result<Self, Error> {
        Ok(Self::on(Box::new(super::redis::RedisStore::connect(redis)?), clock::system()))
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
    /// use idempotency_sdk::Engine;
    ///
    /// let engine = Engine::new().with_max_runs(NonZeroUsize::new(10_000).unwrap());
    /// # let _ = engine;
    /// ```
    #[must_use]
    pub fn with_max_runs(self, max_runs: NonZeroUsize) -> Self {
        self.log.lock().max_runs = Some(max_runs);
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
    pub fn trigger(&self, batch: &Batch) -> Result<Vec<Triggered>, Error> {
        self.run_items(batch.task(), batch.len(), Items::Streamed(Box::new(batch.entries().map(Incoming::from_entry))))
    }

    /// Triggers every item of `batch`, moving the payloads into the run records.
    ///
    /// # Errors
    ///
    /// As [`trigger`](Self::trigger).
    pub fn trigger_owned(&self, batch: Batch) -> Result<Vec<Triggered>, Error> {
        let (task, len) = (batch.task().to_owned(), batch.len());
        self.run_items(&task, len, Items::Streamed(Box::new(batch.into_entries().map(Incoming::from_owned))))
    }

    /// Triggers wire items, as received from elsewhere (see [`WireItem::from_json`]).
    /// A TTL outside the server's grammar gets the default of 30 days, as on the
    /// server, and one warning per call says how many.
    ///
    /// # Errors
    ///
    /// [`Error::KeyTooLong`] when an item fails validation; nothing is triggered then.
    /// On a shared store, as [`trigger`](Self::trigger).
    pub fn trigger_items(&self, items: &[WireItem]) -> Result<Vec<Triggered>, Error> {
        let mut wire = WireTrigger::new(items, self.payload_policy)?;
        while let Some((task, keys)) = wire.to_check() {
            wire.checked(self.store.peek(&self.log, task, &keys, self.now()));
        }
        while let Some((task, group)) = wire.next_group() {
            wire.answered(self.run_items(task, group.len(), Items::Held(group.into_iter())));
        }
        self.counted(wire.finish())
    }

    /// How many keys the engine holds for deduplication. Expired keys are dropped as
    /// later triggers come, so this follows the keys still live, not the history. On a
    /// shared store the keys are in Redis, and this is 0.
    pub fn key_count(&self) -> usize {
        self.store.held().keys
    }

    /// How many run records the engine keeps (all of them, unless
    /// [`with_max_runs`](Self::with_max_runs) caps them).
    pub fn runs_retained(&self) -> usize {
        self.log.lock().retained()
    }

    /// How many runs the engine has created.
    pub fn run_count(&self) -> u64 {
        self.log.lock().created()
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
    /// use idempotency_sdk::{Engine, ItemOptions, RunId, Scope, Sdk};
    ///
    /// let sdk = Sdk::from_env()?;
    /// let mut batch = sdk.batch("child-task", 2);
    /// for i in 0..2 {
    ///     batch.item(None, ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global)));
    /// }
    /// let engine = Engine::new();
    /// let handles = engine.trigger_owned(batch.build()?)?;
    /// let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    /// let runs = engine.read_runs(&ids)?;
    /// assert_eq!(runs[1].as_ref().and_then(|r| r.idempotency_key.as_deref()), Some("item-1"));
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn read_runs(&self, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error> {
        self.store.read(&self.log, ids)
    }

    /// Calls `f` with every retained run, oldest first, in place under the engine's
    /// lock: reading a million runs copies nothing. `f` must not call back into the
    /// engine.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::{Engine, ItemOptions, Scope, Sdk};
    ///
    /// let sdk = Sdk::from_env()?;
    /// let mut batch = sdk.batch("child-task", 3);
    /// for i in 0..3 {
    ///     batch.item(None, ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global)));
    /// }
    /// let engine = Engine::new();
    /// engine.trigger_owned(batch.build()?)?;
    /// let mut with_key = 0;
    /// engine.for_each_run(|run| with_key += usize::from(run.idempotency_key_scope().is_some()));
    /// assert_eq!(with_key, 3);
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn for_each_run(&self, mut f: impl FnMut(RunView<'_>)) {
        let log = self.log.lock();
        for (number, tag, run) in log.iter() {
            let id = self.id_of(number, tag);
            f(RunView { id, task: log.tasks.name(run.task), run });
        }
    }

    /// The id of this engine's run `number`, whose record was kept with `tag`.
    fn id_of(&self, number: u64, tag: u128) -> RunId {
        RunId::from_parts(tag, self.store.nonce(number))
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
        let known = self.store.set_status(&self.log, id, status)?;
        self.status_set(id, status, known)
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
    pub fn reset_key(&self, task: &str, target: KeyTarget<'_>) -> Result<bool, Error> {
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
    /// use idempotency_sdk::{Engine, ItemOptions, KeyTarget, RunId, Scope, Sdk};
    ///
    /// let sdk = Sdk::from_env()?;
    /// let engine = Engine::new();
    /// let key = sdk.create_key("order-7", Scope::Global)?;
    /// let mut batch = sdk.batch("charge", 1);
    /// batch.item(None, ItemOptions::new().key(&key));
    /// let run = engine.trigger(&batch.build()?)?[0].id;
    ///
    /// // Another run than the holder: nothing is freed.
    /// let stale: RunId = "run_7".parse()?;
    /// assert!(!engine.reset_key_held_by("charge", KeyTarget::Key(&key), stale)?);
    /// assert!(engine.reset_key_held_by("charge", KeyTarget::Key(&key), run)?);
    /// assert!(engine.holder("charge", KeyTarget::Key(&key))?.is_none());
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn reset_key_held_by(&self, task: &str, target: KeyTarget<'_>, run: RunId) -> Result<bool, Error> {
        self.reset(task, &target, Some(run))
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
    /// use idempotency_sdk::{Engine, ItemOptions, KeyTarget, RunStatus, Scope, Sdk};
    ///
    /// let sdk = Sdk::from_env()?;
    /// let engine = Engine::new();
    /// let key = sdk.create_key("order-7", Scope::Global)?;
    /// let mut batch = sdk.batch("charge", 1);
    /// batch.item(None, ItemOptions::new().key(&key));
    /// let handles = engine.trigger(&batch.build()?)?;
    ///
    /// let holder = engine.holder("charge", KeyTarget::Key(&key))?.unwrap();
    /// assert_eq!((holder.id, holder.status), (handles[0].id, RunStatus::Pending));
    /// assert!(engine.holder("another-task", KeyTarget::Key(&key))?.is_none());
    ///
    /// engine.reset_key("charge", KeyTarget::Key(&key))?;
    /// assert!(engine.holder("charge", KeyTarget::Key(&key))?.is_none());
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn holder(&self, task: &str, target: KeyTarget<'_>) -> Result<Option<RunRecord>, Error> {
        let keys = reset_keys(&target)?;
        for (id, _) in self.store.peek(&self.log, task, &keys, self.now())?.into_iter().flatten() {
            if let Some(record) = self.store.read(&self.log, &[id])?.pop().flatten() {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }
}

/// The rules both faces share: what a trigger starts with and comes to, the span it
/// runs in, whose record follows a status change, what a reset tries.
impl Engine {
    /// Counts the items of a trigger whose key was held, or repeated, with another
    /// payload. Call without the engine's lock: the counter is user code.
    pub(super) fn count_mismatches(&self, mismatches: &Mismatches) {
        if mismatches.count > 0 {
            self.payload_mismatches.fetch_add(mismatches.count as u64, Ordering::Relaxed);
            crate::meter::payload_mismatches(mismatches.count);
        }
    }

    /// The time on the engine's clock.
    pub(super) fn now(&self) -> Millis {
        millis((self.clock)())
    }

    /// The outcome of wire items, their checks' mismatches counted.
    pub(super) fn counted(
        &self,
        (found, outcome): (Mismatches, Result<Vec<Triggered>, Error>),
    ) -> Result<Vec<Triggered>, Error> {
        self.count_mismatches(&found);
        outcome
    }

    /// The span every trigger runs in (named and shaped as `docs/telemetry.md` lists).
    pub(super) fn trigger_span(&self, task: &str, items: usize) -> tracing::Span {
        let policy = self.payload_policy.as_str();
        let (store, db) = self.store_name;
        tracing::info_span!("idempotency.trigger", task, items, store, db.system = db, policy)
    }

    /// A trigger of `len` `items` of `task`, under this engine's settings.
    pub(super) fn start<'a>(&self, task: &'a str, len: usize, items: Items<'a>) -> Trigger<'a> {
        let mut trigger = Trigger::new(task, self.now(), len, items);
        trigger.policy = self.payload_policy;
        trigger.budget = self.budget;
        trigger.share_payloads = self.share_payloads;
        trigger
    }

    /// What `trigger` comes to once its store is done: its mismatches counted, and
    /// warned about under the policy unless it refused them; the answers, or the
    /// store's error.
    pub(super) fn finish(&self, trigger: Trigger<'_>, done: Result<(), Error>) -> Result<Vec<Triggered>, Error> {
        self.count_mismatches(&trigger.mismatches);
        if !trigger.refused() {
            trigger.mismatches.warn(trigger.task, self.payload_policy);
        }
        done?;
        crate::meter::answered(trigger.handles.iter().filter(|handle| handle.cached).count());
        Ok(trigger.handles)
    }

    fn run_items<'a>(&self, task: &'a str, len: usize, items: Items<'a>) -> Result<Vec<Triggered>, Error> {
        let _span = self.trigger_span(task, len).entered();
        let mut trigger = self.start(task, len, items);
        let done = self.store.trigger(&self.log, &mut trigger);
        self.finish(trigger, done)
    }

    /// After the store took a status change (`known`: the run exists): this engine's
    /// own record follows it.
    pub(super) fn status_set(&self, id: RunId, status: RunStatus, known: bool) -> Result<(), Error> {
        if !known {
            return Err(Error::UnknownRun { id });
        }
        let mut log = self.log.lock();
        if let Some(number) = self.store.number(id).filter(|&n| self.id_of(n, log.tag(n)) == id)
            && let Some(run) = log.get_mut(number)
        {
            run.status = status;
        }
        Ok(())
    }

    /// A reset of `target`, of whatever holds it or only of `held_by`.
    fn reset(&self, task: &str, target: &KeyTarget<'_>, held_by: Option<RunId>) -> Result<bool, Error> {
        for key in reset_keys(target)? {
            if self.store.reset(&self.log, task, key, held_by)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The keys a reset of `target` tries, in order. As in the reference SDK (4.5 and
/// later), a 64-character string may be a digest already: tried as it is first.
pub(super) fn reset_keys<'t>(target: &KeyTarget<'t>) -> Result<Vec<KeyRef<'t>>, Error> {
    let verbatim = match *target {
        KeyTarget::Raw { parts: [one], .. } if is_digest_length(one) => Some(*one),
        _ => None,
    };
    let derived = match *target {
        KeyTarget::Key(key) => Some(key.digest()),
        KeyTarget::Digest(digest) => Some(digest),
        KeyTarget::Raw { scope, run: None, .. } if scope != Scope::Global => match verbatim {
            Some(_) => None,
            None => return Err(Error::ScopeNeedsRun { scope }),
        },
        KeyTarget::Raw { parts, scope, run } => Some(IdempotencyKey::derive(parts, scope, run).digest()),
    };
    Ok(verbatim.map(KeyRef::from_wire).into_iter().chain(derived.map(KeyRef::Digest)).collect())
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = self.log.lock();
        let held = self.store.held();
        f.debug_struct("Engine")
            .field("runs", &log.created())
            .field("retained", &log.retained())
            .field("keys", &held.keys)
            .field("bytes", &(held.bytes + log.bytes()))
            .field("budget", &self.budget)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}
