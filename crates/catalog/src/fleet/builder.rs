//! [`RedisBuilder`]: the settings of a [`Redis`] handle, from code or the environment,
//! checked before it connects.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ::redis::IntoConnectionInfo;

use super::durability::{self, Durability};
use super::env::Env;
use super::handle::Redis;
use super::link;
use super::settings::Settings;
use super::startup::{self, Plan};
use super::url::{Secrets, redacted};
use crate::error::Error;
use crate::telemetry::Listener;
use crate::ttl::Ttl;
use crate::{defaults, env};

/// Builds a [`Redis`] handle from code, from the environment, or both: a builder call
/// wins over the variable for its setting, and the variable over the default.
///
/// | setting | builder | variable | default |
/// |---|---|---|---|
/// | URL | [`url`](Self::url) | [`env::REDIS_URL`] | none: required |
/// | key prefix | [`prefix`](Self::prefix) | [`env::REDIS_PREFIX`] | [`defaults::REDIS_PREFIX`] |
/// | catalog entry TTL | [`catalog_ttl`](Self::catalog_ttl) | [`env::REDIS_CATALOG_TTL`] | [`defaults::REDIS_CATALOG_TTL`] (a day) |
/// | run record TTL, at least | [`run_ttl`](Self::run_ttl) | [`env::REDIS_RUN_TTL`] | [`defaults::REDIS_RUN_TTL`] (a day) |
/// | connect timeout | [`connect_timeout`](Self::connect_timeout) | | [`defaults::REDIS_CONNECT_TIMEOUT`] |
/// | command timeout | [`io_timeout`](Self::io_timeout) | | [`defaults::REDIS_IO_TIMEOUT`] |
/// | sync connections | [`pool_size`](Self::pool_size) | | [`defaults::REDIS_POOL_SIZE`] |
/// | durability | [`durability`](Self::durability) | [`env::REDIS_DURABILITY`] | [`Durability::Auto`]: one replica where the master has one |
/// | durability timeout | [`durability_timeout`](Self::durability_timeout) | | [`defaults::REDIS_DURABILITY_TIMEOUT`], or half the command timeout if that is less |
/// | failover window | [`failover_window`](Self::failover_window) | [`env::REDIS_FAILOVER_WINDOW`] | the cluster's `cluster-node-timeout` plus 3 s (3 s on one server) |
/// | TLS CA, client certificate (feature `tls`) | [`tls_ca`](Self::tls_ca), [`tls_client_cert`](Self::tls_client_cert) | [`env::REDIS_TLS_CA`], [`env::REDIS_TLS_CERT`] and [`env::REDIS_TLS_KEY`] | the system's roots; none |
///
/// [`build`](Self::build) checks every value, connects once and checks the server's
/// configuration, so a server that cannot be reached, refuses the credentials or may
/// evict claims fails at startup, within the connect timeout, naming its URL.
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
    run_ttl: Option<Duration>,
    connect_timeout: Option<Duration>,
    io_timeout: Option<Duration>,
    pool_size: Option<usize>,
    durability: Option<Durability>,
    durability_timeout: Option<Duration>,
    failover_window: Option<Duration>,
    tls_ca: Option<PathBuf>,
    tls_client: Option<(PathBuf, PathBuf)>,
    listener: Option<Arc<dyn Listener>>,
    allow_evicting_policy: bool,
    env: Env,
}

impl RedisBuilder {
    /// A builder for the server at `url`; the environment is not read.
    pub fn new(url: impl Into<String>) -> Self {
        RedisBuilder { url: Some(url.into()), ..Self::default() }
    }

