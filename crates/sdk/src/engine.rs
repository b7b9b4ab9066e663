use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idempotency_catalog::{Digest, KeyOptions, Scope};
use parking_lot::Mutex;
use serde_json::value::RawValue;

use crate::batch::Batch;
use crate::context::RunContext;
use crate::dedup::{Claim, Dedup, KeyRef, Millis};
use crate::error::Error;
use crate::key::IdempotencyKey;
use crate::key_input::is_digest_length;
use crate::run::{Run, RunHandle, RunId, RunRecord, RunStatus, RunView};
use crate::ttl::{Ttl, wire_millis};
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
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{ItemOptions, LocalEngine, RunStatus, Scope, Sdk};
///
/// let sdk = Sdk::from_env()?;
/// let engine = LocalEngine::new();
/// let key = sdk.create_key("order-7", Scope::Global);
/// let mut batch = sdk.batch("charge", 1);
/// batch.item(None, ItemOptions::new().key(&key));
/// let batch = batch.build()?;
///
/// let first = engine.trigger(&batch)?;
/// let again = engine.trigger(&batch)?;
/// assert!(!first[0].cached && again[0].cached && first[0].id == again[0].id);
/// assert_eq!(engine.run(first[0].id).unwrap().idempotency_key.as_deref(), Some("order-7"));
///
/// // A failed run releases its key: the next trigger makes a new run.
/// engine.set_status(first[0].id, RunStatus::Failed)?;
/// assert!(!engine.trigger(&batch)?[0].cached);
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
pub struct LocalEngine {
    state: Mutex<State>,
    clock: Clock,
    /// Where keys are claimed when they are shared with other processes; `None`: in
    /// `state.dedup`, in this process.
    #[cfg(feature = "redis")]
    shared: Option<crate::shared_dedup::SharedDedup>,
}

#[derive(Default)]
struct State {
    tasks: Tasks,
    dedup: Dedup,
    /// The retained runs, oldest first; `runs[0]` has the id `first`. On a shared
    /// store, ids taken by items answered from cache leave gaps (`None`).
    runs: VecDeque<Option<Run>>,
    first: u64,
    /// The id of the next run.
    next: u64,
    /// Runs created, and how many of them are retained.
    created: u64,
    retained: usize,
    max_runs: Option<NonZeroUsize>,
    /// On a shared store: the runs of claims whose answer was lost with the
    /// connection. A later trigger that finds one of them holding its key creates it.
    #[cfg(feature = "redis")]
    unconfirmed: std::collections::HashSet<RunId>,
}

