//! Where a handle's commands go: one server, or (feature `cluster`) the master that
//! serves each of a Redis Cluster's 16,384 slots, with how many replicas each has.
//!
//! The slot map is read with `CLUSTER NODES` when the handle is built, and again when a
//! node answers that a slot moved, stops answering, or leaves a write short of its
//! replicas: a failover or a resharding changes it under a running fleet. Nothing here
//! does I/O; the connection asks the questions this module writes and hands it the
//! answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::{Cmd, Value};
use parking_lot::{Mutex, RwLock};

use super::link::Certs;
use super::link::Single;
#[cfg(feature = "cluster")]
use super::link::node;

/// A node's address as the cluster names it, `host:port`; for one server, its URL as
/// shown.
pub(super) type Addr = Arc<str>;

/// A master: where it is, how to connect, and its replicas as last seen.
#[derive(Clone)]
pub(super) struct Master {
    pub(super) addr: Addr,
    pub(super) node: Single,
    pub(super) replicas: usize,
}

/// The masters, and for a cluster which one serves each slot.
#[derive(Clone)]
pub(super) struct Topology {
    masters: Vec<Master>,
    /// Per slot, the index of its master in `masters` ([`NONE`] when no master serves
    /// it); empty on one server.
    slots: Box<[u16]>,
}

/// A slot no master serves.
#[cfg(feature = "cluster")]
const NONE: u16 = u16::MAX;
/// Slots in a Redis Cluster.
#[cfg(feature = "cluster")]
pub(super) const SLOTS: u16 = 16_384;

impl Topology {
    /// One server, with `replicas` replicas.
    pub(super) fn single(addr: Addr, node: Single, replicas: usize) -> Self {
        Topology { masters: vec![Master { addr, node, replicas }], slots: Box::new([]) }
    }

    /// The master that serves `slot` (a keyless command's `None`: the first master); on
    /// one server, the server. `None` when no master serves the slot.
    pub(super) fn master(&self, slot: Option<u16>) -> Option<&Master> {
        match (self.slots.is_empty(), slot) {
            (true, _) | (false, None) => self.masters.first(),
            (false, Some(slot)) => {
                let at = *self.slots.get(usize::from(slot))?;
                self.masters.get(usize::from(at))
            }
        }
    }

    /// The master at `addr`, if it is one.
    pub(super) fn by_addr(&self, addr: &str) -> Option<&Master> {
        self.masters.iter().find(|master| &*master.addr == addr)
    }

    pub(super) fn masters(&self) -> &[Master] {
        &self.masters
    }

    /// The cluster's slot map from an answer to `CLUSTER NODES` asked of `asked`, each
    /// master's connection derived from `seed`: the masters and the slots each serves,
    /// and each master's replicas that no node reports failing. (`CLUSTER SLOTS` leaves
    /// out a replica whose replication offset the node asked has not heard of yet, as
    /// right after the cluster starts: a replica there would go uncounted.)
    #[cfg(feature = "cluster")]
    pub(super) fn from_cluster_nodes(
        text: &str,
        asked: &Single,
        seed: &Single,
        certs: Option<&Certs>,
    ) -> Result<Self, String> {
        let lines: Vec<NodeLine<'_>> = text.lines().filter_map(NodeLine::parse).collect();
        let mut masters: Vec<Master> = Vec::new();
        let mut slots = vec![NONE; usize::from(SLOTS)].into_boxed_slice();
        for line in lines.iter().filter(|line| line.has("master") && !line.slots.is_empty()) {
            let host = match line.host {
                "" => asked_host(asked).ok_or("no address for a node")?,
                host => host.to_owned(),
            };
            let node = node(seed, &host, line.port, certs).map_err(|err| err.to_string())?;
            let live = |r: &&NodeLine<'_>| !r.has("fail") && !r.has("fail?") && !r.has("handshake");
            let replicas = lines.iter().filter(|r| r.has("slave") && r.master == line.id).filter(live).count();
            let at = u16::try_from(masters.len()).map_err(|_| "too many masters")?;
            masters.push(Master { addr: format!("{host}:{}", line.port).into(), node, replicas });
            for range in &line.slots {
                let range = slots.get_mut(range.clone()).ok_or_else(|| format!("slots out of bounds: {range:?}"))?;
                range.fill(at);
            }
        }
        if masters.is_empty() {
            return Err("CLUSTER NODES lists no master that serves slots: the cluster serves none yet".to_owned());
        }
        Ok(Topology { masters, slots })
    }
}

