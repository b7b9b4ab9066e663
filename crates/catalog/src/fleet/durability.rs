//! [`Durability`]: how many copies of a write a master must have before the write is
//! reported done, and the `WAIT` (or `WAITAOF`) that asks it.
//!
//! Redis acknowledges a write once the master holds it in memory; its replicas get it a
//! moment later. A master that fails in that moment takes the write with it: the
//! replica promoted in its place never had it, and a claim reported created is gone, so
//! the same key runs again. `WAIT n` after a pipeline, on the connection that sent it,
//! answers how many replicas hold everything that connection wrote; `WAITAOF` also
//! counts copies fsynced to an append-only file.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ::redis::{Cmd, Value};

use crate::error::Error;

/// How many copies of a claim (or any write of the fleet) a master must have before it
/// is reported done. Set with [`RedisBuilder::durability`](super::RedisBuilder::durability)
/// or [`env::REDIS_DURABILITY`](crate::env::REDIS_DURABILITY).
///
/// | setting | variable | waits for | survives |
/// |---|---|---|---|
/// | [`Auto`](Self::Auto) (default) | `auto` | one replica where the master has one; nothing where it has none | a failover (crash, `CLUSTER FAILOVER FORCE`) of a master with a replica; not the loss of master and replica at once |
/// | [`Replicas(n)`](Self::Replicas) | `replicas:N` | `n` replicas, always: a master with fewer fails its writes | the loss of up to `n` of the copies |
/// | [`Aof(n)`](Self::Aof) | `aof:N` | the master's append-only file fsynced, and `n` replicas' (`WAITAOF`, Redis 7.2 or later, Valkey) | also a crash of every copy at once, once fsynced |
/// | [`None`](Self::None) | `none` | nothing | what the master had replicated by chance: a failover may lose the last writes it acknowledged, and their keys run twice |
///
/// A write whose copies fall short within the
/// [durability timeout](super::RedisBuilder::durability_timeout) is sent again while a
/// failover may be under way (the [failover window](super::RedisBuilder::failover_window)),
/// then fails naming the master and how many replicas acknowledged: the claim is never
/// reported created, and a retry of the same batch resolves it exactly once.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::fleet::Durability;
///
/// assert_eq!("auto".parse::<Durability>()?, Durability::Auto);
/// assert_eq!("replicas:2".parse::<Durability>()?, Durability::Replicas(2));
/// assert_eq!("aof:1".parse::<Durability>()?, Durability::Aof(1));
/// assert_eq!(Durability::default().to_string(), "auto");
/// let err = "replicas:0".parse::<Durability>().unwrap_err().to_string();
/// assert!(err.starts_with(r#"invalid durability "replicas:0": expected"#), "{err}");
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// Nothing is waited for.
    None,
    /// One replica where the master has one, as the master's replicas are known now
    /// (the cluster's slot map, or `INFO replication` on one server).
    #[default]
    Auto,
    /// This many replicas, from 1, whatever the master has.
    Replicas(u8),
    /// `WAITAOF 1 n`: the master's append-only file and this many replicas', fsynced.
    Aof(u8),
}

/// What the grammar accepts, for errors.
pub(super) const EXPECTED: &str = "expected `auto`, `none`, `replicas:N` (N from 1) or `aof:N` (N from 0)";

impl FromStr for Durability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::config("durability", s, EXPECTED);
        let count = |n: &str| n.parse::<u8>().map_err(|_| invalid());
        match s.split_once(':') {
            None if s == "auto" => Ok(Durability::Auto),
            None if s == "none" => Ok(Durability::None),
            Some(("replicas", n)) => match count(n)? {
                0 => Err(invalid()),
                n => Ok(Durability::Replicas(n)),
            },
            Some(("aof", n)) => Ok(Durability::Aof(count(n)?)),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::None => f.write_str("none"),
            Durability::Auto => f.write_str("auto"),
            Durability::Replicas(n) => write!(f, "replicas:{n}"),
            Durability::Aof(n) => write!(f, "aof:{n}"),
        }
    }
}

/// What one master's writes wait for, and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Wait {
    replicas: u8,
    /// `WAITAOF`: the master's own append-only file too.
    aof: bool,
    timeout: Duration,
}

impl Durability {
    /// What writes to a master with `replicas` replicas (as known now) wait for;
    /// `None` when nothing.
    pub(super) fn wait(self, replicas: usize, timeout: Duration) -> Option<Wait> {
        let (replicas, aof) = match self {
            Durability::None => return None,
            Durability::Auto if replicas == 0 => return None,
            Durability::Auto => (1, false),
            Durability::Replicas(n) => (n, false),
            Durability::Aof(n) => (n, true),
        };
        Some(Wait { replicas, aof, timeout })
    }
}

