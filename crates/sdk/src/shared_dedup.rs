//! The engine's deduplication state on Redis (feature `redis`): one key per (task,
//! idempotency key), shared by every engine on the same server.
//!
//! A claim is `SET <key> <run> NX GET PX <ttl>` (Redis 7.0 or later, Valkey): it sets
//! the key if it is absent and answers the run that already held it if not, atomically,
//! in one command on one key. A batch's claims go in pipelines of [`CHUNK`], so a
//! 100,000-item batch costs ten round trips. Redis expires the key once its TTL has
//! passed (strictly after, as the reference server's `expiresAt < now`), on its own
//! clock: one clock for the whole fleet.

use idempotency_catalog::{Redis, RedisConnection};

use crate::dedup::KeyRef;
use crate::error::Error;
use crate::run::RunId;

/// Claims sent in one pipeline.
pub(crate) const CHUNK: usize = 10_000;

/// Run ids are `engine << ENGINE_SHIFT | sequence`: each engine on a server numbers its
/// runs apart from the others, so a cached answer names one run in the whole fleet.
pub(crate) const ENGINE_SHIFT: u32 = 40;

/// The longest TTL sent, a century: Redis refuses an expiry past its clock's range.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 60 * 60 * 1_000;

/// Deletes the key only if this run still holds it: a release must not drop a later
/// run's claim.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

#[derive(Debug)]
pub(crate) struct SharedDedup {
    conn: RedisConnection,
}

/// One claim: the key, its TTL in milliseconds, and the run that takes it if free.
pub(crate) type ClaimRequest<'a> = (KeyRef<'a>, u64, RunId);

impl SharedDedup {
    /// The store, and this engine's number on the server (from 1).
    pub(crate) fn connect(redis: &Redis) -> Result<(Self, u64), Error> {
        let conn = redis.connection();
        let counter = format!("{}engines", redis.prefix());
        let engine: u64 = conn.run("number this engine", |conn| ::redis::cmd("INCR").arg(&counter).query(conn))?;
        // Past this, ids would lose the engine's high bits and could collide.
        if engine >= 1 << (u64::BITS - ENGINE_SHIFT) {
            return Err(idempotency_catalog::Error::Redis {
                url: redis.url().to_owned(),
                operation: "number this engine",
                message: format!("{counter} is {engine}, past the 16,777,215 engines that run ids can tell apart; delete it once no claim made before is live"),
            }
            .into());
        }
        Ok((SharedDedup { conn }, engine))
    }

    fn key(&self, task: &str, key: KeyRef<'_>) -> String {
        // The task's length first: a task name may contain the separator.
        let prefix = self.conn.redis().prefix();
        match key {
            KeyRef::Digest(digest) => format!("{prefix}run:{}:{task}:{digest}", task.len()),
            KeyRef::Raw(raw) => format!("{prefix}run:{}:{task}:{raw}", task.len()),
        }
    }

    /// For each request, in order: the run that already holds the key, or `None` when
    /// this request's run now holds it (a TTL of zero holds nothing, as in memory).
    pub(crate) fn claim(&self, task: &str, requests: &[ClaimRequest<'_>]) -> Result<Vec<Option<RunId>>, Error> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let answers: Vec<Option<u64>> = self.conn.run("claim keys", |conn| {
            let mut pipe = ::redis::pipe();
            for &(key, ttl, run) in requests {
                let key = self.key(task, key);
                if ttl == 0 {
                    pipe.cmd("GET").arg(key);
                } else {
                    pipe.cmd("SET").arg(key).arg(run.get()).arg("NX").arg("GET").arg("PX").arg(ttl.min(MAX_TTL_MS));
                }
            }
            pipe.query(conn)
        })?;
        Ok(answers.into_iter().map(|held| held.map(RunId::new)).collect())
    }

    /// Forgets the key if `run` holds it; whether it did.
    pub(crate) fn release(&self, task: &str, key: KeyRef<'_>, run: RunId) -> Result<bool, Error> {
        let key = self.key(task, key);
        let deleted: u64 = self.conn.run("release a key", |conn| {
            ::redis::cmd("EVAL").arg(RELEASE).arg(1).arg(&key).arg(run.get()).query(conn)
        })?;
        Ok(deleted > 0)
    }

    /// Forgets the key; whether it was held.
    pub(crate) fn reset(&self, task: &str, key: KeyRef<'_>) -> Result<bool, Error> {
        let key = self.key(task, key);
        let deleted: u64 = self.conn.run("reset a key", |conn| ::redis::cmd("DEL").arg(&key).query(conn))?;
        Ok(deleted > 0)
    }
}
