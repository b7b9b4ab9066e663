use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, shown};

/// How widely an idempotency key deduplicates: within one run, one attempt of a run,
/// or everywhere.
///
/// The scope decides which run-context values are mixed into the digest; see the
/// `idempotency-sdk` crate. Serialised in lowercase, as the wire format wants.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::Scope;
///
/// assert_eq!(Scope::default(), Scope::Run);
/// assert_eq!("global".parse::<Scope>()?, Scope::Global);
/// assert_eq!(Scope::Attempt.to_string(), "attempt");
///
/// let err = "Global".parse::<Scope>().unwrap_err();
/// assert_eq!(err.to_string(), r#"invalid scope "Global": expected one of `run`, `attempt`, `global`"#);
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Deduplicates within the current run: the run id is mixed into the digest.
    #[default]
    Run,
    /// Deduplicates within the current attempt: run id and attempt number are mixed in.
    Attempt,
    /// Deduplicates across all runs: nothing is mixed in.
    Global,
}

impl Scope {
    /// Every scope, in the order the wire format lists them.
    pub const ALL: [Scope; 3] = [Scope::Run, Scope::Attempt, Scope::Global];

    /// The lowercase name, as on the wire.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::Scope;
    ///
    /// assert_eq!(Scope::Global.as_str(), "global");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Run => "run",
            Scope::Attempt => "attempt",
            Scope::Global => "global",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = Error;

    /// Accepts exactly `run`, `attempt` or `global`, as the reference API does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or_else(|| Error::InvalidScope { value: shown(s) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_parse_and_serde() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{scope}\""));
            assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), scope);
        }
    }

    #[test]
    fn unknown_names_are_refused() {
        for bad in ["", "RUN", " run", "bogus"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
            assert!(serde_json::from_str::<Scope>(&format!("{bad:?}")).is_err(), "{bad:?}");
        }
    }
}
