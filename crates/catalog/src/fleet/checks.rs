//! What [`RedisBuilder::build`](super::RedisBuilder::build) checks on the server before
//! it hands out a handle: that Redis will not evict what the fleet stores, and what a
//! crash or restart may cost.

use std::collections::HashMap;

use ::redis::{Cmd, FromRedisValue, InfoDict, RedisError, Value};

use super::deployment::Topology;
use super::durability::Durability;
use super::handle::Redis;
use crate::error::Error;
use crate::events;

/// The operation named when the server cannot be asked in time.
pub(super) const CHECK: &str = "check the server's configuration";
/// The operation named when the server's configuration is refused.
pub(super) const ACCEPT: &str = "accept the server's configuration";

/// A setting as read, or why it could not be: the server's answer to a user without the
/// command (`NOPERM`), or to a command a managed service renamed (`ERR unknown command`).
type Read = Result<String, String>;

/// What to ask each server, in order: `INFO` first, since managed services that refuse
/// `CONFIG` allow it. Redis 7 takes several sections at once; an older server refuses,
/// and `CONFIG` still answers.
pub(super) fn commands() -> [Cmd; 2] {
    let mut info = ::redis::cmd("INFO");
    info.arg("memory").arg("persistence").arg("replication").arg("server");
    let mut config = ::redis::cmd("CONFIG");
    config
        .arg("GET")
        .arg("maxmemory-policy")
        .arg("appendonly")
        .arg("appendfsync")
        .arg("save")
        .arg("cluster-node-timeout");
    [info, config]
}

/// What one server's answers to [`commands`] say.
#[derive(Default)]
pub(super) struct Findings {
    /// An evicting policy, and the node it is on when the findings are a cluster
    /// master's: an operator must know which one to fix.
    evicting: Option<(String, Option<String>)>,
    /// What a crash may cost, and the settings that say so.
    weak: Option<(&'static str, String, String, String)>,
    unchecked: Unchecked,
    /// Whether the append-only file is on, if that could be read.
    pub(super) appendonly: Option<bool>,
    /// The replicas connected to the server (`INFO replication`), if it said.
    pub(super) replicas: Option<usize>,
    /// The server's version (`redis_version`), major and minor, if it said.
    pub(super) version: Option<(u32, u32)>,
    /// A cluster node's `cluster-node-timeout`, if it could be read.
    pub(super) node_timeout: Option<std::time::Duration>,
}

/// Reads one server's answers. An answer the server gave as an error (`NOPERM`) leaves
/// its settings unchecked; a connection that failed fails the build.
pub(super) fn read(redis: &Redis, answers: Vec<Result<Value, RedisError>>) -> Result<Findings, Error> {
    let mut answers = answers.into_iter();
    let mut next = || match answers.next() {
        None => Ok(Err("no answer".to_owned())),
        Some(Ok(value)) => Ok(Ok(value)),
        Some(Err(err)) if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() => {
            Err(redis.failed(CHECK, &err, redis.settings().connect_timeout))
        }
        // As the server said it (`NOPERM this user has no permissions…`).
        Some(Err(err)) => Ok(Err(match (err.code(), err.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => err.to_string(),
        })),
    };
    let as_info = |value: Value| InfoDict::from_redis_value(value).map_err(|err| err.to_string());
    let as_map = |value: Value| HashMap::<String, String>::from_redis_value(value).map_err(|err| err.to_string());
    let info = next()?.and_then(as_info);
    let config = next()?.and_then(as_map);
    let from_info = |field: &str| match &info {
        Ok(info) => info.get::<String>(field).ok_or_else(|| format!("INFO has no {field}")),
        Err(why) => Err(why.clone()),
    };
    let from_config = |name: &str| match &config {
        Ok(config) => config.get(name).cloned().ok_or_else(|| format!("CONFIG GET has no {name}")),
        Err(why) => Err(why.clone()),
    };
    let policy = from_info("maxmemory_policy").or_else(|_| from_config("maxmemory-policy"));
    let appendonly = from_info("aof_enabled")
        .map(|enabled| if enabled == "1" { "yes".to_owned() } else { "no".to_owned() })
        .or_else(|_| from_config("appendonly"));
    let (appendfsync, save) = (from_config("appendfsync"), from_config("save"));

    let mut findings = Findings {
        appendonly: appendonly.as_deref().ok().map(|on| on == "yes"),
        replicas: from_info("connected_slaves").ok().and_then(|n| n.parse().ok()),
        version: from_info("redis_version").ok().and_then(|v| version(&v)),
        node_timeout: from_config("cluster-node-timeout")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(std::time::Duration::from_millis),
        ..Findings::default()
    };
    match policy {
        Ok(policy) if policy == "noeviction" => {}
        Ok(policy) => findings.evicting = Some((policy, None)),
        Err(why) => findings.unchecked.add("maxmemory-policy", why),
    }
    let cost = match (appendonly.as_deref(), appendfsync.as_deref(), save.as_deref()) {
        (Ok("yes"), Ok("always"), _) => None,
        (Ok("yes"), Ok("everysec"), _) => Some(EVERYSEC),
        (Ok("yes"), Ok(_), _) => Some(OS_SYNC),
        (Ok("yes"), Err(why), _) => {
            findings.unchecked.add("appendfsync", why.clone());
            None
        }
        (Ok(_), _, Ok("")) => Some(OFF),
        (Ok(_), _, Ok(_)) => Some(SNAPSHOTS),
        // Weak whatever `save` says: not worth a second warning.
        (Ok(_), _, Err(_)) => Some(NO_AOF),
        (Err(why), _, _) => {
            findings.unchecked.add("appendonly", why.clone());
            None
        }
    };
    if let Some(cost) = cost {
        let shown = |read: &Read| read.as_deref().unwrap_or("unknown").to_owned();
        findings.weak = Some((cost, shown(&appendonly), shown(&appendfsync), shown(&save)));
    }
    Ok(findings)
}

/// `7.2.4` as `(7, 2)`.
fn version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

impl Findings {
    /// Of a cluster's seed, whose masters are checked each: only what the seed alone
    /// says (its node timeout, its version).
    pub(super) fn seed_only(self) -> Self {
        Findings { node_timeout: self.node_timeout, version: self.version, ..Findings::default() }
    }

