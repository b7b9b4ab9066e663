use std::fmt;
use std::io;
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use ::redis::{Client, Connection, ConnectionAddr, ConnectionInfo, RedisResult};
use parking_lot::Mutex;

use super::Redis;
use super::fault::describe;
use crate::error::Error;
use crate::telemetry::FaultKind;

/// After a failed connect, how long operations fail at once instead of trying again:
/// a server that is down must not cost every registration a connect timeout.
const RECONNECT_AFTER: Duration = Duration::from_millis(250);

/// One connection to a [`Redis`] server, opened at its first use and again after any
/// error that may have broken it (the next operation reconnects). Every failure is
/// counted, reported and warned about on the handle, and returned as
/// [`Error::Redis`] naming the URL. Operations on one connection take turns.
///
/// For stores built on the handle, such as the SDK's dedup store: see
/// [`run`](Self::run) and [`fault`](Self::fault). `run` passes the [`redis`](https://docs.rs/redis) crate's own
/// connection, so a store written against it uses the same `redis` version as this
/// crate (1.x).
pub struct RedisConnection {
    redis: Redis,
    state: Mutex<State>,
}

struct State {
    conn: Option<::redis::Connection>,
    /// After a failed connect: until when to fail at once, and why.
    down: Option<(Instant, String)>,
}

impl RedisConnection {
    pub(super) fn new(redis: Redis) -> Self {
        RedisConnection { redis, state: Mutex::new(State { conn: None, down: None }) }
    }

    /// The handle this connection belongs to.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Runs `f` on the connection, connecting first if needed. `operation` names what
    /// `f` does in errors and warnings (`create runs`, `read a catalog entry`).
    ///
    /// A connection kept from an earlier call may have been closed by the server since
    /// (a restart, `CLIENT KILL`, an idle timeout): when `f` finds it closed, `f` runs
    /// once more on a new connection, and only a second failure counts. So `f` must be
    /// safe to send twice: the commands before the close may have been applied. A
    /// timeout is never sent again: the server may still be working on it.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] naming the URL and `operation`: the server could not be
    /// reached (or was not, less than 250 ms ago), timed out, or answered with an
    /// error (such as `OOM` at `maxmemory`). The failure is counted in the handle's
    /// [`faults`](Redis::faults).
    pub fn run<T>(
        &self,
        operation: &'static str,
        mut f: impl FnMut(&mut ::redis::Connection) -> ::redis::RedisResult<T>,
    ) -> Result<T, Error> {
        let mut state = self.state.lock();
        let kept = state.conn.is_some();
        let first = self.connected(&mut state, operation).map(&mut f)?;
        let answer = match first {
            Err(err) if kept && err.is_connection_dropped() && !err.is_timeout() => {
                state.conn = None;
                self.connected(&mut state, operation).map(f)?
            }
            other => other,
        };
        answer.map_err(|err| {
            // A connection that timed out or broke may be out of step with the server:
            // never reuse it.
            if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_unrecoverable_error() {
                state.conn = None;
            }
            self.redis.failed(operation, &err, self.redis.settings().io_timeout)
        })
    }

    /// The connection, opened if there is none.
    fn connected<'s>(&self, state: &'s mut State, operation: &'static str) -> Result<&'s mut Connection, Error> {
        if state.conn.is_none() {
            if let Some((until, why)) = &state.down
                && Instant::now() < *until
            {
                let message = format!("not reconnected yet: {why}");
                return Err(self.redis.fault(operation, FaultKind::Unreachable, message));
            }
            let settings = self.redis.settings();
            let opened = open(&self.redis, Instant::now() + settings.connect_timeout).and_then(|conn| {
                conn.set_read_timeout(Some(settings.io_timeout))?;
                conn.set_write_timeout(Some(settings.io_timeout))?;
                Ok(conn)
            });
            match opened {
                Ok(conn) => {
                    state.conn = Some(conn);
                    state.down = None;
                }
                Err(err) => {
                    let (kind, message) = describe(&err, settings.connect_timeout);
                    state.down = Some((Instant::now() + RECONNECT_AFTER, message.clone()));
                    return Err(self.redis.fault(operation, kind, message));
                }
            }
        }
        match state.conn.as_mut() {
            Some(conn) => Ok(conn),
            None => Err(self.redis.fault(operation, FaultKind::Unreachable, "no connection".to_owned())),
        }
    }

    /// Counts, reports to the handle's listener and warns about a failure that
    /// [`run`](Self::run) cannot see, exactly as it does for a failed operation, and
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
    ///     let raw: Option<String> = conn.run("read a count", |c| redis::cmd("GET").arg(key).query(c))?;
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

/// Opens a connection to `redis` by `deadline`, and leaves the time left as its read
/// and write timeouts.
///
/// redis-rs applies the time left at the start of its handshake to each read, and reads
/// one answer per command of its handshake (`AUTH`, `SELECT`, two `CLIENT SETINFO`): a
/// server that accepts and never answers took four times the timeout. So the
/// handshake is cut to one command ([`one_command_handshake`]), `SELECT` is sent here
/// under the deadline, and the addresses of a name share it rather than each getting
/// all of it.
pub(super) fn open(redis: &Redis, deadline: Instant) -> RedisResult<Connection> {
    let settings = redis.settings();
    let mut conn = connect(&settings.info, deadline)?;
    until(&conn, deadline)?;
    if settings.db != 0 {
        ::redis::cmd("SELECT").arg(settings.db).query::<()>(&mut conn)?;
    }
    Ok(conn)
}

/// `info` without the database number (returned, for [`open`] to select) and the
/// library name: redis-rs's handshake is then `AUTH`, or `HELLO` with RESP3, or nothing.
/// Its retry of `AUTH` without the user name, for servers before 6.0, is the one case
/// left where a server that answers and then stalls costs twice the time left.
pub(super) fn one_command_handshake(info: ConnectionInfo) -> (ConnectionInfo, i64) {
    let db = info.redis_settings().db();
    let handshake = info.redis_settings().clone().set_db(0).set_skip_set_lib_name();
    (info.set_redis_settings(handshake), db)
}

fn connect(info: &ConnectionInfo, deadline: Instant) -> RedisResult<Connection> {
    let ConnectionAddr::Tcp(host, port) = info.addr() else {
        return Client::open(info.clone())?.get_connection_with_timeout(remaining(deadline)?);
    };
    let mut last = None;
    for addr in (host.as_str(), *port).to_socket_addrs()? {
        let one = info.clone().set_addr(ConnectionAddr::Tcp(addr.ip().to_string(), addr.port()));
        match Client::open(one)?.get_connection_with_timeout(remaining(deadline)?) {
            Ok(conn) => return Ok(conn),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")).into()))
}

/// Sets `conn`'s timeouts to what is left until `deadline`.
pub(super) fn until(conn: &Connection, deadline: Instant) -> RedisResult<()> {
    let left = remaining(deadline)?;
    conn.set_read_timeout(Some(left))?;
    conn.set_write_timeout(Some(left))
}

/// The time left until `deadline`, or a timeout error when none is.
fn remaining(deadline: Instant) -> RedisResult<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(io::Error::from(io::ErrorKind::TimedOut).into()),
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("RedisConnection")
            .field("url", &self.redis.url())
            .field("connected", &state.conn.is_some())
            .finish_non_exhaustive()
    }
}
