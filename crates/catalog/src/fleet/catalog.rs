use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ::redis::Cmd;
use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};

use super::connection::RedisConnection;
use super::fault::server_error_of;
use super::future::Sender;
use super::handle::Redis;
use super::layout::entry_key;
use crate::catalog::{Catalog, Reservation};
use crate::digest::Digest;
use crate::error::Error;
use crate::events::{self, EvictionLog};
use crate::implement::{ReservationId, Reservations};
use crate::key_options::KeyOptions;
use crate::kind::CatalogKind;
use crate::scope::Scope;
use crate::telemetry::{FaultKind, Stats};

/// How many bytes of SHA-256 an entry's check keeps (shown as twice as many hex digits).
const CHECK_BYTES: usize = 4;
/// What an entry's value holds before its key, at most: the check, the longest scope
/// and the two separators.
const HEADER_BYTES: usize = 2 * CHECK_BYTES + ":attempt:".len();
/// What a read asks for first: every entry whose key is up to 2,048 characters (the
/// wire's longest, of any UTF-8) comes back whole from it, and a huge foreign value
/// costs this, not its size. A longer value that starts as an entry does is read again
/// whole, up to [`MAX_VALUE_BYTES`].
const FIRST_READ: usize = HEADER_BYTES + 4 * 2_048;
/// The longest value an entry can have: its header and the longest key shared.
const MAX_VALUE_BYTES: usize = HEADER_BYTES + RedisCatalog::MAX_KEY_BYTES;
/// Long entries read again whole in one pipeline: a pipeline stays within a few times
/// the longest value.
const LONG_READS: usize = 4;
/// The bytes of the values one write pipeline carries, at most (but one registration
/// always goes): with keys up to [`RedisCatalog::MAX_KEY_BYTES`], a count alone would
/// not bound a pipeline.
const WRITE_BYTES: usize = 16 << 20;
pub(super) const READ: &str = "read a catalog entry";

/// A catalog shared by every process on one Redis (feature `redis`), with a bounded
/// process-local catalog in front.
///
/// - **Writes are pipelined**: a registration goes to the local catalog at once and
///   into a queue, sent when a reservation ends (a run, or a batch:
///   building one ends its reservation), when [`flush`](Catalog::flush) is called, and
///   past [`ASYNC_WRITE_PIPELINE`](Self::ASYNC_WRITE_PIPELINE) queued registrations,
///   in pipelines of at most [`WRITE_PIPELINE`](Self::WRITE_PIPELINE) (sync) or
///   [`ASYNC_WRITE_PIPELINE`](Self::ASYNC_WRITE_PIPELINE) (async) registrations and
///   16 MiB of values. Each entry is `SET <prefix>key:<digest> <check>:<scope>:<key>
///   PX <ttl>`: one key per command, as Redis Cluster needs. Keys of any length up to
///   [`MAX_KEY_BYTES`](Self::MAX_KEY_BYTES) (4 MiB) are shared; a longer one stays
///   local, counted in [`Stats::unshared`] and warned about.
/// - **Values cannot lie.** `<check>` is 8 hex digits of SHA-256 over the digest, scope
///   and key: a value that does not parse, was written for another digest (copied, or
///   another application's) or is longer than any entry is never used. It is
///   a miss, counted in [`Stats::faults`] as [`FaultKind::Foreign`] and warned about,
///   naming the Redis key. The check guards against mistakes, not against someone who
///   may write to the server.
/// - **A local miss costs one round trip** (`GETRANGE`) from sync code, two for an
///   entry longer than 8,210 bytes; what it finds is kept locally. In async mode ([`CatalogBuilder::redis_async`](crate::CatalogBuilder))
///   a miss stays a miss: `prefetch_async` (feature `tokio`) reads ahead.
/// - **The local catalog follows its own kind and capacity**, but what it drops for
///   room is counted as released, never evicted: Redis keeps it.
/// - **Faults lose nothing silently.** When Redis fails, the local catalog keeps
///   serving, a miss is a miss, and queued registrations wait (up to
///   [`MAX_QUEUED`](Self::MAX_QUEUED), then the oldest are dropped, however the
///   sender stopped: a failing server, or in async mode a runtime that is gone) to be
///   sent again; every failure is counted in [`Stats::faults`], passed to the
///   handle's listener and covered by a rate-limited warning, and registrations that
///   had to be dropped from a full queue, were still queued when the catalog was
///   dropped, or hold a key too long to share are counted (in [`Stats::unshared`]
///   while it lives) and warned about.
/// - [`clear`](Catalog::clear) and [`remove`](Catalog::remove) act on the local
///   catalog; from sync code `remove` deletes the shared entry too, in async mode it
///   leaves it to its TTL (no call there touches the network).
///
/// # Examples
///
/// ```no_run
/// use idempotency_catalog::{Catalog, CatalogBuilder, Digest, KeyOptions, RedisBuilder, Scope};
///
/// let redis = RedisBuilder::new("redis://127.0.0.1:6379").prefix("myapp:").build()?;
/// let catalog = CatalogBuilder::new().capacity(10_000).redis(redis).build()?;
/// let digest = Digest::from_bytes([7; 32]);
/// catalog.register(digest, KeyOptions::new("order-7", Scope::Global));
/// catalog.flush()?; // sent: every worker on this Redis now resolves the digest
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
pub struct RedisCatalog {
    pub(super) local: Arc<dyn Catalog>,
    pub(super) shared: Arc<Shared>,
}

