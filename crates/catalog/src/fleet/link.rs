//! Connections to a deployment, one server or (feature `cluster`) a Redis Cluster, and
//! how a batch of commands goes over each: a pipeline to one server, a cluster pipeline
//! split by node, or, from async code on a cluster, every command on its own over the
//! cluster's multiplexed connections (the async cluster client takes a pipeline only
//! when all of it is in one slot). Each command gets its own answer, but for the sync
//! cluster pipeline, which fails whole when any command fails: a batch is never lost
//! part-way silently.

use std::io;
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use ::redis::{Client, Cmd, Connection, ConnectionAddr, ConnectionInfo, RedisResult, Value};

use super::handle::Settings;

/// Where a handle's commands go.
pub(super) enum Deployment {
    /// One server.
    Single(Single),
    /// A Redis Cluster, found from its seed nodes.
    #[cfg(feature = "cluster")]
    Cluster(::redis::cluster::ClusterClient),
}

/// One server.
#[derive(Clone)]
pub(super) struct Single {
    /// How to connect, without the database number: see [`one_command_handshake`].
    pub(super) info: ConnectionInfo,
    pub(super) db: i64,
    /// The client that carries the TLS certificates, for `rediss://`.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<Client>,
}

impl Deployment {
    /// Whether commands go to a cluster.
    pub(super) fn is_cluster(&self) -> bool {
        match self {
            Deployment::Single(_) => false,
            #[cfg(feature = "cluster")]
            Deployment::Cluster(_) => true,
        }
    }

    /// `cmds`, ready to be sent over this deployment's connections, sync or async.
    pub(super) fn prepare(&self, cmds: Vec<Cmd>, for_async: bool) -> Prepared {
        let _ = for_async;
        match self {
            Deployment::Single(_) => {
                let mut pipe = ::redis::pipe();
                pipe.ignore_errors();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                Prepared::Pipeline(pipe)
            }
            #[cfg(feature = "cluster")]
            Deployment::Cluster(_) if for_async => Prepared::Each(cmds),
            #[cfg(feature = "cluster")]
            Deployment::Cluster(_) => {
                let mut pipe = ::redis::cluster::cluster_pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                Prepared::Cluster(pipe)
            }
        }
    }
}

/// A batch of commands as a deployment sends it: prepared once, so that it can be sent
/// again as it is.
pub(super) enum Prepared {
    Pipeline(::redis::Pipeline),
    #[cfg(feature = "cluster")]
    Cluster(::redis::cluster::ClusterPipeline),
    #[cfg(feature = "cluster")]
    Each(Vec<Cmd>),
}

/// Each answer of a pipeline sent with `ignore_errors`, an error the server answered
/// as an `Err`.
fn answers(values: Vec<Value>) -> Vec<RedisResult<Value>> {
    values.into_iter().map(Value::extract_error).collect()
}

/// A connection of the sync client.
pub(super) enum SyncConn {
    Single(Connection),
    // Boxed: a cluster connection is several times the size of one to a server.
    #[cfg(feature = "cluster")]
    Cluster(Box<::redis::cluster::ClusterConnection>),
}

impl SyncConn {
    /// Opens a connection to `deployment`, by `deadline`, with `settings`' command
    /// timeout once open.
    pub(super) fn open(deployment: &Deployment, settings: &Settings, deadline: Instant) -> RedisResult<Self> {
        let conn = match deployment {
            Deployment::Single(single) => SyncConn::Single(open_single(single, deadline)?),
            #[cfg(feature = "cluster")]
            Deployment::Cluster(client) => SyncConn::Cluster(Box::new(client.get_connection()?)),
        };
        conn.set_timeouts(settings.io_timeout)?;
        Ok(conn)
    }

    fn set_timeouts(&self, timeout: Duration) -> RedisResult<()> {
        match self {
            SyncConn::Single(conn) => {
                conn.set_read_timeout(Some(timeout))?;
                conn.set_write_timeout(Some(timeout))
            }
            #[cfg(feature = "cluster")]
            SyncConn::Cluster(conn) => {
                conn.set_read_timeout(Some(timeout))?;
                conn.set_write_timeout(Some(timeout))
            }
        }
    }