/// Task names, each stored once and referred to by a number.
#[derive(Default)]
struct Tasks {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl Tasks {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    fn find(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    #[expect(clippy::expect_used, reason = "an invariant: every task id was made by `id`")]
    fn name(&self, id: u32) -> &str {
        // A bug must not show runs under an empty task name: fail loudly instead.
        self.names.get(id as usize).expect("every stored task id names a task")
    }
}

/// One item on its way into the engine, however it arrived.
struct Incoming<'a> {
    key: Option<KeyRef<'a>>,
    options: Option<KeyOptions>,
    ttl: Millis,
    payload: Option<Box<RawValue>>,
}

/// [`Ttl::DEFAULT`] in the engine's unit: one source for the 30 days.
const DEFAULT_TTL: Millis = Ttl::DEFAULT.duration().as_secs() * 1_000;

impl LocalEngine {
    /// An engine on the system clock.
    pub fn new() -> Self {
        Self::with_clock(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
    }

    /// An engine on `clock`, the time since some fixed origin: lets tests move time.
    pub fn with_clock(clock: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        LocalEngine {
            state: Mutex::new(State { next: 1, first: 1, ..State::default() }),
            clock: Box::new(clock),
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// An engine whose keys are claimed on Redis (feature `redis`), shared with every
    /// engine on the same server and prefix: a key triggered by two processes makes
    /// one run. Run records stay in the process that created them; run ids are unique
    /// across the fleet (`engine << 40 | sequence`, the engine numbered by the server).
    ///
    /// Expiry follows Redis's clock, the same for every process, not this engine's
    /// [`with_clock`](Self::with_clock); [`key_count`](Self::key_count) counts only
    /// keys held in memory (0 here). When Redis fails, triggers fail with
    /// [`Error::Catalog`] naming the URL instead of creating runs that might be
    /// duplicates; the connection is made again at the next call.
    ///
    /// # Errors
    ///
    /// The Redis error, naming the URL, when the server cannot be reached.
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
        let (shared, engine) = crate::shared_dedup::SharedDedup::connect(redis)?;
        let first = engine << crate::shared_dedup::ENGINE_SHIFT | 1;
        Ok(LocalEngine {
            state: Mutex::new(State { next: first, first, ..State::default() }),
            shared: Some(shared),
            ..Self::new()
        })
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
        self.state.lock().max_runs = Some(max_runs);
        self
    }

    /// Triggers every item of `batch`, returning one handle per item, in order. The
    /// payloads are copied into the run records; [`trigger_owned`](Self::trigger_owned)
    /// moves them instead.
    ///
    /// # Errors
    ///
    /// On a shared store (`on_redis`, feature `redis`), the Redis error naming the
    /// URL; items are claimed 10,000 at a time, and the runs of the chunks claimed
    /// before the failure exist (a later trigger answers them as cached). In memory,
    /// none: a built batch's keys are always valid.
    pub fn trigger(&self, batch: &Batch) -> Result<Vec<RunHandle>, Error> {
        let items = batch.entries().map(|(key, ttl, payload)| incoming(key, ttl, payload.map(ToOwned::to_owned)));
        self.run_items(batch.task(), batch.len(), items)
    }

    /// Triggers every item of `batch`, moving the payloads into the run records.
    ///
    /// # Errors
    ///
    /// As [`trigger`](Self::trigger).
    pub fn trigger_owned(&self, batch: Batch) -> Result<Vec<RunHandle>, Error> {
        let (task, len) = (batch.task().to_owned(), batch.len());
        let items = batch.into_entries().map(|(key, ttl, payload)| incoming(key.as_ref(), ttl, payload));
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
        for item in items {
            item.validate()?;
        }
        let mut unreadable = 0usize;
        let mut handles = Vec::with_capacity(items.len());
        // Items of one task in a row are triggered together.
        for group in items.chunk_by(|a, b| a.task == b.task) {
            let incoming = group.iter().map(|item| {
                let options = item.options.as_ref();
                let key = options.and_then(|o| o.idempotency_key.as_deref()).filter(|k| !k.is_empty());
                let ttl = match options.and_then(|o| o.idempotency_key_ttl.as_deref()) {
                    None => DEFAULT_TTL,
                    Some(text) => wire_millis(text).unwrap_or_else(|| {
                        unreadable += 1;
                        DEFAULT_TTL
                    }),
                };
                Incoming {
                    key: key.map(KeyRef::from_wire),
                    options: options.and_then(|o| o.idempotency_key_options.clone()),
                    ttl,
                    payload: item.payload.clone(),
                }
            });
            let task = group.first().map_or("", |item| item.task.as_str());
            handles.extend(self.run_items(task, group.len(), incoming)?);
        }
        if unreadable > 0 {
            tracing::warn!(
                items = unreadable,
                default = %Ttl::DEFAULT,
                "unreadable idempotency key ttl; the server's default applies"
            );
        }
        Ok(handles)
    }

    fn run_items<'a>(
        &self,
        task: &str,
        len: usize,
        items: impl Iterator<Item = Incoming<'a>>,
    ) -> Result<Vec<RunHandle>, Error> {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            let handles = self.run_shared(shared, task, len, items)?;
            crate::meter::answered(&handles);
            return Ok(handles);
        }
        let now = millis((self.clock)());
        let mut state = self.state.lock();
        state.dedup.prune(now);
        state.dedup.reserve(len);
        state.runs.reserve(len);
        let task = state.tasks.id(task);
        let mut handles = Vec::with_capacity(len);
        for item in items {
            handles.push(state.trigger(task, item, now));
        }
        state.trim();
        drop(state);
        crate::meter::answered(&handles);
        Ok(handles)
    }