/// What the catalog shares with its background sender (async mode).
pub(super) struct Shared {
    pub(super) conn: RedisConnection,
    queue: Mutex<VecDeque<(Digest, KeyOptions)>>,
    shared_hits: AtomicU64,
    unshared: AtomicU64,
    unshared_log: Mutex<EvictionLog>,
    /// In async mode (feature `tokio`), the sender task's bell: nothing here touches
    /// the network then.
    pub(super) sender: Option<Sender>,
}

impl RedisCatalog {
    /// Registrations sent in one pipeline from sync code. A pipeline must come back
    /// whole within the command timeout, and after an outage the queue may hold up to
    /// [`MAX_QUEUED`](Self::MAX_QUEUED): it goes out in pipelines of this size (and of
    /// 16 MiB of values at most), never in one that grows with the queue.
    pub const WRITE_PIPELINE: usize = 10_000;
    /// Registrations sent in one pipeline from async code (the catalog's sender task),
    /// so that building one never holds the runtime's thread long; also how many queued
    /// registrations make the next registration send them, sync or async: one round
    /// trip per this many keys while a batch is built.
    pub const ASYNC_WRITE_PIPELINE: usize = 1_024;
    /// Entries [`prefetch`](Self::prefetch) reads in one pipeline.
    pub const READ_PIPELINE: usize = 5_000;
    /// Entries `prefetch_async` (feature `tokio`) reads in one pipeline, with a
    /// yield between two.
    pub const ASYNC_READ_PIPELINE: usize = 250;
    /// Registrations that wait while Redis fails, at most (about 100 bytes each, more
    /// for long keys): past it the oldest are dropped, counted in [`Stats::unshared`]
    /// and warned about, whether the sends fail or, in async mode, the sender's runtime
    /// is gone.
    pub const MAX_QUEUED: usize = 100_000;
    /// The longest key, in bytes of UTF-8, an entry shares (4 MiB): longer key material
    /// stays local, counted in [`Stats::unshared`] and warned about. The SDK hashes any
    /// key material into a 64-character digest for the wire; this is its original key.
    pub const MAX_KEY_BYTES: usize = 4 << 20;

    /// `local` in front of the Redis behind `redis`; see
    /// [`CatalogBuilder::redis`](crate::CatalogBuilder::redis), which builds `local` so
    /// that what it drops for room counts as released.
    pub(crate) fn new(local: Arc<dyn Catalog>, redis: &Redis) -> Result<Self, Error> {
        Ok(RedisCatalog { local, shared: Arc::new(Shared::new(redis, None)) })
    }

    fn redis(&self) -> &Redis {
        self.shared.conn.redis()
    }