    /// Sends `batch`, answered within `timeout` on one server; one answer per command.
    pub(super) fn send(&mut self, batch: &Prepared, timeout: Duration) -> RedisResult<Vec<RedisResult<Value>>> {
        match (self, batch) {
            (SyncConn::Single(conn), Prepared::Pipeline(pipe)) => Ok(answers(pipeline(conn, pipe, timeout)?)),
            // The sync cluster pipeline has no `ignore_errors`: an error of one command
            // fails the batch, and the caller takes every answer as unknown.
            #[cfg(feature = "cluster")]
            (SyncConn::Cluster(conn), Prepared::Cluster(pipe)) => {
                Ok(pipe.query::<Vec<Value>>(conn)?.into_iter().map(Ok).collect())
            }
            #[cfg(feature = "cluster")]
            (SyncConn::Cluster(conn), Prepared::Each(cmds)) => Ok(cmds
                .iter()
                .map(|cmd| ::redis::ConnectionLike::req_command(conn.as_mut(), cmd).and_then(Value::extract_error))
                .collect()),
            #[cfg(feature = "cluster")]
            _ => Err(mismatch()),
        }
    }

    /// Sends one command.
    pub(super) fn query(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        let answer = match self {
            SyncConn::Single(conn) => ::redis::ConnectionLike::req_command(conn, cmd),
            #[cfg(feature = "cluster")]
            SyncConn::Cluster(conn) => ::redis::ConnectionLike::req_command(conn.as_mut(), cmd),
        };
        answer.and_then(Value::extract_error)
    }
}

/// Sends `pipe` to one server and reads its answers, all within `timeout`, stopping at
/// the first that fails to come. redis-rs's own `query` reads each answer with the
/// socket's timeout and goes on reading after one timed out, so a server that stopped
/// answering held a 10,000-command pipeline for up to 10,000 timeouts.
fn pipeline(conn: &mut Connection, pipe: &::redis::Pipeline, timeout: Duration) -> RedisResult<Vec<Value>> {
    if pipe.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = Instant::now() + timeout;
    conn.send_packed_command(&pipe.get_packed_pipeline())?;
    let mut values = Vec::with_capacity(pipe.len());
    // The socket waits at most what is left, and a little more (an eighth of the
    // timeout): shortened only when it would wait longer, so that a pipeline answered
    // quickly costs no system call per answer.
    let (slack, mut waits) = (timeout / 8, timeout);
    for _ in 0..pipe.len() {
        let left = remaining(deadline)?;
        if left + slack < waits {
            conn.set_read_timeout(Some(left))?;
            waits = left;
        }
        values.push(conn.recv_response()?);
    }
    if waits != timeout {
        conn.set_read_timeout(Some(timeout))?;
    }
    Ok(values)
}

/// A batch prepared for another kind of connection: a bug, reported as an error.
#[cfg(feature = "cluster")]
fn mismatch() -> ::redis::RedisError {
    io::Error::other("a batch prepared for another kind of connection").into()
}

/// Opens a connection to one server by `deadline`.
///
/// redis-rs applies the time left at the start of its handshake to each read, and reads
/// one answer per command of its handshake (`AUTH`, `SELECT`, two `CLIENT SETINFO`): a
/// server that accepts and never answers took four times the timeout. So the
/// handshake is cut to one command ([`one_command_handshake`]), `SELECT` is sent here
/// under the deadline, and the addresses of a name share it rather than each getting
/// all of it.
pub(super) fn open_single(single: &Single, deadline: Instant) -> RedisResult<Connection> {
    let mut conn = connect(single, deadline)?;
    until(&conn, deadline)?;
    if single.db != 0 {
        ::redis::cmd("SELECT").arg(single.db).query::<()>(&mut conn)?;
    }
    Ok(conn)
}

