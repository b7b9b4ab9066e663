use std::fmt;

use idempotency_catalog::{Digest, KeyOptions, Scope};
use serde::{Deserialize, Serialize};

use crate::context::RunContext;
use crate::error::{Error, shown};
use crate::message::Message;

/// Key material: one string, or a list of strings joined with `-` in order.
///
/// Implemented for `str`, `String`, slices, arrays and `Vec`s of string-likes. One
/// string and a list of that one string give the same key, as in the reference SDK.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{IdempotencyKey, Scope};
///
/// let a = IdempotencyKey::derive("a-b", Scope::Global, None);
/// let b = IdempotencyKey::derive(["a", "b"], Scope::Global, None);
/// let c = IdempotencyKey::derive(&vec!["a-b".to_owned()], Scope::Global, None);
/// assert_eq!(a, b);
/// assert_eq!(b, c);
/// ```
pub trait KeyParts {
    /// The parts, in order.
    fn parts(&self) -> impl Iterator<Item = &str>;
}

impl KeyParts for str {
    fn parts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self)
    }
}

impl KeyParts for String {
    fn parts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.as_str())
    }
}

impl<S: AsRef<str>> KeyParts for [S] {
    fn parts(&self) -> impl Iterator<Item = &str> {
        self.iter().map(AsRef::as_ref)
    }
}

impl<S: AsRef<str>, const N: usize> KeyParts for [S; N] {
    fn parts(&self) -> impl Iterator<Item = &str> {
        self.iter().map(AsRef::as_ref)
    }
}

impl<S: AsRef<str>> KeyParts for Vec<S> {
    fn parts(&self) -> impl Iterator<Item = &str> {
        self.iter().map(AsRef::as_ref)
    }
}

impl<T: KeyParts + ?Sized> KeyParts for &T {
    fn parts(&self) -> impl Iterator<Item = &str> {
        (**self).parts()
    }
}

/// An idempotency key: the digest that deduplicates, and the options (original key and
/// scope) that travel beside it.
///
/// A key made from key material carries its own options, so a batch never needs the
/// catalog to find them. A key resolved from a bare digest string has options only if
/// the catalog still knew them.
///
/// Two keys are equal when their digests are: the same key with and without known
/// options is the same key (equality and hashing look at the digest alone).
///
/// A key serializes with its options, so that it can travel through a payload or a
/// queue without depending on a catalog to find them again:
/// `{"digest":"<64 lowercase hex>","options":{"key":"item-42","scope":"global"}}`
/// (`options` left out when unknown). Deserializing checks both: a digest that is not
/// 64 lowercase hex characters, an unknown scope or an unknown field is an error.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{IdempotencyKey, RunContext, Scope};
///
/// let run = RunContext::new("run_abc123", 1);
/// let key = IdempotencyKey::derive(["a", "b"], Scope::Run, Some(&run));
/// // SHA-256 of "a-b-run_abc123", as the reference SDK computes it.
/// assert!(key.digest().to_string().starts_with("db6543a7"));
/// assert_eq!(key.options().map(|o| (o.key(), o.scope())), Some(("a-b", Scope::Run)));
/// let bare = IdempotencyKey::from_digest(key.digest(), None);
/// assert_eq!(bare, key); // the same key, options known or not
///
/// let json = serde_json::to_string(&key)?;
/// assert!(json.ends_with(r#""options":{"key":"a-b","scope":"run"}}"#));
/// let back: IdempotencyKey = serde_json::from_str(&json)?;
/// assert_eq!(back.options(), key.options());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyKey {
    digest: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    options: Option<KeyOptions>,
}

impl IdempotencyKey {
    /// Derives the key for `parts` in `scope`, without registering it anywhere; see
    /// [`Sdk::create_key`](crate::Sdk::create_key) for the registering form.
    ///
    /// The digest is SHA-256 of `(parts ++ suffix).join("-")`, where the suffix is
    /// nothing for `global`, `[run_id]` for `run` and `[run_id, attempt]` for
    /// `attempt`; outside a run (`run` is `None`) every scope adds nothing.
    ///
    /// A key made this way carries its options but the catalog does not know them, so
    /// its bare digest string resolves without them. When keys only ever travel as
    /// `IdempotencyKey` values, that is all a batch needs, and it saves the catalog
    /// the work and the memory (at a million items, about three quarters of the
    /// fan-out's time; see `docs/configuration.md`).
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::{IdempotencyKey, ItemOptions, Scope, Sdk};
    ///
    /// let sdk = Sdk::from_env()?;
    /// let mut batch = sdk.batch("child-task", 3);
    /// for i in 0..3 {
    ///     let key = IdempotencyKey::derive(["item", &i.to_string()], Scope::Global, sdk.run());
    ///     batch.item(None, ItemOptions::new().key(key));
    /// }
    /// assert_eq!(batch.build()?.report().with_options, 3);
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn derive(parts: impl KeyParts, scope: Scope, run: Option<&RunContext>) -> Self {
        let suffix = match (run, scope) {
            (None, _) | (_, Scope::Global) => None,
            (Some(run), Scope::Run) => Some(run.run_id()),
            (Some(run), Scope::Attempt) => Some(run.attempt_suffix()),
        };
        let mut message = Message::new();
        for part in parts.parts().chain(suffix) {
            message.push(part);
        }
        let digest = message.digest();
        // The options join the parts again rather than copying the message's prefix:
        // read back just after being written, those bytes stall on store forwarding
        // (measured slower than the second join).
        let options = KeyOptions::joined(parts.parts(), scope);
        IdempotencyKey { digest, options: Some(options) }
    }