    /// The Redis key holding the shared entry of `digest`: `<prefix>key:<digest>`, its
    /// value `<check>:<scope>:<key>`. For operators and tools reading an entry's TTL
    /// (`PTTL`) or size (`MEMORY USAGE`); read the entry itself with
    /// [`get`](Catalog::get) or [`prefetch`](Self::prefetch), which check its value.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_catalog::{CatalogBuilder, Digest, RedisBuilder};
    ///
    /// let redis = RedisBuilder::new("redis://127.0.0.1:6379").prefix("myapp:").build()?;
    /// let catalog = CatalogBuilder::new().redis(redis).build_redis()?;
    /// let digest = Digest::from_bytes([7; 32]);
    /// assert_eq!(catalog.entry_key(&digest), format!("myapp:key:{digest}"));
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    pub fn entry_key(&self, digest: &Digest) -> String {
        entry_key(self.redis().prefix(), digest)
    }

    /// Reads the entries of `digests` this process does not hold into the local
    /// catalog, in pipelines of [`READ_PIPELINE`](Self::READ_PIPELINE): after it,
    /// [`get`](Catalog::get) answers them without asking Redis. Returns how many were
    /// found. For a batch built from digest strings minted elsewhere; in async mode the
    /// only way a local miss reaches Redis.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] naming the URL when Redis could not be asked (what earlier
    /// pipelines found is kept); foreign values are counted as faults and skipped, as
    /// in [`get`](Catalog::get).
    pub fn prefetch(&self, digests: &[Digest]) -> Result<usize, Error> {
        let mut reads = Reads::new(self.missing(digests), Self::READ_PIPELINE);
        while let Some((read, cmds)) = reads.next(&self.shared) {
            let answers = self.shared.conn.send(READ, cmds)?;
            self.keep(&mut reads, read, answers);
        }
        Ok(reads.found)
    }

    /// The distinct digests of `digests` the local catalog does not hold.
    pub(super) fn missing(&self, digests: &[Digest]) -> Vec<Digest> {
        let mut missing: Vec<Digest> = digests.iter().filter(|d| self.local.get(d).is_none()).copied().collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }

    /// Keeps locally what Redis answered to `read`.
    pub(super) fn keep(&self, reads: &mut Reads, read: Read, answers: Answers) {
        for (digest, options) in reads.answered(&self.shared, read, answers) {
            self.local.register(digest, options);
        }
    }

    /// Asks Redis for the entry of `digest`, after a local miss, and keeps it locally.
    fn fetch(&self, digest: &Digest) -> Option<KeyOptions> {
        let mut reads = Reads::new(vec![*digest], 1);
        let mut options = None;
        while let Some((read, cmds)) = reads.next(&self.shared) {
            let answers = self.shared.conn.send(READ, cmds).ok()?;
            options = reads.answered(&self.shared, read, answers).pop().map(|(_, options)| options).or(options);
        }
        let options = options?;
        self.local.register(*digest, options.clone());
        Some(options)
    }

    /// Whether the catalog's writes go through its background sender, which is rung.
    fn background(&self) -> bool {
        self.shared.sender.as_ref().inspect(|sender| sender.ring()).is_some()
    }
}

impl Shared {
    pub(super) fn new(redis: &Redis, sender: Option<Sender>) -> Self {
        Shared {
            conn: redis.connection(),
            queue: Mutex::new(VecDeque::new()),
            shared_hits: AtomicU64::new(0),
            unshared: AtomicU64::new(0),
            unshared_log: Mutex::new(EvictionLog::new()),
            sender,
        }
    }

    fn enqueue(&self, digest: Digest, options: KeyOptions) {
        if options.key().len() > RedisCatalog::MAX_KEY_BYTES {
            self.too_long(&digest, &options);
            return;
        }
        let (due, dropped, queued) = {
            let mut queue = self.queue.lock();
            // Bounded here, whoever sends: an async catalog whose runtime is gone has no
            // sender left to fail, and its queue would grow with every registration.
            let dropped = usize::from(queue.len() >= RedisCatalog::MAX_QUEUED);
            queue.drain(..dropped);
            queue.push_back((digest, options));
            // At each multiple: while Redis fails, one attempt per
            // `ASYNC_WRITE_PIPELINE` registrations, not one per registration.
            (queue.len().is_multiple_of(RedisCatalog::ASYNC_WRITE_PIPELINE), dropped, queue.len())
        };
        self.dropped(dropped, queued);
        if due {
            if let Some(sender) = &self.sender {
                sender.ring();
                return;
            }
            // Counted and warned inside; the entries wait for the next send.
            let _ = self.send();
        }
    }