    /// Triggers on a shared store: claims in pipelines of `CHUNK`, without holding the
    /// engine's lock over the network. Each chunk takes one run id per item first; the
    /// ids of items answered from cache stay unused.
    #[cfg(feature = "redis")]
    fn run_shared<'a>(
        &self,
        shared: &crate::shared_dedup::SharedDedup,
        task: &str,
        len: usize,
        mut items: impl Iterator<Item = Incoming<'a>>,
    ) -> Result<Vec<RunHandle>, Error> {
        use crate::shared_dedup::CHUNK;
        let mut handles = Vec::with_capacity(len);
        let mut chunk = Vec::with_capacity(len.min(CHUNK));
        loop {
            chunk.extend(items.by_ref().take(CHUNK));
            if chunk.is_empty() {
                return Ok(handles);
            }
            let base = {
                let mut state = self.state.lock();
                let base = state.next;
                state.next += chunk.len() as u64;
                base
            };
            let requests: Vec<_> = (base..)
                .zip(&chunk)
                .filter_map(|(id, item)| item.key.map(|key| (key, item.ttl, RunId::new(id))))
                .collect();
            let answers = match shared.claim(task, &requests) {
                Ok(answers) => answers,
                Err(err) => {
                    // Some of these claims may have reached Redis: their runs are
                    // created if a later trigger finds them holding their keys.
                    let mut state = self.state.lock();
                    if state.unconfirmed.len() < MAX_UNCONFIRMED {
                        state.unconfirmed.extend(requests.iter().map(|&(_, _, run)| run));
                    }
                    return Err(err);
                }
            };
            let mut answers = answers.into_iter();
            let mut state = self.state.lock();
            let task = state.tasks.id(task);
            for (id, item) in (base..).zip(chunk.drain(..)) {
                let held = if item.key.is_some() { answers.next().flatten() } else { None };
                let (id, cached) = match held {
                    Some(held) if !state.unconfirmed.remove(&held) => (held, true),
                    Some(held) => (held, false),
                    None => (RunId::new(id), false),
                };
                if !cached {
                    state.put(id, run(task, item));
                }
                handles.push(RunHandle { id, cached });
            }
            state.trim();
        }
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
        self.state.lock().retained
    }

    /// How many runs the engine has created.
    pub fn run_count(&self) -> u64 {
        self.state.lock().created
    }

    /// The run `id`, copied out, if its record is retained.
    pub fn run(&self, id: RunId) -> Option<RunRecord> {
        let state = self.state.lock();
        state.view(id).map(|view| view.to_record())
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
        for (id, run) in (state.first..).zip(&state.runs) {
            if let Some(run) = run {
                f(RunView { id: RunId::new(id), task: state.tasks.name(run.task), run });
            }
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
    /// # Errors
    ///
    /// [`Error::UnknownRun`] when the engine has no record of `id` (never created, or
    /// dropped by [`with_max_runs`](Self::with_max_runs)).
    pub fn set_status(&self, id: RunId, status: RunStatus) -> Result<(), Error> {
        let mut state = self.state.lock();
        let State { runs, first, dedup, tasks, .. } = &mut *state;
        let run = id.get().checked_sub(*first).and_then(|at| runs.get_mut(usize::try_from(at).ok()?));
        let run = run.and_then(Option::as_mut).ok_or(Error::UnknownRun { id })?;
        run.status = status;
        let Some(key) = run.key.as_ref().filter(|_| status.releases_key()) else { return Ok(()) };
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            let (task, key) = (tasks.name(run.task).to_owned(), key.clone());
            drop(state);
            shared.release(&task, key.as_key_ref(), id)?;
            return Ok(());
        }
        let _ = tasks; // named on a shared store only
        dedup.release(run.task, key.as_key_ref(), id);
        Ok(())
    }

    /// Forgets the cached run of `task` for a key, so that the next trigger with it
    /// creates a new run. Returns whether there was one to forget.
    ///
    /// # Errors
    ///
    /// [`Error::ScopeNeedsRun`] when a raw key's scope needs a run context that was not
    /// given (unless the key is one 64-character string, which is then tried as it is).
    pub fn reset_key(&self, task: &str, target: ResetTarget<'_>) -> Result<bool, Error> {
        // A 64-character string may be a digest already: tried as it is first.
        let verbatim = match target {
            ResetTarget::Raw { parts: [one], .. } if is_digest_length(one) => Some(*one),
            _ => None,
        };
        let derived = match target {
            ResetTarget::Key(key) => Some(key.digest()),
            ResetTarget::Digest(digest) => Some(digest),
            ResetTarget::Raw { scope, run: None, .. } if scope != Scope::Global => match verbatim {
                Some(_) => None,
                None => return Err(Error::ScopeNeedsRun { scope }),
            },
            ResetTarget::Raw { parts, scope, run } => Some(IdempotencyKey::derive(parts, scope, run).digest()),
        };
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            if let Some(verbatim) = verbatim
                && shared.reset(task, KeyRef::from_wire(verbatim))?
            {
                return Ok(true);
            }
            return match derived {
                Some(digest) => shared.reset(task, KeyRef::Digest(digest)),
                None => Ok(false),
            };
        }
        let now = millis((self.clock)());
        let mut state = self.state.lock();
        let Some(task) = state.tasks.find(task) else { return Ok(false) };
        if let Some(verbatim) = verbatim
            && state.dedup.reset(task, KeyRef::from_wire(verbatim), now)
        {
            return Ok(true);
        }
        Ok(derived.is_some_and(|digest| state.dedup.reset(task, KeyRef::Digest(digest), now)))
    }
}

