//! The async forms of [`RedisConnection`]'s calls: the same [`Dispatch`] rounds as the
//! sync ones (`connection.rs`), over the handle's multiplexed connections.

use ::redis::{Cmd, FromRedisValue, RedisResult, Value};

use super::link::{AsyncConn, open_async, within};
use super::pool::next_id;
use crate::error::Error;
use crate::fleet::connection::{RedisConnection, breaks};
use crate::fleet::deployment::Addr;
use crate::fleet::dispatch::{Dispatch, Flight, Next};

impl RedisConnection {
    /// As [`send`](Self::send), from async code (feature `tokio`), over the handle's
    /// multiplexed connections: many tasks send at once, and waiting for Redis never
    /// blocks a thread of the runtime.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_catalog::RedisBuilder;
    ///
    /// # async fn service() -> Result<(), idempotency_catalog::Error> {
    /// let redis = RedisBuilder::new("redis://127.0.0.1:6379").build_async().await?;
    /// let mut get = redis::cmd("GET");
    /// get.arg("missing");
    /// let answers = redis.connection().send_async("read", vec![get]).await?;
    /// assert_eq!(answers.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_async(&self, operation: &'static str, cmds: Vec<Cmd>) -> Result<Vec<RedisResult<Value>>, Error> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let redis = self.redis();
        let mut dispatch = self.dispatch(cmds);
        let mut named = redis.settings().io_timeout;
        let mut next = Next::FIRST;
        while let Next::Again { refresh, pause } = next {
            if refresh {
                self.refresh_async().await;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let flights = self.plan(&mut dispatch);
            let sends = flights.into_iter().map(|flight| {
                let pipe = pipeline(&dispatch, &flight);
                async move {
                    let (came, kept, timed_out_opening) = self.flight_async(&flight.addr, pipe).await;
                    (flight, came, kept, timed_out_opening)
                }
            });
            for (flight, came, kept, timed_out_opening) in futures_util::future::join_all(sends).await {
                if timed_out_opening {
                    named = redis.settings().connect_timeout;
                }
                dispatch.land(flight, came, kept, redis.deployment());
            }
            next = dispatch.next(redis.deployment().window());
        }
        self.finish(operation, dispatch, named)
    }

    /// As [`query`](Self::query), from async code (feature `tokio`).
    ///
    /// # Errors
    ///
    /// As [`query`](Self::query).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_catalog::RedisBuilder;
    ///
    /// # async fn service() -> Result<(), idempotency_catalog::Error> {
    /// let redis = RedisBuilder::new("redis://127.0.0.1:6379").build_async().await?;
    /// let pong: String = redis.connection().query_async("ping", &redis::cmd("PING")).await?;
    /// assert_eq!(pong, "PONG");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn query_async<T: FromRedisValue>(&self, operation: &'static str, cmd: &Cmd) -> Result<T, Error> {
        let answer = self.send_async(operation, vec![cmd.clone()]).await?;
        self.read(operation, answer)
    }

    /// Sends one flight's pipeline on the node's async connection, opened if there is
    /// none: its answers, whether the connection was kept from before, and whether
    /// opening it timed out.
    async fn flight_async(&self, addr: &Addr, pipe: ::redis::Pipeline) -> (RedisResult<Vec<Value>>, bool, bool) {
        let redis = self.redis();
        let slot = redis.shared.aio.node(addr);
        let (mut conn, id, kept) = {
            let mut held = slot.lock().await;
            match held.as_ref() {
                Some((conn, id)) => (conn.clone(), *id, true),
                None => match self.open_async(addr).await {
                    Ok(conn) => {
                        let id = next_id();
                        *held = Some((conn.clone(), id));
                        (conn, id, false)
                    }
                    Err(err) => {
                        let timed_out = err.is_timeout();
                        return (Err(err), false, timed_out);
                    }
                },
            }
        };
        let came = within(redis.settings().io_timeout, pipe.query_async::<Vec<Value>>(&mut conn)).await;
        if came.as_ref().is_err_and(breaks) {
            // Only the connection that failed: another task may have opened a new one.
            let mut held = slot.lock().await;
            if held.as_ref().is_some_and(|(_, held)| *held == id) {
                *held = None;
            }
        }
        (came, kept, false)
    }

    async fn open_async(&self, addr: &Addr) -> RedisResult<AsyncConn> {
        let (down, settings) = (&self.redis().shared.aio.down, self.redis().settings());
        let node = self.node_to_open(addr, down)?;
        let opened = open_async(&node, settings.connect_timeout, settings.io_timeout).await;
        self.opened(down, &opened);
        opened
    }

    /// As `refresh`, from async code: reads where commands go again, from the first
    /// node that answers.
    async fn refresh_async(&self) {
        let (deployment, settings) = (self.redis().deployment(), self.redis().settings());
        let cmd = deployment.refresh_cmd();
        for node in deployment.refresh_nodes() {
            let answer = async {
                let mut conn = open_async(&node, settings.connect_timeout, settings.connect_timeout).await?;
                within(settings.connect_timeout, cmd.query_async::<Value>(&mut conn)).await
            };
            if answer.await.is_ok_and(|answer| deployment.refresh(&node, &answer).is_ok()) {
                return;
            }
        }
    }
}

/// The commands of `flight` as the async client sends them: a pipeline whose errors
/// are answers.
fn pipeline(dispatch: &Dispatch, flight: &Flight) -> ::redis::Pipeline {
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors();
    for cmd in dispatch.flight_cmds(flight) {
        pipe.add_command(cmd.into_owned());
    }
    pipe
}