    /// Key material too long to share: kept local, counted and warned about as a
    /// registration that never reached the shared store.
    fn too_long(&self, digest: &Digest, options: &KeyOptions) {
        self.unshared.fetch_add(1, Ordering::Relaxed);
        crate::meter::unshared(1);
        tracing::warn!(
            target: "idempotency_catalog::events",
            store = %self.conn.redis().url(),
            digest = %digest,
            key_bytes = options.key().len(),
            max_key_bytes = RedisCatalog::MAX_KEY_BYTES,
            unshared = 1u64,
            remedy = "pass shorter key material (hashed keys are 64 characters)",
            "idempotency key too long to share: its metadata stays in this process"
        );
    }

    /// Up to `most` of the oldest queued registrations, and 16 MiB of values at most
    /// (one always), taken from the queue, with their `SET` commands.
    fn write_cmds(&self, most: usize) -> (Batch, Vec<Cmd>) {
        let batch: Batch = {
            let mut queue = self.queue.lock();
            let (mut n, mut bytes) = (0, 0);
            for (_, options) in queue.iter().take(most) {
                bytes += HEADER_BYTES + options.key().len();
                if n > 0 && bytes > WRITE_BYTES {
                    break;
                }
                n += 1;
            }
            queue.drain(..n).collect()
        };
        let redis = self.conn.redis();
        let ttl = u64::try_from(redis.catalog_ttl().as_millis()).unwrap_or(u64::MAX);
        let cmds = batch
            .iter()
            .map(|(digest, options)| {
                let mut cmd = ::redis::cmd("SET");
                cmd.arg(entry_key(redis.prefix(), digest)).arg(encode(digest, options)).arg("PX").arg(ttl);
                cmd
            })
            .collect();
        (batch, cmds)
    }

    /// After a send: the registrations whose write failed go back in the queue, and a
    /// failure is counted once for the batch.
    pub(super) fn sent(&self, batch: Batch, answers: Result<Answers, Error>) -> Result<(), Error> {
        let answers = match answers {
            Ok(answers) => answers,
            Err(err) => {
                self.requeue(batch);
                return Err(err);
            }
        };
        let mut failed = Vec::new();
        let mut first = None;
        for (entry, answer) in batch.into_iter().zip(answers) {
            if let Err(err) = answer {
                first.get_or_insert(err);
                failed.push(entry);
            }
        }
        let Some(err) = first else { return Ok(()) };
        let (kind, said) = server_error_of(&err);
        let message = match failed.len() {
            1 => said,
            n => format!("{said} ({n} writes failed)"),
        };
        self.requeue(failed);
        Err(self.conn.fault(WRITE, kind, message))
    }

    /// Sends the registrations queued when it is called,
    /// [`WRITE_PIPELINE`](RedisCatalog::WRITE_PIPELINE) to a pipeline, until they are
    /// sent or a send fails; what fails is queued again. Not what other threads queue
    /// meanwhile: a flush under a steady stream of registrations ends.
    fn send(&self) -> Result<(), Error> {
        let mut left = self.queued();
        while let Some((batch, cmds)) = self.next_writes(&mut left, RedisCatalog::WRITE_PIPELINE) {
            self.sent(batch, self.conn.send(WRITE, cmds))?;
        }
        Ok(())
    }

    /// How many registrations are queued: what a send sends, at most.
    pub(super) fn queued(&self) -> usize {
        self.queue.lock().len()
    }

    /// The next pipeline of a send that has `left` registrations still to send: up to
    /// `most` of the oldest queued, taken from the queue, with their `SET` commands;
    /// `None` when the send is done.
    pub(super) fn next_writes(&self, left: &mut usize, most: usize) -> Option<(Batch, Vec<Cmd>)> {
        if *left == 0 {
            return None;
        }
        let (batch, cmds) = self.write_cmds((*left).min(most));
        if batch.is_empty() {
            return None;
        }
        *left = left.saturating_sub(batch.len());
        Some((batch, cmds))
    }

