use std::fmt;
use std::time::{Duration, Instant};

use ::redis::{Cmd, Connection, FromRedisValue, RedisError, RedisResult, Value};

use super::deployment::Addr;
use super::dispatch::{Dispatch, Flight, Next};
use super::fault::describe;
use super::handle::Redis;
use super::link::{self, Single};
use super::pool::{Down, Links};
use crate::error::Error;
use crate::telemetry::FaultKind;

/// The way to a [`Redis`] deployment for a store built on the handle, such as the SDK's
/// run store or [`RedisCatalog`](super::RedisCatalog): commands go over the handle's
/// connections (a few sets of sync ones, so that threads do not take turns; with
/// feature `tokio`, one multiplexed async one per node), opened when first needed and
/// again after an error that may have broken them. Every failure is counted, reported
/// and warned about on the handle, and returned as [`Error::Redis`] naming the URL and
/// the operation.
///
/// Commands are the [`redis`](https://docs.rs/redis) crate's own `Cmd`, so a store
/// written against it uses the same `redis` version as this crate (1.x). A batch goes
/// as one pipeline per master (on a Redis Cluster, each command to the master of its
/// first key's slot), all of it answered within the handle's `io_timeout`, and every
/// command gets its own answer: a server error is that command's `Err`, never the
/// batch's. Sync and async calls follow the same rules:
///
/// - **Durable writes.** A batch that writes (anything but `GET`, `GETRANGE`, `EXISTS`,
///   `PTTL` and the like) waits, per master, until its writes are on as many replicas
///   as the handle's [`Durability`](super::Durability) asks; its answers count only
///   then.
/// - **A living cluster.** `MOVED` and `ASK` answers are followed command by command,
///   `TRYAGAIN` and `CLUSTERDOWN` waited out, and a master that drops the connection
///   (a crash) is waited for while a replica takes over, for the handle's
///   [failover window](Redis::failover_window); then the command fails, naming the
///   node and its slot.
/// - **Sent again.** A connection kept from an earlier call may have been closed by
///   the server since (a restart, `CLIENT KILL`, an idle timeout): when a call finds it
///   closed it is sent once more on a new connection. So every batch and command sent
///   through here must be safe to send twice: the commands before the close may have
///   been applied. A timeout is never sent again.
pub struct RedisConnection {
    redis: Redis,
}

impl Redis {
    /// The way to the deployment for a store built on the handle: commands over the
    /// handle's connections, opened when first needed and again after an error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_catalog::RedisBuilder;
    ///
    /// let redis = RedisBuilder::new("redis://127.0.0.1:6379").build()?;
    /// let conn = redis.connection();
    /// let pong: String = conn.query("ping", &redis::cmd("PING"))?;
    /// assert_eq!(pong, "PONG");
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    pub fn connection(&self) -> RedisConnection {
        RedisConnection { redis: self.clone() }
    }
}

/// Whether a connection that met `err` may be out of step with the server: never
/// reused.
pub(super) fn breaks(err: &RedisError) -> bool {
    err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_unrecoverable_error()
}

