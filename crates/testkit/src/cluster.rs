use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use crate::process::{REDIS_CLI, Scratch, Server, StartFailure, free_cluster_ports, redis_cli, run, wait_until};

/// How long [`RedisCluster::start`] and [`RedisCluster::failover`] wait for the cluster.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

/// How long one node has to answer a question of the harness's.
const NODE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a node whose port was taken meanwhile is tried again on another one.
const PORT_ATTEMPTS: usize = 5;

/// A real Redis Cluster for tests: `redis-server` nodes on free loopback ports, each in
/// a directory of its own with persistence off, joined by `redis-cli --cluster create`,
/// and every node killed when dropped (paused ones too), even by a test that panics.
///
/// Nodes run with `--cluster-node-timeout 2000`: a master that stops answering is
/// failed over to one of its replicas about two seconds later.
///
/// The harness asks nodes what it needs with a plain client and a 1 s timeout; killed
/// and [paused](Self::pause) nodes are left out of its questions.
#[derive(Debug)]
pub struct RedisCluster {
    // Declared first: the processes die before their directories go.
    nodes: Vec<Node>,
    dir: Scratch,
    options: ClusterOptions,
}

/// How [`RedisCluster::start_with`] starts its nodes.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// A password on every node (`requirepass` and `masterauth`): URLs carry it, and the
    /// harness sends it.
    pub password: Option<String>,
    /// The append-only file on, fsynced at every write (`appendonly yes`, `appendfsync
    /// always`), as a production cluster runs; off by default, as persistence is.
    pub append_only: bool,
}

#[derive(Debug)]
struct Node {
    port: u16,
    process: Option<Server>,
}

/// A line of `CLUSTER NODES`, what the harness needs of it.
#[derive(Debug)]
struct NodeLine {
    id: String,
    port: u16,
    myself: bool,
    master: bool,
    replica: bool,
    /// `fail` or `fail?`.
    failing: bool,
    /// The master's id, for a replica.
    master_id: Option<String>,
    has_slots: bool,
}

impl RedisCluster {
    /// Starts `masters * (1 + replicas_per_master)` nodes, creates the cluster and
    /// waits until every node says `cluster_state:ok` with all 16384 slots assigned,
    /// sees every other node in its role, and every replica is in sync with its master.
    ///
    /// Which nodes become masters is up to `redis-cli`: ask [`masters`](Self::masters)
    /// and [`replicas_of`](Self::replicas_of).
    ///
    /// # Panics
    ///
    /// If `masters` is below 3 (`redis-cli --cluster create` needs 3), a node does not
    /// start, `redis-cli --cluster create` fails, or the cluster is not ok within 30 s.
    pub fn start(masters: usize, replicas_per_master: usize) -> Self {
        Self::start_with(masters, replicas_per_master, ClusterOptions::default())
    }

    /// As [`start`](Self::start), with a password on every node or the append-only
    /// file on.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(masters: usize, replicas_per_master: usize, options: ClusterOptions) -> Self {
        assert!(masters >= 3, "a cluster needs at least 3 masters, not {masters}");
        let dir = Scratch::new("cluster");
        let count = masters * (1 + replicas_per_master);
        let nodes = free_cluster_ports(count).into_iter().map(|port| Node { port, process: None }).collect();
        let mut cluster = RedisCluster { nodes, dir, options };
        for node in &mut cluster.nodes {
            node.process = Some(spawn_node(&cluster.dir, node.port, &cluster.options));
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_node(i);
        }

        let mut create = Command::new("redis-cli");
        if let Some(password) = &cluster.options.password {
            create.args(["-a", password, "--no-auth-warning"]);
        }
        create.arg("--cluster").arg("create");
        create.args(cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        create.args(["--cluster-replicas", &replicas_per_master.to_string(), "--cluster-yes"]);
        let out = run(create, CLUSTER_DEADLINE, REDIS_CLI);
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let replicas = masters * replicas_per_master;
        let converged = wait_until(CLUSTER_DEADLINE, || {
            cluster.check_ok()?;
            for port in cluster.live_ports() {
                let lines = cluster_nodes(port, cluster.auth())?;
                let seen_masters = lines.iter().filter(|l| l.master && l.has_slots && !l.failing).count();
                let seen_replicas = lines.iter().filter(|l| l.replica && !l.failing).count();
                if (seen_masters, seen_replicas) != (masters, replicas) {
                    return Err(format!(
                        "node {port} sees {seen_masters} masters and {seen_replicas} replicas, not {masters} and {replicas}"
                    ));
                }
            }
            for port in cluster.live_ports() {
                let replication = info(port, "replication", cluster.auth())?;
                if replication.contains("role:slave") && !replication.contains("master_link_status:up") {
                    return Err(format!("replica {port} is not in sync with its master yet"));
                }
            }
            Ok(())
        });
        if let Err(last) = converged {
            panic!(
                "the cluster was not ok with every node in its role within {CLUSTER_DEADLINE:?}; last seen: {last}; \
                 the first node's log ends:\n{}",
                cluster.nodes[0].process.as_ref().map_or_else(String::new, Server::log_tail)
            );
        }
        cluster
    }