    /// A builder that falls back on the process environment ([`env::REDIS_URL`],
    /// [`env::REDIS_PREFIX`], [`env::REDIS_CATALOG_TTL`], [`env::REDIS_RUN_TTL`], and with
    /// feature `tls` [`env::REDIS_TLS_CA`], [`env::REDIS_TLS_CERT`], [`env::REDIS_TLS_KEY`])
    /// for every setting no builder call makes.
    pub fn from_env() -> Self {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Self {
        RedisBuilder { env: Env::read(lookup), ..Self::default() }
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

    /// How long the SDK engine keeps a run record on Redis when its key's TTL is
    /// shorter. A record always lives at least as long as the claim on its key.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use idempotency_catalog::RedisBuilder;
    ///
    /// let env = |name: &str| (name == "IDEMPOTENCY_REDIS_RUN_TTL").then(|| "30 days".to_owned());
    /// let err = RedisBuilder::from_env_with(env).url("redis://127.0.0.1:1").build().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     r#"invalid IDEMPOTENCY_REDIS_RUN_TTL "30 days": expected a whole number from 1 followed by `s`, `m`, `h` or `d`, such as `24h`"#
    /// );
    ///
    /// // The builder call wins: the variable is not read, and the build goes on to connect.
    /// let week = Duration::from_secs(7 * 86_400);
    /// let err = RedisBuilder::from_env_with(env).url("redis://127.0.0.1:1").run_ttl(week).build().unwrap_err();
    /// assert!(err.to_string().contains("cannot connect"), "{err}");
    /// ```
    #[must_use]
    pub fn run_ttl(mut self, ttl: Duration) -> Self {
        self.run_ttl = Some(ttl);
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

    /// How many sync connections the handle keeps open at most: that many threads send
    /// at once; more take turns. From 1.
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = Some(size);
        self
    }

    /// How many copies of a claim (and every other write) a master must have before it
    /// is reported done; see [`Durability`] for what each setting survives.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::RedisBuilder;
    /// use idempotency_catalog::fleet::Durability;
    ///
    /// // Refused before connecting: the variable says nothing this grammar knows.
    /// let env = |name: &str| (name == "IDEMPOTENCY_REDIS_DURABILITY").then(|| "2".to_owned());
    /// let err = RedisBuilder::from_env_with(env).url("redis://127.0.0.1:1").build().unwrap_err();
    /// assert!(err.to_string().starts_with(r#"invalid IDEMPOTENCY_REDIS_DURABILITY "2": expected `auto`"#), "{err}");
    ///
    /// // The builder call wins over the variable.
    /// let builder = RedisBuilder::from_env_with(env).url("redis://127.0.0.1:1").durability(Durability::Replicas(2));
    /// assert!(builder.build().unwrap_err().to_string().contains("cannot connect"));
    /// ```
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// How long a master waits for its replicas to acknowledge a pipeline's writes (the
    /// timeout of its `WAIT`): below the command timeout, so that the `WAIT` answers
    /// before its pipeline times out.
    #[must_use]
    pub fn durability_timeout(mut self, timeout: Duration) -> Self {
        self.durability_timeout = Some(timeout);
        self
    }

    /// How long a call waits for a failover before it fails: while a master that stopped
    /// answering is replaced by a replica, or writes fall short of their replicas, the
    /// call sends its commands again, reading the slot map between rounds. By default
    /// the cluster's `cluster-node-timeout` (read at build) plus 3 s, which covers the
    /// failure detection and the replica's election; on one server, 3 s (for replicas
    /// that fall behind; a server that stops answering is not waited for).
    #[must_use]
    pub fn failover_window(mut self, window: Duration) -> Self {
        self.failover_window = Some(window);
        self
    }

    /// The PEM file of the certificate authority a `rediss://` server's certificate
    /// must chain to (feature `tls`); without it, the system's roots. Read at
    /// [`build`](Self::build).
    #[must_use]
    pub fn tls_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(path.into());
        self
    }

    /// The PEM files of the client certificate and its key, for a server that asks for
    /// one (mutual TLS, feature `tls`). Read at [`build`](Self::build).
    #[must_use]
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_client = Some((cert.into(), key.into()));
        self
    }