fn incoming<'a>(key: Option<&IdempotencyKey>, ttl: Option<Ttl>, payload: Option<Box<RawValue>>) -> Incoming<'a> {
    Incoming {
        key: key.map(|key| KeyRef::Digest(key.digest())),
        options: key.and_then(|key| key.options().cloned()),
        ttl: ttl.map_or(DEFAULT_TTL, |ttl| millis(ttl.duration())),
        payload,
    }
}

fn millis(duration: Duration) -> Millis {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl State {
    fn trigger(&mut self, task: u32, item: Incoming<'_>, now: Millis) -> RunHandle {
        let id = RunId::new(self.next);
        if let Some(key) = item.key
            && let Claim::Cached(cached) = self.dedup.claim(task, key, now, item.ttl, id)
        {
            return RunHandle { id: cached, cached: true };
        }
        self.runs.push_back(Some(run(task, item)));
        self.next += 1;
        self.created += 1;
        self.retained += 1;
        RunHandle { id, cached: false }
    }

    /// Records run `id`, in its place: after the gaps left by ids that were not used,
    /// or in a gap (a run whose claim was confirmed late).
    #[cfg(feature = "redis")]
    fn put(&mut self, id: RunId, run: Run) {
        let Some(at) = id.get().checked_sub(self.first).and_then(|at| usize::try_from(at).ok()) else {
            // Older than every retained record (`with_max_runs`): created, not kept.
            self.created += 1;
            return;
        };
        while self.runs.len() <= at {
            self.runs.push_back(None);
        }
        if let Some(slot) = self.runs.get_mut(at) {
            self.retained += usize::from(slot.is_none());
            self.created += u64::from(slot.is_none());
            *slot = Some(run);
        }
    }

    /// Drops the oldest records past the cap.
    fn trim(&mut self) {
        let Some(max) = self.max_runs else { return };
        while self.retained > max.get() {
            let Some(oldest) = self.runs.pop_front() else { return };
            self.retained -= usize::from(oldest.is_some());
            self.first += 1;
        }
    }

    fn view(&self, id: RunId) -> Option<RunView<'_>> {
        let at = usize::try_from(id.get().checked_sub(self.first)?).ok()?;
        let run = self.runs.get(at)?.as_ref()?;
        Some(RunView { id, task: self.tasks.name(run.task), run })
    }
}

/// How many unconfirmed claims an engine remembers: a few failed chunks' worth.
#[cfg(feature = "redis")]
const MAX_UNCONFIRMED: usize = 1_000_000;

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
            .field("runs", &state.created)
            .field("retained", &state.retained)
            .field("keys", &state.dedup.len())
            .finish_non_exhaustive()
    }
}
