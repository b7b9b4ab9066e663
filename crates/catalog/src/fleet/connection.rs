use std::fmt;
use std::time::Instant;

use ::redis::{Cmd, FromRedisValue, RedisError, RedisResult, Value};

use super::Redis;
use super::fault::describe;
use super::link::SyncConn;
use crate::error::Error;
use crate::telemetry::FaultKind;

/// The way to a [`Redis`] deployment for a store built on the handle, such as the SDK's
/// run store or [`RedisCatalog`](super::RedisCatalog): commands go over the handle's
/// connections (a few sync ones, so that threads do not take turns; with feature
/// `tokio`, one multiplexed async one), opened when first needed and again after an
/// error that may have broken them. Every failure is counted, reported and warned about
/// on the handle, and returned as [`Error::Redis`] naming the URL and the operation.
///
/// Commands are the [`redis`](https://docs.rs/redis) crate's own `Cmd`, so a store
/// written against it uses the same `redis` version as this crate (1.x). A batch is
/// sent as a pipeline to one server, all of it answered within the handle's
/// `io_timeout`, and every command gets its own answer: a server error is that
/// command's `Err`, never the batch's. On a cluster a sync batch is split by node, and
/// fails whole when any command of it fails; an async one goes command by command.
///
/// A connection kept from an earlier call may have been closed by the server since (a
/// restart, `CLIENT KILL`, an idle timeout): when a call finds it closed, or a cluster
/// node sent it elsewhere (`MOVED` after a failover), the call is sent once more on a
/// new connection, and only a second failure counts. So every batch and command sent
/// through here must be safe to send twice: the commands before the close may have
/// been applied. A timeout on one server is never sent again here; on a cluster the
/// redis crate's cluster client may send a command again itself (up to 3 times).
pub struct RedisConnection {
    redis: Redis,
}

/// Whether `err` says the connection is gone (closed by the server, reset), not that it
/// timed out.
fn closed(err: &RedisError) -> bool {
    err.is_connection_dropped() && !err.is_timeout()
}

/// Whether a connection that met `err` may be out of step with the server: never
/// reused.
fn breaks(err: &RedisError) -> bool {
    err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_unrecoverable_error() || moved(err)
}

/// Whether a cluster node sent the batch elsewhere (`MOVED`, `ASK`: a failover or a
/// resharding), or asked for it later (`TRYAGAIN`, `CLUSTERDOWN`): nothing it refused
/// was applied, and a new connection learns where the slots are now. The sync client
/// follows a redirection of one command itself, not of a pipeline's.
fn moved(err: &RedisError) -> bool {
    const CODES: [&str; 4] = ["MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"];
    let code = |code: Option<&str>| code.is_some_and(|code| CODES.contains(&code));
    code(err.code())
        || err.clone().into_server_errors().is_some_and(|errs| errs.iter().any(|(_, e)| code(Some(e.code()))))
}

impl RedisConnection {
    pub(super) fn new(redis: Redis) -> Self {
        RedisConnection { redis }
    }

