//! One item on its way into the engine, however it arrived: from a built batch, or
//! as a wire item.

use idempotency_catalog::KeyOptions;

use super::clock::{Millis, millis};
use super::key::KeyRef;
use super::run::{Run, RunKey, RunStatus};
use crate::batch::{Entry, Key};
use crate::key::IdempotencyKey;
use idempotency_catalog::Ttl;

use crate::error::{Error, shown};
use crate::payload::{Fingerprint, Payload};
use crate::wire::WireItem;

/// [`Ttl::DEFAULT`] in the engine's unit: one source for the 30 days.
pub(crate) const DEFAULT_TTL: Millis = Ttl::DEFAULT.duration().as_secs() * 1_000;

/// A TTL in the engine's unit; none is the default.
fn ttl_millis(ttl: Option<Ttl>) -> Millis {
    ttl.map_or(DEFAULT_TTL, |ttl| millis(ttl.duration()))
}

pub(crate) struct Incoming<'a> {
    pub(crate) key: Option<KeyRef<'a>>,
    pub(crate) options: Option<KeyOptions>,
    pub(crate) ttl: Millis,
    pub(crate) payload: Option<Payload>,
    pub(crate) fingerprint: Fingerprint,
}

impl<'a> Incoming<'a> {
    /// An item of a built batch, its payload and options copied.
    pub(crate) fn from_entry(entry: &Entry) -> Self {
        let key = entry.key();
        Incoming {
            key: key.map(|key| KeyRef::Digest(key.digest())),
            options: key.and_then(|key| key.options().cloned()),
            ttl: ttl_millis(entry.ttl),
            payload: entry.payload.clone(),
            fingerprint: entry.fingerprint,
        }
    }

    /// An item of a built batch, its payload and options moved.
    pub(crate) fn from_owned(entry: Entry) -> Self {
        let Entry { payload, key, ttl, fingerprint } = entry;
        let key = match key {
            Key::Given(key) => key,
            Key::FromBatch => None,
        };
        Incoming {
            key: key.as_ref().map(|key| KeyRef::Digest(key.digest())),
            options: key.and_then(IdempotencyKey::into_options),
            ttl: ttl_millis(ttl),
            payload,
            fingerprint,
        }
    }

    /// The run this item makes, of task number `task`, its key held in claim slot
    /// `claim` (in memory; else [`NO_CLAIM`](super::run::NO_CLAIM)).
    pub(crate) fn into_run(self, task: u32, claim: u32) -> Run {
        let key = match (self.options, self.key) {
            (Some(options), _) => RunKey::Options(options),
            (None, Some(KeyRef::Digest(digest))) => RunKey::Digest(Box::new(digest)),
            (None, Some(KeyRef::Raw(raw))) => RunKey::Raw(raw.into()),
            (None, None) => RunKey::None,
        };
        Run { payload: self.payload, key, task, claim, status: RunStatus::Pending }
    }

    /// The key for messages: its original key and scope (`"item-42" (global)`), or as
    /// sent when its options are unknown, the caller's text rendered by [`shown`]
    /// (escaped, cut to 64 characters).
    pub(crate) fn shown_key(&self) -> String {
        match (&self.options, self.key) {
            (Some(options), _) => format!("{} ({})", shown(options.key()), options.scope()),
            (None, Some(key)) => shown(&key.text()),
            (None, None) => String::new(),
        }
    }

    /// A wire item, read as the server reads it: an empty key is no key, and a TTL
    /// outside the server's grammar is the default (counted in `unreadable`).
    pub(crate) fn from_wire(item: &'a WireItem, unreadable: &mut usize) -> Self {
        let options = item.options.as_ref();
        let key = options.and_then(|o| o.idempotency_key.as_deref()).filter(|k| !k.is_empty());
        let ttl = match options.and_then(|o| o.idempotency_key_ttl.as_deref()) {
            None => DEFAULT_TTL,
            Some(text) => Ttl::wire_millis(text).unwrap_or_else(|| {
                *unreadable += 1;
                DEFAULT_TTL
            }),
        };
        Incoming {
            key: key.map(KeyRef::from_wire),
            options: options.and_then(|o| o.idempotency_key_options.clone()),
            ttl,
            payload: item.payload.as_deref().map(Payload::of_raw),
            fingerprint: Fingerprint::of(item.payload.as_deref().map(serde_json::value::RawValue::get)),
        }
    }
}

/// Wire items as the engine triggers them: validated first, then taken a run of one
/// task at a time (items of one task in a row go to the store together), each read into
/// an [`Incoming`], with the TTLs outside the server's grammar counted for one warning
/// per call. The sync and async triggers both walk it.
pub(crate) struct WireGroups<'a> {
    groups: std::slice::ChunkBy<'a, WireItem, fn(&WireItem, &WireItem) -> bool>,
    unreadable: usize,
}

impl<'a> WireGroups<'a> {
    /// `items`, once every one is valid.
    pub(crate) fn new(items: &'a [WireItem]) -> Result<Self, Error> {
        for item in items {
            item.validate()?;
        }
        let same_task: fn(&WireItem, &WireItem) -> bool = |a, b| a.task == b.task;
        Ok(WireGroups { groups: items.chunk_by(same_task), unreadable: 0 })
    }

    /// The next run of items of one task, and that task.
    pub(crate) fn next_group(&mut self) -> Option<(&'a str, Vec<Incoming<'a>>)> {
        let group = self.groups.next()?;
        let task = group.first().map_or("", |item| item.task.as_str());
        Some((task, group.iter().map(|item| Incoming::from_wire(item, &mut self.unreadable)).collect()))
    }

    /// The one warning for the TTLs read so far that the server's grammar refuses.
    pub(crate) fn warn(&self) {
        if self.unreadable > 0 {
            tracing::warn!(
                items = self.unreadable,
                default = %Ttl::DEFAULT,
                "unreadable idempotency key ttl; the server's default applies"
            );
        }
    }
}
