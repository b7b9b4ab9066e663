//! Same key, different payload: the fingerprint a claim keeps of its item's payload,
//! and what the engine does when a later item with the same key brings another one.
//!
//! The fingerprint is the first four bytes of SHA-256 over a domain tag and the
//! payload's JSON text as it travels (the text the batch keeps, or the wire item's).
//! SHA-256 because every process of a fleet must compute the same value from the same
//! text, in every version: a specified hash, where `std`'s and `foldhash`'s promise
//! nothing across releases; `sha2` is already here and uses the CPU's SHA instructions.
//! Four bytes, because a claim keeps it beside its key (in memory, in the slot's spare
//! bytes): a mismatch goes unnoticed once in four billion, and equal payloads always
//! match. The text as sent, not a canonical form: `serde_json::Value` objects already
//! serialise with sorted keys, so two `json!` payloads that are equal as values match;
//! two texts that differ only in key order or spacing (from [`WireItem`]s made
//! elsewhere) are reported, since the server would store two different payloads.
//!
//! [`WireItem`]: crate::WireItem

use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};
use smol_str::SmolStr;

use crate::env;
use crate::error::Error;
use crate::from_catalog::chunk;

/// A payload as the SDK keeps it from the batch to the run record: its JSON text, as
/// it travels. Up to 23 bytes (a fan-out's `{"i":123456}`) it is held inline, in the
/// 24 bytes a boxed `RawValue` and its pointer would take, so that a batch and a record
/// cost no allocation for it; longer, it is shared on the heap, so that copying a
/// batch's payloads into records copies pointers.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Payload(SmolStr);

impl Payload {
    /// `value` as JSON text, written through `buffer`, which the caller keeps from one
    /// payload to the next.
    pub(crate) fn of_value(value: &Value, buffer: &mut Vec<u8>) -> Result<Self, serde_json::Error> {
        buffer.clear();
        serde_json::to_writer(&mut *buffer, value)?;
        let text = std::str::from_utf8(buffer).map_err(serde::ser::Error::custom)?;
        Ok(Payload(SmolStr::new(text)))
    }

    /// The text of a `RawValue`, as it is.
    pub(crate) fn of_raw(raw: &RawValue) -> Self {
        Payload(SmolStr::new(raw.get()))
    }

    /// The JSON text.
    pub(crate) fn text(&self) -> &str {
        &self.0
    }

    /// The text as a `RawValue`, borrowed. `serde_json` lends a `RawValue` only over
    /// text it has read, so this reads the text again (a pass over its bytes; the text
    /// was written or checked by `serde_json`, and reads back whole).
    pub(crate) fn raw(&self) -> Option<&RawValue> {
        serde_json::from_str(&self.0).ok()
    }

    /// The text as a `RawValue` of its own.
    pub(crate) fn to_boxed(&self) -> Option<Box<RawValue>> {
        RawValue::from_string(self.0.to_string()).ok()
    }

    /// What it holds beyond its own 24 bytes: a shared string's heap chunk (its text
    /// after two counts), or nothing inline.
    pub(crate) fn heap_bytes(&self) -> usize {
        if self.0.is_heap_allocated() { chunk(16 + self.0.len()) } else { 0 }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.text(), f)
    }
}

/// A payload's fingerprint (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Fingerprint(pub(crate) u32);

impl Fingerprint {
    /// The fingerprint of `payload`'s text; an absent payload has one of its own
    /// (distinct from `null`'s).
    pub(crate) fn of(payload: Option<&str>) -> Self {
        let mut hasher = Sha256::new();
        match payload {
            Some(payload) => {
                hasher.update(b"idempotency payload\0");
                hasher.update(payload.as_bytes());
            }
            None => hasher.update(b"idempotency payload: none"),
        }
        let hash = hasher.finalize();
        let mut first = [0; 4];
        first.copy_from_slice(hash.get(..4).unwrap_or(&[0; 4]));
        Fingerprint(u32::from_be_bytes(first))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// What the engine does when an item's key is held by a run made with another payload
/// (or repeats within its batch with another payload).
///
/// Set with [`Engine::with_payload_policy`](crate::Engine::with_payload_policy),
/// or read from `IDEMPOTENCY_PAYLOAD_POLICY` with [`PayloadPolicy::from_env`].
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{Engine, ItemOptions, PayloadPolicy, Scope, Sdk};
/// use serde_json::json;
///
/// let sdk = Sdk::from_env()?;
/// let key = sdk.create_key(["order", "7"], Scope::Global)?;
/// let batch = |amount: u32| {
///     let mut batch = sdk.batch("charge", 1);
///     batch.item(json!({ "amount": amount }), ItemOptions::new().key(key.clone()));
///     batch.build()
/// };
/// let engine = Engine::new().with_payload_policy(PayloadPolicy::Fail);
/// engine.trigger(&batch(100)?)?;
/// let err = engine.trigger(&batch(250)?).unwrap_err();
/// assert!(err.to_string().starts_with(r#"task "charge": idempotency key "order-7" (global) is held by run "#));
/// assert_eq!(engine.payload_mismatches(), 1);
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PayloadPolicy {
    /// Answer with the run that holds the key, as the reference does, and say nothing;
    /// mismatches are still counted.
    Ignore,
    /// Answer with the run that holds the key, and emit one aggregated `WARN` per
    /// trigger naming the task, how many items differed and the first key: the
    /// default ([`defaults::PAYLOAD_POLICY`](crate::defaults::PAYLOAD_POLICY)).
    Warn,
    /// Refuse the whole trigger with [`Error::PayloadMismatch`] before anything is
    /// claimed or created.
    Fail,
}

impl PayloadPolicy {
    /// Every policy.
    pub const ALL: [PayloadPolicy; 3] = [PayloadPolicy::Ignore, PayloadPolicy::Warn, PayloadPolicy::Fail];

    /// The name [`FromStr`] reads: `ignore`, `warn` or `fail`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PayloadPolicy::Ignore => "ignore",
            PayloadPolicy::Warn => "warn",
            PayloadPolicy::Fail => "fail",
        }
    }

