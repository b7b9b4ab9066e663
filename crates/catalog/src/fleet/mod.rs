//! Fleet mode (feature `redis`): one Redis shared by many worker processes.
//!
//! [`Redis`] is a handle on one server: its address (any password redacted in every
//! message), the key prefix, timeouts, and the fault counter and warnings shared by
//! everything built on it. [`RedisCatalog`] puts a process-local catalog in front of
//! it; the SDK's engine claims keys on it.

mod catalog;
mod connection;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

pub use self::catalog::RedisCatalog;
pub use self::connection::RedisConnection;
use crate::error::Error;
use crate::events::{self, EvictionLog, ListenerSlot};
use crate::telemetry::{EvictionListener, Fault, FaultKind};

/// The variable that names the Redis server: `redis://[user:password@]host:port[/db]`,
/// `rediss://…`, or `redis+unix:///path/to/socket`.
pub const ENV_REDIS_URL: &str = "IDEMPOTENCY_REDIS_URL";
/// The variable that sets the prefix of every Redis key this crate and the SDK write.
pub const ENV_REDIS_PREFIX: &str = "IDEMPOTENCY_REDIS_PREFIX";
/// The variable that sets how long a catalog entry lives in Redis: a whole number
/// followed by `s`, `m`, `h` or `d`, such as `24h`.
pub const ENV_REDIS_CATALOG_TTL: &str = "IDEMPOTENCY_REDIS_CATALOG_TTL";

/// The default key prefix.
pub const DEFAULT_REDIS_PREFIX: &str = "idempotency:";
/// How long a catalog entry lives in Redis by default: a day. A shared entry exists so
/// that a digest minted by one worker shows its key in another; that happens while the
/// fan-out that minted it is being processed, which the reference platform bounds far
/// below a day (its runs time out, its batches are triggered at once). A day covers
/// retries and slow queues with room, and bounds Redis at a day of keys
/// (`docs/fleet.md` has the bytes per entry). Raise it when digests are stored and
/// resolved later.
pub const DEFAULT_REDIS_CATALOG_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long connecting may take by default, at startup and when reconnecting.
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command or pipeline may wait for its answer by default.
pub const DEFAULT_REDIS_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a [`Redis`] handle from code, from the environment, or both: a builder call
/// wins over the variable for its setting, and the variable over the default.
///
/// | setting | builder | variable | default |
/// |---|---|---|---|
/// | URL | [`url`](Self::url) | [`ENV_REDIS_URL`] | none: required |
/// | key prefix | [`prefix`](Self::prefix) | [`ENV_REDIS_PREFIX`] | [`DEFAULT_REDIS_PREFIX`] |
/// | catalog entry TTL | [`catalog_ttl`](Self::catalog_ttl) | [`ENV_REDIS_CATALOG_TTL`] | [`DEFAULT_REDIS_CATALOG_TTL`] (a day) |
/// | connect timeout | [`connect_timeout`](Self::connect_timeout) | | [`DEFAULT_REDIS_CONNECT_TIMEOUT`] |
/// | command timeout | [`io_timeout`](Self::io_timeout) | | [`DEFAULT_REDIS_IO_TIMEOUT`] |
///
/// [`build`](Self::build) checks every value and connects once, so a server that
/// cannot be reached fails at startup, within the connect timeout, naming its URL.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::RedisBuilder;
///
/// let env = |name: &str| match name {
///     "IDEMPOTENCY_REDIS_URL" => Some("redis://:hunter2@127.0.0.1:1/".to_owned()),
///     "IDEMPOTENCY_REDIS_CATALOG_TTL" => Some("1 day".to_owned()),
///     _ => None,
/// };
/// let err = RedisBuilder::from_env_with(env).build().unwrap_err().to_string();
/// assert_eq!(
///     err,
///     r#"invalid IDEMPOTENCY_REDIS_CATALOG_TTL "1 day": expected a whole number from 1 followed by `s`, `m`, `h` or `d`, such as `24h`"#
/// );
///
/// // Nothing listens on port 1: the error names the URL, with the password hidden.
/// let err = RedisBuilder::from_env_with(env).catalog_ttl(std::time::Duration::from_secs(60)).build().unwrap_err();
/// assert!(err.to_string().starts_with("redis at redis://:***@127.0.0.1:1/: cannot connect: "), "{err}");
/// ```
#[derive(Clone, Default)]
pub struct RedisBuilder {
    url: Option<String>,
    prefix: Option<String>,
    catalog_ttl: Option<Duration>,
    connect_timeout: Option<Duration>,
    io_timeout: Option<Duration>,
    listener: Option<Arc<dyn EvictionListener>>,
    env: Env,
}

