use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{Redis, RedisConnection};
use crate::catalog::{Catalog, Reservation, ReservationId};
use crate::digest::Digest;
use crate::error::Error;
use crate::events::{self, EvictionLog};
use crate::key_options::KeyOptions;
use crate::kind::CatalogKind;
use crate::scope::Scope;
use crate::telemetry::Stats;

/// Past this many queued registrations, the next registration sends them: one round
/// trip per this many keys while a batch is built.
const SEND_AT: usize = 1_024;
/// At most this many registrations wait while Redis fails (about 100 bytes each);
/// older ones are dropped past it, counted in [`Stats::unshared`] and warned about.
const MAX_QUEUED: usize = 100_000;

/// A catalog shared by every process on one Redis (feature `redis`), with a bounded
/// process-local catalog in front.
///
/// - **Writes are pipelined**: a registration goes to the local catalog at once and
///   into a queue, sent in one round trip when a reservation ends (a run, or a batch:
///   building one ends its reservation), when [`flush`](Catalog::flush) is called, and
///   past 1,024 queued registrations. Each entry is `SET <prefix>key:<digest> <scope>:<key> PX <ttl>`:
///   one key per command, so Redis Cluster and Valkey work.
/// - **A local miss costs one round trip** (`GET`); what it finds is kept locally.
/// - **The local catalog follows its own kind and capacity**, but what it drops for
///   room is counted as released, never evicted: Redis keeps it.
/// - **Faults lose nothing silently.** When Redis fails, the local catalog keeps
///   serving, a miss is a miss, and queued registrations wait (up to 100,000) to be
///   sent again; every failure is counted in [`Stats::faults`], passed to the
///   handle's listener and covered by a rate-limited warning, and registrations that
///   had to be dropped from a full queue are counted in [`Stats::unshared`].
/// - [`clear`](Catalog::clear) and [`remove`](Catalog::remove) act on the local
///   catalog; `remove` deletes the shared entry too.
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
    local: Arc<dyn Catalog>,
    conn: RedisConnection,
    queue: Mutex<VecDeque<(Digest, KeyOptions)>>,
    shared_hits: AtomicU64,
    unshared: AtomicU64,
    unshared_log: Mutex<EvictionLog>,
}

impl RedisCatalog {
    /// `local` in front of the Redis behind `redis`; see
    /// [`CatalogBuilder::redis`](crate::CatalogBuilder::redis), which builds `local` so
    /// that what it drops for room counts as released.
    pub(crate) fn new(local: Arc<dyn Catalog>, redis: &Redis) -> Self {
        RedisCatalog {
            local,
            conn: redis.connection(),
            queue: Mutex::new(VecDeque::new()),
            shared_hits: AtomicU64::new(0),
            unshared: AtomicU64::new(0),
            unshared_log: Mutex::new(EvictionLog::new()),
        }
    }

    fn redis(&self) -> &Redis {
        self.conn.redis()
    }

    fn enqueue(&self, digest: Digest, options: KeyOptions) {
        let due = {
            let mut queue = self.queue.lock();
            queue.push_back((digest, options));
            // At each multiple: while Redis fails, one attempt per `SEND_AT`
            // registrations, not one per registration.
            queue.len().is_multiple_of(SEND_AT)
        };
        if due {
            // Counted and warned inside; the entries wait for the next send.
            let _ = self.send();
        }
    }

    /// Sends every queued registration in one pipeline; on failure puts them back.
    fn send(&self) -> Result<(), Error> {
        let batch: Vec<(Digest, KeyOptions)> = self.queue.lock().drain(..).collect();
        if batch.is_empty() {
            return Ok(());
        }
        let redis = self.conn.redis();
        let ttl = u64::try_from(redis.catalog_ttl().as_millis()).unwrap_or(u64::MAX);
        let result = self.conn.run("write catalog entries", |conn| {
            let mut pipe = ::redis::pipe();
            for (digest, options) in &batch {
                pipe.cmd("SET").arg(entry_key(redis.prefix(), digest)).arg(encode(options)).arg("PX").arg(ttl).ignore();
            }
            pipe.query::<()>(conn)
        });
        if result.is_err() {
            self.requeue(batch);
        }
        result
    }

