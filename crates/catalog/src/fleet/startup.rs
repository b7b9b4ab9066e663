//! What [`RedisBuilder::build`](super::RedisBuilder::build) does once the settings are
//! checked, sync or async: connects to the first seed within the connect timeout, finds
//! whether it is a Redis Cluster node, checks the configuration of the server (or of
//! every master of the cluster), and hands out the handle.

use std::time::Instant;

use ::redis::{Cmd, ConnectionAddr, ConnectionInfo, RedisResult, Value};

use super::builder::Plan;
use super::checks;
use super::handle::Redis;
use super::link::{self, Deployment, Single};
use crate::error::Error;

/// The operation that fails when the server cannot be reached or refuses the handshake.
const CONNECT: &str = "connect";

/// The certificates a `rediss://` handle connects with (feature `tls`).
#[cfg(feature = "tls")]
pub(super) type Certs = ::redis::TlsCertificates;
/// Without feature `tls`, there are none.
#[cfg(not(feature = "tls"))]
pub(super) type Certs = NoTls;

/// No certificates: a build without TLS.
#[cfg(not(feature = "tls"))]
pub(super) enum NoTls {}

/// One server to connect to, as a seed or a cluster's master: `info` without its
/// database number (see [`link::one_command_handshake`]), with `certs` over TLS.
pub(super) fn single(info: ConnectionInfo, certs: Option<&Certs>) -> RedisResult<Single> {
    let (info, db) = link::one_command_handshake(info);
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

/// What the first seed is asked: whether it answers, whether it is a cluster node and
/// which masters the cluster has, then the configuration [`checks`] reads.
fn seed_commands() -> Vec<Cmd> {
    let mut info = ::redis::cmd("INFO");
    info.arg("cluster");
    let mut nodes = ::redis::cmd("CLUSTER");
    nodes.arg("NODES");
    let mut cmds = vec![::redis::cmd("PING"), info, nodes];
    cmds.extend(checks::commands());
    cmds
}

/// What the first seed answered: the cluster's masters, if it is a cluster node (its
/// `INFO cluster` says `cluster_enabled:1`), and the answers for [`checks`]. A server
/// that refuses `PING` (`NOAUTH`, a user without it) refuses the handle; one that stops
/// answering after it fails the checks.
fn seed_answers(redis: &Redis, answers: Vec<RedisResult<Value>>) -> Result<(Option<Vec<Node>>, Answers), Error> {
    let timeout = redis.settings().connect_timeout;
    let mut answers = answers.into_iter();
    match answers.next() {
        Some(Ok(_)) => {}
        Some(Err(err)) => return Err(redis.failed(CONNECT, &err, timeout)),
        None => return Err(redis.fault(CONNECT, crate::FaultKind::Rejected, "no answer to PING".to_owned())),
    }
    let mut text = || match answers.next() {
        Some(Ok(value)) => Ok(::redis::from_redis_value::<String>(value).ok()),
        Some(Err(err)) if lost(&err) => Err(redis.failed(checks::CHECK, &err, timeout)),
        // A server without cluster support refuses `CLUSTER NODES`.
        Some(Err(_)) | None => Ok(None),
    };
    let info = text()?;
    let nodes = text()?;
    let cluster = info.is_some_and(|info| info.lines().any(|line| line.trim() == "cluster_enabled:1"));
    let masters = cluster.then(|| nodes.as_deref().map(masters).unwrap_or_default());
    Ok((masters, answers.collect()))
}

/// A node's address and port.
type Node = (String, u16);
/// One answer per command.
type Answers = Vec<RedisResult<Value>>;

/// Whether an answer was lost with the connection, rather than refused by the server.
fn lost(err: &::redis::RedisError) -> bool {
    err.is_io_error() || err.is_timeout() || err.is_connection_dropped()
}

/// The masters a `CLUSTER NODES` answer lists, that are not failing: their address and
/// port (`<id> <ip:port@bus[,hostname]> <flags> …`).
fn masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (address, flags) = (fields.nth(1)?, fields.next()?);
            let flags: Vec<&str> = flags.split(',').collect();
            if !flags.contains(&"master") || flags.iter().any(|flag| flag.starts_with("fail") || *flag == "noaddr") {
                return None;
            }
            let (host, port) = address.split('@').next()?.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// `seed`, moved to another node of its cluster.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
fn node(seed: &Single, host: &str, port: u16, certs: Option<&Certs>) -> RedisResult<Single> {
    let addr = match seed.info.addr() {
        ConnectionAddr::TcpTls { insecure, .. } => {
            ConnectionAddr::TcpTls { host: host.to_owned(), port, insecure: *insecure, tls_params: None }
        }
        _ => ConnectionAddr::Tcp(host.to_owned(), port),
    };
    single(seed.info.clone().set_addr(addr), certs)
}

/// The first seed.
fn first(seeds: &[Single]) -> Result<Single, Error> {
    seeds.first().cloned().ok_or_else(|| Error::config("RedisBuilder::url", "", "no URL"))
}

/// The deployment once the first seed has answered: the seed's server, or a cluster
/// (feature `cluster`) found from every seed.
fn deployment(
    redis: &Redis,
    seeds: &[Single],
    certs: Option<&Certs>,
    cluster: bool,
) -> Result<Option<Deployment>, Error> {
    let _ = certs;
    if !cluster {
        if seeds.len() > 1 {
            let message = "several URLs name the nodes of a cluster, but the first is not in cluster mode".to_owned();
            return Err(Error::Redis { url: redis.url().to_owned(), operation: CONNECT, message });
        }
        return Ok(None);
    }
    #[cfg(feature = "cluster")]
    {
        let settings = redis.settings();
        let infos = seeds.iter().map(|seed| seed.info.clone());
        // A few retries, soon: the redis crate's own (16, from 1.28 s apart up to 655 s,
        // sleeping the thread) held a sync call for minutes through a failover, and sent
        // a timed-out command again 16 times. A redirection takes one.
        let builder = ::redis::cluster::ClusterClientBuilder::new(infos)
            .connection_timeout(settings.connect_timeout)
            .response_timeout(settings.io_timeout)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(10)
            .max_retry_wait(200);
        #[cfg(feature = "tls")]
        let builder = match certs {
            Some(certs) => builder.certs(certs.clone()),
            None => builder,
        };
        let client = builder.build().map_err(|err| redis.failed(CONNECT, &err, settings.connect_timeout))?;
        Ok(Some(Deployment::Cluster(client)))
    }
    #[cfg(not(feature = "cluster"))]
    {
        let message =
            "the server is a node of a Redis Cluster: that needs the `cluster` feature of idempotency-catalog"
                .to_owned();
        Err(Error::Redis { url: redis.url().to_owned(), operation: CONNECT, message })
    }
}

/// How many times the cluster client sends a command again itself (after a
/// redirection, `TRYAGAIN`, a lost connection), 10 to 200 ms apart.
#[cfg(feature = "cluster")]
const CLUSTER_RETRIES: u32 = 3;

/// The sync build.
pub(super) fn connect(plan: Plan) -> Result<Redis, Error> {
    let Plan { settings, seeds, certs, pool_size, listener, allow_evicting } = plan;
    let deadline = Instant::now() + settings.connect_timeout;
    let seed = first(&seeds)?;
    // On the first seed until the build knows better.
    let mut redis = Redis::new(settings, Deployment::Single(seed.clone()), pool_size, listener);
    let (masters, checked) = seed_answers(&redis, ask(&redis, &seed, deadline, seed_commands())?)?;
    let mut findings = Vec::new();
    match &masters {
        // A cluster node that listed no healthy master (or may not list them) is
        // checked itself, rather than nothing being.
        Some(masters) if !masters.is_empty() => {
            for (host, port) in masters {
                let master = node(&seed, host, *port, certs.as_ref())
                    .map_err(|err| redis.failed(CONNECT, &err, plan_timeout(&redis)))?;
                let found = checks::read(&redis, ask(&redis, &master, deadline, checks::commands().into())?)?;
                findings.push(found.of_node(format!("{host}:{port}")));
            }
        }
        _ => findings.push(checks::read(&redis, checked)?),
    }
    checks::judge(&redis, findings, allow_evicting)?;
    if let Some(deployment) = deployment(&redis, &seeds, certs.as_ref(), masters.is_some())? {
        redis.set_deployment(deployment)?;
    }
    Ok(redis)
}

fn plan_timeout(redis: &Redis) -> std::time::Duration {
    redis.settings().connect_timeout
}

/// Sends `cmds` to `single`, one at a time, all by `deadline`: an answer each, an
/// error the server answered being that command's `Err`. After an answer lost with the
/// connection (a timeout), the rest are lost too.
fn ask(redis: &Redis, single: &Single, deadline: Instant, cmds: Vec<Cmd>) -> Result<Vec<RedisResult<Value>>, Error> {
    let mut conn =
        link::open_single(single, deadline).map_err(|err| redis.failed(CONNECT, &err, plan_timeout(redis)))?;
    let mut answers: Vec<RedisResult<Value>> = Vec::with_capacity(cmds.len());
    for cmd in &cmds {
        let answer = link::until(&conn, deadline)
            .and_then(|()| ::redis::ConnectionLike::req_command(&mut conn, cmd))
            .and_then(Value::extract_error);
        let gone = answer.as_ref().is_err_and(lost);
        answers.push(answer);
        if gone {
            break;
        }
    }
    fill(&mut answers, cmds.len());
    Ok(answers)
}

/// Pads `answers` to `n` with timeouts: the commands after a lost answer.
fn fill(answers: &mut Vec<RedisResult<Value>>, n: usize) {
    while answers.len() < n {
        answers.push(Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()));
    }
}

