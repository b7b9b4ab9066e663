//! The engine's store on Redis (feature `redis`), shared by every engine on the same
//! server and prefix.
//!
//! **A claim is its run's record.** The key of (task, idempotency key) is
//! `<prefix>claim:{<tag>}`, where the tag is 128 bits of SHA-256 over the task and the
//! key, and its value is the JSON record of the run that holds it. Claiming is one
//! `SET <claim> <record> NX GET PX <ttl>`: the key is taken with its record or not at
//! all, and when it is held the answer is the holder's record. So no state exists in
//! which a key is held by a run that was never recorded, whatever fails and wherever
//! a process dies; a cached answer carries a record every process can read. The
//! command costs what a bare claim costs; a script per item would cost three times as
//! much on the server (measured with `redis-benchmark`: 44,000 against 126,000–167,000
//! commands a second).
//!
//! **A run id says where its record is**: the tag, and a nonce (this engine's random
//! base plus the run's number). A record lives as long as its key is held and at
//! least the handle's `run_ttl`: it moves to `<prefix>run:{<tag>}:<nonce>` when its
//! run releases the key or the key is reset; a key held for less than `run_ttl` is
//! claimed by a script that also writes the record there; records of runs that hold
//! no key (no key, or a TTL of `0s`) are written there at once. So `run(id)` reads one
//! slot: `MGET <claim> <run>`. Both keys share the hash tag, so every command touches
//! one slot and the layout is valid on Redis Cluster.
//!
//! **Ids never name two runs**: nothing in an id comes from the server, so a server
//! that lost its data (a restart without persistence, `FLUSHALL`, eviction) cannot
//! hand a new engine numbers a live engine uses, and a reader only takes a record
//! whose id is the one it asked for.
//!
//! **Everything is safe to send twice**, as the connection does once when a server
//! closed it: every create answers as `SET … NX GET`, and a run that finds its own
//! record counts as created; status changes and resets answer as the first time.
//!
//! A batch's items go in pipelines of [`CHUNK`]: a 100,000-item batch costs ten round
//! trips. Redis expires a claim once its TTL has passed (strictly after, as the
//! reference server's `expiresAt < now`), on its own clock: one clock for the fleet.

use std::borrow::Cow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::{SystemTime, UNIX_EPOCH};

use idempotency_catalog::fleet::RedisConnection;
use idempotency_catalog::fleet::layout::{claim_key, run_key};
use idempotency_catalog::{FaultKind, KeyOptions, Redis};
use parking_lot::Mutex;
use redis::{Cmd, RedisResult, Value};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};

use super::clock::Millis;
use super::key::KeyRef;
use super::log::Log;
use super::remote::{self, Answer, Created, NewRun, Partial};
use super::run::{RunRecord, RunStatus};
use super::store::{Holder, Store};
use super::trigger::Trigger;
use crate::error::{Error, shown};
use crate::from_catalog::server_error_of;
use crate::payload::Fingerprint;
use crate::run_id::RunId;

/// Items sent in one pipeline.
pub(crate) const CHUNK: usize = 10_000;
/// Runs read, or keys peeked, in one pipeline: a pipeline must come back whole within
/// the command timeout, so a read of 300,000 runs goes as many pipelines of about a
/// trigger's size (two `GET`s a run), never one that no timeout could bound.
pub(crate) const READ_CHUNK: usize = CHUNK / 2;
/// Items sent in one pipeline from async code: building a pipeline's commands takes the
/// thread, and a tenth of a millisecond per 50 items keeps a 2,000-item one within a few
/// milliseconds on the slowest machine measured.
#[cfg(feature = "tokio")]
pub(crate) const ASYNC_CHUNK: usize = 250;

/// The longest TTL sent, a century: Redis refuses an expiry past its clock's range.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 60 * 60 * 1_000;

/// A key held for less than a record's TTL: the claim, and when it is taken, a copy
/// of the record under its run's key that outlives it. KEYS: claim, run. ARGV: record,
/// the key's TTL, the record's TTL. Answers as `SET … NX GET`.
const CREATE_SHORT: &str = r"
local held = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'PX', ARGV[2])
if held then return held end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
return false
";