    /// The listener whose [`on_fault`](Listener::on_fault) sees every failed
    /// operation of everything built on this handle (catalogs and engines).
    #[must_use]
    pub fn listener(mut self, listener: impl Listener + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Accepts a server whose `maxmemory-policy` evicts (anything but `noeviction`):
    /// **duplicates possible**. Redis may then evict claims, and a key whose claim was
    /// evicted runs again when it is triggered again; catalog entries may vanish too.
    /// Without this call [`build`](Self::build) refuses such a server; with it, `build`
    /// warns once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_catalog::RedisBuilder;
    ///
    /// // A cache shared with other applications, which must evict: a rare second run
    /// // of a key is acceptable here.
    /// let redis = RedisBuilder::new("redis://cache.internal:6379").allow_evicting_policy().build()?;
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    #[must_use]
    pub fn allow_evicting_policy(mut self) -> Self {
        self.allow_evicting_policy = true;
        self
    }

    /// Checks every setting, connects once and checks the server's configuration, all
    /// within the connect timeout:
    ///
    /// | server | `build` |
    /// |---|---|
    /// | `maxmemory-policy` other than `noeviction` | error, unless [`allow_evicting_policy`](Self::allow_evicting_policy) (then one `WARN`) |
    /// | no append-only file (`appendonly no`), or `appendfsync` `everysec` or `no` | one `WARN` saying what a crash or restart may cost |
    /// | `appendonly yes`, `appendfsync always` | nothing to say |
    /// | the user may not read `INFO` or `CONFIG` (ACLs, managed services) | one `WARN` naming what was not checked |
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the variable or method and the bad value (no
    /// URL, a URL that does not parse, an empty prefix or one with spaces, a TTL or
    /// timeout of zero or not in the grammar); [`Error::Redis`] naming the URL when the
    /// server cannot be reached or does not answer within the connect timeout, refuses
    /// the credentials (operation `connect`), or has an evicting `maxmemory-policy`
    /// (operation `accept the server's configuration`; not counted as a fault, since
    /// nothing failed).
    pub fn build(self) -> Result<Redis, Error> {
        startup::connect(self.plan()?)
    }

    /// Every setting checked, before anything connects.
    pub(super) fn plan(mut self) -> Result<Plan, Error> {
        let (url, url_source) = match (self.url.take(), self.env.url.take()) {
            (Some(url), _) => (url, URL),
            (None, Some(url)) => (url, env::REDIS_URL),
            (None, None) => {
                return Err(Error::config(
                    env::REDIS_URL,
                    "",
                    "not set: name the server, such as `redis://127.0.0.1:6379`, with the variable or RedisBuilder::url",
                ));
            }
        };
        let urls = seeds(&url);
        let shown_url = urls.iter().map(|url| redacted(url)).collect::<Vec<_>>().join(",");
        let secrets = Secrets::of(&url);
        let invalid = |reason: String| Error::InvalidConfig {
            source_name: url_source,
            value: crate::error::shown(&shown_url),
            reason: secrets.scrub(&reason),
        };
        let tls = urls.iter().any(|url| url.starts_with("rediss:"));
        if tls && cfg!(not(feature = "tls")) {
            return Err(invalid("TLS (`rediss://`) needs the `tls` feature of idempotency-catalog".to_owned()));
        }
        let certs = if tls { self.tls_certs()? } else { None };
        let mut seeds = Vec::with_capacity(urls.len());
        for url in &urls {
            let info = url.into_connection_info().map_err(|err| {
                // The usual cause with credentials: a password with `/`, `?`, `#` or `@` as is.
                let hint =
                    if url.contains('@') { "; percent-encode the password (`/` as %2F, `@` as %40)" } else { "" };
                invalid(format!("expected redis://host:port, rediss://host:port or redis+unix:///path ({err}){hint}"))
            })?;
            seeds.push(link::single(info, certs.as_ref()).map_err(|err| invalid(err.to_string()))?);
        }
        let prefix = match (self.prefix, self.env.prefix) {
            (Some(prefix), _) => checked_prefix(prefix, PREFIX)?,
            (None, Some(prefix)) => checked_prefix(prefix, env::REDIS_PREFIX)?,
            (None, None) => defaults::REDIS_PREFIX.to_owned(),
        };
        let catalog_ttl = ttl(self.catalog_ttl, CATALOG_TTL, self.env.catalog_ttl, env::REDIS_CATALOG_TTL)?;
        let catalog_ttl = catalog_ttl.unwrap_or(defaults::REDIS_CATALOG_TTL);
        let run_ttl =
            ttl(self.run_ttl, RUN_TTL, self.env.run_ttl, env::REDIS_RUN_TTL)?.unwrap_or(defaults::REDIS_RUN_TTL);
        let connect_timeout =
            positive(self.connect_timeout.unwrap_or(defaults::REDIS_CONNECT_TIMEOUT), CONNECT_TIMEOUT)?;
        let io_timeout = positive(self.io_timeout.unwrap_or(defaults::REDIS_IO_TIMEOUT), IO_TIMEOUT)?;
        let pool_size = match self.pool_size.unwrap_or(defaults::REDIS_POOL_SIZE) {
            0 => return Err(Error::config(POOL_SIZE, "0", "expected at least 1 connection")),
            size => size,
        };
        let durability = match (self.durability, self.env.durability) {
            (Some(durability), _) => durability,
            (None, Some(raw)) => {
                raw.parse().map_err(|_| Error::config(env::REDIS_DURABILITY, &raw, durability::EXPECTED))?
            }
            (None, None) => Durability::default(),
        };
        // By default within half the command timeout, so that a short one still leaves the
        // pipeline time to come back after its WAIT.
        let durability_timeout = match self.durability_timeout {
            None => defaults::REDIS_DURABILITY_TIMEOUT.min(io_timeout / 2),
            Some(timeout) if positive(timeout, DURABILITY_TIMEOUT)? < io_timeout => timeout,
            Some(timeout) => {
                return Err(Error::config(
                    DURABILITY_TIMEOUT,
                    format!("{timeout:?}"),
                    format!(
                        "expected less than the command timeout ({io_timeout:?}): a WAIT must answer before its pipeline times out"
                    ),
                ));
            }
        };
        let failover_window =
            ttl(self.failover_window, FAILOVER_WINDOW, self.env.failover_window, env::REDIS_FAILOVER_WINDOW)?;
        let settings = Settings {
            url: shown_url,
            secrets,
            prefix,
            catalog_ttl,
            run_ttl,
            connect_timeout,
            io_timeout,
            durability,
            durability_timeout,
            failover_window,
        };
        Ok(Plan {
            settings,
            seeds,
            certs,
            pool_size,
            listener: self.listener,
            allow_evicting: self.allow_evicting_policy,
        })
    }

    /// The certificates a `rediss://` handle connects with, read from their files.
    #[cfg(feature = "tls")]
    fn tls_certs(&self) -> Result<Option<::redis::TlsCertificates>, Error> {
        let read = |source: &'static str, path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|err| Error::config(source, path.display().to_string(), format!("cannot read it: {err}")))
        };
        let root_cert = match (&self.tls_ca, &self.env.tls_ca) {
            (Some(path), _) => Some(read(TLS_CA, path)?),
            (None, Some(path)) => Some(read(env::REDIS_TLS_CA, path.as_ref())?),
            (None, None) => None,
        };
        let client = match (&self.tls_client, &self.env.tls_cert, &self.env.tls_key) {
            (Some((cert, key)), _, _) => Some((read(TLS_CLIENT, cert)?, read(TLS_CLIENT, key)?)),
            (None, Some(cert), Some(key)) => {
                Some((read(env::REDIS_TLS_CERT, cert.as_ref())?, read(env::REDIS_TLS_KEY, key.as_ref())?))
            }
            (None, Some(cert), None) => {
                let why = format!("set without {}: a client certificate needs its key", env::REDIS_TLS_KEY);
                return Err(Error::config(env::REDIS_TLS_CERT, cert, why));
            }
            (None, None, Some(key)) => {
                let why = format!("set without {}: a client key needs its certificate", env::REDIS_TLS_CERT);
                return Err(Error::config(env::REDIS_TLS_KEY, key, why));
            }
            (None, None, None) => None,
        };
        let client_tls = client.map(|(client_cert, client_key)| ::redis::ClientTlsConfig { client_cert, client_key });
        Ok(Some(::redis::TlsCertificates { client_tls, root_cert }))
    }

    #[cfg(not(feature = "tls"))]
    fn tls_certs(&self) -> Result<Option<link::Certs>, Error> {
        Ok(None)
    }
}

const URL: &str = "RedisBuilder::url";
const PREFIX: &str = "RedisBuilder::prefix";
const CATALOG_TTL: &str = "RedisBuilder::catalog_ttl";
const RUN_TTL: &str = "RedisBuilder::run_ttl";
const CONNECT_TIMEOUT: &str = "RedisBuilder::connect_timeout";
const IO_TIMEOUT: &str = "RedisBuilder::io_timeout";
const POOL_SIZE: &str = "RedisBuilder::pool_size";
const DURABILITY_TIMEOUT: &str = "RedisBuilder::durability_timeout";
const FAILOVER_WINDOW: &str = "RedisBuilder::failover_window";
#[cfg(feature = "tls")]
const TLS_CA: &str = "RedisBuilder::tls_ca";
#[cfg(feature = "tls")]
const TLS_CLIENT: &str = "RedisBuilder::tls_client_cert";

/// The URLs in `url`: one, or a cluster's seed nodes separated by commas. A comma
/// separates two URLs only where a URL starts after it: a password may hold commas.
fn seeds(url: &str) -> Vec<&str> {
    const SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];
    let starts = url.match_indices(',').map(|(at, _)| at).filter(|&at| {
        let rest = url.get(at + 1..).unwrap_or_default().trim_start();
        SCHEMES.iter().any(|scheme| rest.starts_with(scheme))
    });
    let mut urls = Vec::new();
    let mut from = 0;
    for at in starts {
        urls.push(url.get(from..at).unwrap_or_default().trim());
        from = at + 1;
    }
    urls.push(url.get(from..).unwrap_or_default().trim());
    urls
}