    /// Puts `batch` back in front of what was queued since, dropping the oldest past
    /// the bound.
    fn requeue(&self, batch: Batch) {
        let (dropped, queued) = {
            let mut queue = self.queue.lock();
            let newer = std::mem::take(&mut *queue);
            queue.extend(batch);
            queue.extend(newer);
            let dropped = queue.len().saturating_sub(RedisCatalog::MAX_QUEUED);
            queue.drain(..dropped);
            (dropped, queue.len())
        };
        self.dropped(dropped, queued);
    }

    /// `dropped` registrations left a full queue (of `queued` now): counted and warned.
    fn dropped(&self, dropped: usize, queued: usize) {
        let dropped = dropped as u64;
        if dropped > 0 {
            self.unshared.fetch_add(dropped, Ordering::Relaxed);
            crate::meter::unshared(dropped);
            let due = self.unshared_log.lock().record(dropped);
            if let Some(summary) = due {
                events::warn_unshared(summary, self.conn.redis().url(), queued);
            }
        }
    }

    /// `GETRANGE` of the first `limit` + 1 bytes rather than `GET`: a huge foreign
    /// value costs one byte more than what is asked, not its size. A missing key reads
    /// as empty.
    fn read_cmds(&self, digests: &[Digest], limit: usize) -> Vec<Cmd> {
        let prefix = self.conn.redis().prefix();
        digests
            .iter()
            .map(|digest| {
                let mut cmd = ::redis::cmd("GETRANGE");
                cmd.arg(entry_key(prefix, digest)).arg(0).arg(limit);
                cmd
            })
            .collect()
    }

    /// The options Redis holds for `digest`, if its entry is one this crate wrote, or
    /// that it is longer than a first read (`limit` bytes of [`FIRST_READ`]) and starts
    /// as an entry does; anything else is a miss, and a foreign value a counted fault.
    fn read_answer(&self, digest: &Digest, answer: ::redis::RedisResult<::redis::Value>, limit: usize) -> Entry {
        let key = || entry_key(self.conn.redis().prefix(), digest);
        let value = match answer.and_then(|value| Ok(::redis::from_redis_value::<Vec<u8>>(value)?)) {
            Ok(value) if value.is_empty() => return Entry::Missing,
            Ok(value) => value,
            Err(err) if err.code() == Some("WRONGTYPE") => {
                let _ = self.conn.fault(READ, FaultKind::Foreign, format!("foreign value under {}: {err}", key()));
                return Entry::Missing;
            }
            Err(err) => {
                let (kind, said) = server_error_of(&err);
                let _ = self.conn.fault(READ, kind, said);
                return Entry::Missing;
            }
        };
        // Only a first read can be cut short: a value read whole is what it is, even
        // one exactly as long as a first read takes.
        if limit == FIRST_READ && value.len() == FIRST_READ + 1 && starts_as_an_entry(&value) {
            return Entry::Longer;
        }
        match decode(digest, &value) {
            Ok(options) => {
                self.shared_hits.fetch_add(1, Ordering::Relaxed);
                Entry::Found(options)
            }
            Err(why) => {
                let message = format!("foreign value under {}: {} ({why})", key(), preview(&value));
                // Counted and warned inside; a foreign value is a miss, never options.
                let _ = self.conn.fault(READ, FaultKind::Foreign, message);
                Entry::Missing
            }
        }
    }
}

/// Registrations on their way to Redis, oldest first.
pub(super) type Batch = Vec<(Digest, KeyOptions)>;

/// One answer per command.
type Answers = Vec<::redis::RedisResult<::redis::Value>>;

/// A read of shared entries under way, sync or async: the pipelines it sends next, and
/// how many entries it found. Each entry is read first up to [`FIRST_READ`] bytes,
/// which hold every key of up to 2,048 characters; one that is longer is read again
/// whole, [`LONG_READS`] to a pipeline, before the next first reads.
pub(super) struct Reads {
    first: std::vec::IntoIter<Digest>,
    /// First reads to a pipeline.
    pipeline: usize,
    longer: Vec<Digest>,
    pub(super) found: usize,
}

/// One pipeline of reads: its digests, and how many bytes of each entry it reads.
pub(super) struct Read {
    digests: Vec<Digest>,
    limit: usize,
}