/// A run whose key's TTL is `0s` holds nothing, but the key may be held already: then
/// that run is the answer. Otherwise its record goes where released records go.
/// KEYS: claim, run. ARGV: record, record TTL. Answers as `SET … NX GET`: sent again
/// after a lost answer, the run finds its own record.
const CREATE_UNHELD: &str = r"
local held = redis.call('GET', KEYS[1])
if held then return held end
return redis.call('SET', KEYS[2], ARGV[1], 'NX', 'GET', 'PX', ARGV[2])
";

/// Sets a run's status in its record, in the claim and in its run's key, wherever it
/// is, and when the status releases the key and the run still holds it, frees the
/// claim, keeping the record under its run's key: the change and the release are one
/// step. KEYS: claim, run. ARGV: the run's id, the status, `1` to release, the TTL of
/// a released record. Answers 1, or 0 when no record of the run exists.
const SET_STATUS: &str = r#"
local record = '^{"status":"[%a%-]*","id":"run_'
local ours = '^{"status":"[%a%-]*","id":"' .. ARGV[1] .. '"'
local held = redis.call('GET', KEYS[1])
if held and not string.find(held, record) then
  return redis.error_reply('FOREIGN ' .. KEYS[1] .. ' holds something else than a run record')
end
local in_claim = held and string.find(held, ours)
local copy = redis.call('GET', KEYS[2])
if copy and not string.find(copy, ours) then
  return redis.error_reply('FOREIGN ' .. KEYS[2] .. ' holds something else than the record of ' .. ARGV[1])
end
if not in_claim and not copy then return 0 end
local new, n = string.gsub(in_claim and held or copy, '^{"status":"[%a%-]*"', '{"status":"' .. ARGV[2] .. '"', 1)
if n ~= 1 then return redis.error_reply('FOREIGN ' .. KEYS[1] .. ' holds something else than a run record') end
if in_claim and ARGV[3] == '1' then
  redis.call('DEL', KEYS[1])
  if copy then redis.call('SET', KEYS[2], new, 'KEEPTTL') else redis.call('SET', KEYS[2], new, 'PX', ARGV[4]) end
  return 1
end
if in_claim then redis.call('SET', KEYS[1], new, 'KEEPTTL') end
if copy then redis.call('SET', KEYS[2], new, 'KEEPTTL') end
return 1
"#;

/// Frees a claim, keeping its record under its run's key, if the claim still holds
/// the record read before. KEYS: claim, run. ARGV: the record, the TTL of a released
/// record. Answers 1, or 0 when the claim changed meanwhile. Sent again after a lost
/// answer, it finds the claim gone and the record moved already, and answers 1 again.
const RESET: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('GET', KEYS[2]) == ARGV[1] then return 1 end
  return 0
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) end
return 1
";

pub(crate) struct RedisStore {
    conn: RedisConnection,
    /// This engine's random base: its run numbers' nonces are the base plus them.
    base: u64,
    /// How long a record lives once its run holds no key, in milliseconds.
    run_ttl: u64,
}

impl RedisStore {
    /// The store on `redis`, after checking that this user may run its scripts, so
    /// that an ACL user without `EVAL` fails here rather than at the first status
    /// change.
    ///
    /// Scripts go as `EVAL` with their text, not `EVALSHA`: a server restarted or told
    /// `SCRIPT FLUSH` has nothing to lose, and a pipeline never has to be sent again in
    /// part (which would reorder its items). They are short, and only status changes,
    /// resets and keys held for less than `run_ttl` use them.
    pub(crate) fn connect(redis: &Redis) -> Result<Self, Error> {
        let store = Self::on(redis);
        store.conn.query::<u8>("run the engine's scripts", &store.probe())?;
        Ok(store)
    }

    /// As [`connect`](Self::connect), from async code (feature `tokio`).
    #[cfg(feature = "tokio")]
    pub(crate) async fn connect_async(redis: &Redis) -> Result<Self, Error> {
        let store = Self::on(redis);
        store.conn.query_async::<u8>("run the engine's scripts", &store.probe()).await?;
        Ok(store)
    }

    fn on(redis: &Redis) -> Self {
        RedisStore {
            conn: redis.connection(),
            base: random_base(),
            run_ttl: u64::try_from(redis.run_ttl().as_millis()).unwrap_or(u64::MAX).min(MAX_TTL_MS),
        }
    }

