//! A run's id: what error messages, handles and records name a run by.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, shown};

/// A run's id. An engine in one process numbers its runs from 1 in the order it
/// creates them, shown as `run_00000042`; an engine on Redis (feature `redis`) gives
/// ids that are unique across the fleet and name where the run's record lives, shown
/// as `run_` and 48 lowercase hex characters. `Copy`, 24 bytes: handles and records
/// carry no string.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::RunId;
///
/// assert_eq!(RunId::new(42).to_string(), "run_00000042");
/// assert_eq!("run_00000042".parse::<RunId>()?, RunId::new(42));
/// assert!("run_4x".parse::<RunId>().is_err());
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId {
    /// Zero for an engine-local id; on a shared store, where the run's record lives
    /// (a hash of its task and key, or for a run without a key, a number of its own).
    /// Two halves rather than a `u128`, which would align the id, and every handle, to
    /// 16 bytes.
    tag: [u64; 2],
    /// The engine-local number, or on a shared store, the engine's random base plus it.
    nonce: u64,
}

/// How many hex characters a fleet id has after `run_`.
const FLEET_HEX: usize = 48;

impl RunId {
    /// The engine-local id numbered `n`.
    pub const fn new(n: u64) -> Self {
        RunId { tag: [0, 0], nonce: n }
    }

    /// A fleet id: where its record lives (`tag`, not zero) and its nonce.
    pub(crate) const fn fleet(tag: u128, nonce: u64) -> Self {
        Self::from_parts(tag, nonce)
    }

    /// The id whose parts are `tag` and `nonce`: engine-local when `tag` is 0 (the
    /// nonce is then its number), else a fleet id.
    pub(crate) const fn from_parts(tag: u128, nonce: u64) -> Self {
        RunId { tag: [(tag >> 64) as u64, tag as u64], nonce }
    }

    pub(crate) const fn tag(self) -> u128 {
        (self.tag[0] as u128) << 64 | self.tag[1] as u128
    }

    pub(crate) const fn nonce(self) -> u64 {
        self.nonce
    }

    /// Whether the id was made by an engine on a shared store.
    pub(crate) const fn is_fleet(self) -> bool {
        self.tag[0] != 0 || self.tag[1] != 0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_fleet() {
            write!(f, "run_{:032x}{:016x}", self.tag(), self.nonce)
        } else {
            write!(f, "run_{:08}", self.nonce)
        }
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// As its text (`"run_00000042"`), read back with [`FromStr`].
impl Serialize for RunId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for RunId {
    type Err = Error;

    /// `run_` followed by a decimal number (an engine-local id) or by 48 lowercase hex
    /// characters (a fleet id), as [`Display`](fmt::Display) writes them.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidRunId { value: shown(s) };
        let digits = s.strip_prefix("run_").filter(|d| !d.is_empty()).ok_or_else(invalid)?;
        if digits.len() == FLEET_HEX {
            let hex = |d: &str| {
                let lower = d.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                lower.then(|| u128::from_str_radix(d, 16).ok()).flatten()
            };
            let (tag, nonce) = (digits.get(..32).and_then(hex), digits.get(32..).and_then(hex));
            return match (tag, nonce.and_then(|n| u64::try_from(n).ok())) {
                (Some(tag), Some(nonce)) if tag != 0 => Ok(RunId::fleet(tag, nonce)),
                _ => Err(invalid()),
            };
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        digits.parse().map(RunId::new).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_as_they_are_shown_and_stay_small() {
        for id in [RunId::new(1), RunId::new(42), RunId::new(u64::MAX), RunId::fleet(1, 0), RunId::fleet(u128::MAX, 7)]
        {
            assert_eq!(id.to_string().parse::<RunId>().unwrap(), id, "{id}");
        }
        assert_eq!(
            RunId::fleet(0xab << 64 | 0xcd, 0xef).to_string(),
            format!("run_{:016x}{:016x}{:016x}", 0xab, 0xcd, 0xef)
        );
        assert!(!RunId::new(3).is_fleet() && RunId::fleet(3, 0).is_fleet());
        let fleet = RunId::fleet(0x0123_4567_89ab_cdef_0011_2233_4455_6677, 0x8899_aabb_ccdd_eeff);
        assert_eq!((fleet.tag(), fleet.nonce()), (0x0123_4567_89ab_cdef_0011_2233_4455_6677, 0x8899_aabb_ccdd_eeff));
        assert_eq!(std::mem::size_of::<RunId>(), 24);
    }

    #[test]
    fn anything_else_is_not_an_id() {
        let zero_tag = format!("run_{}", "0".repeat(48));
        let upper = format!("run_{}", "A".repeat(48));
        for bad in [
            "",
            "run_",
            "run",
            "42",
            "run_-1",
            "run_+1",
            "run_1.0",
            "run_99999999999999999999",
            "run_ 1",
            &zero_tag,
            &upper,
        ] {
            let err = bad.parse::<RunId>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid run id {bad:?}")), "{err}");
        }
    }

    #[test]
    fn ids_serialize_as_their_text_and_bad_text_is_refused() {
        for id in [RunId::new(42), RunId::fleet(0xab, 7)] {
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, format!("\"{id}\""));
            assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), id);
        }
        let err = serde_json::from_str::<RunId>(r#""run_x""#).unwrap_err().to_string();
        assert!(err.starts_with(r#"invalid run id "run_x""#), "{err}");
    }
}