    /// Waits until node `i` answers `PING`, moving it to other ports while its port (or
    /// bus port) was taken meanwhile.
    fn wait_node(&mut self, i: usize) {
        for attempt in 1.. {
            let node = &mut self.nodes[i];
            let port = node.port;
            let process = node.process.as_mut().unwrap();
            let auth = self.options.password.clone();
            match process.wait_ready(Duration::from_secs(10), || ping(port, auth.as_deref())) {
                Ok(()) => return,
                Err(StartFailure::PortTaken) if attempt < PORT_ATTEMPTS => {
                    let taken: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
                    let port = loop {
                        let port = free_cluster_ports(1)[0];
                        if !taken.contains(&port) {
                            break port;
                        }
                    };
                    self.nodes[i] = Node { port, process: Some(spawn_node(&self.dir, port, &self.options)) };
                }
                Err(StartFailure::PortTaken) => panic!("cluster node on port {port}: address already in use"),
                Err(StartFailure::Other(why)) => panic!("cluster node on port {port} {why}"),
            }
        }
    }

    /// `redis://127.0.0.1:<port>/` for the first of [`masters`](Self::masters): a seed
    /// for a cluster client.
    ///
    /// # Panics
    ///
    /// If no node answers, or none sees a master.
    pub fn seed_url(&self) -> String {
        let port = *self.masters().first().unwrap_or_else(|| panic!("no master in the cluster"));
        self.url(port)
    }

    /// `redis://[:<password>@]127.0.0.1:<port>/`: the URL of the node on `port`.
    pub fn url(&self, port: u16) -> String {
        url(port, self.auth())
    }

    fn auth(&self) -> Option<&str> {
        self.options.password.as_deref()
    }

    /// `redis://127.0.0.1:<port>/` for each of [`masters`](Self::masters).
    pub fn urls(&self) -> Vec<String> {
        self.masters().into_iter().map(|port| self.url(port)).collect()
    }

    /// Every node's port, in the order they were given to `redis-cli --cluster
    /// create`, killed nodes included.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The ports of the masters that serve slots and are not failing (`fail` or
    /// `fail?`), as the first live node sees them (`CLUSTER NODES`), in ascending
    /// order.
    ///
    /// # Panics
    ///
    /// If no live node answers.
    pub fn masters(&self) -> Vec<u16> {
        let lines = self.view();
        sorted(lines.iter().filter(|l| l.master && l.has_slots && !l.failing).map(|l| l.port))
    }

    /// The ports of the replicas that are not failing, as the first live node sees
    /// them, in ascending order.
    ///
    /// # Panics
    ///
    /// If no live node answers.
    pub fn replicas(&self) -> Vec<u16> {
        let lines = self.view();
        sorted(lines.iter().filter(|l| l.replica && !l.failing).map(|l| l.port))
    }

    /// The ports of the replicas of the master on `master`, not failing, as the first
    /// live node sees them, in ascending order.
    ///
    /// # Panics
    ///
    /// If no live node answers.
    pub fn replicas_of(&self, master: u16) -> Vec<u16> {
        let lines = self.view();
        let Some(id) = lines.iter().find(|l| l.port == master).map(|l| l.id.clone()) else { return Vec::new() };
        sorted(lines.iter().filter(|l| l.replica && !l.failing && l.master_id.as_ref() == Some(&id)).map(|l| l.port))
    }

    /// `CLUSTER NODES` as the first live node that answers sees it.
    fn view(&self) -> Vec<NodeLine> {
        let mut last = String::from("no live node");
        for port in self.live_ports() {
            match cluster_nodes(port, self.auth()) {
                Ok(lines) => return lines,
                Err(err) => last = err,
            }
        }
        panic!("no cluster node answered CLUSTER NODES: {last}")
    }

