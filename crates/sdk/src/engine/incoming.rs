//! One item on its way into the engine, however it arrived: from a built batch, or
//! as a wire item.

use std::time::Duration;

use idempotency_catalog::KeyOptions;
use serde_json::value::RawValue;

use super::key::KeyRef;
use super::memory::Millis;
use crate::key::IdempotencyKey;
use idempotency_catalog::Ttl;

use crate::wire::WireItem;

/// [`Ttl::DEFAULT`] in the engine's unit: one source for the 30 days.
pub(crate) const DEFAULT_TTL: Millis = Ttl::DEFAULT.duration().as_secs() * 1_000;

pub(crate) struct Incoming<'a> {
    pub(crate) key: Option<KeyRef<'a>>,
    pub(crate) options: Option<KeyOptions>,
    pub(crate) ttl: Millis,
    pub(crate) payload: Option<Box<RawValue>>,
}

impl<'a> Incoming<'a> {
    /// An item of a built batch.
    pub(crate) fn from_batch(key: Option<&IdempotencyKey>, ttl: Option<Ttl>, payload: Option<Box<RawValue>>) -> Self {
        Incoming {
            key: key.map(|key| KeyRef::Digest(key.digest())),
            options: key.and_then(|key| key.options().cloned()),
            ttl: ttl.map_or(DEFAULT_TTL, |ttl| millis(ttl.duration())),
            payload,
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
            payload: item.payload.clone(),
        }
    }
}

pub(crate) fn millis(duration: Duration) -> Millis {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