impl Reads {
    pub(super) fn new(digests: Vec<Digest>, pipeline: usize) -> Self {
        Reads { first: digests.into_iter(), pipeline: pipeline.max(1), longer: Vec::new(), found: 0 }
    }

    /// The next pipeline, with its `GETRANGE` commands; `None` when every entry is read.
    pub(super) fn next(&mut self, shared: &Shared) -> Option<(Read, Vec<Cmd>)> {
        let read = if self.longer.is_empty() {
            let digests: Vec<Digest> = self.first.by_ref().take(self.pipeline).collect();
            if digests.is_empty() {
                return None;
            }
            Read { digests, limit: FIRST_READ }
        } else {
            let n = self.longer.len().min(LONG_READS);
            Read { digests: self.longer.drain(..n).collect(), limit: MAX_VALUE_BYTES }
        };
        let cmds = shared.read_cmds(&read.digests, read.limit);
        Some((read, cmds))
    }

    /// Takes the answers to `read`: the entries found, for the caller to keep; those
    /// longer than a first read are read again whole next.
    pub(super) fn answered(&mut self, shared: &Shared, read: Read, answers: Answers) -> Batch {
        let mut found = Vec::new();
        for (digest, answer) in read.digests.into_iter().zip(answers) {
            match shared.read_answer(&digest, answer, read.limit) {
                Entry::Found(options) => {
                    self.found += 1;
                    found.push((digest, options));
                }
                Entry::Longer => self.longer.push(digest),
                Entry::Missing => {}
            }
        }
        found
    }
}

/// What one read of an entry found.
enum Entry {
    Found(KeyOptions),
    /// Nothing, or nothing this crate wrote.
    Missing,
    /// More than the first read asked for: read it again whole.
    Longer,
}

/// Whether `value` starts with `<check>:<scope>:`, as an entry does.
fn starts_as_an_entry(value: &[u8]) -> bool {
    let Some((check, rest)) = value.split_first_chunk::<{ 2 * CHECK_BYTES }>() else { return false };
    let Some(rest) = rest.strip_prefix(b":") else { return false };
    check.iter().all(u8::is_ascii_hexdigit)
        && Scope::ALL
            .iter()
            .any(|scope| rest.strip_prefix(scope.as_str().as_bytes()).is_some_and(|after| after.first() == Some(&b':')))
}

pub(super) const WRITE: &str = "write catalog entries";

/// An entry's value: `<check>:<scope>:<key>`, readable with `redis-cli`
/// (`0c3e5a7f:global:item-42`).
fn encode(digest: &Digest, options: &KeyOptions) -> String {
    format!("{}:{}:{}", check(digest, options.scope(), options.key()), options.scope(), options.key())
}

/// The options in `value`, if it is an entry written for `digest`; else why not.
fn decode(digest: &Digest, value: &[u8]) -> Result<KeyOptions, &'static str> {
    const NOT_AN_ENTRY: &str = "not <check>:<scope>:<key>";
    if value.len() > MAX_VALUE_BYTES {
        return Err("longer than any entry");
    }
    let value = std::str::from_utf8(value).map_err(|_| "not UTF-8")?;
    let (written, rest) = value.split_once(':').ok_or(NOT_AN_ENTRY)?;
    let (scope, key) = rest.split_once(':').ok_or(NOT_AN_ENTRY)?;
    let scope = scope.parse::<Scope>().map_err(|_| NOT_AN_ENTRY)?;
    if key.len() > RedisCatalog::MAX_KEY_BYTES {
        return Err("longer than any entry");
    }
    if written != check(digest, scope, key) {
        return Err("written for another digest, or altered");
    }
    Ok(KeyOptions::new(key, scope))
}

/// The first bytes of SHA-256 over the digest, scope and key, in hex: binds a value to
/// the key it is stored under. The scope never holds `:`, so the input is unambiguous.
fn check(digest: &Digest, scope: Scope, key: &str) -> String {
    let hash =
        Sha256::new().chain_update(digest.as_bytes()).chain_update(scope.as_str()).chain_update(":").chain_update(key);
    hash.finalize().get(..CHECK_BYTES).map(hex::encode).unwrap_or_default()
}