    /// Puts `batch` back in front of what was queued since, dropping the oldest past
    /// the bound.
    fn requeue(&self, batch: Vec<(Digest, KeyOptions)>) {
        let (dropped, queued) = {
            let mut queue = self.queue.lock();
            let newer = std::mem::take(&mut *queue);
            queue.extend(batch);
            queue.extend(newer);
            let dropped = queue.len().saturating_sub(MAX_QUEUED);
            queue.drain(..dropped);
            (dropped as u64, queue.len())
        };
        if dropped > 0 {
            self.unshared.fetch_add(dropped, Ordering::Relaxed);
            crate::meter::unshared(dropped);
            let due = self.unshared_log.lock().record(dropped);
            if let Some(summary) = due {
                events::warn_unshared(summary, self.redis().url(), queued);
            }
        }
    }

    fn fetch(&self, digest: &Digest) -> Option<KeyOptions> {
        let key = entry_key(self.redis().prefix(), digest);
        let value: Option<String> =
            self.conn.run("read a catalog entry", |conn| ::redis::cmd("GET").arg(&key).query(conn)).ok()?;
        let value = value?;
        let Some(options) = decode(&value) else {
            // Not written by this crate: someone else's key under our prefix.
            let message = format!("unreadable entry {key}: {}", crate::error::shown(&value));
            let _ = self.redis().fault("read a catalog entry", crate::telemetry::FaultKind::Rejected, message);
            return None;
        };
        self.local.register(*digest, options.clone());
        self.shared_hits.fetch_add(1, Ordering::Relaxed);
        Some(options)
    }
}

/// The Redis key of a catalog entry.
fn entry_key(prefix: &str, digest: &Digest) -> String {
    format!("{prefix}key:{digest}")
}

/// An entry's value: `<scope>:<key>`, readable with `redis-cli`.
fn encode(options: &KeyOptions) -> String {
    format!("{}:{}", options.scope(), options.key())
}

fn decode(value: &str) -> Option<KeyOptions> {
    let (scope, key) = value.split_once(':')?;
    Some(KeyOptions::new(key, scope.parse::<Scope>().ok()?))
}

impl Catalog for RedisCatalog {
    fn register(&self, digest: Digest, options: KeyOptions) {
        self.local.register(digest, options.clone());
        self.enqueue(digest, options);
    }

    fn register_held(&self, holder: ReservationId, digest: Digest, options: KeyOptions) {
        self.local.register_held(holder, digest, options.clone());
        self.enqueue(digest, options);
    }

    fn get(&self, digest: &Digest) -> Option<KeyOptions> {
        self.local.get(digest).or_else(|| self.fetch(digest))
    }

    fn remove(&self, digest: &Digest) -> Option<KeyOptions> {
        let key = entry_key(self.redis().prefix(), digest);
        // Counted and warned inside: the shared entry then lives out its TTL.
        let _ = self.conn.run("remove a catalog entry", |conn| ::redis::cmd("DEL").arg(&key).query::<()>(conn));
        self.local.remove(digest)
    }

    fn clear(&self) {
        self.local.clear();
    }

    fn flush(&self) -> Result<(), Error> {
        let local = self.local.flush();
        self.send().and(local)
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
        let shared_hits = self.shared_hits.load(Ordering::Relaxed);
        stats.hits += shared_hits;
        stats.misses = stats.misses.saturating_sub(shared_hits);
        stats.faults = self.redis().faults();
        stats.unshared = self.unshared.load(Ordering::Relaxed);
        stats
    }

    fn reserve(&self, additional: usize) -> Reservation<'_> {
        Reservation::new(self, additional)
    }

    fn open_reservation(&self, additional: usize) -> (ReservationId, usize) {
        self.local.open_reservation(additional)
    }

    fn close_reservation(&self, id: ReservationId) {
        // Sent before the local entries are released: other workers may need them.
        let _ = self.send();
        self.local.close_reservation(id);
    }
}

impl Drop for RedisCatalog {
    fn drop(&mut self) {
        let _ = self.send();
        if let Some(summary) = self.unshared_log.get_mut().flush() {
            events::warn_unshared(summary, self.conn.redis().url(), self.queue.get_mut().len());
        }
    }
}

impl fmt::Debug for RedisCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCatalog")
            .field("redis", self.redis())
            .field("local", &self.local)
            .field("queued", &self.queue.lock().len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_as_written() {
        for (key, scope) in [("item-42", Scope::Global), ("a:b:c", Scope::Run), ("", Scope::Attempt)] {
            let options = KeyOptions::new(key, scope);
            assert_eq!(decode(&encode(&options)), Some(options));
        }
        assert_eq!(decode("nonsense"), None);
        assert_eq!(decode("world:item"), None);
    }
}