    /// The status script on keys with a tag of zero, which no run has: reads nothing,
    /// writes nothing, and fails for a user that may not run scripts.
    fn probe(&self) -> Cmd {
        let (claim, run) = (self.claim_key(0), self.run_key(0, 0));
        Self::eval(SET_STATUS, &[&claim, &run], &["run_probe", "pending", "0", "1"])
    }

    fn prefix(&self) -> &str {
        self.conn.redis().prefix()
    }

    fn claim_key(&self, tag: u128) -> String {
        claim_key(self.prefix(), tag)
    }

    fn run_key(&self, tag: u128, nonce: u64) -> String {
        run_key(self.prefix(), tag, nonce)
    }

    /// A run's record, as stored, written into `out`. The key as sent is kept only
    /// when its options are unknown: otherwise it is the claim's key already, hashed,
    /// and 72 bytes a run that every command would carry.
    fn record(out: &mut Vec<u8>, task: &str, run: &NewRun<'_>, now: Millis) {
        out.clear();
        let record = RecordOut {
            status: RunStatus::Pending.as_str(),
            id: run.id,
            task,
            key: run.key.filter(|_| run.options.is_none()).map(KeyRef::text),
            options: run.options,
            created_at: now,
            payload: run.payload,
            fp: run.fingerprint.0,
        };
        // Strings, numbers and JSON text that is valid already: writing cannot fail.
        let _ = serde_json::to_writer(out, &record);
    }

    /// The record under `redis_key`, which must belong to a run whose id has `tag`;
    /// anything else is a foreign value, described for the error.
    fn parse(redis_key: &str, value: &[u8], tag: u128) -> Result<(RunId, RecordIn), String> {
        let foreign = |why: &str| {
            let text = String::from_utf8_lossy(value);
            format!("{redis_key} holds {}, {why}", shown(&text))
        };
        let record: RecordIn = serde_json::from_slice(value).map_err(|_| foreign("not a run record"))?;
        let id = record.id.parse::<RunId>().map_err(|_| foreign("not a run record"))?;
        if id.tag() != tag {
            return Err(foreign("the record of a run kept elsewhere"));
        }
        if record.status.parse::<RunStatus>().is_err() {
            return Err(foreign("a record with an unknown status"));
        }
        Ok((id, record))
    }

