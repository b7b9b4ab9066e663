use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, shown};

/// How long an idempotency key deduplicates: a whole number of seconds, minutes, hours
/// or days, written as on the wire (`"60s"`, `"5m"`, `"2h"`, `"7d"`).
///
/// Stricter than the server on purpose: a TTL of zero (`"0s"`, which the server
/// accepts and which expires the key at once) is refused here, since a key that
/// deduplicates nothing is almost always a mistake in code. The SDK's engine reads wire
/// items with the server's grammar, `"0s"` included ([`Ttl::wire_millis`]); both are
/// one parser. The fleet's TTL variables (`IDEMPOTENCY_REDIS_CATALOG_TTL`, …) use this
/// strict form.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use idempotency_catalog::Ttl;
///
/// let ttl: Ttl = "7d".parse()?;
/// assert_eq!(ttl.duration(), Duration::from_secs(7 * 86_400));
/// assert_eq!(ttl.to_string(), "7d");
/// assert_eq!(Ttl::default().to_string(), "30d");
/// assert!("1h30m".parse::<Ttl>().is_err());
///
/// // From and to `Duration`: whole seconds only, in the largest unit that is exact.
/// assert_eq!(Ttl::try_from(Duration::from_secs(7_200))?.to_string(), "2h");
/// assert!(Ttl::try_from(Duration::from_millis(1_500)).is_err());
/// assert_eq!(Duration::from(ttl), Duration::from_secs(604_800));
///
/// // Serde uses the wire's string form.
/// assert_eq!(serde_json::to_string(&ttl).unwrap(), r#""7d""#);
/// assert!(serde_json::from_str::<Ttl>(r#""0s""#).is_err());
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ttl {
    amount: u64,
    unit: Unit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl Unit {
    const fn seconds(self) -> u64 {
        match self {
            Unit::Seconds => 1,
            Unit::Minutes => 60,
            Unit::Hours => 3_600,
            Unit::Days => 86_400,
        }
    }

    const fn suffix(self) -> char {
        match self {
            Unit::Seconds => 's',
            Unit::Minutes => 'm',
            Unit::Hours => 'h',
            Unit::Days => 'd',
        }
    }
}

impl Ttl {
    /// The TTL when an item gives none: 30 days, as on the reference server.
    pub const DEFAULT: Ttl = Ttl { amount: 30, unit: Unit::Days };

    /// The TTL as a duration.
    pub const fn duration(self) -> Duration {
        Duration::from_secs(self.amount * self.unit.seconds())
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The grammar both modes share, `^(\d+)([smhd])$`: the digits and the unit.
fn split(text: &str) -> Option<(&str, Unit)> {
    let (digits, unit) = [Unit::Seconds, Unit::Minutes, Unit::Hours, Unit::Days]
        .into_iter()
        .find_map(|unit| Some((text.strip_suffix(unit.suffix())?, unit)))?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some((digits, unit))
}

impl FromStr for Ttl {
    type Err = Error;

    /// Accepts digits followed by one of `s`, `m`, `h`, `d`; at least 1, and at most
    /// what a `Duration` of seconds can hold.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || Error::InvalidTtl { value: shown(s) };
        let (digits, unit) = split(s).ok_or_else(invalid)?;
        let amount: u64 = digits.parse().map_err(|_| invalid())?;
        if amount == 0 || amount.checked_mul(unit.seconds()).is_none() {
            return Err(invalid());
        }
        Ok(Ttl { amount, unit })
    }
}

impl Ttl {
    /// A TTL as the reference server reads it: its grammar, any number, zero included
    /// (a key that expires at once), in milliseconds, saturating. `None` for any other
    /// form, for which the server uses its default.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::Ttl;
    ///
    /// assert_eq!(Ttl::wire_millis("0s"), Some(0));
    /// assert_eq!(Ttl::wire_millis("5m"), Some(300_000));
    /// assert_eq!(Ttl::wire_millis("99999999999999999999999d"), Some(u64::MAX));
    /// assert_eq!(Ttl::wire_millis("1h30m"), None);
    /// ```
    pub fn wire_millis(text: &str) -> Option<u64> {
        let (digits, unit) = split(text)?;
        // Too many digits for a u64 is still a valid form: it means "never, in practice".
        let amount = digits.parse::<u64>().unwrap_or(u64::MAX);
        Some(amount.saturating_mul(unit.seconds()).saturating_mul(1_000))
    }
}

impl From<Ttl> for Duration {
    fn from(ttl: Ttl) -> Self {
        ttl.duration()
    }
}

impl TryFrom<Duration> for Ttl {
    type Error = Error;

    /// A whole number of seconds from 1, written in the largest unit that divides it
    /// exactly (`7200s` becomes `2h`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTtl`] for a duration below one second or with a fraction of a
    /// second: the wire grammar cannot say it.
    fn try_from(duration: Duration) -> Result<Self, Error> {
        let seconds = duration.as_secs();
        if seconds == 0 || duration.subsec_nanos() != 0 {
            return Err(Error::InvalidTtl { value: shown(&format!("{duration:?}")) });
        }
        let unit = [Unit::Days, Unit::Hours, Unit::Minutes]
            .into_iter()
            .find(|unit| seconds.is_multiple_of(unit.seconds()))
            .unwrap_or(Unit::Seconds);
        Ok(Ttl { amount: seconds / unit.seconds(), unit })
    }
}

impl Serialize for Ttl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses_and_round_trips() {
        for (text, secs) in [("60s", 60), ("5m", 300), ("2h", 7_200), ("7d", 604_800), ("007s", 7)] {
            let ttl: Ttl = text.parse().unwrap();
            assert_eq!(ttl.duration().as_secs(), secs, "{text}");
            assert_eq!(ttl.to_string().parse::<Ttl>().unwrap(), ttl);
        }
    }

    #[test]
    fn durations_convert_exactly_or_are_refused() {
        for (secs, text) in
            [(1, "1s"), (59, "59s"), (60, "1m"), (90, "90s"), (3_600, "1h"), (86_400, "1d"), (90_000, "25h")]
        {
            let ttl = Ttl::try_from(Duration::from_secs(secs)).unwrap();
            assert_eq!((ttl.to_string().as_str(), Duration::from(ttl)), (text, Duration::from_secs(secs)));
        }
        for bad in [Duration::ZERO, Duration::from_millis(999), Duration::from_millis(1_001)] {
            let err = Ttl::try_from(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid ttl "), "{err}");
        }
    }

    #[test]
    fn serde_uses_the_wire_form_and_refuses_what_parsing_refuses() {
        for text in ["60s", "5m", "2h", "7d"] {
            let ttl: Ttl = serde_json::from_str(&format!("{text:?}")).unwrap();
            assert_eq!(serde_json::to_string(&ttl).unwrap(), format!("{text:?}"));
        }
        for bad in [r#""0s""#, r#""1h30m""#, "60", "null"] {
            assert!(serde_json::from_str::<Ttl>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_wire_grammar_is_the_servers() {
        let cases: [(&str, Option<u64>); 10] = [
            ("0s", Some(0)),
            ("60s", Some(60_000)),
            ("5m", Some(300_000)),
            ("2h", Some(7_200_000)),
            ("7d", Some(604_800_000)),
            ("99999999999999999999999d", Some(u64::MAX)),
            ("1h30m", None),
            ("10", None),
            (" 10s", None),
            ("-1s", None),
        ];
        for (text, expected) in cases {
            assert_eq!(Ttl::wire_millis(text), expected, "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_value() {
        for bad in
            ["", "s", "0s", "-5m", "1.5h", "1h30m", "10", "10w", "10 s", " 10s", "1e3s", "é", "99999999999999999999d"]
        {
            let err = bad.parse::<Ttl>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid ttl {bad:?}:")), "{err}");
        }
        assert!(format!("{}d", u64::MAX / 86_400 + 1).parse::<Ttl>().is_err());
    }
}
