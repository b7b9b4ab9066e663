//! What [`RedisBuilder::build`](super::RedisBuilder::build) checks on the server before
//! it hands out a handle: that Redis will not evict what the fleet stores, and what a
//! crash or restart may cost.

use std::collections::HashMap;
use std::time::Instant;

use ::redis::{Cmd, Connection, FromRedisValue, InfoDict};

use super::connection;
use super::handle::Redis;
use crate::error::Error;
use crate::events;

/// The operation named when the server cannot be asked in time.
const CHECK: &str = "check the server's configuration";
/// The operation named when the server's configuration is refused.
const ACCEPT: &str = "accept the server's configuration";

/// A setting as read, or why it could not be: the server's answer to a user without the
/// command (`NOPERM`), or to a command a managed service renamed (`ERR unknown command`).
type Read = Result<String, String>;

/// Refuses an evicting `maxmemory-policy` unless `allow_evicting`, and warns once about
/// weak persistence and once about what could not be read. Every command runs by
/// `deadline`.
pub(super) fn startup(
    redis: &Redis,
    conn: &mut Connection,
    deadline: Instant,
    allow_evicting: bool,
) -> Result<(), Error> {
    // `INFO` first: managed services that refuse `CONFIG` allow it. Redis 7 takes
    // several sections at once; an older server refuses, and `CONFIG` still answers.
    let info = ask::<InfoDict>(redis, conn, deadline, ::redis::cmd("INFO").arg("memory").arg("persistence"))?;
    let config = ask::<HashMap<String, String>>(
        redis,
        conn,
        deadline,
        ::redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").arg("appendonly").arg("appendfsync").arg("save"),
    )?;
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

    let mut unchecked = Unchecked::default();
    match policy {
        Ok(policy) if policy == "noeviction" => {}
        Ok(policy) if allow_evicting => events::evicting_policy_accepted(redis.url(), &policy),
        // Not a fault: nothing failed, and retrying will not help.
        Ok(policy) => {
            return Err(Error::Redis { url: redis.url().to_owned(), operation: ACCEPT, message: evicting(&policy) });
        }
        Err(why) => unchecked.add("maxmemory-policy", why),
    }
    let cost = match (appendonly.as_deref(), appendfsync.as_deref(), save.as_deref()) {
        (Ok("yes"), Ok("always"), _) => None,
        (Ok("yes"), Ok("everysec"), _) => Some(EVERYSEC),
        (Ok("yes"), Ok(_), _) => Some(OS_SYNC),
        (Ok("yes"), Err(why), _) => {
            unchecked.add("appendfsync", why.clone());
            None
        }
        (Ok(_), _, Ok("")) => Some(OFF),
        (Ok(_), _, Ok(_)) => Some(SNAPSHOTS),
        // Weak whatever `save` says: not worth a second warning.
        (Ok(_), _, Err(_)) => Some(NO_AOF),
        (Err(why), _, _) => {
            unchecked.add("appendonly", why.clone());
            None
        }
    };
    if let Some(cost) = cost {
        let shown = |read: &Read| read.as_deref().unwrap_or("unknown").to_owned();
        events::weak_persistence(redis.url(), &shown(&appendonly), &shown(&appendfsync), &shown(&save), cost);
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

fn evicting(policy: &str) -> String {
    format!(
        "maxmemory-policy is {policy}: Redis may evict claims and catalog entries, and evicted claims run twice; set it to noeviction (CONFIG SET maxmemory-policy noeviction), or accept duplicates with RedisBuilder::allow_evicting_policy"
    )
}

/// Runs `cmd` by `deadline`. A server that answers with an error (or with something
/// else than expected) gives `Ok(Err(why))`; one that cannot be reached in time fails
/// the build, counted as a fault.
fn ask<T: FromRedisValue>(
    redis: &Redis,
    conn: &mut Connection,
    deadline: Instant,
    cmd: &Cmd,
) -> Result<Result<T, String>, Error> {
    match connection::until(conn, deadline).and_then(|()| cmd.query::<T>(conn)) {
        Ok(value) => Ok(Ok(value)),
        Err(err) if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() => {
            Err(redis.failed(CHECK, &err, redis.settings().connect_timeout))
        }
        // As the server said it (`NOPERM this user has no permissions…`).
        Err(err) => Ok(Err(match (err.code(), err.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => err.to_string(),
        })),
    }
}

/// The settings that could not be read, and the first reason.
#[derive(Default)]
struct Unchecked {
    settings: Vec<&'static str>,
    why: Option<String>,
}

impl Unchecked {
    fn add(&mut self, setting: &'static str, why: String) {
        self.settings.push(setting);
        self.why.get_or_insert(why);
    }

    fn summary(self) -> Option<(String, String)> {
        Some((self.settings.join(", "), self.why?))
    }
}
