use idempotency_catalog::{Catalog, Digest, KeyOptions, Scope, implement::ReservationId};

use crate::context::RunContext;
use crate::error::{Error, shown};
use crate::key::IdempotencyKey;

/// Whatever a caller passes where an idempotency key is expected, resolved with the
/// reference SDK's rules by [`Sdk::resolve`](crate::Sdk::resolve):
///
/// | input | becomes |
/// |---|---|
/// | an [`IdempotencyKey`] | itself, with its own options |
/// | `""` | no key |
/// | a string of exactly 64 characters | that digest, verbatim; options from the catalog, if it knows them |
/// | any other string | derived from it with scope `run`, and registered |
/// | a list of strings | derived from the list with scope `run`, and registered |
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{IdempotencyKey, KeyInput, Scope};
///
/// let typed: KeyInput = IdempotencyKey::derive("item-0", Scope::Global, None).into();
/// let raw: KeyInput = "my-key".into();
/// let list: KeyInput = vec!["a", "b"].into();
/// assert!(matches!(list, KeyInput::Parts(ref p) if p == &["a", "b"]));
/// # let _ = (typed, raw);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyInput {
    /// A key made by this SDK; it carries its own options.
    Key(IdempotencyKey),
    /// A raw string: a digest when it is 64 UTF-16 code units long, else key material.
    Raw(String),
    /// Key material as a list.
    Parts(Vec<String>),
    /// A key that could not be made: [`Sdk::create_key`](crate::Sdk::create_key)'s
    /// error, given to an item as it is. Resolving it is that error, so the batch's
    /// `build` fails naming the item.
    Invalid {
        /// The material, quoted and cut.
        value: String,
        /// Why it makes no key.
        reason: String,
    },
}

impl From<Result<IdempotencyKey, Error>> for KeyInput {
    fn from(key: Result<IdempotencyKey, Error>) -> Self {
        match key {
            Ok(key) => KeyInput::Key(key),
            Err(Error::InvalidKeyMaterial { value, reason }) => KeyInput::Invalid { value, reason },
            Err(other) => KeyInput::Invalid { value: String::new(), reason: other.to_string() },
        }
    }
}

impl From<IdempotencyKey> for KeyInput {
    fn from(key: IdempotencyKey) -> Self {
        KeyInput::Key(key)
    }
}

impl From<&IdempotencyKey> for KeyInput {
    fn from(key: &IdempotencyKey) -> Self {
        KeyInput::Key(key.clone())
    }
}

impl From<&str> for KeyInput {
    fn from(raw: &str) -> Self {
        KeyInput::Raw(raw.to_owned())
    }
}

impl From<String> for KeyInput {
    fn from(raw: String) -> Self {
        KeyInput::Raw(raw)
    }
}

impl<S: AsRef<str>> From<Vec<S>> for KeyInput {
    fn from(parts: Vec<S>) -> Self {
        KeyInput::Parts(parts.iter().map(|p| p.as_ref().to_owned()).collect())
    }
}

impl<S: AsRef<str>> From<&[S]> for KeyInput {
    fn from(parts: &[S]) -> Self {
        KeyInput::Parts(parts.iter().map(|p| p.as_ref().to_owned()).collect())
    }
}

impl KeyInput {
    /// [`resolve`](Self::resolve), moving a typed key out rather than cloning it.
    pub(crate) fn into_key(self, keys: &Keys<'_>, run: Option<&RunContext>) -> Result<Option<IdempotencyKey>, Error> {
        match self {
            KeyInput::Key(key) if key.options().is_some() => Ok(Some(key)),
            other => other.resolve(keys, run),
        }
    }

    pub(crate) fn resolve(&self, keys: &Keys<'_>, run: Option<&RunContext>) -> Result<Option<IdempotencyKey>, Error> {
        Ok(Some(match self {
            KeyInput::Key(key) if key.options().is_some() => key.clone(),
            KeyInput::Key(key) => IdempotencyKey::from_digest(key.digest(), keys.get(&key.digest())),
            KeyInput::Raw(raw) if raw.is_empty() => return Ok(None),
            KeyInput::Raw(raw) if is_digest_length(raw) => {
                let digest =
                    raw.parse::<Digest>().map_err(|_| Error::NotADigest { value: shown(raw), reason: not_hex(raw) })?;
                IdempotencyKey::from_digest(digest, keys.get(&digest))
            }
            KeyInput::Raw(raw) => keys.register(IdempotencyKey::derive(raw.as_str(), Scope::Run, run)),
            KeyInput::Parts(parts) => keys.register(IdempotencyKey::derive(parts, Scope::Run, run)),
            KeyInput::Invalid { value, reason } => {
                return Err(Error::InvalidKeyMaterial { value: value.clone(), reason: reason.clone() });
            }
        }))
    }
}

