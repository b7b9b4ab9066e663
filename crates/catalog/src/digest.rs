use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, shown};

/// A SHA-256 idempotency-key digest: 32 bytes, shown as 64 lowercase hex characters.
///
/// Kept as bytes rather than a hex `String`, which halves the memory a catalog entry
/// needs and makes hashing and comparing it cheaper.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::Digest;
///
/// let hex = "5e78863ed1ffb9fc66b1d61634b126bf8eb20267e7996297eeeb9b19c8c0f732";
/// let digest: Digest = hex.parse()?;
/// assert_eq!(digest.to_string(), hex);
/// assert_eq!(digest.as_bytes()[0], 0x5e);
///
/// let err = "5E78".parse::<Digest>().unwrap_err();
/// assert_eq!(err.to_string(), r#"invalid digest "5E78": expected 64 characters, found 4"#);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
// Aligned to 8: an enum that holds a digest beside a one-byte tag (a key that may be a
// digest or text) then keeps it at offset 8 instead of 1, where copying it stalled on
// store forwarding. A digest is 32 bytes either way.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(align(8))]
pub struct Digest([u8; 32]);

impl Digest {
    /// The length of a digest in hex characters.
    pub const HEX_LEN: usize = 64;

    /// Wraps 32 bytes, such as the output of a SHA-256 hasher.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::Digest;
    ///
    /// let digest = Digest::from_bytes([0xab; 32]);
    /// assert!(digest.to_string().starts_with("abab"));
    /// ```
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// The 32 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::Digest;
    ///
    /// assert_eq!(Digest::from_bytes([7; 32]).as_bytes(), &[7; 32]);
    /// ```
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex characters, on the stack: what `Display` writes, without
    /// going through a formatter or allocating a `String`.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::Digest;
    ///
    /// let digest = Digest::from_bytes([0x0f; 32]);
    /// assert_eq!(&digest.to_hex()[..4], b"0f0f");
    /// ```
    pub fn to_hex(&self) -> [u8; Self::HEX_LEN] {
        let mut out = [0u8; Self::HEX_LEN];
        // Cannot fail: the output is exactly twice the input's length.
        let _ = hex::encode_to_slice(self.0, &mut out);
        out
    }

    /// The 64 lowercase hex characters as a `String`, without going through a formatter.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::Digest;
    ///
    /// let digest = Digest::from_bytes([0xab; 32]);
    /// assert_eq!(digest.to_hex_string(), digest.to_string());
    /// ```
    pub fn to_hex_string(&self) -> String {
        self.to_hex().iter().map(|&b| char::from(b)).collect()
    }
}

impl FromStr for Digest {
    type Err = Error;

    /// Parses exactly 64 lowercase hex characters.
    ///
    /// Uppercase is refused on purpose: the server compares keys as strings, so
    /// `"AB…"` and `"ab…"` are different keys and must not map to one digest.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| Error::InvalidDigest { value: shown(s), reason };
        let found = s.chars().count();
        if found != Self::HEX_LEN {
            return Err(invalid(format!("expected 64 characters, found {found}")));
        }
        let mut bytes = [0u8; 32];
        match s.chars().enumerate().find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f')) {
            Some((at, c)) => Err(invalid(format!("expected lowercase hex `0-9a-f`, found {c:?} at character {at}"))),
            None => hex::decode_to_slice(s, &mut bytes).map(|()| Digest(bytes)).map_err(|e| invalid(e.to_string())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        // Hex output is always ASCII.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let hex = self.to_hex();
        serializer.serialize_str(std::str::from_utf8(&hex).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A distinct digest per number, for tests.
#[cfg(test)]
pub(crate) fn test_digest(i: u32) -> Digest {
    let mut bytes = [0; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    Digest(bytes)
}