impl Wait {
    /// The command that asks, sent last on the connection that wrote.
    pub(super) fn cmd(&self) -> Cmd {
        let millis = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = if self.aof {
            let mut cmd = ::redis::cmd("WAITAOF");
            cmd.arg(1);
            cmd
        } else {
            ::redis::cmd("WAIT")
        };
        cmd.arg(self.replicas).arg(millis);
        cmd
    }

    /// Whether the answer to [`cmd`](Self::cmd) says the writes are as durable as asked;
    /// otherwise what fell short, for the error.
    pub(super) fn judge(&self, answer: &Value) -> Result<(), Shortfall> {
        let (local, replicas) = match (self.aof, answer) {
            (false, Value::Int(n)) => (1, *n),
            (true, Value::Array(counts)) => match counts.as_slice() {
                [Value::Int(local), Value::Int(replicas)] => (*local, *replicas),
                _ => (0, 0),
            },
            _ => (0, 0),
        };
        if local >= 1 && replicas >= i64::from(self.replicas) {
            return Ok(());
        }
        Err(Shortfall { wait: *self, local: local >= 1, replicas: u64::try_from(replicas).unwrap_or(0) })
    }
}

/// Writes that fell short of their durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shortfall {
    wait: Wait,
    /// Whether the master's own copy was as asked (always, but for `WAITAOF`).
    local: bool,
    replicas: u64,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Wait { replicas, aof, timeout } = self.wait;
        if aof && !self.local {
            write!(f, "its append-only file was not fsynced within {timeout:?}")
        } else {
            let fsynced = if aof { " (fsynced)" } else { "" };
            write!(f, "{} of {replicas} replicas acknowledged{fsynced} within {timeout:?}", self.replicas)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_round_trips_and_refuses_what_it_does_not_know() {
        for text in ["auto", "none", "replicas:1", "replicas:255", "aof:0", "aof:2"] {
            assert_eq!(text.parse::<Durability>().unwrap().to_string(), text);
        }
        for bad in ["", "AUTO", "replicas", "replicas:0", "replicas:-1", "replicas:256", "aof", "aof:x", "wait:1"] {
            let err = bad.parse::<Durability>().unwrap_err().to_string();
            assert!(err.ends_with(EXPECTED), "{bad}: {err}");
        }
    }

    #[test]
    fn auto_waits_for_one_replica_only_where_there_is_one() {
        let t = Duration::from_millis(500);
        assert_eq!(Durability::Auto.wait(0, t), None);
        assert_eq!(Durability::Auto.wait(3, t), Some(Wait { replicas: 1, aof: false, timeout: t }));
        assert_eq!(Durability::None.wait(3, t), None);
        assert_eq!(Durability::Replicas(2).wait(0, t), Some(Wait { replicas: 2, aof: false, timeout: t }));
        assert_eq!(Durability::Aof(0).wait(0, t), Some(Wait { replicas: 0, aof: true, timeout: t }));
    }

    #[test]
    fn the_wait_is_judged_by_its_answer() {
        let t = Duration::from_secs(1);
        let wait = Durability::Replicas(2).wait(2, t).unwrap();
        let args: Vec<String> = wait.cmd().args_iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(args.len(), 3, "{args:?}");
        assert_eq!(wait.judge(&Value::Int(2)), Ok(()));
        assert_eq!(wait.judge(&Value::Int(3)), Ok(()));
        let short = wait.judge(&Value::Int(1)).unwrap_err();
        assert_eq!(short.to_string(), "1 of 2 replicas acknowledged within 1s");
        assert!(wait.judge(&Value::Okay).is_err(), "anything but a count falls short");

        let aof = Durability::Aof(1).wait(1, t).unwrap();
        assert_eq!(aof.cmd().args_iter().count(), 4);
        assert_eq!(aof.judge(&Value::Array(vec![Value::Int(1), Value::Int(1)])), Ok(()));
        let unsynced = aof.judge(&Value::Array(vec![Value::Int(0), Value::Int(1)])).unwrap_err();
        assert_eq!(unsynced.to_string(), "its append-only file was not fsynced within 1s");
        let short = aof.judge(&Value::Array(vec![Value::Int(1), Value::Int(0)])).unwrap_err();
        assert_eq!(short.to_string(), "0 of 1 replicas acknowledged (fsynced) within 1s");
    }
}