    /// `script` with `keys` and `args`, as a command.
    fn eval(script: &str, keys: &[&str], args: &[&str]) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
        cmd
    }

    /// The commands that create `runs`, one each. Every one answers as `SET … NX GET`:
    /// nothing when this run was created, else the record already there, which is this
    /// very run's when the batch was sent again after a lost answer (the connection's
    /// rule).
    fn create_cmds(&self, task: &str, runs: &[NewRun<'_>], now: Millis) -> Vec<Cmd> {
        let mut record = Vec::with_capacity(256);
        runs.iter()
            .map(|run| {
                Self::record(&mut record, task, run, now);
                let ttl = run.ttl.min(MAX_TTL_MS);
                let (claim, own) = (self.claim_key(run.id.tag()), self.run_key(run.id.tag(), run.id.nonce()));
                let mut cmd;
                match run.key {
                    // The claim is the record for as long as a record lives.
                    Some(_) if ttl >= self.run_ttl => {
                        cmd = redis::cmd("SET");
                        cmd.arg(claim).arg(&record).arg("NX").arg("GET").arg("PX").arg(ttl);
                    }
                    Some(_) if ttl > 0 => {
                        cmd = redis::cmd("EVAL");
                        cmd.arg(CREATE_SHORT).arg(2).arg(claim).arg(own).arg(&record).arg(ttl).arg(self.run_ttl);
                    }
                    Some(_) => {
                        cmd = redis::cmd("EVAL");
                        cmd.arg(CREATE_UNHELD).arg(2).arg(claim).arg(own).arg(&record).arg(self.run_ttl);
                    }
                    None => {
                        cmd = redis::cmd("SET");
                        cmd.arg(own).arg(&record).arg("NX").arg("GET").arg("PX").arg(self.run_ttl);
                    }
                }
                cmd
            })
            .collect()
    }

    /// What became of `runs`, from the answers to [`create_cmds`](Self::create_cmds).
    fn created(&self, runs: &[NewRun<'_>], sent: Result<Vec<RedisResult<Value>>, Error>) -> Created {
        let mut answers = vec![None; runs.len()];
        let mut failures = Failures::default();
        match sent {
            // Unknown: some of them may have been applied.
            Err(err) => failures.lost = Some(err),
            Ok(values) => {
                for ((run, answer), value) in runs.iter().zip(answers.iter_mut()).zip(values) {
                    // Where the answer came from: the claim, or for a run without a key,
                    // its own.
                    let key = || match run.key {
                        Some(_) => self.claim_key(run.id.tag()),
                        None => self.run_key(run.id.tag(), run.id.nonce()),
                    };
                    *answer = match value {
                        Ok(Value::Nil) => Some(Answer::Created),
                        Ok(Value::BulkString(held)) => match Self::parse(&key(), &held, run.id.tag()) {
                            Ok((id, _)) if id == run.id => Some(Answer::Created),
                            Ok((id, record)) => Some(Answer::Cached(id, record.fp.map(Fingerprint))),
                            Err(why) => failures.add(FaultKind::Foreign, why),
                        },
                        Err(err) => {
                            let (kind, said) = server_error_of(&err);
                            failures.add(kind, format!("{said} (at {})", key()))
                        }
                        Ok(other) => failures.add(FaultKind::Foreign, format!("{} answered {other:?}", key())),
                    };
                }
            }
        }
        let error = match failures {
            Failures { lost: Some(err), .. } => err,
            Failures { first: Some((kind, message)), failed, .. } => {
                let message = match failed {
                    1 => message,
                    n => format!("{message} ({n} of {} items failed)", runs.len()),
                };
                self.conn.fault(CREATE, kind, message).into()
            }
            // Every item answered.
            Failures { .. } => return Ok(answers.into_iter().flatten().collect()),
        };
        Err(Partial { answers, error })
    }

    /// The commands that read the records of `ids`' fleet ids: both keys of each.
    fn read_cmds(&self, ids: &[RunId]) -> Vec<Cmd> {
        let fleet = ids.iter().filter(|id| id.is_fleet());
        fleet
            .flat_map(|id| {
                [self.claim_key(id.tag()), self.run_key(id.tag(), id.nonce())].map(|key| {
                    let mut cmd = redis::cmd("GET");
                    cmd.arg(key);
                    cmd
                })
            })
            .collect()
    }

    /// The records of `ids`, from the answers to [`read_cmds`](Self::read_cmds).
    fn records(&self, ids: &[RunId], answers: Vec<RedisResult<Value>>) -> Result<Vec<Option<RunRecord>>, Error> {
        let mut answers = answers.into_iter();
        let mut records = Vec::with_capacity(ids.len());
        for &id in ids {
            if !id.is_fleet() {
                records.push(None);
                continue;
            }
            // The run's record, in either key; a foreign value only matters when it
            // leaves no record of the run.
            let keys = [self.claim_key(id.tag()), self.run_key(id.tag(), id.nonce())];
            let (mut found, mut foreign) = (None, None);
            for redis_key in &keys {
                match answers.next() {
                    Some(Ok(Value::BulkString(value))) => match Self::parse(redis_key, &value, id.tag()) {
                        Ok((held, record)) if held == id && found.is_none() => found = Some(record.into_record(id)),
                        // The claim is held by another run of the same key.
                        Ok(_) => {}
                        Err(why) => foreign = foreign.or(Some(why)),
                    },
                    Some(Err(err)) => {
                        let (kind, said) = server_error_of(&err);
                        return Err(self.conn.fault(READ, kind, format!("{said} (at {redis_key})")).into());
                    }
                    _ => {}
                }
            }
            match (found, foreign) {
                (Some(record), _) => records.push(Some(record)),
                (None, Some(why)) => return Err(self.conn.fault(READ, FaultKind::Foreign, why).into()),
                (None, None) => records.push(None),
            }
        }
        Ok(records)
    }

    /// The command that sets run `id`'s status (and releases its key if the status
    /// does); `None` for an id no shared store made.
    fn status_cmd(&self, id: RunId, status: RunStatus) -> Option<Cmd> {
        if !id.is_fleet() {
            return None;
        }
        let (claim, run) = (self.claim_key(id.tag()), self.run_key(id.tag(), id.nonce()));
        let release = if status.releases_key() { "1" } else { "0" };
        let (id, ttl) = (id.to_string(), self.run_ttl.to_string());
        Some(Self::eval(SET_STATUS, &[&claim, &run], &[id.as_str(), status.as_str(), release, ttl.as_str()]))
    }

    /// A reset of `key` of `task` (of whatever holds it, or only of run `held_by`), and
    /// its first command: the read of the claim.
    fn resetting(&self, task: &str, key: KeyRef<'_>, held_by: Option<RunId>) -> (Reset, Cmd) {
        let (claim, tag) = self.reset_target(task, key);
        let mut read = redis::cmd("GET");
        read.arg(&claim);
        (Reset { claim, tag, held_by, read: true, tries: 0 }, read)
    }

    /// What a reset does after `answer`, sync or async alike: after the read, free the
    /// claim if it still holds what was read (and that run, when one is named), with a
    /// script, since its record must move to its run's key in the same step; after the
    /// script, read again when another process changed the claim meanwhile.
    fn reset_step(&self, reset: &mut Reset, answer: Value) -> Result<ResetStep, Error> {
        let Reset { claim, tag, held_by, read, tries } = reset;
        if !*read {
            if answer == Value::Int(1) {
                return Ok(ResetStep::Done(true));
            }
            *tries += 1;
            if *tries == RESET_TRIES {
                let message = format!("{claim} changed {RESET_TRIES} times while it was being reset");
                return Err(self.conn.fault(RESET_OP, FaultKind::Rejected, message).into());
            }
            *read = true;
            let mut again = redis::cmd("GET");
            again.arg(&*claim);
            return Ok(ResetStep::Send(again));
        }
        let held = match answer {
            Value::BulkString(held) => held,
            _ => return Ok(ResetStep::Done(false)),
        };
        let (id, _) = Self::parse(claim, &held, *tag)
            .map_err(|why| Error::from(self.conn.fault(RESET_OP, FaultKind::Foreign, why)))?;
        if held_by.is_some_and(|run| run != id) {
            return Ok(ResetStep::Done(false));
        }
        *read = false;
        let run = self.run_key(*tag, id.nonce());
        let (held, ttl) = (String::from_utf8_lossy(&held), self.run_ttl.to_string());
        Ok(ResetStep::Send(Self::eval(RESET, &[claim.as_str(), &run], &[&held, &ttl])))
    }

    /// The commands that read the claims of `keys` of `task`, one `GET` each.
    fn peek_cmds(&self, task: &str, keys: &[KeyRef<'_>]) -> Vec<Cmd> {
        keys.iter()
            .map(|&key| {
                let mut cmd = redis::cmd("GET");
                cmd.arg(self.reset_target(task, key).0);
                cmd
            })
            .collect()
    }

    /// Which run holds each of `keys`, from the answers to [`peek_cmds`](Self::peek_cmds).
    fn held(&self, task: &str, keys: &[KeyRef<'_>], answers: Vec<RedisResult<Value>>) -> Result<Vec<Holder>, Error> {
        keys.iter()
            .zip(answers)
            .map(|(&key, answer)| {
                let (claim, tag) = self.reset_target(task, key);
                match answer {
                    Ok(Value::BulkString(value)) => match Self::parse(&claim, &value, tag) {
                        Ok((id, record)) => Ok(Some((id, record.fp.map(Fingerprint)))),
                        // A foreign value: the claim itself will say so, naming it.
                        Err(_) => Ok(None),
                    },
                    Err(err) => {
                        let (kind, said) = server_error_of(&err);
                        Err(self.conn.fault(READ, kind, format!("{said} (at {claim})")).into())
                    }
                    Ok(_) => Ok(None),
                }
            })
            .collect()
    }

    /// Where a reset of `key` of `task` looks: the claim key, and its tag.
    fn reset_target(&self, task: &str, key: KeyRef<'_>) -> (String, u128) {
        // The number does not matter: a key's tag depends on the task and key only.
        let tag = self.tag(1, task, Some(key));
        (self.claim_key(tag), tag)
    }
}

/// Operation names, in errors and warnings.
const CREATE: &str = "create runs";
const READ: &str = "read runs";
const STATUS: &str = "change a run's status";
const RESET_OP: &str = "reset a key";

/// What went wrong in one call to [`RedisStore::create`].
#[derive(Default)]
struct Failures {
    /// Items that failed, the kind of the first and what it said.
    failed: usize,
    first: Option<(FaultKind, String)>,
    /// The pipeline's own error (already counted by the connection): its answers are
    /// lost.
    lost: Option<Error>,
}

impl Failures {
    fn add(&mut self, kind: FaultKind, message: String) -> Option<Answer> {
        self.failed += 1;
        self.first.get_or_insert((kind, message));
        None
    }
}

impl RedisStore {
    /// Creates `runs` of `task` in one pipeline: each whose key is free, with its
    /// record; the others answered with the run that holds their key.
    fn create(&self, task: &str, runs: &[NewRun<'_>], now: Millis) -> Created {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let sent = self.conn.send(CREATE, self.create_cmds(task, runs, now));
        self.created(runs, sent.map_err(Error::from))
    }
}

impl Store for RedisStore {
    fn name(&self) -> (&'static str, Option<&'static str>) {
        ("redis", Some("redis"))
    }

    fn tag(&self, number: u64, task: &str, key: Option<KeyRef<'_>>) -> u128 {
        let Some(key) = key else {
            // No key to place it by: a tag of its own, spread over the slots.
            return u128::from(self.base) << 64 | u128::from(number);
        };
        // The task's length first: a task name may contain the separator. The key as
        // sent (a digest as its 64 hex characters), so that a tool recomputes it.
        let mut hasher = Sha256::new();
        hasher.update(task.len().to_string());
        hasher.update(b":");
        hasher.update(task);
        hasher.update(b":");
        match key {
            KeyRef::Digest(digest) => hasher.update(digest.to_hex()),
            KeyRef::Raw(raw) => hasher.update(raw),
        }
        let digest = hasher.finalize();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        // Zero marks an engine-local id; a hash that is zero in 128 bits never occurs.
        u128::from_be_bytes(tag).max(1)
    }

    fn nonce(&self, number: u64) -> u64 {
        self.base.wrapping_add(number)
    }

    fn number(&self, id: RunId) -> Option<u64> {
        id.is_fleet().then(|| id.nonce().wrapping_sub(self.base))
    }

    fn trigger(&self, log: &Mutex<Log>, trigger: &mut Trigger<'_>) -> Result<(), Error> {
        remote::trigger(self, log, trigger, CHUNK, |task, runs, now| self.create(task, runs, now))
    }

    fn peek(&self, _: &Mutex<Log>, task: &str, keys: &[KeyRef<'_>], _: Millis) -> Result<Vec<Holder>, Error> {
        let mut out = Vec::with_capacity(keys.len());
        for keys in keys.chunks(READ_CHUNK) {
            let answers = self.conn.send(READ, self.peek_cmds(task, keys))?;
            out.extend(self.held(task, keys, answers)?);
        }
        Ok(out)
    }

    fn read(&self, _: &Mutex<Log>, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error> {
        let mut out = Vec::with_capacity(ids.len());
        for ids in ids.chunks(READ_CHUNK) {
            let cmds = self.read_cmds(ids);
            let answers = if cmds.is_empty() { Vec::new() } else { self.conn.send(READ, cmds)? };
            out.extend(self.records(ids, answers)?);
        }
        Ok(out)
    }

    fn set_status(&self, _: &Mutex<Log>, id: RunId, status: RunStatus) -> Result<bool, Error> {
        let Some(cmd) = self.status_cmd(id, status) else { return Ok(false) };
        Ok(self.conn.query::<u8>(STATUS, &cmd)? == 1)
    }

    fn reset(&self, _: &Mutex<Log>, task: &str, key: KeyRef<'_>, held_by: Option<RunId>) -> Result<bool, Error> {
        let (mut reset, mut cmd) = self.resetting(task, key, held_by);
        loop {
            let answer = self.conn.query::<Value>(RESET_OP, &cmd)?;
            match self.reset_step(&mut reset, answer)? {
                ResetStep::Send(next) => cmd = next,
                ResetStep::Done(freed) => return Ok(freed),
            }
        }
    }
}

/// The same calls from async code: the same commands, the same reading of their
/// answers, awaited on the multiplexed connection in pipelines of [`ASYNC_CHUNK`].
#[cfg(feature = "tokio")]
mod future {
    use parking_lot::Mutex;
    use redis::Value;

    use super::super::future::{AsyncStore, BoxFuture};
    use super::super::remote::Sending;
    use super::*;

    impl RedisStore {
        fn create_async<'a>(&'a self, task: &'a str, runs: &'a [NewRun<'a>], now: Millis) -> BoxFuture<'a, Created> {
            Box::pin(async move {
                if runs.is_empty() {
                    return Ok(Vec::new());
                }
                let sent = self.conn.send_async(CREATE, self.create_cmds(task, runs, now)).await;
                self.created(runs, sent.map_err(Error::from))
            })
        }
    }

    impl AsyncStore for RedisStore {
        /// As the sync trigger (`remote::trigger`), awaiting each call and yielding
        /// between two.
        fn trigger_async<'a>(
            &'a self,
            log: &'a Mutex<Log>,
            trigger: &'a mut Trigger<'_>,
        ) -> BoxFuture<'a, Result<(), Error>> {
            Box::pin(async move {
                if trigger.checks_first() {
                    let keys = trigger.keys();
                    trigger.check(&self.peek_async(log, trigger.task, &keys, trigger.now).await?)?;
                }
                let mut sending = Sending::new(ASYNC_CHUNK, trigger.len);
                while sending.next(self, log, trigger) {
                    let created =
                        self.create_async(trigger.task, &sending.runs(trigger.share_payloads), trigger.now).await;
                    sending.record(self, log, trigger, created)?;
                    tokio::task::yield_now().await;
                }
                Ok(())
            })
        }

        fn peek_async<'a>(
            &'a self,
            _: &'a Mutex<Log>,
            task: &'a str,
            keys: &'a [KeyRef<'a>],
            _: Millis,
        ) -> BoxFuture<'a, Result<Vec<Holder>, Error>> {
            Box::pin(async move {
                let mut out = Vec::with_capacity(keys.len());
                for keys in keys.chunks(ASYNC_CHUNK) {
                    let answers = self.conn.send_async(READ, self.peek_cmds(task, keys)).await?;
                    out.extend(self.held(task, keys, answers)?);
                }
                Ok(out)
            })
        }

        fn read_async<'a>(
            &'a self,
            _: &'a Mutex<Log>,
            ids: &'a [RunId],
        ) -> BoxFuture<'a, Result<Vec<Option<RunRecord>>, Error>> {
            Box::pin(async move {
                let mut out = Vec::with_capacity(ids.len());
                // As a trigger's claims: pipelines small enough that building one, and
                // parsing its records, keeps a poll short.
                for ids in ids.chunks(ASYNC_CHUNK) {
                    let cmds = self.read_cmds(ids);
                    let answers = if cmds.is_empty() { Vec::new() } else { self.conn.send_async(READ, cmds).await? };
                    out.extend(self.records(ids, answers)?);
                }
                Ok(out)
            })
        }

        fn set_status_async<'a>(
            &'a self,
            _: &'a Mutex<Log>,
            id: RunId,
            status: RunStatus,
        ) -> BoxFuture<'a, Result<bool, Error>> {
            Box::pin(async move {
                let Some(cmd) = self.status_cmd(id, status) else { return Ok(false) };
                Ok(self.conn.query_async::<u8>(STATUS, &cmd).await? == 1)
            })
        }

        fn reset_async<'a>(
            &'a self,
            _: &'a Mutex<Log>,
            task: &'a str,
            key: KeyRef<'a>,
            held_by: Option<RunId>,
        ) -> BoxFuture<'a, Result<bool, Error>> {
            Box::pin(async move {
                let (mut reset, mut cmd) = self.resetting(task, key, held_by);
                loop {
                    let answer = self.conn.query_async::<Value>(RESET_OP, &cmd).await?;
                    match self.reset_step(&mut reset, answer)? {
                        ResetStep::Send(next) => cmd = next,
                        ResetStep::Done(freed) => return Ok(freed),
                    }
                }
            })
        }
    }
}