#[derive(Clone, Debug, Default)]
struct Env {
    url: Option<String>,
    prefix: Option<String>,
    catalog_ttl: Option<String>,
}

impl RedisBuilder {
    /// A builder for the server at `url`; the environment is not read.
    pub fn new(url: impl Into<String>) -> Self {
        RedisBuilder { url: Some(url.into()), ..Self::default() }
    }

    /// A builder that falls back on the process environment ([`ENV_REDIS_URL`],
    /// [`ENV_REDIS_PREFIX`], [`ENV_REDIS_CATALOG_TTL`]) for every setting no builder
    /// call makes.
    pub fn from_env() -> Self {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let env = Env {
            url: lookup(ENV_REDIS_URL),
            prefix: lookup(ENV_REDIS_PREFIX),
            catalog_ttl: lookup(ENV_REDIS_CATALOG_TTL),
        };
        RedisBuilder { env, ..Self::default() }
    }

    /// Whether a URL is set, by a builder call or the environment: whether fleet mode
    /// is asked for.
    pub fn has_url(&self) -> bool {
        self.url.is_some() || self.env.url.is_some()
    }

    /// The server's URL.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The prefix of every key written: lets several applications share one server.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// How long a catalog entry lives in Redis after it was last written.
    #[must_use]
    pub fn catalog_ttl(mut self, ttl: Duration) -> Self {
        self.catalog_ttl = Some(ttl);
        self
    }

