//! What [`RedisBuilder::build`](super::RedisBuilder::build) does once the settings are
//! checked, sync or async: connects to the first seed that answers (a cluster's seeds
//! are tried in order) within the connect timeout, finds
//! whether it is a Redis Cluster node and, if so, its slot map, checks the configuration
//! of the server (or of every master of the cluster) and the durability asked, and hands
//! out the handle.
//!
//! The steps are written once, in [`Startup`]: it says whom to ask what and reads the
//! answers; the sync and async builds only carry the questions ([`connect`] here,
//! `connect_async` in `future/startup.rs`).

use std::time::{Duration, Instant};

use ::redis::{Cmd, RedisError, RedisResult, Value};

use std::sync::Arc;

use super::checks::{self, ACCEPT, Findings};
use super::deployment::{Deployment, Topology};
use super::handle::Redis;
use super::link::{self, Certs, Single};
use super::settings::Settings;
use crate::error::Error;
use crate::telemetry::Listener;

/// What [`RedisBuilder::build`] has checked before it connects.
pub(super) struct Plan {
    pub(super) settings: Settings,
    /// The URLs' servers: one, or a cluster's seed nodes.
    pub(super) seeds: Vec<Single>,
    pub(super) certs: Option<Certs>,
    pub(super) pool_size: usize,
    pub(super) listener: Option<Arc<dyn Listener>>,
    pub(super) allow_evicting: bool,
}

/// The operation that fails when the server cannot be reached or refuses the handshake.
pub(super) const CONNECT: &str = "connect";

/// How much longer than the cluster's node timeout a call waits for a failover by
/// default: the replica's election (half a second to a second and a half after the
/// master is found failing) and the slot map's update, with room.
const FAILOVER_MARGIN: Duration = Duration::from_secs(3);
/// Redis's default `cluster-node-timeout`, when the node's cannot be read.
const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(15);

/// One answer per command.
pub(super) type Answers = Vec<RedisResult<Value>>;

/// What a build asks next: this node these commands, one at a time; `None` when the
/// build is done.
pub(super) type Ask = Option<(Box<Single>, Vec<Cmd>)>;

/// A build under way.
pub(super) struct Startup {
    pub(super) redis: Redis,
    /// When the connect timeout, which bounds the whole build, runs out.
    pub(super) deadline: Instant,
    seeds: Vec<Single>,
    /// The seed asked first: the first that answers.
    at: usize,
    certs: Option<Certs>,
    allow_evicting: bool,
    /// The seed's findings, and on a cluster each master's as they come.
    findings: Vec<Findings>,
    /// On a cluster: the slot map, and the masters whose configuration is still to be
    /// read (`host:port`).
    cluster: Option<(Topology, Vec<(String, u16)>)>,
}

/// What the first seed is asked: whether it answers, whether it is a cluster node,
/// which masters and replicas the cluster has and where its slots are, then the
/// configuration
/// [`checks`] reads.
fn seed_commands() -> Vec<Cmd> {
    let mut info = ::redis::cmd("INFO");
    info.arg("cluster");
    let mut nodes = ::redis::cmd("CLUSTER");
    nodes.arg("NODES");
    let mut cmds = vec![::redis::cmd("PING"), info, nodes];
    cmds.extend(checks::commands());
    cmds
}

impl Startup {
    pub(super) fn new(plan: Plan) -> Result<(Self, Ask), Error> {
        let Plan { settings, seeds, certs, pool_size, listener, allow_evicting } = plan;
        let deadline = Instant::now() + settings.connect_timeout;
        let seed = seeds.first().cloned().ok_or_else(|| Error::config("RedisBuilder::url", "", "no URL"))?;
        // On the first seed until the build knows better.
        let topology = Topology::single(settings.url.as_str().into(), seed.clone(), 0);
        let deployment = Deployment::new(seeds.clone(), certs.clone(), false, Duration::ZERO, topology);
        let redis = Redis::new(settings, deployment, pool_size, listener);
        let startup =
            Startup { redis, deadline, seeds, at: 0, certs, allow_evicting, findings: Vec::new(), cluster: None };
        Ok((startup, Some((Box::new(seed), seed_commands()))))
    }

    /// The seed that answered (the first, until one did): the template every other
    /// node's connection is made from.
    fn seed(&self) -> Result<&Single, Error> {
        self.seeds.get(self.at).ok_or_else(|| Error::config("RedisBuilder::url", "", "no URL"))
    }