/// The host of the node asked, for a line that gives none.
#[cfg(feature = "cluster")]
fn asked_host(asked: &Single) -> Option<String> {
    match asked.info.addr() {
        ::redis::ConnectionAddr::Tcp(host, _) | ::redis::ConnectionAddr::TcpTls { host, .. } => Some(host.clone()),
        _ => None,
    }
}

/// What a line of `CLUSTER NODES` says of its node: `<id> <ip:port@cport[,hostname]>
/// <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> …`, a slot
/// being `N` or `A-B` (or `[…]`, a slot migrating, which its owner's range still holds).
#[cfg(feature = "cluster")]
struct NodeLine<'a> {
    id: &'a str,
    host: &'a str,
    port: u16,
    flags: Vec<&'a str>,
    master: &'a str,
    slots: Vec<std::ops::RangeInclusive<usize>>,
}

#[cfg(feature = "cluster")]
impl<'a> NodeLine<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut fields = line.split_whitespace();
        let (id, address, flags, master) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        let (host, port) = address.split(['@', ',']).next()?.rsplit_once(':')?;
        let slots = fields
            .skip(4)
            .filter(|slot| !slot.starts_with('['))
            .filter_map(|slot| {
                let (start, end) = slot.split_once('-').unwrap_or((slot, slot));
                Some(start.parse().ok()?..=end.parse().ok()?)
            })
            .collect();
        Some(NodeLine { id, host, port: port.parse().ok()?, flags: flags.split(',').collect(), master, slots })
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }
}

/// The replicas an `INFO replication` answer counts (`connected_slaves:N`).
pub(super) fn connected_replicas(info: &str) -> Option<usize> {
    info.lines().find_map(|line| line.trim().strip_prefix("connected_slaves:")?.parse().ok())
}

/// Where a handle's commands go, kept up to date.
pub(super) struct Deployment {
    /// The URLs' servers: one, or a cluster's seed nodes (never empty).
    seeds: Vec<Single>,
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    certs: Option<Certs>,
    cluster: bool,
    /// How long a call waits for a failover.
    window: Duration,
    topology: RwLock<Arc<Topology>>,
    /// Nodes that stopped answering, and since when: a call that meets one waits for a
    /// failover only until the failover window has passed since then.
    down: Mutex<HashMap<Addr, Instant>>,
}