    /// How long connecting may take, at startup and when reconnecting.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long a command or pipeline may wait for its answer.
    #[must_use]
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = Some(timeout);
        self
    }

    /// The listener whose [`on_fault`](EvictionListener::on_fault) sees every failed
    /// operation of everything built on this handle (catalogs and engines).
    #[must_use]
    pub fn listener(mut self, listener: impl EvictionListener + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Checks every setting and connects once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the variable or method and the bad value (no
    /// URL, a URL that does not parse, an empty prefix or one with spaces, a TTL or
    /// timeout of zero or not in the grammar); [`Error::Redis`] when the server cannot
    /// be reached within the connect timeout or refuses the connection.
    pub fn build(self) -> Result<Redis, Error> {
        let (url, url_source) = match (self.url, self.env.url) {
            (Some(url), _) => (url, URL),
            (None, Some(url)) => (url, ENV_REDIS_URL),
            (None, None) => {
                return Err(Error::config(
                    ENV_REDIS_URL,
                    "",
                    "not set: name the server, such as `redis://127.0.0.1:6379`, with the variable or RedisBuilder::url",
                ));
            }
        };
        let shown_url = redacted(&url);
        let client = ::redis::Client::open(url.as_str()).map_err(|err| Error::InvalidConfig {
            source_name: url_source,
            value: crate::error::shown(&shown_url),
            reason: format!("expected redis://host:port, rediss://host:port or redis+unix:///path ({err})"),
        })?;
        let prefix = match (self.prefix, self.env.prefix) {
            (Some(prefix), _) => checked_prefix(prefix, PREFIX)?,
            (None, Some(prefix)) => checked_prefix(prefix, ENV_REDIS_PREFIX)?,
            (None, None) => DEFAULT_REDIS_PREFIX.to_owned(),
        };
        let catalog_ttl = match (self.catalog_ttl, self.env.catalog_ttl) {
            (Some(ttl), _) => positive(ttl, CATALOG_TTL)?,
            (None, Some(raw)) => parse_ttl(&raw).ok_or_else(|| {
                Error::config(
                    ENV_REDIS_CATALOG_TTL,
                    &raw,
                    "expected a whole number from 1 followed by `s`, `m`, `h` or `d`, such as `24h`",
                )
            })?,
            (None, None) => DEFAULT_REDIS_CATALOG_TTL,
        };
        let connect_timeout = positive(self.connect_timeout.unwrap_or(DEFAULT_REDIS_CONNECT_TIMEOUT), CONNECT_TIMEOUT)?;
        let io_timeout = positive(self.io_timeout.unwrap_or(DEFAULT_REDIS_IO_TIMEOUT), IO_TIMEOUT)?;
        let redis = Redis {
            shared: Arc::new(Shared {
                client,
                url: shown_url,
                prefix,
                catalog_ttl,
                connect_timeout,
                io_timeout,
                faults: AtomicU64::new(0),
                log: Mutex::new((EvictionLog::new(), None)),
                listener: ListenerSlot::new(self.listener),
            }),
        };
        // Fail at startup, not at the first batch.
        redis.connection().run("connect", |conn| ::redis::cmd("PING").query::<()>(conn))?;
        Ok(redis)
    }
}

const URL: &str = "RedisBuilder::url";
const PREFIX: &str = "RedisBuilder::prefix";
const CATALOG_TTL: &str = "RedisBuilder::catalog_ttl";
const CONNECT_TIMEOUT: &str = "RedisBuilder::connect_timeout";
const IO_TIMEOUT: &str = "RedisBuilder::io_timeout";

fn checked_prefix(prefix: String, source: &'static str) -> Result<String, Error> {
    let bad = prefix.is_empty() || prefix.len() > 128 || prefix.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad {
        return Err(Error::config(
            source,
            &prefix,
            "expected 1 to 128 bytes without spaces or control characters, such as `idempotency:`",
        ));
    }
    Ok(prefix)
}

fn positive(duration: Duration, source: &'static str) -> Result<Duration, Error> {
    if duration < Duration::from_millis(1) {
        return Err(Error::config(source, format!("{duration:?}"), "expected at least 1 ms"));
    }
    Ok(duration)
}

/// A TTL in the reference grammar, `^(\d+)([smhd])$`, from 1.
fn parse_ttl(raw: &str) -> Option<Duration> {
    let unit = match raw.as_bytes().last()? {
        b's' => 1,
        b'm' => 60,
        b'h' => 3_600,
        b'd' => 86_400,
        _ => return None,
    };
    let digits = raw.get(..raw.len() - 1)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok().filter(|&n| n > 0)?;
    Some(Duration::from_secs(n.checked_mul(unit)?))
}

/// `url` with any password replaced by `***`: in the user part
/// (`redis://user:secret@host`) and in a `pass` or `password` query parameter.
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let query = query.map(|query| {
        let params = query.split('&').map(|param| match param.split_once('=') {
            Some((name, _)) if name == "pass" || name == "password" => format!("{name}=***"),
            _ => param.to_owned(),
        });
        format!("?{}", params.collect::<Vec<_>>().join("&"))
    });
    format!("{scheme}://{authority}{path}{}", query.unwrap_or_default())
}

/// A handle on one Redis server, shared by the catalogs and engines built on it: its
/// URL (shown with any password redacted), key prefix and timeouts, and one fault
/// counter, listener and rate-limited warning for all of them. Cheap to clone.
///
/// # Examples
///
/// ```no_run
/// use idempotency_catalog::{Catalog, CatalogBuilder, Redis};
///
/// // IDEMPOTENCY_REDIS_URL, _PREFIX, _CATALOG_TTL; `None` when no URL is set.
/// if let Some(redis) = Redis::from_env()? {
///     let catalog = CatalogBuilder::from_env().redis(redis.clone()).build()?;
///     assert_eq!(catalog.stats().faults, 0);
/// }
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Clone)]
pub struct Redis {
    shared: Arc<Shared>,
}