impl RedisConnection {
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
        let mut dispatch = self.dispatch(cmds);
        let mut links = self.redis.pool().slot();
        let mut named = self.redis.settings().io_timeout;
        let mut next = Next::FIRST;
        while let Next::Again { refresh, pause } = next {
            if refresh {
                self.refresh();
            }
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
            let flights = self.plan(&mut dispatch);
            self.round(&mut links, &mut dispatch, flights, &mut named);
            next = dispatch.next(self.redis.deployment().window());
        }
        self.finish(operation, dispatch, named)
    }

    pub(super) fn dispatch(&self, cmds: Vec<Cmd>) -> Dispatch {
        Dispatch::new(cmds, self.redis.is_cluster(), self.redis.settings().io_timeout)
    }

    pub(super) fn plan(&self, dispatch: &mut Dispatch) -> Vec<Flight> {
        let settings = self.redis.settings();
        let topology = self.redis.deployment().topology();
        dispatch.plan(&topology, settings.durability, settings.durability_timeout, &settings.prefix)
    }

    /// Each command's answer once `dispatch` is done; the batch's error, counted, when
    /// it was lost whole (`named`: the timeout it names).
    pub(super) fn finish(
        &self,
        operation: &'static str,
        dispatch: Dispatch,
        named: Duration,
    ) -> Result<Vec<RedisResult<Value>>, Error> {
        dispatch.finish().map_err(|err| self.redis.failed(operation, &err, named))
    }

    /// Sends one round's flights, each on this thread's connection to its node, then
    /// reads their answers, all within the command timeout.
    fn round(&self, links: &mut Links, dispatch: &mut Dispatch, flights: Vec<Flight>, named: &mut Duration) {
        let settings = self.redis.settings();
        let deadline = Instant::now() + settings.io_timeout;
        let mut sent = Vec::with_capacity(flights.len());
        for flight in flights {
            let kept = links.contains_key(&flight.addr);
            let (packed, count) = dispatch.packed(&flight);
            let written = self.link(links, &flight.addr, named).and_then(|conn| conn.send_packed_command(&packed));
            sent.push((flight, kept, written.map(|()| count)));
        }
        for (flight, kept, written) in sent {
            let came = written.and_then(|count| match links.get_mut(&flight.addr) {
                Some(conn) => link::recv(conn, count, deadline, settings.io_timeout),
                None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected).into()),
            });
            if came.as_ref().is_err_and(breaks) {
                links.remove(&flight.addr);
            }
            dispatch.land(flight, came, kept, self.redis.deployment());
        }
    }

    /// This thread's connection to `addr`, opened if there is none. `named` becomes the
    /// connect timeout when opening timed out: the one an error names.
    fn link<'l>(&self, links: &'l mut Links, addr: &Addr, named: &mut Duration) -> RedisResult<&'l mut Connection> {
        if !links.contains_key(addr) {
            let conn = self.open(addr, named)?;
            links.insert(addr.clone(), conn);
        }
        links.get_mut(addr).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected).into())
    }

    fn open(&self, addr: &Addr, named: &mut Duration) -> RedisResult<Connection> {
        let (down, settings) = (&self.redis.pool().down, self.redis.settings());
        let node = self.node_to_open(addr, down)?;
        let opened = link::open(&node, Instant::now() + settings.connect_timeout, settings.io_timeout);
        self.opened(down, &opened);
        if opened.as_ref().is_err_and(RedisError::is_timeout) {
            *named = settings.connect_timeout;
        }
        opened
    }

    /// How to connect to `addr`; an error at once while a connect to the one server
    /// failed less than [`RECONNECT_AFTER`](super::pool::RECONNECT_AFTER) ago, as
    /// `down` (the sync or the async client's) says.
    pub(super) fn node_to_open(&self, addr: &Addr, down: &Down) -> RedisResult<Single> {
        let deployment = self.redis.deployment();
        if !deployment.is_cluster()
            && let Some(why) = down.get()
        {
            return Err(not_reconnected(&why));
        }
        deployment.node(addr).ok_or_else(|| unknown_node(addr))
    }

    /// Notes in `down` how opening a connection to the one server went.
    pub(super) fn opened<T>(&self, down: &Down, opened: &RedisResult<T>) {
        if !self.redis.deployment().is_cluster() {
            let timeout = self.redis.settings().connect_timeout;
            down.set(opened.as_ref().err().map(|err| describe(err, timeout).1));
        }
    }

    /// Reads where commands go again, from the first node that answers.
    fn refresh(&self) {
        let (deployment, settings) = (self.redis.deployment(), self.redis.settings());
        let cmd = deployment.refresh_cmd();
        for node in deployment.refresh_nodes() {
            let answer = link::open(&node, Instant::now() + settings.connect_timeout, settings.connect_timeout)
                .and_then(|mut conn| cmd.query::<Value>(&mut conn));
            if answer.is_ok_and(|answer| deployment.refresh(&node, &answer).is_ok()) {
                return;
            }
        }
    }

    /// Sends one command and reads its answer as `T`.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and the server's error for the command (such as `OOM`
    /// at `maxmemory`, or `NOPERM`), counted too.
    pub fn query<T: FromRedisValue>(&self, operation: &'static str, cmd: &Cmd) -> Result<T, Error> {
        let answer = self.send(operation, vec![cmd.clone()])?;
        self.read(operation, answer)
    }

    /// The one answer of a [`query`](Self::query), as `T`.
    pub(super) fn read<T: FromRedisValue>(
        &self,
        operation: &'static str,
        answers: Vec<RedisResult<Value>>,
    ) -> Result<T, Error> {
        let timeout = self.redis.settings().io_timeout;
        let value = answers
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()));
        value
            .and_then(|value| ::redis::from_redis_value(value).map_err(RedisError::from))
            .map_err(|err| self.redis.failed(operation, &err, timeout))
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
    /// use idempotency_catalog::fleet::RedisConnection;
    /// use idempotency_catalog::{Error, FaultKind};
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

/// The error of a call made less than [`RECONNECT_AFTER`](super::pool::RECONNECT_AFTER)
/// after a failed connect.
fn not_reconnected(why: &str) -> RedisError {
    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, format!("not reconnected yet: {why}")).into()
}

fn unknown_node(addr: &str) -> RedisError {
    std::io::Error::new(std::io::ErrorKind::NotFound, format!("no way to connect to node {addr}")).into()
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("url", &self.redis.url())
            .field("open", &self.redis.pool().open())
            .finish_non_exhaustive()
    }
}