impl Deployment {
    pub(super) fn new(
        seeds: Vec<Single>,
        certs: Option<Certs>,
        cluster: bool,
        window: Duration,
        topology: Topology,
    ) -> Self {
        Deployment {
            seeds,
            certs,
            cluster,
            window,
            topology: RwLock::new(Arc::new(topology)),
            down: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// How long a call waits for a failover before it fails.
    pub(super) fn window(&self) -> Duration {
        self.window
    }

    /// The slot map as it is now.
    pub(super) fn topology(&self) -> Arc<Topology> {
        Arc::clone(&self.topology.read())
    }

    /// How to connect to the node at `addr`: a master's, or (a node an `ASK` named, not
    /// a master yet) one made from the first seed.
    pub(super) fn node(&self, addr: &str) -> Option<Single> {
        if let Some(master) = self.topology.read().by_addr(addr) {
            return Some(master.node.clone());
        }
        #[cfg(feature = "cluster")]
        if self.cluster {
            let (host, port) = addr.rsplit_once(':')?;
            return node(self.seeds.first()?, host, port.parse().ok()?, self.certs.as_ref()).ok();
        }
        None
    }

    /// What to ask to learn where commands go now: `CLUSTER NODES` of a cluster node,
    /// `INFO replication` of one server (for its replicas).
    pub(super) fn refresh_cmd(&self) -> Cmd {
        let mut cmd;
        if self.cluster {
            cmd = ::redis::cmd("CLUSTER");
            cmd.arg("NODES");
        } else {
            cmd = ::redis::cmd("INFO");
            cmd.arg("replication");
        }
        cmd
    }

    /// Whom to ask it, in order: the masters known (those that answer first), then the
    /// seeds.
    pub(super) fn refresh_nodes(&self) -> Vec<Single> {
        let topology = self.topology();
        let down = self.down.lock();
        let mut nodes: Vec<(bool, Single)> =
            topology.masters().iter().map(|m| (down.contains_key(&m.addr), m.node.clone())).collect();
        drop(down);
        nodes.sort_by_key(|(down, _)| *down);
        let mut nodes: Vec<Single> = nodes.into_iter().map(|(_, node)| node).collect();
        if self.cluster {
            nodes.extend(self.seeds.iter().cloned());
        }
        nodes
    }

    /// Takes `answer`, asked of `asked` with [`refresh_cmd`](Self::refresh_cmd), as the
    /// slot map from now on; why not, when it cannot be.
    pub(super) fn refresh(&self, asked: &Single, answer: &Value) -> Result<(), String> {
        let current = self.topology();
        let text = ::redis::from_redis_value::<String>(answer.clone()).map_err(|err| err.to_string())?;
        let fresh = if self.cluster {
            #[cfg(feature = "cluster")]
            {
                let seed = self.seeds.first().ok_or("no seed")?;
                Topology::from_cluster_nodes(&text, asked, seed, self.certs.as_ref())?
            }
            #[cfg(not(feature = "cluster"))]
            return Err(format!("{asked:?} is a cluster node"));
        } else {
            let replicas = connected_replicas(&text).ok_or("INFO replication has no connected_slaves")?;
            let mut fresh = Topology::clone(&current);
            for master in &mut fresh.masters {
                master.replicas = replicas;
            }
            let _ = asked;
            fresh
        };
        // A node that is no master now is forgotten as down: should it serve again and
        // then fail, its failover is waited for afresh.
        self.down.lock().retain(|addr, _| fresh.by_addr(addr).is_some());
        *self.topology.write() = Arc::new(fresh);
        Ok(())
    }

    /// Since when `addr` has not answered: now, if it answered until now.
    pub(super) fn down_since(&self, addr: &Addr, now: Instant) -> Instant {
        *self.down.lock().entry(Arc::clone(addr)).or_insert(now)
    }

    /// `addr` answered.
    pub(super) fn answered(&self, addr: &str) {
        let mut down = self.down.lock();
        if !down.is_empty() {
            down.remove(addr);
        }
    }
}

/// The slot of `cmd`'s key: its first argument, or for a script (`EVAL`, `EVALSHA`,
/// `FCALL`) its first key. `None` for a command without a key (`PING`, `INFO`, `SCAN`,
/// `WAIT` …), which any master answers.
#[cfg(feature = "cluster")]
pub(super) fn slot_of(cmd: &Cmd) -> Option<u16> {
    const KEYLESS: [&[u8]; 12] = [
        b"PING", b"INFO", b"SCAN", b"WAIT", b"WAITAOF", b"CONFIG", b"CLUSTER", b"DBSIZE", b"COMMAND", b"CLIENT",
        b"SCRIPT", b"ASKING",
    ];
    let mut args = cmd.args_iter().map(|arg| match arg {
        ::redis::Arg::Simple(bytes) => bytes,
        _ => b"0",
    });
    let name = args.next()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"FCALL" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL_RO" => {
            let keys = args.nth(1)?;
            if keys == b"0" {
                return None;
            }
            args.next()?
        }
        b"MEMORY" | b"OBJECT" => args.nth(1)?,
        name if KEYLESS.contains(&name) => return None,
        _ => args.next()?,
    };
    Some(slot_for_key(key))
}

/// The slot of `key`, as Redis Cluster computes it: CRC16 (XMODEM) of the key, or of its
/// hash tag (what lies between the first `{` and the next `}`, if not empty), modulo
/// 16,384.
#[cfg(feature = "cluster")]
pub(super) fn slot_for_key(key: &[u8]) -> u16 {
    let tag = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = key.get(open + 1..)?;
        let close = rest.iter().position(|&b| b == b'}')?;
        rest.get(..close).filter(|tag| !tag.is_empty())
    });
    crc16::State::<crc16::XMODEM>::calculate(tag.unwrap_or(key)) % SLOTS
}