/// `info` without the database number (returned, for [`open_single`] to select) and
/// the library name: redis-rs's handshake is then `AUTH`, or `HELLO` with RESP3, or
/// nothing. Its retry of `AUTH` without the user name, for servers before 6.0, is the
/// one case left where a server that answers and then stalls costs twice the time left.
pub(super) fn one_command_handshake(info: ConnectionInfo) -> (ConnectionInfo, i64) {
    let db = info.redis_settings().db();
    let handshake = info.redis_settings().clone().set_db(0).set_skip_set_lib_name();
    (info.set_redis_settings(handshake), db)
}

fn connect(single: &Single, deadline: Instant) -> RedisResult<Connection> {
    // Over TLS the certificate names the host: connect to it by name.
    #[cfg(feature = "tls")]
    if let Some(client) = &single.tls {
        return client.get_connection_with_timeout(remaining(deadline)?);
    }
    let info = &single.info;
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
pub(super) fn remaining(deadline: Instant) -> RedisResult<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(io::Error::from(io::ErrorKind::TimedOut).into()),
    }
}

/// A connection of the async client: multiplexed, so clones share it and many tasks
/// send over it at once.
#[cfg(feature = "tokio")]
#[derive(Clone)]
pub(super) enum AsyncConn {
    Single(::redis::aio::MultiplexedConnection),
    #[cfg(feature = "cluster")]
    Cluster(::redis::cluster_async::ClusterConnection),
}

#[cfg(feature = "tokio")]
impl AsyncConn {
    /// Opens a connection to `deployment` within `settings`' connect timeout.
    pub(super) async fn open(deployment: &Deployment, settings: &Settings) -> RedisResult<Self> {
        let opening = async {
            match deployment {
                Deployment::Single(single) => {
                    let config = ::redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(settings.connect_timeout))
                        .set_response_timeout(Some(settings.io_timeout));
                    #[cfg(feature = "tls")]
                    let client = match &single.tls {
                        Some(client) => client.clone(),
                        None => Client::open(single.info.clone())?,
                    };
                    #[cfg(not(feature = "tls"))]
                    let client = Client::open(single.info.clone())?;
                    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
                    if single.db != 0 {
                        ::redis::cmd("SELECT").arg(single.db).query_async::<()>(&mut conn).await?;
                    }
                    Ok(AsyncConn::Single(conn))
                }
                #[cfg(feature = "cluster")]
                Deployment::Cluster(client) => Ok(AsyncConn::Cluster(client.get_async_connection().await?)),
            }
        };
        match tokio::time::timeout(settings.connect_timeout, opening).await {
            Ok(opened) => opened,
            Err(_) => Err(io::Error::from(io::ErrorKind::TimedOut).into()),
        }
    }

    /// Sends `batch`; one answer per command.
    pub(super) async fn send(&mut self, batch: &Prepared) -> RedisResult<Vec<RedisResult<Value>>> {
        match (self, batch) {
            (AsyncConn::Single(conn), Prepared::Pipeline(pipe)) => Ok(answers(pipe.query_async(conn).await?)),
            #[cfg(feature = "cluster")]
            (AsyncConn::Cluster(conn), Prepared::Each(cmds)) => {
                let sends = cmds.iter().map(|cmd| {
                    let mut conn = conn.clone();
                    async move {
                        ::redis::aio::ConnectionLike::req_packed_command(&mut conn, cmd)
                            .await
                            .and_then(Value::extract_error)
                    }
                });
                Ok(futures_util::future::join_all(sends).await)
            }
            #[cfg(feature = "cluster")]
            _ => Err(mismatch()),
        }
    }

    /// Sends one command.
    pub(super) async fn query(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        let answer = match self {
            AsyncConn::Single(conn) => ::redis::aio::ConnectionLike::req_packed_command(conn, cmd).await,
            #[cfg(feature = "cluster")]
            AsyncConn::Cluster(conn) => ::redis::aio::ConnectionLike::req_packed_command(conn, cmd).await,
        };
        answer.and_then(Value::extract_error)
    }
}
