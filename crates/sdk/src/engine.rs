use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idempotency_catalog::{Digest, Scope};
use parking_lot::Mutex;
use serde_json::Value;

use crate::batch::Batch;
use crate::context::RunContext;
use crate::error::Error;
use crate::key::IdempotencyKey;
use crate::ttl::Ttl;
use crate::wire::WireItem;

/// One run as the engine records it: what a dashboard shows.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunRecord {
    /// The run's id.
    pub id: String,
    /// The task it runs.
    pub task: String,
    /// The original key when its options were known, else the digest; `None` for an
    /// item without a key.
    pub idempotency_key: Option<String>,
    /// The key's scope, when its options were known.
    pub idempotency_key_scope: Option<Scope>,
    /// The payload it was triggered with.
    pub payload: Option<Value>,
}

/// The engine's answer for one item.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunHandle {
    /// The run that serves the item.
    pub id: String,
    /// Whether that run already existed: an earlier trigger with the same task and key,
    /// within the key's TTL.
    pub cached: bool,
}

/// What to reset: which key's cached run to forget.
#[derive(Clone, Debug)]
pub enum ResetTarget<'a> {
    /// A key made by the SDK.
    Key(&'a IdempotencyKey),
    /// Key material with the scope it was created in, and the run context when the
    /// scope needs it (`run`: the run id; `attempt`: run id and attempt number).
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
/// the key's TTL, and records every run.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{ItemOptions, LocalEngine, Scope, Sdk};
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
/// assert_eq!(engine.runs()[0].idempotency_key.as_deref(), Some("order-7"));
///
/// engine.reset_key("charge", idempotency_sdk::ResetTarget::Key(&key))?;
/// assert!(!engine.trigger(&batch)?[0].cached);
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
pub struct LocalEngine {
    state: Mutex<State>,
    clock: Clock,
}

#[derive(Default)]
struct State {
    runs: Vec<RunRecord>,
    /// (task, idempotencyKey) → the run that holds it and when it stops deduplicating.
    cached: HashMap<(String, String), (usize, Duration)>,
}

impl LocalEngine {
    /// An engine on the system clock.
    pub fn new() -> Self {
        Self::with_clock(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
    }

    /// An engine on `clock`, the time since some fixed origin: lets tests move time.
    pub fn with_clock(clock: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        LocalEngine { state: Mutex::new(State::default()), clock: Box::new(clock) }
    }

    /// Triggers every item of `batch`, returning one handle per item, in order.
    ///
    /// # Errors
    ///
    /// [`Error::KeyTooLong`] when an item fails validation; nothing is triggered then.
    pub fn trigger(&self, batch: &Batch) -> Result<Vec<RunHandle>, Error> {
        let items: Vec<WireItem> = batch.wire_items().collect();
        self.trigger_items(&items)
    }

    /// Triggers wire items, as received from elsewhere (see [`WireItem::from_json`]).
    ///
    /// # Errors
    ///
    /// As [`trigger`](Self::trigger).
    pub fn trigger_items(&self, items: &[WireItem]) -> Result<Vec<RunHandle>, Error> {
        for item in items {
            item.validate()?;
        }
        let now = (self.clock)();
        let mut state = self.state.lock();
        Ok(items.iter().map(|item| state.trigger(item, now)).collect())
    }

    /// Every run so far, in the order they were created.
    pub fn runs(&self) -> Vec<RunRecord> {
        self.state.lock().runs.clone()
    }

    /// Forgets the cached run of `task` for a key, so that the next trigger with it
    /// creates a new run. Returns whether there was one to forget.
    ///
    /// # Errors
    ///
    /// [`Error::ScopeNeedsRun`] when a raw key's scope needs a run context that was not
    /// given.
    pub fn reset_key(&self, task: &str, target: ResetTarget<'_>) -> Result<bool, Error> {
        let digest = match target {
            ResetTarget::Key(key) => key.digest(),
            ResetTarget::Digest(digest) => digest,
            ResetTarget::Raw { parts, scope, run } => {
                if run.is_none() && scope != Scope::Global {
                    return Err(Error::ScopeNeedsRun { scope });
                }
                IdempotencyKey::derive(parts, scope, run).digest()
            }
        };
        let removed = self.state.lock().cached.remove(&(task.to_owned(), digest.to_string()));
        Ok(removed.is_some())
    }
}

impl State {
    fn trigger(&mut self, item: &WireItem, now: Duration) -> RunHandle {
        let options = item.options.as_ref();
        let key = options.and_then(|o| o.idempotency_key.as_deref()).filter(|k| !k.is_empty());
        // Built once: looked up now, and inserted below if a new run is made.
        let slot = key.map(|key| (item.task.clone(), key.to_owned()));
        if let Some(&(run, expires)) = slot.as_ref().and_then(|slot| self.cached.get(slot))
            && now < expires
            && let Some(record) = self.runs.get(run)
        {
            return RunHandle { id: record.id.clone(), cached: true };
        }
        let known = options.and_then(|o| o.idempotency_key_options.as_ref());
        let record = RunRecord {
            id: format!("run_{:08}", self.runs.len() + 1),
            task: item.task.clone(),
            idempotency_key: known.map(|o| o.key()).or(key).map(str::to_owned),
            idempotency_key_scope: known.map(|o| o.scope()),
            payload: item.payload.clone(),
        };
        let id = record.id.clone();
        self.runs.push(record);
        if let Some(slot) = slot {
            let ttl = options.and_then(|o| o.idempotency_key_ttl.as_deref()).map_or(Ok(Ttl::DEFAULT), str::parse);
            let ttl = ttl.unwrap_or_else(|err| {
                // The reference schema accepts any string here; the engine says what it did.
                tracing::warn!(index = item.index, error = %err, default = %Ttl::DEFAULT, "unreadable idempotency key ttl; using the default");
                Ttl::DEFAULT
            });
            self.cached.insert(slot, (self.runs.len() - 1, now.saturating_add(ttl.duration())));
        }
        RunHandle { id, cached: false }
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
            .field("runs", &state.runs.len())
            .field("cached", &state.cached.len())
            .finish_non_exhaustive()
    }
}
