//! Connections to one node (a server, or one master of a cluster), and how a pipeline
//! goes over each: the sync client's here, bounded as a whole by the command timeout;
//! the async client's multiplexed one in `future/link.rs` (feature `tokio`). Thin on
//! purpose: which node a command goes to, and what its answer means, is decided once,
//! in [`dispatch`](super::dispatch), for both.

use std::io;
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use ::redis::{Client, Connection, ConnectionAddr, ConnectionInfo, RedisResult, Value};

/// The certificates a `rediss://` handle connects with (feature `tls`).
#[cfg(feature = "tls")]
pub(super) type Certs = ::redis::TlsCertificates;
/// Without feature `tls`, there are none.
#[cfg(not(feature = "tls"))]
pub(super) type Certs = NoTls;

/// No certificates: a build without TLS.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
pub(super) enum NoTls {}

/// How to connect to one node.
#[derive(Clone)]
pub(super) struct Single {
    /// How to connect, without the database number: see [`one_command_handshake`].
    pub(super) info: ConnectionInfo,
    pub(super) db: i64,
    /// The client that carries the TLS certificates, for `rediss://`.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<Client>,
}

impl Single {
    /// `info` as it is, without TLS: for tests.
    #[cfg(test)]
    pub(super) fn plain(info: ConnectionInfo) -> Self {
        let (info, db) = one_command_handshake(info);
        Single {
            info,
            db,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl std::fmt::Debug for Single {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The address only: the connection info holds the password.
        write!(f, "{}", self.info.addr())
    }
}

/// One server to connect to, as a seed or a cluster's master: `info` without its
/// database number (see [`one_command_handshake`]), with `certs` over TLS.
pub(super) fn single(info: ConnectionInfo, certs: Option<&Certs>) -> RedisResult<Single> {
    let (info, db) = one_command_handshake(info);
    #[cfg(feature = "tls")]
    let tls = match (info.addr(), certs) {
        (ConnectionAddr::TcpTls { .. }, Some(certs)) => {
            Some(::redis::Client::build_with_tls(info.clone(), certs.clone())?)
        }
        _ => None,
    };
    #[cfg(not(feature = "tls"))]
    let _ = certs;
    Ok(Single {
        info,
        db,
        #[cfg(feature = "tls")]
        tls,
    })
}

/// `seed`, moved to another node of its cluster: same credentials, same TLS.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(super) fn node(seed: &Single, host: &str, port: u16, certs: Option<&Certs>) -> RedisResult<Single> {
    let addr = match seed.info.addr() {
        ConnectionAddr::TcpTls { insecure, .. } => {
            ConnectionAddr::TcpTls { host: host.to_owned(), port, insecure: *insecure, tls_params: None }
        }
        _ => ConnectionAddr::Tcp(host.to_owned(), port),
    };
    single(seed.info.clone().set_addr(addr), certs)
}

/// Opens a connection to one node by `deadline`, with `timeout` on every read and
/// write once open.
///
/// redis-rs applies the time left at the start of its handshake to each read, and reads
/// one answer per command of its handshake (`AUTH`, `SELECT`, two `CLIENT SETINFO`): a
/// server that accepts and never answers took four times the timeout. So the
/// handshake is cut to one command ([`one_command_handshake`]), `SELECT` is sent here
/// under the deadline, and the addresses of a name share it rather than each getting
/// all of it.
pub(super) fn open(single: &Single, deadline: Instant, timeout: Duration) -> RedisResult<Connection> {
    let mut conn = connect(single, deadline)?;
    until(&conn, deadline)?;
    if single.db != 0 {
        ::redis::cmd("SELECT").arg(single.db).query::<()>(&mut conn)?;
    }
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

/// `info` without the database number (returned, for [`open`] to select) and the
/// library name: redis-rs's handshake is then `AUTH`, or `HELLO` with RESP3, or
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

/// Reads `count` answers of a pipeline sent on `conn`, all by `deadline`, stopping at the
/// first that fails to come. redis-rs's own `query` reads each answer with the socket's
/// timeout and goes on reading after one timed out, so a server that stopped answering
/// held a 10,000-command pipeline for up to 10,000 timeouts. `timeout` is the socket's
/// own, put back when shortened.
pub(super) fn recv(
    conn: &mut Connection,
    count: usize,
    deadline: Instant,
    timeout: Duration,
) -> RedisResult<Vec<Value>> {
    let mut values = Vec::with_capacity(count);
    // The socket waits at most what is left, and a little more (an eighth of the
    // timeout): shortened only when it would wait longer, so that a pipeline answered
    // quickly costs no system call per answer.
    let (slack, mut waits) = (timeout / 8, timeout);
    for _ in 0..count {
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