/// Why a string of 64 UTF-16 units is not a digest, in characters: it has a character
/// outside lowercase hex (one outside ASCII, if its characters are fewer than 64).
fn not_hex(raw: &str) -> String {
    match raw.chars().enumerate().find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f')) {
        Some((at, c)) => format!("expected lowercase hex `0-9a-f`, found {c:?} at character {at}"),
        None => format!("it is not 64 lowercase hex characters ({} characters)", raw.chars().count()),
    }
}

/// The reference SDK tests `key.length === 64`, a length in UTF-16 code units.
pub(crate) fn is_digest_length(raw: &str) -> bool {
    raw.len() >= 64 && raw.len() <= 64 * 3 && raw.encode_utf16().count() == 64
}

/// Where the SDK registers the keys it makes and looks up bare digests: held by a
/// reservation (a run's, or a batch's outside a run), or free.
#[derive(Clone, Copy)]
pub(crate) struct Keys<'a> {
    catalog: &'a dyn Catalog,
    holder: Option<ReservationId>,
}

impl<'a> Keys<'a> {
    pub(crate) fn new(catalog: &'a dyn Catalog, holder: Option<ReservationId>) -> Self {
        Keys { catalog, holder }
    }

    pub(crate) fn catalog(&self) -> &'a dyn Catalog {
        self.catalog
    }

    pub(crate) fn register(&self, key: IdempotencyKey) -> IdempotencyKey {
        if let Some(options) = key.options() {
            match self.holder {
                Some(holder) => self.catalog.register_held(holder, key.digest(), options.clone()),
                None => self.catalog.register(key.digest(), options.clone()),
            }
        }
        key
    }

    fn get(&self, digest: &Digest) -> Option<KeyOptions> {
        self.catalog.get(digest)
    }
}

#[cfg(test)]
mod tests {
    use idempotency_catalog::UnboundedCatalog;

    use super::*;

    #[test]
    fn raw_strings_follow_the_reference_rules() {
        let catalog = UnboundedCatalog::new();
        let keys = Keys::new(&catalog, None);
        assert_eq!(KeyInput::from("").resolve(&keys, None).unwrap(), None);

        let derived = KeyInput::from("my-key").resolve(&keys, None).unwrap().unwrap();
        assert_eq!(derived.options(), Some(&KeyOptions::new("my-key", Scope::Run)));
        // Registered, so the digest alone finds the options again.
        let by_digest = KeyInput::from(derived.digest().to_string()).resolve(&keys, None).unwrap().unwrap();
        assert_eq!(by_digest, derived);

        let unknown = "0".repeat(64);
        let resolved = KeyInput::from(unknown.as_str()).resolve(&keys, None).unwrap().unwrap();
        assert_eq!((resolved.digest().to_string(), resolved.options()), (unknown, None));
    }

    #[test]
    fn a_64_character_string_that_is_not_hex_is_refused() {
        let catalog = UnboundedCatalog::new();
        let catalog = Keys::new(&catalog, None);
        for bad in ["k".repeat(64), "A".repeat(64), format!("{}é", "a".repeat(63))] {
            let err = KeyInput::from(bad.as_str()).resolve(&catalog, None).unwrap_err().to_string();
            assert!(
                err.contains("64 UTF-16 code units long (JavaScript's `length`), so it is taken as a digest"),
                "{err}"
            );
        }
        // 32 emoji are 64 UTF-16 units: taken as a digest, and the error says why not
        // in a unit that does not contradict itself.
        let err = KeyInput::from("😀".repeat(32).as_str()).resolve(&catalog, None).unwrap_err().to_string();
        assert!(err.ends_with("but expected lowercase hex `0-9a-f`, found '😀' at character 0"), "{err}");
        // 63 and 65 characters are ordinary key material.
        for ok in ["k".repeat(63), "k".repeat(65)] {
            assert!(KeyInput::from(ok.as_str()).resolve(&catalog, None).unwrap().unwrap().options().is_some());
        }
    }
}
