//! A run as the engine answers, records and shows it: its status and what releases its
//! key, a trigger's answer per item, a record copied out, and a record read in place.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use idempotency_catalog::{Digest, KeyOptions, Scope};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::{Error, shown};
use crate::payload::Payload;
use crate::run_id::RunId;

/// As its name (`"timed-out"`), read back with [`FromStr`].
impl Serialize for RunStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RunStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
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
    /// Every status, in the order of their declaration.
    pub const ALL: [RunStatus; 10] = [
        RunStatus::Pending,
        RunStatus::Executing,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::SystemFailure,
        RunStatus::Crashed,
        RunStatus::Interrupted,
        RunStatus::TimedOut,
        RunStatus::Expired,
        RunStatus::Cancelled,
    ];

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

impl FromStr for RunStatus {
    type Err = Error;

    /// A status's name, as [`as_str`](Self::as_str) writes it.
    fn from_str(s: &str) -> Result<Self, Error> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| Error::InvalidRunStatus { value: shown(s) })
    }
}

/// What triggering one item came to: the run that serves it, and whether that run
/// already existed. A trigger answers one per item, in order.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{Engine, ItemOptions, Scope, Sdk, Triggered};
///
/// let sdk = Sdk::from_env()?;
/// let mut batch = sdk.batch("charge", 2);
/// for _ in 0..2 {
///     batch.item(None, ItemOptions::new().key(sdk.create_key("order-7", Scope::Global)));
/// }
/// let answers: Vec<Triggered> = Engine::new().trigger(&batch.build()?)?;
/// // The key twice: one run, the second item answered with it.
/// assert!(!answers[0].cached && answers[1].cached && answers[0].id == answers[1].id);
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Triggered {
    /// The run that serves the item.
    pub id: RunId,
    /// Whether that run already existed: an earlier trigger with the same task and key,
    /// within the key's TTL.
    pub cached: bool,
}

/// One run as the engine records it, copied out: what a dashboard shows. See
/// [`RunView`] to read runs without copying them.
///
/// Serializes as an object of its fields, the payload as the JSON it is, and reads
/// back (with `serde_json`: the payload is kept as its text):
///
/// ```
/// use idempotency_sdk::{Engine, ItemOptions, RunRecord, Scope, Sdk};
/// use serde_json::json;
///
/// let sdk = Sdk::from_env()?;
/// let mut batch = sdk.batch("charge", 1);
/// batch.item(json!({ "amount": 7 }), ItemOptions::new().key(sdk.create_key("order-7", Scope::Global)));
/// let engine = Engine::new();
/// let run = engine.run(engine.trigger(&batch.build()?)?[0].id)?.unwrap();
/// let json = serde_json::to_string(&run).unwrap();
/// assert_eq!(
///     json,
///     r#"{"id":"run_00000001","task":"charge","idempotency_key":"order-7","idempotency_key_scope":"global","payload":{"amount":7},"status":"pending"}"#
/// );
/// assert_eq!(serde_json::from_str::<RunRecord>(&json).unwrap(), run);
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
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

/// A run as the engine stores it: the task as a number, the key as its original key
/// and scope when they are known (its digest is then the claim's business), 64 bytes.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) payload: Option<Payload>,
    pub(crate) key: RunKey,
    pub(crate) task: u32,
    /// In memory, the claim slot that holds its key, which releasing the key frees;
    /// [`NO_CLAIM`] when it holds none (or the store is elsewhere).
    pub(crate) claim: u32,
    pub(crate) status: RunStatus,
}

/// [`Run::claim`] of a run that holds no claim in this process.
pub(crate) const NO_CLAIM: u32 = u32::MAX;

/// A run's key, as its record shows it: the original key and scope, else the key as
/// sent (a digest, boxed: a key without options is the rare case, and 24 bytes keep a
/// record at 64).
#[derive(Debug)]
pub(crate) enum RunKey {
    None,
    Options(KeyOptions),
    Digest(Box<Digest>),
    Raw(Box<str>),
}

/// A run read in place, under the engine's lock; see
/// [`Engine::for_each_run`](crate::Engine::for_each_run).
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
        match &self.run.key {
            RunKey::Options(options) => Some(Cow::Borrowed(options.key())),
            RunKey::Digest(digest) => Some(Cow::Owned(digest.to_hex_string())),
            RunKey::Raw(raw) => Some(Cow::Borrowed(raw)),
            RunKey::None => None,
        }
    }

    /// The key's scope, when its options were known.
    pub fn idempotency_key_scope(&self) -> Option<Scope> {
        match &self.run.key {
            RunKey::Options(options) => Some(options.scope()),
            _ => None,
        }
    }

    /// The payload it was triggered with, as JSON text.
    pub fn payload(&self) -> Option<&'a RawValue> {
        self.run.payload.as_ref().and_then(Payload::raw)
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
            payload: self.run.payload.as_ref().and_then(Payload::to_boxed),
            status: self.run.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_and_a_record_stay_small() {
        assert_eq!(std::mem::size_of::<Triggered>(), 32);
        assert_eq!(std::mem::size_of::<Run>(), 64);
    }

    #[test]
    fn statuses_serialize_as_their_text_and_bad_text_is_refused() {
        for status in RunStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(serde_json::from_str::<RunStatus>(&json).unwrap(), status);
        }
        let err = serde_json::from_str::<RunStatus>(r#""done""#).unwrap_err().to_string();
        assert!(err.starts_with(r#"invalid run status "done""#), "{err}");
    }

    #[test]
    fn statuses_read_back_by_name() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>().unwrap(), status);
        }
        assert!("Failed".parse::<RunStatus>().is_err());
    }
}