    /// The handle this connection belongs to.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Sends `cmds` in one batch; one answer per command, in order, an error the
    /// server answered being that command's `Err`. `operation` names what the batch
    /// does in errors and warnings (`create runs`, `write catalog entries`).
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] naming the URL and `operation` when the batch as a whole failed:
    /// the server could not be reached (or was not, less than 250 ms ago), or did not
    /// answer in time. Counted in the handle's [`faults`](Redis::faults); errors of
    /// single commands are not (the caller decides what they mean, and may report them
    /// with [`fault`](Self::fault)).
    pub fn send(&self, operation: &'static str, cmds: Vec<Cmd>) -> Result<Vec<RedisResult<Value>>, Error> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.redis.deployment().prepare(cmds, false);
        let timeout = self.redis.settings().io_timeout;
        self.sync(operation, |conn| conn.send(&batch, timeout))
    }

    /// Sends one command and reads its answer as `T`.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and the server's error for the command (such as `OOM`
    /// at `maxmemory`, or `NOPERM`), counted too.
    pub fn query<T: FromRedisValue>(&self, operation: &'static str, cmd: &Cmd) -> Result<T, Error> {
        let value = self.sync(operation, |conn| conn.query(cmd))?;
        self.read(operation, value)
    }

    fn read<T: FromRedisValue>(&self, operation: &'static str, value: Value) -> Result<T, Error> {
        ::redis::from_redis_value(value)
            .map_err(|err| self.redis.failed(operation, &err.into(), self.redis.settings().io_timeout))
    }

    /// Runs `f` on a sync connection, by the rules above.
    fn sync<T>(&self, operation: &'static str, mut f: impl FnMut(&mut SyncConn) -> RedisResult<T>) -> Result<T, Error> {
        let pool = self.redis.pool();
        let mut slot = pool.slot();
        let kept = slot.is_some();
        let mut answer = self.opened(&mut slot, operation).map(&mut f)?;
        if let Err(err) = &answer
            && ((kept && closed(err)) || moved(err))
        {
            *slot = None;
            answer = self.opened(&mut slot, operation).map(f)?;
        }
        answer.map_err(|err| {
            if breaks(&err) {
                *slot = None;
            }
            self.redis.failed(operation, &err, self.redis.settings().io_timeout)
        })
    }

    /// The slot's connection, opened if there is none.
    fn opened<'s>(&self, slot: &'s mut Option<SyncConn>, operation: &'static str) -> Result<&'s mut SyncConn, Error> {
        if slot.is_none() {
            let pool = self.redis.pool();
            if let Some(why) = pool.down.get() {
                return Err(self.redis.fault(operation, FaultKind::Unreachable, format!("not reconnected yet: {why}")));
            }
            let settings = self.redis.settings();
            match SyncConn::open(self.redis.deployment(), settings, Instant::now() + settings.connect_timeout) {
                Ok(conn) => {
                    *slot = Some(conn);
                    pool.down.set(None);
                }
                Err(err) => {
                    let (kind, message) = describe(&err, settings.connect_timeout);
                    pool.down.set(Some(message.clone()));
                    return Err(self.redis.fault(operation, kind, message));
                }
            }
        }
        match slot.as_mut() {
            Some(conn) => Ok(conn),
            None => Err(self.redis.fault(operation, FaultKind::Unreachable, "no connection".to_owned())),
        }
    }

    /// As [`send`](Self::send), from async code (feature `tokio`), over the handle's
    /// multiplexed connection: many tasks send at once, and waiting for Redis never
    /// blocks a thread of the runtime.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    #[cfg(feature = "tokio")]
    pub async fn send_async(&self, operation: &'static str, cmds: Vec<Cmd>) -> Result<Vec<RedisResult<Value>>, Error> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.redis.deployment().prepare(cmds, true);
        let batch = &batch;
        self.with_async(operation, move |mut conn| async move { conn.send(batch).await }).await
    }

    /// As [`query`](Self::query), from async code (feature `tokio`).
    ///
    /// # Errors
    ///
    /// As [`query`](Self::query).
    #[cfg(feature = "tokio")]
    pub async fn query_async<T: FromRedisValue>(&self, operation: &'static str, cmd: &Cmd) -> Result<T, Error> {
        let value = self.with_async(operation, move |mut conn| async move { conn.query(cmd).await }).await?;
        self.read(operation, value)
    }

    /// Runs `f` on the async connection, by the rules of [`send`](Self::send).
    #[cfg(feature = "tokio")]
    async fn with_async<T, F, Fut>(&self, operation: &'static str, mut f: F) -> Result<T, Error>
    where
        F: FnMut(super::link::AsyncConn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let (conn, kept) = self.opened_async(operation).await?;
        let mut answer = f(conn).await;
        if let Err(err) = &answer
            && kept
            && closed(err)
        {
            self.forget_async().await;
            let (conn, _) = self.opened_async(operation).await?;
            answer = f(conn).await;
        }
        match answer {
            Ok(value) => Ok(value),
            Err(err) => {
                if breaks(&err) {
                    self.forget_async().await;
                }
                Err(self.redis.failed(operation, &err, self.redis.settings().io_timeout))
            }
        }
    }

    /// A clone of the async connection, opened if there is none, and whether it was
    /// open already.
    #[cfg(feature = "tokio")]
    async fn opened_async(&self, operation: &'static str) -> Result<(super::link::AsyncConn, bool), Error> {
        let slot = self.redis.aio();
        let mut conn = slot.conn.lock().await;
        if let Some(conn) = conn.as_ref() {
            return Ok((conn.clone(), true));
        }
        if let Some(why) = slot.down.get() {
            return Err(self.redis.fault(operation, FaultKind::Unreachable, format!("not reconnected yet: {why}")));
        }
        let settings = self.redis.settings();
        match super::link::AsyncConn::open(self.redis.deployment(), settings).await {
            Ok(opened) => {
                slot.down.set(None);
                *conn = Some(opened.clone());
                Ok((opened, false))
            }
            Err(err) => {
                let (kind, message) = describe(&err, settings.connect_timeout);
                slot.down.set(Some(message.clone()));
                Err(self.redis.fault(operation, kind, message))
            }
        }
    }

    /// Drops the async connection: the next call opens a new one. A cluster's keeps
    /// its own connections to the nodes and mends them itself.
    #[cfg(feature = "tokio")]
    async fn forget_async(&self) {
        let mut conn = self.redis.aio().conn.lock().await;
        if matches!(conn.as_ref(), Some(super::link::AsyncConn::Single(_))) {
            *conn = None;
        }
    }

    /// Counts, reports to the handle's listener and warns about a failure that
    /// [`send`](Self::send) cannot see, exactly as it does for a failed operation, and
    /// returns the [`Error::Redis`] to return. For stores built on the handle that get
    /// an answer they cannot use, such as a value under one of their keys that they did
    /// not write ([`FaultKind::Foreign`]): `message` should name the Redis key, and show
    /// the value quoted and cut short, so that a hostile value cannot flood a log line.
    /// The message is scrubbed of the URL's password; the connection is kept.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_catalog::{Error, FaultKind, RedisConnection};
    ///
    /// fn read_count(conn: &RedisConnection, key: &str) -> Result<Option<u64>, Error> {
    ///     let raw: Option<String> = conn.query("read a count", redis::cmd("GET").arg(key))?;
    ///     let Some(raw) = raw else { return Ok(None) };
    ///     raw.parse().map(Some).map_err(|_| {
    ///         let message = format!("foreign value under {key}: {raw:?}");
    ///         conn.fault("read a count", FaultKind::Foreign, message)
    ///     })
    /// }
    /// ```
    pub fn fault(&self, operation: &'static str, kind: FaultKind, message: String) -> Error {
        self.redis.fault(operation, kind, message)
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("url", &self.redis.url())
            .field("open", &self.redis.pool().open())
            .finish_non_exhaustive()
    }
}