    /// Checks the key material this key was derived from: refused when it is empty (an
    /// empty key means no key, as where a key is expected). Any length is accepted, as
    /// the reference SDK sends any length whole as the options' key (see
    /// `docs/configuration.md`, "Key material"). A key without options has nothing to
    /// check.
    pub(crate) fn check_material(self) -> Result<Self, Error> {
        if self.options.as_ref().is_some_and(|options| options.key().is_empty()) {
            return Err(Error::InvalidKeyMaterial {
                value: shown(""),
                reason: "empty key material makes no key (an empty key means no key, as in ItemOptions::key(\"\")); \
                         give the item no key instead"
                    .to_owned(),
            });
        }
        Ok(self)
    }

    /// A key known only by its digest, with whatever options are known for it.
    pub fn from_digest(digest: Digest, options: Option<KeyOptions>) -> Self {
        IdempotencyKey { digest, options }
    }

    /// The digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The original key and scope, when known.
    pub fn options(&self) -> Option<&KeyOptions> {
        self.options.as_ref()
    }

    /// The original key and scope, moved out.
    pub(crate) fn into_options(self) -> Option<KeyOptions> {
        self.options
    }
}

impl PartialEq for IdempotencyKey {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for IdempotencyKey {}

impl std::hash::Hash for IdempotencyKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl fmt::Display for IdempotencyKey {
    /// The digest as 64 lowercase hex characters: what travels as `idempotencyKey`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.digest, f)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyKey").field("digest", &self.digest).field("options", &self.options).finish()
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;

    fn sha256_hex(s: &str) -> String {
        Digest::from_bytes(Sha256::digest(s.as_bytes()).into()).to_string()
    }

    #[test]
    fn serde_round_trips_with_and_without_options_and_refuses_bad_input() {
        let run = RunContext::new("r", 7);
        for key in [
            IdempotencyKey::derive(["order", "7"], Scope::Attempt, Some(&run)),
            IdempotencyKey::derive(["x".repeat(100).as_str()], Scope::Global, None),
            IdempotencyKey::from_digest(Digest::from_bytes([9; 32]), None),
        ] {
            let json = serde_json::to_string(&key).unwrap();
            let back: IdempotencyKey = serde_json::from_str(&json).unwrap();
            assert_eq!((back.digest(), back.options()), (key.digest(), key.options()), "{json}");
        }
        let bare = serde_json::to_string(&IdempotencyKey::from_digest(Digest::from_bytes([0; 32]), None)).unwrap();
        assert_eq!(bare, format!(r#"{{"digest":"{}"}}"#, "0".repeat(64)));

        let hex = "ab".repeat(32);
        let bad = [
            (format!(r#"{{"digest":"{}"}}"#, hex.to_uppercase()), "invalid digest"),
            (r#"{"digest":"abc"}"#.to_owned(), "invalid digest"),
            (format!(r#"{{"digest":"{hex}","options":{{"key":"k","scope":"forever"}}}}"#), "unknown variant `forever`"),
            (format!(r#"{{"digest":"{hex}","extra":1}}"#), "unknown field `extra`"),
            (r#"{"options":{"key":"k","scope":"run"}}"#.to_owned(), "missing field `digest`"),
        ];
        for (json, expected) in bad {
            let err = serde_json::from_str::<IdempotencyKey>(&json).unwrap_err().to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn the_digest_is_sha256_of_the_joined_parts_and_suffix() {
        let run = RunContext::new("r", 7);
        let cases: [(&[&str], Scope, Option<&RunContext>, &str); 6] = [
            (&["a", "b"], Scope::Global, Some(&run), "a-b"),
            (&["a", "b"], Scope::Run, Some(&run), "a-b-r"),
            (&["a", "b"], Scope::Attempt, Some(&run), "a-b-r-7"),
            (&["a", "b"], Scope::Attempt, None, "a-b"),
            (&[], Scope::Run, Some(&run), "r"),
            (&[""], Scope::Run, Some(&run), "-r"),
        ];
        for (parts, scope, ctx, joined) in cases {
            let key = IdempotencyKey::derive(parts, scope, ctx);
            assert_eq!(key.digest().to_string(), sha256_hex(joined), "{joined}");
            assert_eq!(key.options().map(|o| o.key()), Some(parts.join("-").as_str()));
        }
    }
}
