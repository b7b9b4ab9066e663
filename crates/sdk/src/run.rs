use std::borrow::Cow;
use std::fmt;

use idempotency_catalog::{KeyOptions, Scope};
use serde_json::value::RawValue;

use crate::dedup::StoredKey;

/// A run's id, shown as `run_00000001`: the engine numbers runs from 1 in the order it
/// creates them. Eight bytes, `Copy`: handles and records carry no string.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::RunId;
///
/// assert_eq!(RunId::new(42).to_string(), "run_00000042");
/// assert_eq!(RunId::new(42).get(), 42);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(u64);

impl RunId {
    /// The id numbered `n`.
    pub const fn new(n: u64) -> Self {
        RunId(n)
    }

    /// Its number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run_{:08}", self.0)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where a run is in its life, with the reference's rule for what releases its key.
///
/// A run that ends in failure (completed with errors, a system failure, crashed,
/// interrupted, timed out) or that expired releases its idempotency key: the next
/// trigger with that key makes a new run. A run that is pending, executing, succeeded
/// or was cancelled stays the cached answer until the key's TTL passes.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::RunStatus;
///
/// assert!(RunStatus::Crashed.releases_key());
/// assert!(!RunStatus::Cancelled.releases_key());
/// assert_eq!(RunStatus::TimedOut.to_string(), "timed-out");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunStatus {
    /// Created, not yet started.
    #[default]
    Pending,
    /// Running.
    Executing,
    /// Completed successfully.
    Succeeded,
    /// Completed with errors.
    Failed,
    /// The platform failed while running it.
    SystemFailure,
    /// The process running it crashed.
    Crashed,
    /// Interrupted before it completed.
    Interrupted,
    /// Ran past its maximum duration.
    TimedOut,
    /// Was not started within its time to live.
    Expired,
    /// Cancelled.
    Cancelled,
}

impl RunStatus {
    /// Whether a run ending this way releases its key, as the reference server does.
    pub const fn releases_key(self) -> bool {
        matches!(
            self,
            RunStatus::Failed
                | RunStatus::SystemFailure
                | RunStatus::Crashed
                | RunStatus::Interrupted
                | RunStatus::TimedOut
                | RunStatus::Expired
        )
    }

    /// The status's name: `pending`, `executing`, `succeeded`, `failed`,
    /// `system-failure`, `crashed`, `interrupted`, `timed-out`, `expired`, `cancelled`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Executing => "executing",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::SystemFailure => "system-failure",
            RunStatus::Crashed => "crashed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::TimedOut => "timed-out",
            RunStatus::Expired => "expired",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine's answer for one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunHandle {
    /// The run that serves the item.
    pub id: RunId,
    /// Whether that run already existed: an earlier trigger with the same task and key,
    /// within the key's TTL.
    pub cached: bool,
}

/// One run as the engine records it, copied out: what a dashboard shows. See
/// [`RunView`] to read runs without copying them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunRecord {
    /// The run's id.
    pub id: RunId,
    /// The task it runs.
    pub task: String,
    /// The original key when its options were known, else the key as sent (a digest);
    /// `None` for an item without a key.
    pub idempotency_key: Option<String>,
    /// The key's scope, when its options were known.
    pub idempotency_key_scope: Option<Scope>,
    /// The payload it was triggered with, as JSON text.
    pub payload: Option<Box<RawValue>>,
    /// Where it is in its life.
    pub status: RunStatus,
}

impl PartialEq for RunRecord {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.task == other.task
            && self.idempotency_key == other.idempotency_key
            && self.idempotency_key_scope == other.idempotency_key_scope
            && self.payload.as_deref().map(RawValue::get) == other.payload.as_deref().map(RawValue::get)
            && self.status == other.status
    }
}

/// A run as the engine stores it: the task as an id, the key as 32 bytes.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) task: u32,
    pub(crate) status: RunStatus,
    pub(crate) key: Option<StoredKey>,
    pub(crate) options: Option<KeyOptions>,
    pub(crate) payload: Option<Box<RawValue>>,
}

/// A run read in place, under the engine's lock; see
/// [`LocalEngine::for_each_run`](crate::LocalEngine::for_each_run).
#[derive(Clone, Copy, Debug)]
pub struct RunView<'a> {
    pub(crate) id: RunId,
    pub(crate) task: &'a str,
    pub(crate) run: &'a Run,
}

impl<'a> RunView<'a> {
    /// The run's id.
    pub fn id(&self) -> RunId {
        self.id
    }

    /// The task it runs.
    pub fn task(&self) -> &'a str {
        self.task
    }

    /// The original key when its options were known, else the key as sent.
    pub fn idempotency_key(&self) -> Option<Cow<'a, str>> {
        match (&self.run.options, &self.run.key) {
            (Some(options), _) => Some(Cow::Borrowed(options.key())),
            (None, Some(key)) => Some(key.text()),
            (None, None) => None,
        }
    }

    /// The key's scope, when its options were known.
    pub fn idempotency_key_scope(&self) -> Option<Scope> {
        self.run.options.as_ref().map(KeyOptions::scope)
    }

    /// The payload it was triggered with, as JSON text.
    pub fn payload(&self) -> Option<&'a RawValue> {
        self.run.payload.as_deref()
    }

    /// Where it is in its life.
    pub fn status(&self) -> RunStatus {
        self.run.status
    }

    /// The run copied out.
    pub fn to_record(&self) -> RunRecord {
        RunRecord {
            id: self.id,
            task: self.task.to_owned(),
            idempotency_key: self.idempotency_key().map(Cow::into_owned),
            idempotency_key_scope: self.idempotency_key_scope(),
            payload: self.run.payload.clone(),
            status: self.run.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_record_slot_costs_no_more_than_a_record() {
        // The engine keeps `Option<Run>` so that ids unused on a shared store leave
        // gaps; in memory there are none, and the niche keeps the records as they were.
        assert_eq!(std::mem::size_of::<Option<Run>>(), std::mem::size_of::<Run>());
    }
}
