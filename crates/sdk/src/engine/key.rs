//! An idempotency key as the engine keeps it and looks it up.

use std::borrow::Cow;

use idempotency_catalog::Digest;

/// An idempotency key as the engine keeps it: a digest as 32 bytes, and anything else
/// sent as the key (the wire format allows any string) as it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoredKey {
    Digest(Digest),
    Raw(Box<str>),
}

/// A key being looked up, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KeyRef<'a> {
    Digest(Digest),
    Raw(&'a str),
}

impl<'a> KeyRef<'a> {
    /// The key of a wire item: 64 lowercase hex characters are a digest, and the same
    /// string always gives the same key.
    pub(crate) fn from_wire(key: &'a str) -> Self {
        match key.parse::<Digest>() {
            Ok(digest) => KeyRef::Digest(digest),
            Err(_) => KeyRef::Raw(key),
        }
    }

    pub(crate) fn to_stored(self) -> StoredKey {
        match self {
            KeyRef::Digest(digest) => StoredKey::Digest(digest),
            KeyRef::Raw(raw) => StoredKey::Raw(raw.into()),
        }
    }

    /// The key as it was sent.
    pub(crate) fn text(self) -> Cow<'a, str> {
        match self {
            KeyRef::Digest(digest) => Cow::Owned(digest.to_hex_string()),
            KeyRef::Raw(raw) => Cow::Borrowed(raw),
        }
    }
}

impl StoredKey {
    pub(crate) fn as_key_ref(&self) -> KeyRef<'_> {
        match self {
            StoredKey::Digest(digest) => KeyRef::Digest(*digest),
            StoredKey::Raw(raw) => KeyRef::Raw(raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wire_key_is_a_digest_exactly_when_it_reads_as_one() {
        let hex = "69b65bbed30ca00a0c4bbebbfd780cbd0d20cf36422420b8093fd92e47f3f9e9";
        assert!(matches!(KeyRef::from_wire(hex), KeyRef::Digest(_)));
        assert_eq!(KeyRef::from_wire(hex).text(), hex);
        let upper = hex.to_uppercase();
        assert_eq!(KeyRef::from_wire(&upper), KeyRef::Raw(&upper));
        assert_eq!(KeyRef::from_wire("item-1").to_stored().as_key_ref().text(), "item-1");
    }
}