    /// Runs `redis-cli -h 127.0.0.1 -p <port> args` (plain TCP) and returns what it
    /// printed on stdout. `-c` as the first of `args` follows redirections.
    ///
    /// # Panics
    ///
    /// If `redis-cli` fails (the node was killed, say) or takes more than 10 s (the
    /// node is paused).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let port = port.to_string();
        let auth: Vec<&str> = self.auth().map(|password| vec!["-a", password, "--no-auth-warning"]).unwrap_or_default();
        redis_cli(&[&["-h", "127.0.0.1", "-p", &port][..], &auth, args].concat())
    }

    /// How many keys match `pattern` (a `SCAN MATCH` pattern) over every master.
    ///
    /// # Panics
    ///
    /// If a master does not answer within 1 s (it is paused, say).
    pub fn count(&self, pattern: &str) -> usize {
        self.masters()
            .into_iter()
            .map(|port| {
                let scan = || -> redis::RedisResult<usize> {
                    let mut conn = connect(port, self.auth())?;
                    let cmd = redis::cmd("SCAN").cursor_arg(0).arg("MATCH").arg(pattern).arg("COUNT").arg(1000).clone();
                    Ok(cmd.iter::<String>(&mut conn)?.count())
                };
                scan().unwrap_or_else(|err| panic!("master {port} did not answer SCAN: {err}"))
            })
            .sum()
    }

    /// The process id of the node on `port`, 0 once killed.
    ///
    /// # Panics
    ///
    /// If no node of the cluster is on `port`.
    pub fn pid(&self, port: u16) -> u32 {
        self.node(port).process.as_ref().map_or(0, Server::pid)
    }

    /// Kills the node on `port` at once (`SIGKILL`).
    ///
    /// # Panics
    ///
    /// If no node of the cluster is on `port`.
    pub fn kill(&mut self, port: u16) {
        let i = self.index(port);
        if let Some(mut process) = self.nodes[i].process.take() {
            process.kill();
        }
    }

    /// Starts the node on `port` again, after [`kill`](Self::kill), on its own port and
    /// directory: it rejoins the cluster (as a replica of whoever took its slots over),
    /// and this waits until it answers.
    ///
    /// # Panics
    ///
    /// If no node of the cluster is on `port`, it still runs, or it does not come up
    /// within 10 s.
    pub fn restart(&mut self, port: u16) {
        let i = self.index(port);
        assert!(self.nodes[i].process.is_none(), "the node on {port} still runs");
        let mut process = spawn_node(&self.dir, port, &self.options);
        let auth = self.options.password.clone();
        if let Err(StartFailure::PortTaken | StartFailure::Other(_)) =
            process.wait_ready(Duration::from_secs(10), || ping(port, auth.as_deref()))
        {
            panic!("the node on {port} did not come back; its log ends:\n{}", process.log_tail());
        }
        self.nodes[i].process = Some(process);
    }

    /// How many keys the node on `port` holds (`DBSIZE`).
    ///
    /// # Panics
    ///
    /// If it does not answer within 1 s.
    pub fn dbsize(&self, port: u16) -> usize {
        connect(port, self.auth())
            .and_then(|mut conn| redis::cmd("DBSIZE").query(&mut conn))
            .unwrap_or_else(|err| panic!("node {port} did not answer DBSIZE: {err}"))
    }

    /// Stops the node on `port` (`SIGSTOP`): connections stay open and nothing
    /// answers; after the node timeout (2 s) the cluster fails it, and a master's
    /// replica takes over.
    ///
    /// # Panics
    ///
    /// If no node of the cluster is on `port`, or it was killed.
    pub fn pause(&self, port: u16) {
        self.running(port).pause();
    }

    /// Lets a paused node go on (`SIGCONT`).
    ///
    /// # Panics
    ///
    /// If no node of the cluster is on `port`, or it was killed.
    pub fn resume(&self, port: u16) {
        self.running(port).resume();
    }

    /// Promotes the replica on `replica` with `CLUSTER FAILOVER` (its master must be up:
    /// the two hand over without losing writes), then waits until every live node
    /// sees it as a master with slots and its old master as a replica (or failing), and
    /// the cluster is ok.
    ///
    /// # Panics
    ///
    /// If the node refuses (it is not a replica, say), or the failover is not done
    /// within 30 s.
    pub fn failover(&self, replica: u16) {
        let old_master = self.view().into_iter().find(|l| l.port == replica).and_then(|l| l.master_id);
        let reply: redis::RedisResult<String> =
            connect(replica, self.auth()).and_then(|mut conn| redis::cmd("CLUSTER").arg("FAILOVER").query(&mut conn));
        if let Err(err) = reply {
            panic!("CLUSTER FAILOVER on {replica} failed: {err}");
        }
        self.wait_took_over(replica, old_master);
    }

    /// Promotes the replica on `replica` with `CLUSTER FAILOVER FORCE`: at once, without
    /// the handover with its master, so that writes its master acknowledged and had not
    /// sent it yet are lost (the old master, still up, becomes its replica and syncs
    /// from it). Waits as [`failover`](Self::failover) does.
    ///
    /// # Panics
    ///
    /// As [`failover`](Self::failover).
    pub fn failover_force(&self, replica: u16) {
        let old_master = self.view().into_iter().find(|l| l.port == replica).and_then(|l| l.master_id);
        let reply: redis::RedisResult<String> = connect(replica, self.auth())
            .and_then(|mut conn| redis::cmd("CLUSTER").arg("FAILOVER").arg("FORCE").query(&mut conn));
        if let Err(err) = reply {
            panic!("CLUSTER FAILOVER FORCE on {replica} failed: {err}");
        }
        self.wait_took_over(replica, old_master);
    }

    /// Waits until every live node sees the node on `replica` as a master with slots,
    /// and the cluster is ok: after its master was killed, the cluster's own failover.
    ///
    /// # Panics
    ///
    /// If that does not happen within 30 s.
    pub fn wait_master(&self, replica: u16) {
        self.wait_took_over(replica, None);
    }

    /// The node id of the node on `port`.
    ///
    /// # Panics
    ///
    /// If no live node knows it.
    pub fn id(&self, port: u16) -> String {
        self.view().into_iter().find(|l| l.port == port).map(|l| l.id).unwrap_or_else(|| panic!("no node on {port}"))
    }

    /// Moves `slots` slots from the master on `from` to the master on `to` with
    /// `redis-cli --cluster reshard`, keys included, and returns when it is done.
    ///
    /// # Panics
    ///
    /// If `redis-cli` fails or takes more than 5 minutes.
    pub fn reshard(&self, from: u16, to: u16, slots: usize) {
        let (from, to) = (self.id(from), self.id(to));
        let mut cmd = Command::new("redis-cli");
        if let Some(password) = self.auth() {
            cmd.args(["-a", password, "--no-auth-warning"]);
        }
        let seed = format!("127.0.0.1:{}", self.masters()[0]);
        cmd.args(["--cluster", "reshard", &seed, "--cluster-from", &from, "--cluster-to", &to]);
        cmd.args(["--cluster-slots", &slots.to_string(), "--cluster-yes"]);
        let out = run(cmd, Duration::from_secs(300), REDIS_CLI);
        assert!(
            out.status.success(),
            "redis-cli --cluster reshard failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).lines().rev().take(5).collect::<Vec<_>>().join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn wait_took_over(&self, replica: u16, old_master: Option<String>) {
        let done = wait_until(CLUSTER_DEADLINE, || {
            for port in self.live_ports() {
                let lines = cluster_nodes(port, self.auth())?;
                let line =
                    lines.iter().find(|l| l.port == replica).ok_or(format!("node {port} does not know {replica}"))?;
                if !(line.master && line.has_slots) {
                    let whom = if line.myself { "itself" } else { "it" };
                    return Err(format!("node {port} does not see {whom} as a master with slots yet"));
                }
                let old = lines.iter().find(|l| Some(&l.id) == old_master.as_ref());
                if let Some(old) = old.filter(|old| !old.replica && !old.failing) {
                    return Err(format!("node {port} still sees the old master {} as a master", old.port));
                }
            }
            self.check_ok()
        });
        if let Err(last) = done {
            panic!(
                "the replica on {replica} did not take over within {CLUSTER_DEADLINE:?}; last seen: {last}; its log ends:\n{}",
                self.running(replica).log_tail()
            );
        }
    }

    /// Waits until every live node (not killed, not paused) says `cluster_state:ok`
    /// and `cluster_slots_ok:16384`.
    ///
    /// # Panics
    ///
    /// If they do not within `within`, saying what a node said last.
    pub fn wait_ok(&self, within: Duration) {
        if let Err(last) = wait_until(within, || self.check_ok()) {
            panic!("the cluster was not ok within {within:?}; last seen: {last}");
        }
    }

    fn check_ok(&self) -> Result<(), String> {
        for port in self.live_ports() {
            let info = cluster_info(port, self.auth())?;
            if info.get("cluster_state").map(String::as_str) != Some("ok")
                || info.get("cluster_slots_ok").map(String::as_str) != Some("16384")
            {
                let field = |name: &str| info.get(name).map_or("?", String::as_str).to_owned();
                return Err(format!(
                    "node {port}: cluster_state:{} cluster_slots_ok:{} cluster_slots_pfail:{} cluster_slots_fail:{}",
                    field("cluster_state"),
                    field("cluster_slots_ok"),
                    field("cluster_slots_pfail"),
                    field("cluster_slots_fail"),
                ));
            }
        }
        Ok(())
    }

    /// The ports of the nodes neither killed nor paused.
    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.process.as_ref().is_some_and(|p| p.is_running() && !p.is_paused()))
            .map(|n| n.port)
            .collect()
    }

    fn index(&self, port: u16) -> usize {
        self.nodes.iter().position(|n| n.port == port).unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    fn node(&self, port: u16) -> &Node {
        &self.nodes[self.index(port)]
    }

    fn running(&self, port: u16) -> &Server {
        self.node(port).process.as_ref().unwrap_or_else(|| panic!("the cluster node on port {port} was killed"))
    }
}