    /// The same findings, of the cluster master at `node` (`host:port`).
    pub(super) fn of_node(mut self, node: String) -> Self {
        if let Some((_, on)) = &mut self.evicting {
            *on = Some(node);
        }
        self
    }
}

/// At build: whether `durability` can be had on the masters of `topology` (each with
/// its replicas, the append-only file on or not on every master, the lowest server
/// version), and the events that say what was found: one `INFO` with each master's
/// replicas, and a `WARN` where a failover may cost claims. Why not, for the error.
pub(super) fn accept(
    url: &str,
    durability: Durability,
    topology: &Topology,
    cluster: bool,
    appendonly: Option<bool>,
    version: Option<(u32, u32)>,
) -> Result<(), String> {
    let masters = topology.masters();
    let found: Vec<String> = masters.iter().map(|m| format!("{} ({} replicas)", m.addr, m.replicas)).collect();
    tracing::info!(url, durability = %durability, masters = %found.join(", "), "redis masters and their replicas");
    let fewest = masters.iter().min_by_key(|m| m.replicas);
    let short = |n: u8| fewest.filter(|m| m.replicas < usize::from(n));
    match durability {
        Durability::Replicas(n) | Durability::Aof(n) if short(n).is_some() => {
            let master = short(n).map_or_else(String::new, |m| format!("{} has {}", m.addr, m.replicas));
            return Err(format!(
                "durability {durability} asks for {n} replicas of every write, but master {master}: add replicas, or lower {} or RedisBuilder::durability",
                crate::env::REDIS_DURABILITY
            ));
        }
        Durability::Aof(_) if version.is_some_and(|v| v < (7, 2)) => {
            let (major, minor) = version.unwrap_or_default();
            return Err(format!(
                "durability {durability} needs WAITAOF (Redis 7.2 or later, Valkey): the server is {major}.{minor}"
            ));
        }
        Durability::Aof(_) if appendonly == Some(false) => {
            return Err(format!("durability {durability} needs the append-only file on every master (appendonly yes)"));
        }
        Durability::Auto if cluster => {
            let alone: Vec<&str> = masters.iter().filter(|m| m.replicas == 0).map(|m| &*m.addr).collect();
            if !alone.is_empty() {
                tracing::warn!(
                    url,
                    masters = %alone.join(", "),
                    "redis cluster masters without a replica: when one fails nothing takes over, and every call on its slots fails until it is back; what it had not persisted is lost, and those keys run twice"
                );
            }
        }
        Durability::None if masters.iter().any(|m| m.replicas > 0) => {
            tracing::warn!(
                url,
                "redis durability is none: a claim is reported created before any replica has it, and a failover may lose it; its key then runs twice"
            );
        }
        _ => {}
    }
    Ok(())
}

/// Refuses an evicting `maxmemory-policy` on any server unless `allow_evicting`, and
/// warns once about weak persistence and once about what could not be read, whatever
/// the number of servers (a cluster's masters) the findings come from.
pub(super) fn judge(redis: &Redis, findings: Vec<Findings>, allow_evicting: bool) -> Result<(), Error> {
    let mut unchecked = Unchecked::default();
    let (mut evicting, mut weak) = (None, None);
    for found in findings {
        evicting = evicting.or(found.evicting);
        weak = weak.or(found.weak);
        unchecked.merge(found.unchecked);
    }
    match evicting {
        None => {}
        Some((policy, _)) if allow_evicting => events::evicting_policy_accepted(redis.url(), &policy),
        // Not a fault: nothing failed, and retrying will not help.
        Some((policy, node)) => {
            return Err(Error::Redis {
                url: redis.url().to_owned(),
                operation: ACCEPT,
                message: evicting_message(&policy, node.as_deref()),
            });
        }
    }
    if let Some((cost, appendonly, appendfsync, save)) = weak {
        events::weak_persistence(redis.url(), &appendonly, &appendfsync, &save, cost);
    }
    if let Some((settings, why)) = unchecked.summary() {
        events::configuration_unchecked(redis.url(), &settings, &redis.scrub(&why));
    }
    Ok(())
}

const OFF: &str = "redis persistence is off: a restart forgets every claim, and keys triggered again run twice";
const SNAPSHOTS: &str = "redis persistence is snapshots only: a crash forgets the claims since the last snapshot, and keys triggered again run twice";
const NO_AOF: &str = "redis persistence has no append-only file: a crash forgets the claims since the last snapshot, if any, and keys triggered again run twice";
const EVERYSEC: &str =
    "redis appendfsync is everysec: a crash may lose up to a second of claims, and keys triggered again run twice";
const OS_SYNC: &str = "redis appendfsync leaves syncing to the OS: a crash may lose the last seconds of claims, and keys triggered again run twice";

fn evicting_message(policy: &str, node: Option<&str>) -> String {
    let on = node.map(|node| format!(" on the cluster master {node}")).unwrap_or_default();
    format!(
        "maxmemory-policy is {policy}{on}: Redis may evict claims and catalog entries, and evicted claims run twice; set it to noeviction (CONFIG SET maxmemory-policy noeviction), or accept duplicates with RedisBuilder::allow_evicting_policy"
    )
}

/// The settings that could not be read, and the first reason.
#[derive(Default)]
pub(super) struct Unchecked {
    settings: Vec<&'static str>,
    why: Option<String>,
}

impl Unchecked {
    fn add(&mut self, setting: &'static str, why: String) {
        self.settings.push(setting);
        self.why.get_or_insert(why);
    }

    /// What another server could not tell, named once.
    fn merge(&mut self, other: Unchecked) {
        for setting in other.settings {
            if !self.settings.contains(&setting) {
                self.settings.push(setting);
            }
        }
        self.why = self.why.take().or(other.why);
    }

    fn summary(self) -> Option<(String, String)> {
        Some((self.settings.join(", "), self.why?))
    }
}