struct Shared {
    client: ::redis::Client,
    url: String,
    prefix: String,
    catalog_ttl: Duration,
    connect_timeout: Duration,
    io_timeout: Duration,
    faults: AtomicU64,
    /// When failures are worth a line, and the latest, for the summary at drop.
    log: Mutex<(EvictionLog, Option<Fault>)>,
    listener: ListenerSlot,
}

impl Redis {
    /// The handle configured by the environment, connected; `None` when
    /// [`ENV_REDIS_URL`] is not set.
    ///
    /// # Errors
    ///
    /// As [`RedisBuilder::build`].
    pub fn from_env() -> Result<Option<Redis>, Error> {
        let builder = RedisBuilder::from_env();
        if !builder.has_url() {
            return Ok(None);
        }
        builder.build().map(Some)
    }

    /// The server's URL, any password replaced by `***`.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The prefix of every key written.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// How long a catalog entry lives in Redis.
    pub fn catalog_ttl(&self) -> Duration {
        self.shared.catalog_ttl
    }

    /// How long the SDK engine keeps a run record on Redis once its key is no longer
    /// held (placeholder until the builder sets it).
    pub fn run_ttl(&self) -> Duration {
        Duration::from_secs(24 * 60 * 60)
    }

    /// Failed operations so far, of everything built on this handle.
    pub fn faults(&self) -> u64 {
        self.shared.faults.load(Ordering::Relaxed)
    }

    /// A new connection, opened at its first use and opened again after an error.
    pub fn connection(&self) -> RedisConnection {
        RedisConnection::new(self.clone())
    }

    fn open(&self) -> ::redis::RedisResult<::redis::Connection> {
        let conn = self.shared.client.get_connection_with_timeout(self.shared.connect_timeout)?;
        conn.set_read_timeout(Some(self.shared.io_timeout))?;
        conn.set_write_timeout(Some(self.shared.io_timeout))?;
        Ok(conn)
    }

    /// Counts, reports and warns about a failed operation; the error to return.
    fn fault(&self, operation: &'static str, kind: FaultKind, message: String) -> Error {
        let shared = &self.shared;
        let fault = Fault { store: shared.url.clone(), operation, kind, message };
        shared.faults.fetch_add(1, Ordering::Relaxed);
        crate::meter::fault(kind);
        shared.listener.notify_fault(&fault);
        let due = {
            let mut log = shared.log.lock();
            log.1 = Some(fault.clone());
            log.0.record(1)
        };
        if let Some(summary) = due {
            events::warn_fault(summary, &fault);
        }
        Error::Redis { url: fault.store, operation, message: fault.message }
    }
}

/// How a Redis error counts, and its message: for an error the server answered, its
/// code and details, and for a pipeline how many of its commands failed (not each of
/// them: at `maxmemory`, that would be thousands of lines).
fn describe(err: &::redis::RedisError) -> (FaultKind, String) {
    let answered = err.clone().into_server_errors();
    let Some((index, first)) = answered.as_deref().and_then(<[_]>::first) else {
        return (fault_kind(err), err.to_string());
    };
    let kind = if first.code() == "OOM" { FaultKind::OutOfMemory } else { FaultKind::Rejected };
    let details = first.details().map(|d| format!(" {d}")).unwrap_or_default();
    let failed = answered.as_deref().map_or(1, <[_]>::len);
    let message = match failed {
        1 if *index == 0 => format!("{}{details}", first.code()),
        _ => format!("{}{details} ({failed} commands of the pipeline failed, the first at {index})", first.code()),
    };
    (kind, message)
}