/// Starts one node on `port`, in `<cluster dir>/<port>`.
fn spawn_node(cluster_dir: &Scratch, port: u16, options: &ClusterOptions) -> Server {
    let dir = cluster_dir.path().join(port.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let args: Vec<String> = [
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--dir",
        &d.to_string(),
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        &format!("{d}/nodes-{port}.conf"),
        "--cluster-node-timeout",
        "2000",
        "--appendonly",
        "no",
        "--save",
        "",
        // A replica's first full sync starts at once, not 5 s later.
        "--repl-diskless-sync-delay",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut args = args;
    if let Some(password) = &options.password {
        args.extend(["--requirepass", password, "--masterauth", password].map(str::to_owned));
    }
    if options.append_only {
        // The last pair given wins: `appendonly no` above is overridden.
        args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(str::to_owned));
    }
    Server::spawn(&args, &dir.join("redis.log"))
}

fn url(port: u16, password: Option<&str>) -> String {
    match password {
        Some(password) => format!("redis://:{password}@127.0.0.1:{port}/"),
        None => format!("redis://127.0.0.1:{port}/"),
    }
}

fn sorted(ports: impl Iterator<Item = u16>) -> Vec<u16> {
    let mut ports: Vec<u16> = ports.collect();
    ports.sort_unstable();
    ports
}

/// A plain connection to one node, with [`NODE_TIMEOUT`] on every step.
fn connect(port: u16, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
    let conn = redis::Client::open(url(port, password))?.get_connection_with_timeout(NODE_TIMEOUT)?;
    conn.set_read_timeout(Some(NODE_TIMEOUT))?;
    conn.set_write_timeout(Some(NODE_TIMEOUT))?;
    Ok(conn)
}

fn ping(port: u16, password: Option<&str>) -> bool {
    connect(port, password)
        .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
        .is_ok_and(|pong| pong == "PONG")
}

/// `CLUSTER <what>` on one node.
fn cluster(port: u16, what: &str, password: Option<&str>) -> Result<String, String> {
    connect(port, password)
        .and_then(|mut conn| redis::cmd("CLUSTER").arg(what).query(&mut conn))
        .map_err(|err| format!("node {port} did not answer CLUSTER {what}: {err}"))
}

/// `INFO <section>` on one node.
fn info(port: u16, section: &str, password: Option<&str>) -> Result<String, String> {
    connect(port, password)
        .and_then(|mut conn| redis::cmd("INFO").arg(section).query(&mut conn))
        .map_err(|err| format!("node {port} did not answer INFO {section}: {err}"))
}

fn cluster_info(port: u16, password: Option<&str>) -> Result<HashMap<String, String>, String> {
    let text = cluster(port, "INFO", password)?;
    Ok(text.lines().filter_map(|l| l.trim().split_once(':')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
}

fn cluster_nodes(port: u16, password: Option<&str>) -> Result<Vec<NodeLine>, String> {
    let text = cluster(port, "NODES", password)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_node_line(l).ok_or(format!("node {port}: {l:?}")))
        .collect()
}

/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> …`
fn parse_node_line(line: &str) -> Option<NodeLine> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [id, addr, flags, master, ..] = fields[..] else { return None };
    let port = addr.split('@').next()?.rsplit(':').next()?.parse().ok()?;
    let flags: Vec<&str> = flags.split(',').collect();
    Some(NodeLine {
        id: id.to_owned(),
        port,
        myself: flags.contains(&"myself"),
        master: flags.contains(&"master"),
        replica: flags.contains(&"slave"),
        failing: flags.contains(&"fail") || flags.contains(&"fail?"),
        master_id: (master != "-").then(|| master.to_owned()),
        has_slots: fields.len() > 8,
    })
}