    /// The last [`Ask`] could not reach its node (`err`): the next seed is asked, while
    /// none has answered yet (a cluster's seeds are alternatives), and the one skipped
    /// is a `WARN`, not a fault, since the build goes on; otherwise the build fails with
    /// `err`, counted.
    pub(super) fn unreachable(&mut self, err: &RedisError, node: &Single) -> Result<Ask, Error> {
        let asking_seeds = self.cluster.is_none() && self.findings.is_empty();
        match self.seeds.get(self.at + 1).filter(|_| asking_seeds) {
            Some(next) => {
                let (_, why) = super::fault::describe(err, self.redis.settings().connect_timeout);
                let why = self.redis.scrub(&why);
                tracing::warn!(url = self.redis.url(), seed = ?node, error = %why, "redis seed unreachable; the next one is asked");
                self.at += 1;
                Ok(Some((Box::new(next.clone()), seed_commands())))
            }
            None => Err(self.redis.failed(CONNECT, err, self.redis.settings().connect_timeout)),
        }
    }

    /// Takes the answers to the last [`Ask`]; what comes next.
    pub(super) fn answer(&mut self, answers: Answers) -> Result<Ask, Error> {
        match self.cluster.as_mut() {
            None => self.seed_answered(answers),
            Some((_, masters)) => {
                let (host, port) = masters.pop().unwrap_or_default();
                let found = checks::read(&self.redis, answers)?.of_node(format!("{host}:{port}"));
                self.findings.push(found);
                self.next_master()
            }
        }
    }

    /// The first seed's answers: a server, or a cluster whose masters are asked next.
    /// A server that refuses `PING` (`NOAUTH`, a user without it) refuses the handle; one
    /// that stops answering after it fails the checks.
    fn seed_answered(&mut self, answers: Answers) -> Result<Ask, Error> {
        let redis = &self.redis;
        let timeout = redis.settings().connect_timeout;
        let mut answers = answers.into_iter();
        match answers.next() {
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(redis.failed(CONNECT, &err, timeout)),
            None => return Err(redis.fault(CONNECT, crate::FaultKind::Rejected, "no answer to PING".to_owned())),
        }
        let mut next = || match answers.next() {
            Some(Ok(value)) => Ok(Some(value)),
            Some(Err(err)) if lost(&err) => Err(redis.failed(checks::CHECK, &err, timeout)),
            // A server without cluster support refuses `CLUSTER NODES`.
            Some(Err(_)) | None => Ok(None),
        };
        let text = |value: Option<Value>| value.and_then(|value| ::redis::from_redis_value::<String>(value).ok());
        let info = text(next()?);
        let nodes = text(next()?);
        let cluster = info.is_some_and(|info| info.lines().any(|line| line.trim() == "cluster_enabled:1"));
        let checked: Answers = answers.collect();
        if !cluster {
            if self.seeds.len() > 1 {
                let message =
                    "several URLs name the nodes of a cluster, but the one that answered is not in cluster mode"
                        .to_owned();
                return Err(Error::Redis { url: self.redis.url().to_owned(), operation: CONNECT, message });
            }
            self.findings.push(checks::read(&self.redis, checked)?);
            return self.done();
        }
        let topology = self.slot_map(nodes.as_deref().unwrap_or_default())?;
        // Masters found failing are not asked (nor is anything sent to them until the
        // slot map says they serve again); a node that lists none is checked itself.
        let mut masters = nodes.as_deref().map(healthy_masters).unwrap_or_default();
        if masters.is_empty() {
            self.findings.push(checks::read(&self.redis, checked)?);
        } else {
            // The seed's own findings for what only it says (its node timeout).
            self.findings.push(checks::read(&self.redis, checked)?.seed_only());
        }
        masters.reverse();
        self.cluster = Some((topology, masters));
        self.next_master()
    }

    /// The slot map from the seed's answer to `CLUSTER NODES`.
    fn slot_map(&self, nodes: &str) -> Result<Topology, Error> {
        let redis = &self.redis;
        #[cfg(feature = "cluster")]
        {
            let seed = self.seed()?;
            Topology::from_cluster_nodes(nodes, seed, seed, self.certs.as_ref()).map_err(|message| Error::Redis {
                url: redis.url().to_owned(),
                operation: CONNECT,
                message: redis.scrub(&message),
            })
        }
        #[cfg(not(feature = "cluster"))]
        {
            let _ = nodes;
            let message =
                "the server is a node of a Redis Cluster: that needs the `cluster` feature of idempotency-catalog"
                    .to_owned();
            Err(Error::Redis { url: redis.url().to_owned(), operation: CONNECT, message })
        }
    }

    /// The next master to check, or the end of the build.
    fn next_master(&mut self) -> Result<Ask, Error> {
        let Some((_, masters)) = &self.cluster else { return self.done() };
        let Some((host, port)) = masters.last() else { return self.done() };
        let master = link::node(self.seed()?, host, *port, self.certs.as_ref())
            .map_err(|err| self.redis.failed(CONNECT, &err, self.redis.settings().connect_timeout))?;
        Ok(Some((Box::new(master), checks::commands().into())))
    }

