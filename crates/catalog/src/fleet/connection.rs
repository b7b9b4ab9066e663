use std::fmt;
use std::time::{Duration, Instant};

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
/// [`run`](Self::run). It passes the [`redis`](https://docs.rs/redis) crate's own
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
    /// `f` does in errors and warnings (`claim keys`, `read a catalog entry`).
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
        f: impl FnOnce(&mut ::redis::Connection) -> ::redis::RedisResult<T>,
    ) -> Result<T, Error> {
        let mut state = self.state.lock();
        if state.conn.is_none() {
            if let Some((until, why)) = &state.down
                && Instant::now() < *until
            {
                let message = format!("not reconnected yet: {why}");
                return Err(self.redis.fault(operation, FaultKind::Unreachable, message));
            }
            match self.redis.open() {
                Ok(conn) => {
                    state.conn = Some(conn);
                    state.down = None;
                }
                Err(err) => {
                    let (kind, message) = describe(&err);
                    state.down = Some((Instant::now() + RECONNECT_AFTER, message.clone()));
                    return Err(self.redis.fault(operation, kind, message));
                }
            }
        }
        let Some(conn) = state.conn.as_mut() else {
            return Err(self.redis.fault(operation, FaultKind::Unreachable, "no connection".to_owned()));
        };
        f(conn).map_err(|err| {
            // A connection that timed out or broke may be out of step with the server:
            // never reuse it.
            if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_unrecoverable_error() {
                state.conn = None;
            }
            let (kind, message) = describe(&err);
            self.redis.fault(operation, kind, message)
        })
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