/// A foreign value as a message shows it: quoted, escaped and cut.
fn preview(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value.get(..FIRST_READ + 1).unwrap_or(value));
    if value.len() > FIRST_READ {
        // Only a prefix was read, or shown: its length would mislead.
        let start: String = text.chars().take(64).collect();
        format!("{}… (more than {FIRST_READ} bytes)", crate::error::shown(&start))
    } else {
        crate::error::shown(&text)
    }
}

impl Catalog for RedisCatalog {
    fn register(&self, digest: Digest, options: KeyOptions) {
        self.local.register(digest, options.clone());
        self.shared.enqueue(digest, options);
    }

    fn get(&self, digest: &Digest) -> Option<KeyOptions> {
        // In async mode a miss stays a miss: `prefetch_async` asks Redis beforehand.
        self.local.get(digest).or_else(|| if self.background() { None } else { self.fetch(digest) })
    }

    fn remove(&self, digest: &Digest) -> Option<KeyOptions> {
        if !self.background() {
            let key = entry_key(self.redis().prefix(), digest);
            // Counted and warned inside: the shared entry then lives out its TTL.
            let _ = self.shared.conn.query::<()>("remove a catalog entry", ::redis::cmd("DEL").arg(&key));
        }
        self.local.remove(digest)
    }

    fn clear(&self) {
        self.local.clear();
    }

    fn flush(&self) -> Result<(), Error> {
        let store = self.redis().url();
        let _span = tracing::info_span!("idempotency.catalog.flush", store = %store, db.system = "redis").entered();
        let local = self.local.flush();
        // In async mode the sender sends, without blocking this thread.
        if self.background() {
            return local;
        }
        self.shared.send().and(local)
    }

    fn len(&self) -> usize {
        self.local.len()
    }

    fn capacity(&self) -> Option<usize> {
        self.local.capacity()
    }

    fn kind(&self) -> CatalogKind {
        self.local.kind()
    }

    fn stats(&self) -> Stats {
        let mut stats = self.local.stats();
        // A local miss that Redis answered is a hit.
        let shared_hits = self.shared.shared_hits.load(Ordering::Relaxed);
        stats.hits += shared_hits;
        stats.misses = stats.misses.saturating_sub(shared_hits);
        stats.faults = self.redis().faults();
        // The handle's listener sees the faults: its panics are this catalog's too.
        stats.listener_panics += self.redis().listener_panics();
        stats.unshared = self.shared.unshared.load(Ordering::Relaxed);
        stats
    }

    fn reserve(&self, additional: usize) -> Reservation<'_> {
        Reservation::new(self, additional)
    }
}

impl Reservations for RedisCatalog {
    fn register_held(&self, holder: ReservationId, digest: Digest, options: KeyOptions) {
        self.local.register_held(holder, digest, options.clone());
        self.shared.enqueue(digest, options);
    }

    fn open_reservation(&self, additional: usize) -> (ReservationId, usize) {
        self.local.open_reservation(additional)
    }

    fn close_reservation(&self, id: ReservationId) {
        // Sent before the local entries are released: other workers may need them.
        if !self.background() {
            let _ = self.shared.send();
        }
        self.local.close_reservation(id);
    }
}

impl Drop for RedisCatalog {
    fn drop(&mut self) {
        // In async mode the sender sends the rest, and stops.
        if let Some(sender) = &self.shared.sender {
            sender.close();
            return;
        }
        let _ = self.shared.send();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // What the last send could not write is lost with the catalog: counted and
        // warned about like registrations dropped from a full queue.
        let left = self.queue.get_mut().len() as u64;
        let log = self.unshared_log.get_mut();
        let due = (left > 0).then(|| log.record(left)).flatten();
        if left > 0 {
            crate::meter::unshared(left);
        }
        for summary in due.into_iter().chain(log.flush()) {
            events::warn_unshared(summary, self.conn.redis().url(), 0);
        }
    }
}