/// The smallest number whose hash is `slot`: the tag of the barrier key that lands a
/// write there (see [`layout`](super::layout)).
#[cfg(feature = "cluster")]
pub(super) fn barrier_tag(slot: u16) -> u32 {
    static TAGS: std::sync::OnceLock<Box<[u32]>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        // About 170,000 hashes of short strings: a few milliseconds, once.
        let mut tags = vec![u32::MAX; usize::from(SLOTS)].into_boxed_slice();
        let mut left = usize::from(SLOTS);
        let mut n: u32 = 0;
        while left > 0 {
            let slot = slot_for_key(n.to_string().as_bytes());
            if let Some(tag) = tags.get_mut(usize::from(slot)).filter(|tag| **tag == u32::MAX) {
                *tag = n;
                left -= 1;
            }
            n += 1;
        }
        tags
    });
    tags.get(usize::from(slot)).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_answers_every_slot() {
        let info = "redis://127.0.0.1/".parse::<::redis::ConnectionInfo>().unwrap();
        let single = Topology::single("s".into(), Single::plain(info), 2);
        assert_eq!(single.master(None).map(|m| &*m.addr), Some("s"));
        assert_eq!(single.master(Some(9)).map(|m| m.replicas), Some(2));
        assert_eq!(connected_replicas("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n"), Some(2));
        assert_eq!(connected_replicas("role:slave"), None);
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn slots_are_computed_as_redis_cluster_does() {
        // The values of the Redis Cluster specification, and `CLUSTER KEYSLOT`.
        assert_eq!(slot_for_key(b"123456789"), 12_739);
        assert_eq!(slot_for_key(b"foo"), 12_182);
        assert_eq!(slot_for_key(b"{user1000}.following"), slot_for_key(b"user1000"));
        assert_eq!(slot_for_key(b"foo{}{bar}"), slot_for_key(b"foo{}{bar}"), "an empty tag hashes the whole key");
        assert_ne!(slot_for_key(b"foo{}{bar}"), slot_for_key(b"bar"));
        assert_eq!(slot_for_key(b"foo{{bar}}zap"), slot_for_key(b"{bar"));
        assert_eq!(slot_for_key(b"foo{bar}{zap}"), slot_for_key(b"bar"));
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn commands_are_routed_by_their_first_key() {
        let slot = |key: &str| slot_for_key(key.as_bytes());
        let mut set = ::redis::cmd("SET");
        set.arg("p:claim:{abc}").arg("v").arg("NX");
        assert_eq!(slot_of(&set), Some(slot("abc")));
        let mut eval = ::redis::cmd("EVAL");
        eval.arg("return 1").arg(2).arg("p:claim:{x}").arg("p:run:{x}:1").arg("arg");
        assert_eq!(slot_of(&eval), Some(slot("x")));
        let mut keyless = ::redis::cmd("EVAL");
        keyless.arg("return 1").arg(0);
        assert_eq!(slot_of(&keyless), None);
        let mut scan = ::redis::cmd("SCAN");
        scan.arg(0).arg("MATCH").arg("p:*");
        assert_eq!(slot_of(&scan), None);
        assert_eq!(slot_of(&::redis::cmd("ping")), None);
        let mut memory = ::redis::cmd("MEMORY");
        memory.arg("USAGE").arg("p:key:1");
        assert_eq!(slot_of(&memory), Some(slot("p:key:1")));
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn a_barrier_key_lands_in_the_slot_asked() {
        for slot in [0, 1, 5_000, 16_383] {
            let key = super::super::layout::barrier_key("app:", Some(barrier_tag(slot)));
            assert!(key.starts_with("app:sync:{"), "{key}");
            assert_eq!(slot_for_key(key.as_bytes()), slot, "{key}");
        }
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn the_slot_map_is_read_from_cluster_nodes() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002,node-2 master - 0 1426238316232 2 connected 5461-10922 [10923->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f :30003@31003 master,fail? - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5459 5460
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 slave,fail 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238317741 6 connected
";
        let seed = Single::plain("redis://10.0.0.9:30001/".parse::<::redis::ConnectionInfo>().unwrap());
        let map = Topology::from_cluster_nodes(nodes, &seed, &seed, None).unwrap();
        assert_eq!(map.masters().len(), 3);
        let at = |slot| map.master(Some(slot)).map(|m| (m.addr.to_string(), m.replicas));
        assert_eq!(at(0), Some(("127.0.0.1:30001".to_owned(), 2)), "two replicas");
        assert_eq!(at(5_460), Some(("127.0.0.1:30001".to_owned(), 2)), "a single slot");
        assert_eq!(at(6_000), Some(("127.0.0.1:30002".to_owned(), 0)), "its replica fails");
        assert_eq!(at(10_923), Some(("10.0.0.9:30003".to_owned(), 0)), "a migrating slot stays its owner's");
        let partial =
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-99";
        let map = Topology::from_cluster_nodes(partial, &seed, &seed, None).unwrap();
        assert!(map.master(Some(100)).is_none(), "a slot no master serves");
        for bad in ["", "garbage", "e7d1 127.0.0.1:30001@31001 myself,slave - 0 0 1 connected"] {
            assert!(Topology::from_cluster_nodes(bad, &seed, &seed, None).is_err(), "{bad:?}");
        }
    }
}