fn checked_prefix(prefix: String, source: &'static str) -> Result<String, Error> {
    // Braces would make Redis Cluster hash the prefix instead of the SDK's hash tags,
    // and split the keys of one item across slots.
    let bad = prefix.is_empty()
        || prefix.len() > 128
        || prefix.chars().any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}');
    if bad {
        return Err(Error::config(
            source,
            &prefix,
            "expected 1 to 128 bytes without spaces, braces or control characters, such as `idempotency:`",
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

/// A TTL from the builder call (`method`), else from the variable `var`, else `None`.
fn ttl(
    call: Option<Duration>,
    method: &'static str,
    raw: Option<String>,
    var: &'static str,
) -> Result<Option<Duration>, Error> {
    match (call, raw) {
        (Some(ttl), _) => positive(ttl, method).map(Some),
        (None, Some(raw)) => raw.parse::<Ttl>().map(|ttl| Some(ttl.duration())).map_err(|_| {
            Error::config(var, &raw, "expected a whole number from 1 followed by `s`, `m`, `h` or `d`, such as `24h`")
        }),
        (None, None) => Ok(None),
    }
}

impl Redis {
    /// The handle configured by the environment, connected; `None` when
    /// [`env::REDIS_URL`] is not set.
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
}

impl fmt::Debug for RedisBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBuilder")
            .field("url", &self.url.as_ref().or(self.env.url.as_ref()).map(|url| redacted(url)))
            .field("prefix", &self.prefix)
            .field("catalog_ttl", &self.catalog_ttl)
            .field("run_ttl", &self.run_ttl)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("pool_size", &self.pool_size)
            .field("durability", &self.durability)
            .field("durability_timeout", &self.durability_timeout)
            .field("failover_window", &self.failover_window)
            .field("tls_ca", &self.tls_ca)
            .field("listener", &self.listener.is_some())
            .field("allow_evicting_policy", &self.allow_evicting_policy)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_split_where_a_url_starts_and_nowhere_else() {
        assert_eq!(seeds("redis://a:1"), ["redis://a:1"]);
        assert_eq!(seeds("redis://a:1,redis://b:2, rediss://c:3"), ["redis://a:1", "redis://b:2", "rediss://c:3"]);
        assert_eq!(seeds("redis://:p,w@a:1,redis://:p,w@b:2"), ["redis://:p,w@a:1", "redis://:p,w@b:2"]);
        assert_eq!(seeds("redis://a:1/0?password=x,y"), ["redis://a:1/0?password=x,y"]);
    }

    #[test]
    fn bad_settings_name_their_source_and_value() {
        let lookup = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
        };
        let err = RedisBuilder::from_env_with(lookup(&[])).build().unwrap_err().to_string();
        assert!(err.starts_with(r#"invalid IDEMPOTENCY_REDIS_URL "": not set"#), "{err}");
        let err = RedisBuilder::from_env_with(lookup(&[(env::REDIS_URL, "http://:secret@host")])).build().unwrap_err();
        let err = err.to_string();
        assert!(err.starts_with(r#"invalid IDEMPOTENCY_REDIS_URL "http://***@host": expected redis://"#), "{err}");
        let err = RedisBuilder::from_env_with(lookup(&[(env::REDIS_URL, "redis://h"), (env::REDIS_PREFIX, "a b")]))
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(r#"invalid IDEMPOTENCY_REDIS_PREFIX "a b": expected 1 to 128 bytes"#), "{err}");
        #[cfg(not(feature = "tls"))]
        {
            let err = RedisBuilder::new("rediss://:secret@host:6380").build().unwrap_err().to_string();
            let expected = r#"invalid RedisBuilder::url "rediss://***@host:6380": TLS (`rediss://`) needs the `tls` feature of idempotency-catalog"#;
            assert_eq!(err, expected);
        }
        for braced in ["app{1}:", "app}", "{app"] {
            let err = RedisBuilder::new("redis://h").prefix(braced).build().unwrap_err().to_string();
            assert!(err.contains("without spaces, braces or control characters"), "{err}");
        }
        let builder = RedisBuilder::from_env_with(lookup(&[(env::REDIS_URL, "redis://:s3cret@h")]));
        assert!(format!("{builder:?}").contains(r#"url: Some("redis://:***@h")"#), "{builder:?}");
        let err = RedisBuilder::new("redis://h").connect_timeout(Duration::ZERO).build().unwrap_err().to_string();
        assert_eq!(err, r#"invalid RedisBuilder::connect_timeout "0ns": expected at least 1 ms"#);
    }
}