/// How often a reset reads the claim again when another process changed it meanwhile.
const RESET_TRIES: usize = 8;

/// A reset under way: see [`RedisStore::reset_step`].
struct Reset {
    claim: String,
    tag: u128,
    held_by: Option<RunId>,
    /// Whether the last command sent was the read of the claim (else the script).
    read: bool,
    tries: usize,
}

/// What a reset sends next, or how it ended: whether it freed the key.
enum ResetStep {
    Send(Cmd),
    Done(bool),
}

/// A record as written: the status first, where [`SET_STATUS`] finds it, then the id,
/// which readers check.
#[derive(Serialize)]
struct RecordOut<'a> {
    status: &'static str,
    #[serde(serialize_with = "shown_as_text")]
    id: RunId,
    task: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<&'a KeyOptions>,
    created_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    /// The payload's fingerprint, which a later trigger of the same key compares.
    fp: u32,
}

fn shown_as_text<S: serde::Serializer>(id: &RunId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

/// A record as read. Unknown fields are allowed: a later version may add some.
#[derive(Debug, Deserialize)]
struct RecordIn {
    status: String,
    id: String,
    task: String,
    key: Option<String>,
    options: Option<KeyOptions>,
    #[allow(dead_code)] // kept in the record for operators; not part of `RunRecord` yet
    created_at: Millis,
    payload: Option<Box<RawValue>>,
    /// Absent in a record that does not say (a later version may drop it).
    fp: Option<u32>,
}

impl RecordIn {
    fn into_record(self, id: RunId) -> RunRecord {
        RunRecord {
            id,
            idempotency_key: self.options.as_ref().map(|o| o.key().to_owned()).or(self.key),
            idempotency_key_scope: self.options.as_ref().map(KeyOptions::scope),
            task: self.task,
            payload: self.payload,
            // Checked when the record was parsed.
            status: self.status.parse().unwrap_or_default(),
        }
    }
}

/// A number no other engine draws: std seeds `RandomState` from the operating
/// system's random source for each process, and hashing this process's id, the time
/// and a counter with it gives a value as unpredictable as that source.
fn random_base() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let seed = (std::process::id(), now, DRAWN.fetch_add(1, Ordering::Relaxed));
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    seed.hash(&mut hasher);
    std::hash::Hasher::finish(&hasher)
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore").field("redis", self.conn.redis()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a key Redis Cluster hashes: between the first `{` and the next `}`.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').map_or(0, |at| at + 1);
        let close = key[open..].find('}').map_or(key.len(), |at| open + at);
        &key[open..close]
    }

    #[test]
    fn the_keys_of_one_item_share_a_hash_slot() {
        for tag in [1, 0xdead_beef, u128::MAX] {
            let claim = claim_key("idempotency:", tag);
            let run = run_key("idempotency:", tag, 42);
            assert_eq!(hash_tag(&claim), hash_tag(&run));
            assert_eq!(hash_tag(&claim), format!("{tag:032x}"));
        }
        assert_ne!(hash_tag(&claim_key("p:", 1)), hash_tag(&claim_key("p:", 2)), "keys spread over slots");
    }

    #[test]
    fn a_record_reads_back_as_written_and_anything_else_is_foreign() {
        let options = KeyOptions::new("item-1", idempotency_catalog::Scope::Global);
        let id = RunId::fleet(7, 9);
        let payload = RawValue::from_string(r#"{"i":1}"#.to_owned()).unwrap();
        let fingerprint = crate::payload::Fingerprint(7);
        let run = NewRun {
            id,
            key: Some(KeyRef::Raw("k")),
            ttl: 1,
            options: Some(&options),
            payload: Some(&payload),
            fingerprint,
        };
        let mut out = Vec::new();
        RedisStore::record(&mut out, "task", &run, 5);
        assert!(out.starts_with(br#"{"status":"pending","id":"run_"#), "the status scripts rely on this order");
        let (read, record) = RedisStore::parse("k", &out, 7).unwrap();
        assert_eq!(read, id);
        let record = record.into_record(id);
        assert_eq!(record.idempotency_key.as_deref(), Some("item-1"));
        assert_eq!(record.payload.map(|p| p.get().to_owned()).as_deref(), Some(r#"{"i":1}"#));
        assert!(!String::from_utf8_lossy(&out).contains(r#""key":"k""#), "the key is kept only without options");

        let err = RedisStore::parse("claim:{x}", &out, 8).unwrap_err();
        assert!(err.starts_with("claim:{x} holds ") && err.ends_with("the record of a run kept elsewhere"), "{err}");
        for foreign in [&b"garbage"[..], b"0", br#"{"status":"pending","id":"run_00000001"}"#, &[0xff, 0xfe]] {
            assert!(RedisStore::parse("k", foreign, 7).is_err());
        }
    }
}