fn fault_kind(err: &::redis::RedisError) -> FaultKind {
    if err.code() == Some("OOM") {
        FaultKind::OutOfMemory
    } else if err.is_timeout() {
        FaultKind::Timeout
    } else if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() {
        FaultKind::Unreachable
    } else {
        FaultKind::Rejected
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let (log, last) = self.log.get_mut();
        if let (Some(summary), Some(last)) = (log.flush(), last.as_ref()) {
            events::warn_fault(summary, last);
        }
    }
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.shared.url)
            .field("prefix", &self.shared.prefix)
            .field("catalog_ttl", &self.shared.catalog_ttl)
            .field("faults", &self.faults())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RedisBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBuilder")
            .field("url", &self.url.as_deref().map(redacted))
            .field("prefix", &self.prefix)
            .field("catalog_ttl", &self.catalog_ttl)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("listener", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_wherever_they_are() {
        assert_eq!(redacted("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redacted("redis://:hunter2@host:6379"), "redis://:***@host:6379");
        assert_eq!(redacted("rediss://app:p@ss:w@rd@host/2"), "rediss://app:***@host/2");
        assert_eq!(redacted("redis://app@host"), "redis://app@host");
        assert_eq!(redacted("redis+unix:///run/redis.sock?db=1&pass=x"), "redis+unix:///run/redis.sock?db=1&pass=***");
        assert_eq!(redacted("not a url"), "not a url");
    }

    #[test]
    fn ttls_follow_the_reference_grammar() {
        assert_eq!(parse_ttl("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("90s"), Some(Duration::from_secs(90)));
        for bad in ["", "h", "0s", "1.5h", "-1d", "1 d", "1w", "1H", "99999999999999999999d"] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_settings_name_their_source_and_value() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
        };
        let err = RedisBuilder::from_env_with(env(&[])).build().unwrap_err().to_string();
        assert!(err.starts_with(r#"invalid IDEMPOTENCY_REDIS_URL "": not set"#), "{err}");
        let err = RedisBuilder::from_env_with(env(&[(ENV_REDIS_URL, "http://:secret@host")])).build().unwrap_err();
        let err = err.to_string();
        assert!(err.starts_with(r#"invalid IDEMPOTENCY_REDIS_URL "http://:***@host": expected redis://"#), "{err}");
        let err = RedisBuilder::from_env_with(env(&[(ENV_REDIS_URL, "redis://h"), (ENV_REDIS_PREFIX, "a b")]))
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(r#"invalid IDEMPOTENCY_REDIS_PREFIX "a b": expected 1 to 128 bytes"#), "{err}");
        let err = RedisBuilder::new("redis://h").connect_timeout(Duration::ZERO).build().unwrap_err().to_string();
        assert_eq!(err, r#"invalid RedisBuilder::connect_timeout "0ns": expected at least 1 ms"#);
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn faults_are_counted_on_the_metrics_facade_by_kind() {
        use std::collections::HashMap;

        use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

        /// Keeps every counter, by name and labels.
        #[derive(Default)]
        struct Counters(parking_lot::Mutex<HashMap<String, Arc<AtomicU64>>>);

        impl Recorder for Counters {
            fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
                let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
                let name = format!("{}{{{}}}", key.name(), labels.join(","));
                Counter::from_arc(Arc::clone(self.0.lock().entry(name).or_default()))
            }
            fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
                Gauge::noop()
            }
            fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
                Histogram::noop()
            }
        }

        let counters = Counters::default();
        // Nothing listens on port 1: two refused connects.
        metrics::with_local_recorder(&counters, || {
            for _ in 0..2 {
                RedisBuilder::new("redis://127.0.0.1:1").build().unwrap_err();
            }
        });
        let seen = counters.0.lock();
        let unreachable =
            seen.get("idempotency_catalog_faults_total{fault=unreachable}").map(|c| c.load(Ordering::Relaxed));
        assert_eq!(unreachable, Some(2), "{:?}", seen.keys().collect::<Vec<_>>());
    }
}
