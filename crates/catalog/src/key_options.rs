use std::borrow::Cow;
use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;

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
        Self::joined(std::iter::once(key), scope)
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
        // The common case, a short key, is joined on the stack and copied into the
        // string once. `SmolStrBuilder`, `SmolStr::from_iter` and `SmolStr::new` (an
        // out-of-line call) each measured 15-60% slower here, which next to the 75 ns
        // SHA-256 of a short key is a large part of creating one.
        let mut inline = Inline { buf: [0; SmolStr::INLINE_CAP], len: 1 };
        inline.buf[0] = tag(scope) as u8;
        let mut parts = parts.into_iter();
        let mut sep = false;
        while let Some(part) = parts.next() {
            if !inline.push(sep, part) {
                return Self::spill(&inline, sep, part, parts);
            }
            sep = true;
        }
        // `new_inline` cannot panic, as the bytes come from a buffer of `INLINE_CAP`.
        KeyOptions { tagged: SmolStr::new_inline(inline.as_str()) }
    }

    /// The rest of a key that did not fit inline, on the heap.
    #[cold]
    fn spill<'a>(inline: &Inline, sep: bool, part: &str, rest: impl Iterator<Item = &'a str>) -> Self {
        let mut heap = String::from(inline.as_str());
        if sep {
            heap.push('-');
        }
        heap.push_str(part);
        for part in rest {
            heap.push('-');
            heap.push_str(part);
        }
        KeyOptions { tagged: SmolStr::from(heap) }
    }

    /// The original key, its parts joined with `-`.
    pub fn key(&self) -> &str {
        // A bug here must not turn into an empty key, the silent loss this crate exists
        // to prevent: fail loudly instead.
        #[expect(clippy::expect_used, reason = "an invariant of the type, not input")]
        self.tagged.get(1..).expect("a tagged key starts with its one-byte ASCII scope tag")
    }

    /// The bytes a catalog counts for an entry holding these options, against its
    /// byte budget ([`CatalogBuilder::max_bytes`](crate::CatalogBuilder::max_bytes)):
    /// its node, its slot in the hash table at the table's lowest load, and the key's
    /// heap string when it is longer than 22 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::{KeyOptions, Scope};
    ///
    /// assert_eq!(KeyOptions::new("item-42", Scope::Global).entry_bytes(), 119);
    /// assert_eq!(KeyOptions::new(&"k".repeat(2_048), Scope::Global).entry_bytes(), 119 + 2_080);
    /// ```
    pub fn entry_bytes(&self) -> usize {
        crate::budget::entry_bytes(self)
    }

    /// The bytes of the tagged key on the heap (0 when it is stored inline).
    #[inline]
    pub(crate) fn heap_len(&self) -> usize {
        if self.tagged.is_heap_allocated() { self.tagged.len() } else { 0 }
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

/// A tagged key being joined on the stack.
struct Inline {
    buf: [u8; SmolStr::INLINE_CAP],
    len: usize,
}

impl Inline {
    /// Appends `part`, after a `-` when `sep`, or returns `false` (leaving it as it
    /// was) when they do not fit.
    // `#[inline]`: `joined` is generic and so compiled in the caller's crate, where
    // this would otherwise be an out-of-line call per part.
    #[inline]
    fn push(&mut self, sep: bool, part: &str) -> bool {
        // Lengths of strings in memory are at most `isize::MAX`: no overflow.
        let start = self.len + usize::from(sep);
        let end = start + part.len();
        let Some(dst) = self.buf.get_mut(start..end) else { return false };
        dst.copy_from_slice(part.as_bytes());
        if let Some(dash) = self.buf.get_mut(self.len).filter(|_| sep) {
            *dash = b'-';
        }
        self.len = end;
        true
    }

    /// The key joined so far. Only `&str`s and ASCII were copied in, so the check
    /// never fails (it is what keeps the crate free of `unsafe`); if a bug ever broke
    /// that, an empty key would be a silent loss, so it fails loudly instead.
    #[inline]
    #[expect(clippy::expect_used, reason = "an invariant of the type, not input")]
    fn as_str(&self) -> &str {
        let bytes = self.buf.get(..self.len).expect("the length never passes the buffer");
        std::str::from_utf8(bytes).expect("joined from `&str`s and an ASCII tag at char boundaries")
    }
}

#[inline]
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
        let ten = "k".repeat(10);
        let cases: [&[&str]; 9] = [
            &[],
            &[""],
            &["a"],
            &["a", "b"],
            &["order", "123", "", "user-7"],
            // 22 bytes, the most that stays inline, then one more, in the separator
            // and in a part: the spill must keep what was joined so far.
            &[&ten, &ten, "k"],
            &[&ten, &ten, ""],
            &[&ten, &ten, "kk"],
            &[&ten, &ten, "k", "", &ten],
        ];
        for parts in cases {
            for scope in Scope::ALL {
                let options = KeyOptions::joined(parts.iter().copied(), scope);
                assert_eq!((options.key(), options.scope()), (parts.join("-").as_str(), scope), "{parts:?}");
                assert_eq!(options.tagged.is_heap_allocated(), parts.join("-").len() > 22, "{parts:?}");
            }
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
