use std::borrow::Cow;
use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::{SmolStr, SmolStrBuilder};

use crate::scope::Scope;

/// The human-readable side of an idempotency key: the original key (its parts joined
/// with `-`) and the scope it was created with. This is what run records and
/// dashboards show instead of a digest.
///
/// Serialises exactly as the wire format's `idempotencyKeyOptions`:
/// `{"key":"item-42","scope":"global"}`.
///
/// Cloning never copies a heap string: keys of up to 22 bytes are stored inline and
/// longer ones are shared. That is what lets [`Catalog::get`](crate::Catalog::get)
/// hand out a value without a cloning cost, and keeps a catalog entry small.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::{KeyOptions, Scope};
///
/// let options = KeyOptions::new("item-42", Scope::Global);
/// assert_eq!(options.key(), "item-42");
/// assert_eq!(options.scope(), Scope::Global);
///
/// let json = serde_json::to_string(&options)?;
/// assert_eq!(json, r#"{"key":"item-42","scope":"global"}"#);
/// assert_eq!(serde_json::from_str::<KeyOptions>(&json)?, options);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyOptions {
    // The scope's tag byte followed by the key. One `SmolStr` (24 bytes) instead of a
    // `SmolStr` plus a scope byte (32 bytes with padding): at a million entries that is
    // the difference between a catalog entry fitting in 80 or 96 bytes of heap.
    tagged: SmolStr,
}

impl KeyOptions {
    /// Options for `key` created with `scope`.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::{KeyOptions, Scope};
    ///
    /// let options = KeyOptions::new("order-123", Scope::Run);
    /// assert_eq!((options.key(), options.scope()), ("order-123", Scope::Run));
    /// ```
    pub fn new(key: &str, scope: Scope) -> Self {
        // The common case, a short key, on the stack: `SmolStrBuilder` and
        // `SmolStr::new` cost about as much again as hashing the key.
        let mut inline = [0u8; SmolStr::INLINE_CAP];
        let tagged = match inline.get_mut(1..=key.len()) {
            Some(rest) => {
                rest.copy_from_slice(key.as_bytes());
                inline[0] = tag(scope) as u8;
                // A `&str` behind an ASCII tag is valid UTF-8.
                inline.get(..=key.len()).and_then(|tagged| std::str::from_utf8(tagged).ok()).map(SmolStr::new_inline)
            }
            None => None,
        };
        KeyOptions { tagged: tagged.unwrap_or_else(|| Self::from_parts(std::iter::once(key), scope).tagged) }
    }

    /// Options whose key is `parts` joined with `-`, built without an intermediate
    /// `String`: the way an SDK turns `["item", "42"]` into `item-42`.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::{KeyOptions, Scope};
    ///
    /// let options = KeyOptions::joined(["item", "42"], Scope::Global);
    /// assert_eq!(options.key(), "item-42");
    /// assert_eq!(KeyOptions::joined([] as [&str; 0], Scope::Run).key(), "");
    /// ```
    pub fn joined<'a>(parts: impl IntoIterator<Item = &'a str>, scope: Scope) -> Self {
        let mut first = true;
        let parts = parts.into_iter().flat_map(|part| {
            let sep = if first { "" } else { "-" };
            first = false;
            [sep, part]
        });
        Self::from_parts(parts, scope)
    }

    fn from_parts<'a>(parts: impl Iterator<Item = &'a str>, scope: Scope) -> Self {
        let mut builder = SmolStrBuilder::new();
        builder.push(tag(scope));
        for part in parts {
            builder.push_str(part);
        }
        KeyOptions { tagged: builder.finish() }
    }

    /// The original key, its parts joined with `-`.
    pub fn key(&self) -> &str {
        // The tag is one ASCII byte, so index 1 is always a char boundary.
        self.tagged.get(1..).unwrap_or_default()
    }

    /// The scope the key was created with.
    pub fn scope(&self) -> Scope {
        match self.tagged.as_bytes().first() {
            Some(b'a') => Scope::Attempt,
            Some(b'g') => Scope::Global,
            _ => Scope::Run,
        }
    }
}

fn tag(scope: Scope) -> char {
    match scope {
        Scope::Run => 'r',
        Scope::Attempt => 'a',
        Scope::Global => 'g',
    }
}

impl fmt::Debug for KeyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyOptions").field("key", &self.key()).field("scope", &self.scope()).finish()
    }
}

impl Serialize for KeyOptions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("KeyOptions", 2)?;
        s.serialize_field("key", self.key())?;
        s.serialize_field("scope", &self.scope())?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for KeyOptions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Unknown fields are ignored, as the reference API strips them.
        #[derive(Deserialize)]
        struct Wire<'a> {
            #[serde(borrow)]
            key: Cow<'a, str>,
            scope: Scope,
        }
        let wire = Wire::deserialize(deserializer)?;
        Ok(KeyOptions::new(&wire.key, wire.scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_as_small_as_one_smol_str() {
        assert_eq!(std::mem::size_of::<KeyOptions>(), 24);
    }

    #[test]
    fn every_scope_round_trips_with_any_key() {
        for scope in Scope::ALL {
            for key in ["", "a", "item-42", &"k".repeat(22), &"k".repeat(23), &"é".repeat(500)] {
                let options = KeyOptions::new(key, scope);
                assert_eq!(options.key(), key);
                assert_eq!(options.scope(), scope);
            }
        }
    }

    #[test]
    fn short_keys_stay_inline() {
        assert!(!KeyOptions::new(&"k".repeat(22), Scope::Run).tagged.is_heap_allocated());
        assert!(KeyOptions::new(&"k".repeat(23), Scope::Run).tagged.is_heap_allocated());
    }

    #[test]
    fn joined_matches_a_plain_join() {
        let cases: [&[&str]; 5] = [&[], &[""], &["a"], &["a", "b"], &["order", "123", "", "user-7"]];
        for parts in cases {
            assert_eq!(KeyOptions::joined(parts.iter().copied(), Scope::Global).key(), parts.join("-"));
        }
    }

    #[test]
    fn deserialising_ignores_extra_fields_and_requires_both() {
        let options: KeyOptions = serde_json::from_str(r#"{"key":"item-0","scope":"global","extra":1}"#).unwrap();
        assert_eq!(options, KeyOptions::new("item-0", Scope::Global));
        for bad in [
            r#"{"scope":"global"}"#,
            r#"{"key":"item-0"}"#,
            r#"{"key":null,"scope":"run"}"#,
            r#"{"key":"k","scope":"bogus"}"#,
        ] {
            assert!(serde_json::from_str::<KeyOptions>(bad).is_err(), "{bad}");
        }
    }
}