/// The async build (feature `tokio`).
#[cfg(feature = "tokio")]
pub(super) async fn connect_async(plan: Plan) -> Result<Redis, Error> {
    let Plan { settings, seeds, certs, pool_size, listener, allow_evicting } = plan;
    let deadline = Instant::now() + settings.connect_timeout;
    let seed = first(&seeds)?;
    let mut redis = Redis::new(settings, Deployment::Single(seed.clone()), pool_size, listener);
    let (masters, checked) = seed_answers(&redis, ask_async(&redis, &seed, deadline, seed_commands()).await?)?;
    let mut findings = Vec::new();
    match &masters {
        // A cluster node that listed no healthy master (or may not list them) is
        // checked itself, rather than nothing being.
        Some(masters) if !masters.is_empty() => {
            for (host, port) in masters {
                let master = node(&seed, host, *port, certs.as_ref())
                    .map_err(|err| redis.failed(CONNECT, &err, plan_timeout(&redis)))?;
                let answers = ask_async(&redis, &master, deadline, checks::commands().into()).await?;
                findings.push(checks::read(&redis, answers)?.of_node(format!("{host}:{port}")));
            }
        }
        _ => findings.push(checks::read(&redis, checked)?),
    }
    checks::judge(&redis, findings, allow_evicting)?;
    if let Some(deployment) = deployment(&redis, &seeds, certs.as_ref(), masters.is_some())? {
        redis.set_deployment(deployment)?;
    }
    Ok(redis)
}