    /// The policy in `IDEMPOTENCY_PAYLOAD_POLICY`, or the default ([`Warn`](Self::Warn))
    /// when it is unset.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPayloadPolicy`] naming the variable and its value when it is set
    /// to anything but `ignore`, `warn` or `fail` (empty included).
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::{Engine, PayloadPolicy};
    ///
    /// let engine = Engine::new().with_payload_policy(PayloadPolicy::from_env()?);
    /// # let _ = engine;
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn from_env() -> Result<Self, Error> {
        Self::from_env_with(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// As [`from_env`](Self::from_env), reading variables through `lookup`.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        match lookup(env::PAYLOAD_POLICY) {
            None => Ok(PayloadPolicy::default()),
            Some(raw) => raw.parse().map_err(|_| Error::InvalidPayloadPolicy {
                source_name: env::PAYLOAD_POLICY,
                value: idempotency_catalog::shown(&raw),
            }),
        }
    }
}

impl Default for PayloadPolicy {
    fn default() -> Self {
        crate::defaults::PAYLOAD_POLICY
    }
}

impl fmt::Display for PayloadPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PayloadPolicy {
    type Err = Error;

    /// `ignore`, `warn` or `fail`, exactly.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PayloadPolicy::ALL.into_iter().find(|policy| policy.as_str() == s).ok_or_else(|| Error::InvalidPayloadPolicy {
            source_name: "PayloadPolicy",
            value: idempotency_catalog::shown(s),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned())
            .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
    }

    #[test]
    fn the_text_as_sent_decides() {
        let a = Fingerprint::of(Some(raw(r#"{"a":1,"b":2}"#).get()));
        assert_eq!(a, Fingerprint::of(Some(raw(r#"{"a":1,"b":2}"#).get())));
        assert_ne!(a, Fingerprint::of(Some(raw(r#"{"b":2,"a":1}"#).get())), "key order is part of the text");
        assert_ne!(a, Fingerprint::of(Some(raw(r#"{"a":1, "b":2}"#).get())), "so is spacing");
        assert_ne!(Fingerprint::of(None), Fingerprint::of(Some(raw("null").get())));
        // A `json!` value serialises with sorted keys: equal values, equal text.
        let sorted = serde_json::value::to_raw_value(&serde_json::json!({"b": 2, "a": 1})).ok();
        assert_eq!(sorted.as_deref().map(|p| Fingerprint::of(Some(p.get()))), Some(a));
    }

    #[test]
    fn a_short_payload_is_held_inline_and_a_long_one_shared_and_both_read_back() {
        let mut buffer = Vec::new();
        let short = Payload::of_value(&serde_json::json!({ "i": 123_456 }), &mut buffer).unwrap();
        assert_eq!((short.text(), short.heap_bytes()), (r#"{"i":123456}"#, 0));
        let inline = Payload::of_raw(&raw(&format!(r#""{}""#, "x".repeat(21))));
        assert_eq!((inline.text().len(), inline.heap_bytes()), (23, 0), "23 bytes fit inline");
        let long = Payload::of_raw(&raw(&format!(r#""{}""#, "x".repeat(22))));
        assert_eq!((long.text().len(), long.heap_bytes()), (24, 48), "past 23 bytes: 16 + 24 in a 48-byte chunk");
        for payload in [&short, &inline, &long] {
            assert_eq!(payload.raw().map(RawValue::get), Some(payload.text()));
            assert_eq!(payload.to_boxed().as_deref().map(RawValue::get), Some(payload.text()));
        }
        assert_eq!(std::mem::size_of::<Option<Payload>>(), 24);
    }

    #[test]
    fn the_fingerprint_is_stable_across_processes_and_versions() {
        // SHA-256("idempotency payload\0" + "{}")[..4]: fixed by the hash, not by a seed.
        // `printf 'idempotency payload\0{}' | sha256sum`: the value other processes and
        // later versions must compute, pinned.
        assert_eq!(Fingerprint::of(Some(raw("{}").get())).to_string(), "1e8ee570");
    }

    #[test]
    fn policies_read_by_name_and_bad_values_are_named() {
        for policy in PayloadPolicy::ALL {
            assert_eq!(policy.as_str().parse::<PayloadPolicy>().ok(), Some(policy));
            let env = |_: &str| Some(policy.as_str().to_owned());
            assert_eq!(PayloadPolicy::from_env_with(env).ok(), Some(policy));
        }
        assert_eq!(PayloadPolicy::from_env_with(|_| None).ok(), Some(PayloadPolicy::Warn));
        for bad in ["", "Warn", "fail ", "refuse"] {
            let err = PayloadPolicy::from_env_with(|_| Some(bad.to_owned())).map(|_| ()).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("invalid IDEMPOTENCY_PAYLOAD_POLICY {bad:?}: expected one of `ignore`, `warn`, `fail`")
            );
        }
    }
}