impl fmt::Debug for RedisCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCatalog")
            .field("redis", self.redis())
            .field("local", &self.local)
            .field("queued", &self.shared.queue.lock().len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_as_written() {
        let digest = Digest::from_bytes([7; 32]);
        for (key, scope) in [("item-42", Scope::Global), ("a:b:c", Scope::Run), ("", Scope::Attempt), ("é", Scope::Run)]
        {
            let options = KeyOptions::new(key, scope);
            let value = encode(&digest, &options);
            assert_eq!(decode(&digest, value.as_bytes()), Ok(options), "{value}");
        }
        let longest = KeyOptions::new(&"\u{10FFFF}".repeat(RedisCatalog::MAX_KEY_BYTES / 4), Scope::Attempt);
        let value = encode(&digest, &longest);
        assert_eq!(value.len(), MAX_VALUE_BYTES);
        assert!(decode(&digest, value.as_bytes()) == Ok(longest), "the longest entry reads back");
        // The wire's longest key, in any UTF-8, comes back whole from the first read.
        let wire = encode(&digest, &KeyOptions::new(&"\u{10FFFF}".repeat(2_048), Scope::Attempt));
        assert_eq!(wire.len(), FIRST_READ);
    }

    #[test]
    fn a_value_is_readable_and_bound_to_its_digest() {
        let (one, other) = (Digest::from_bytes([1; 32]), Digest::from_bytes([2; 32]));
        let value = encode(&one, &KeyOptions::new("item-42", Scope::Global));
        let (check, rest) = value.split_once(':').unwrap();
        assert_eq!((check.len(), rest), (8, "global:item-42"));
        assert!(check.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(decode(&other, value.as_bytes()), Err("written for another digest, or altered"));
        let altered = value.replace("item-42", "item-43");
        assert_eq!(decode(&one, altered.as_bytes()), Err("written for another digest, or altered"));
        let rescoped = value.replace("global", "run");
        assert_eq!(decode(&one, rescoped.as_bytes()), Err("written for another digest, or altered"));
    }

    #[test]
    fn foreign_values_are_refused_with_a_reason() {
        let digest = Digest::from_bytes([7; 32]);
        for (value, why) in [
            (&b"global:item-999"[..], "not <check>:<scope>:<key>"),
            (b"nonsense", "not <check>:<scope>:<key>"),
            (b"00000000:world:item", "not <check>:<scope>:<key>"),
            (b"00000000:global:item", "written for another digest, or altered"),
            (b"\xff\xfe", "not UTF-8"),
        ] {
            assert_eq!(decode(&digest, value), Err(why), "{value:?}");
        }
        for scope in Scope::ALL {
            let long = KeyOptions::new(&"k".repeat(RedisCatalog::MAX_KEY_BYTES + 1), scope);
            // Not `assert_eq!`: a failure would print megabytes.
            assert!(decode(&digest, encode(&digest, &long).as_bytes()) == Err("longer than any entry"), "{scope}");
        }
        let huge = vec![b'a'; MAX_VALUE_BYTES + 1];
        assert_eq!(decode(&digest, &huge), Err("longer than any entry"));
        assert!(preview(&huge).ends_with("… (more than 8209 bytes)"), "{}", preview(&huge));
    }

    #[test]
    fn the_docs_quote_the_byte_bounds_the_code_uses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fleet.md");
        let docs = std::fs::read_to_string(path).unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
        let first_read = (FIRST_READ + 1).to_string();
        let (thousands, units) = first_read.split_at(first_read.len() - 3);
        for quoted in [
            format!("and of {} MiB of values at most", WRITE_BYTES >> 20),
            format!(
                "Key material of any length up to {} MiB (`RedisCatalog::MAX_KEY_BYTES`)",
                RedisCatalog::MAX_KEY_BYTES >> 20
            ),
            format!("(at most {thousands},{units} bytes are read, which holds every key of up to 2,048 characters"),
        ] {
            assert!(docs.contains(&quoted), "docs/fleet.md does not say: {quoted}");
        }
    }

    #[test]
    fn only_a_value_that_starts_as_an_entry_is_read_again_whole() {
        let digest = Digest::from_bytes([7; 32]);
        let long = encode(&digest, &KeyOptions::new(&"k".repeat(FIRST_READ), Scope::Run));
        assert!(starts_as_an_entry(long.as_bytes()));
        for value in
            [&b"0c3e5a7f:world:k"[..], b"0c3e5a7g:run:k", b"0c3e5a7f:run", b"0c3e5a7f", b"", b"xxxxxxxxxxxxxxxxxx"]
        {
            assert!(!starts_as_an_entry(value), "{value:?}");
        }
    }
}