    /// Every answer is in: the configuration judged, the durability accepted, and the
    /// handle on its deployment.
    fn done(&mut self) -> Result<Ask, Error> {
        let findings = std::mem::take(&mut self.findings);
        let (node_timeout, version) = (findings.iter().find_map(|f| f.node_timeout), min_version(&findings));
        // On every master that said, unknown where none did.
        let appendonly = findings.iter().filter_map(|f| f.appendonly).reduce(|all, on| all && on);
        let seed = self.seed()?.clone();
        // The seed that answered first: the template of the nodes a redirect names.
        self.seeds.rotate_left(self.at);
        let (topology, cluster) = match self.cluster.take() {
            Some((topology, _)) => (topology, true),
            None => {
                let replicas = findings.first().and_then(|f| f.replicas).unwrap_or(0);
                (Topology::single(self.redis.url().into(), seed, replicas), false)
            }
        };
        checks::judge(&self.redis, findings, self.allow_evicting)?;
        let settings = self.redis.settings();
        checks::accept(self.redis.url(), settings.durability, &topology, cluster, appendonly, version)
            .map_err(|message| Error::Redis { url: self.redis.url().to_owned(), operation: ACCEPT, message })?;
        let window = settings.failover_window.unwrap_or(if cluster {
            node_timeout.unwrap_or(DEFAULT_NODE_TIMEOUT) + FAILOVER_MARGIN
        } else {
            FAILOVER_MARGIN
        });
        let deployment = Deployment::new(self.seeds.clone(), self.certs.clone(), cluster, window, topology);
        self.redis.set_deployment(deployment)?;
        Ok(None)
    }
}

/// The lowest version any node said.
fn min_version(findings: &[Findings]) -> Option<(u32, u32)> {
    findings.iter().filter_map(|f| f.version).min()
}

/// Whether an answer was lost with the connection, rather than refused by the server.
pub(super) fn lost(err: &::redis::RedisError) -> bool {
    err.is_io_error() || err.is_timeout() || err.is_connection_dropped()
}

/// The masters a `CLUSTER NODES` answer lists, that are not failing: their address and
/// port (`<id> <ip:port@bus[,hostname]> <flags> …`).
fn healthy_masters(nodes: &str) -> Vec<(String, u16)> {
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

/// The sync build.
pub(super) fn connect(plan: Plan) -> Result<Redis, Error> {
    let (mut startup, mut ask) = Startup::new(plan)?;
    while let Some((node, cmds)) = ask {
        ask = match answers(&startup, &node, cmds) {
            Ok(answers) => startup.answer(answers)?,
            Err(err) => startup.unreachable(&err, &node)?,
        };
    }
    Ok(startup.redis)
}

/// Sends `cmds` to `node`, one at a time, all by the build's deadline: an answer each,
/// an error the server answered being that command's `Err`. After an answer lost with
/// the connection (a timeout), the rest are lost too. `Err` when the node could not be
/// reached: see [`Startup::unreachable`].
fn answers(startup: &Startup, node: &Single, cmds: Vec<Cmd>) -> Result<Answers, RedisError> {
    let (redis, deadline) = (&startup.redis, startup.deadline);
    let mut conn = link::open(node, deadline, redis.settings().connect_timeout)?;
    let mut answers = Collected::new(cmds.len());
    for cmd in &cmds {
        let answer = link::until(&conn, deadline)
            .and_then(|()| ::redis::ConnectionLike::req_command(&mut conn, cmd))
            .and_then(Value::extract_error);
        if !answers.push(answer) {
            break;
        }
    }
    Ok(answers.all())
}

/// The answers to one node's commands as they come, sync or async.
pub(super) struct Collected(Answers, usize);

impl Collected {
    pub(super) fn new(n: usize) -> Self {
        Collected(Vec::with_capacity(n), n)
    }

    /// Keeps `answer`; whether to ask the next command (not after an answer lost with
    /// the connection).
    pub(super) fn push(&mut self, answer: RedisResult<Value>) -> bool {
        let gone = answer.as_ref().is_err_and(lost);
        self.0.push(answer);
        !gone
    }

    /// An answer per command: the commands not asked, after a lost answer or past the
    /// deadline, as timeouts.
    pub(super) fn all(mut self) -> Answers {
        while self.0.len() < self.1 {
            self.0.push(Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()));
        }
        self.0
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
        assert_eq!(healthy_masters(nodes), [("127.0.0.1".to_owned(), 30002), ("127.0.0.1".to_owned(), 30001)]);
        assert!(healthy_masters("").is_empty());
    }
}