/// As [`ask`], over an async connection.
#[cfg(feature = "tokio")]
async fn ask_async(
    redis: &Redis,
    single: &Single,
    deadline: Instant,
    cmds: Vec<Cmd>,
) -> Result<Vec<RedisResult<Value>>, Error> {
    let failed = |err: ::redis::RedisError| redis.failed(CONNECT, &err, plan_timeout(redis));
    let left = || link::remaining(deadline);
    let config = ::redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(left().map_err(failed)?))
        .set_response_timeout(Some(left().map_err(failed)?));
    #[cfg(feature = "tls")]
    let client = match &single.tls {
        Some(client) => client.clone(),
        None => ::redis::Client::open(single.info.clone()).map_err(failed)?,
    };
    #[cfg(not(feature = "tls"))]
    let client = ::redis::Client::open(single.info.clone()).map_err(failed)?;
    let opening = client.get_multiplexed_async_connection_with_config(&config);
    let mut conn = within(left().map_err(failed)?, opening).await.map_err(failed)?;
    let mut answers: Vec<RedisResult<Value>> = Vec::with_capacity(cmds.len());
    for cmd in &cmds {
        let Ok(left) = left() else { break };
        let sent = ::redis::aio::ConnectionLike::req_packed_command(&mut conn, cmd);
        let answer = within(left, sent).await.and_then(Value::extract_error);
        let gone = answer.as_ref().is_err_and(lost);
        answers.push(answer);
        if gone {
            break;
        }
    }
    fill(&mut answers, cmds.len());
    Ok(answers)
}

/// `future`'s answer, or a timeout error after `left`.
#[cfg(feature = "tokio")]
async fn within<T>(
    left: std::time::Duration,
    future: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(left, future).await {
        Ok(answer) => answer,
        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_masters_of_a_cluster_are_read_from_cluster_nodes() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002,node-2 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(masters(nodes), [("127.0.0.1".to_owned(), 30002), ("127.0.0.1".to_owned(), 30001)]);
        assert!(masters("").is_empty());
    }
}
