//! The fleet fan-out, both sides, for the criterion bench (`benches/fleet.rs`) and the
//! interleaved ratio (`benches/fleet_ratio.rs`): a 100,000-item fan-out through the
//! SDK on Redis, and a raw `redis` pipeline sending what the SDK sent before a claim
//! carried its run's record: two `SET`s per item (a catalog entry, of today's length,
//! and a claim holding a run id).

use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotency_catalog::{CatalogBuilder, Redis, RedisBuilder};
use idempotency_sdk::{Engine, IdempotencyKey, ItemOptions, RunContext, Scope, Sdk};

/// Items in one fan-out.
pub const ITEMS: usize = 100_000;
/// The SDK's pipeline sizes: catalog writes, claims.
const CATALOG_PIPELINE: usize = 1_024;
const CLAIM_PIPELINE: usize = 10_000;
const TTL_30_DAYS_MS: u64 = 30 * 86_400 * 1_000;
const CATALOG_TTL_MS: u64 = 86_400 * 1_000;

/// Item names `0..ITEMS`, the run, each item's key, and the catalog entries the raw
/// sides send for them.
#[allow(clippy::type_complexity)]
fn items() -> (Vec<String>, RunContext, Vec<IdempotencyKey>, Vec<(String, String)>) {
    let names: Vec<String> = (0..ITEMS).map(|i| i.to_string()).collect();
    let run = RunContext::new("run_bench", 1);
    let keys: Vec<IdempotencyKey> =
        names.iter().map(|i| IdempotencyKey::derive(["item", i.as_str()], Scope::Global, Some(&run))).collect();
    let entries = keys
        .iter()
        .zip(&names)
        // As long as a catalog value now is: 8 hex characters of check first.
        .map(|(key, i)| (format!("idempotency:key:{key}"), format!("00000000:global:item-{i}")))
        .collect();
    (names, run, keys, entries)
}

/// Both sides of the fan-out against one server, with everything the raw side sends
/// prepared beforehand.
pub struct Workload {
    redis: Redis,
    conn: redis::Connection,
    names: Vec<String>,
    run: RunContext,
    /// Catalog entries and claims, as the raw side sends them.
    entries: Vec<(String, String)>,
    claims: Vec<(String, u64)>,
    /// The other masters of a cluster, emptied with the first.
    other_masters: Vec<redis::Connection>,
}

impl Workload {
    /// The workload against the server at `url`.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached.
    #[allow(clippy::panic, clippy::unwrap_used)] // a bench may stop at a failure
    pub fn new(url: &str) -> Self {
        Self::on(RedisBuilder::new(url), url)
    }

    /// The workload through a handle built by `builder`, whose deployment the server at
    /// `url` is part of (a cluster's seed: see [`flushing`](Self::flushing)).
    ///
    /// # Panics
    ///
    /// When the server cannot be reached.
    #[allow(clippy::panic, clippy::unwrap_used)] // a bench may stop at a failure
    pub fn on(builder: RedisBuilder, url: &str) -> Self {
        let redis = builder.build().unwrap_or_else(|err| panic!("{err}"));
        let conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        let (names, run, keys, entries) = items();
        let claims = keys
            .iter()
            .enumerate()
            .map(|(n, key)| (format!("idempotency:run:10:child-task:{key}"), (1 << 40) + n as u64 + 1))
            .collect();
        Workload { redis, conn, names, run, entries, claims, other_masters: Vec::new() }
    }

    /// Empties the servers at `urls` too before each fan-out: the other masters of a
    /// cluster whose seed `new` was given. Only the SDK side runs on a cluster.
    ///
    /// # Panics
    ///
    /// When a server cannot be reached.
    #[must_use]
    #[allow(clippy::unwrap_used)]
    pub fn flushing(mut self, urls: &[String]) -> Self {
        self.other_masters =
            urls.iter().map(|url| redis::Client::open(url.as_str()).unwrap().get_connection().unwrap()).collect();
        self
    }

    #[allow(clippy::unwrap_used)]
    fn flush(&mut self) {
        for conn in std::iter::once(&mut self.conn).chain(&mut self.other_masters) {
            redis::cmd("FLUSHALL").query::<()>(conn).unwrap();
        }
    }

    /// The SDK's fan-out on an emptied server: inside a run, creates every key
    /// (registered, sent 1,024 to a pipeline), adds it to a batch, builds the batch and
    /// triggers it on the Redis engine, then ends the run. The time of all that.
    ///
    /// # Panics
    ///
    /// When a Redis call fails, or an item was not a new run.
    #[allow(clippy::panic)]
    pub fn sdk(&mut self) -> Duration {
        self.flush();
        let catalog = CatalogBuilder::new().redis(self.redis.clone()).build().unwrap_or_else(|err| panic!("{err}"));
        let engine = Engine::on_redis(&self.redis).unwrap_or_else(|err| panic!("{err}"));
        let started = Instant::now();
        let sdk = Sdk::new(Arc::clone(&catalog)).with_run(self.run.clone());
        let mut batch = sdk.batch("child-task", ITEMS);
        for i in &self.names {
            batch.item(None, ItemOptions::new().key(sdk.create_key(["item", i.as_str()], Scope::Global)));
        }
        let batch = batch.build().unwrap_or_else(|err| panic!("{err}"));
        let handles = engine.trigger_owned(batch).unwrap_or_else(|err| panic!("{err}"));
        drop(sdk); // the run ends: its last registrations are sent
        let elapsed = started.elapsed();
        assert_eq!(handles.iter().filter(|h| !h.cached).count(), ITEMS);
        elapsed
    }

    /// The raw side on an emptied server: the catalog entries and the claims, in
    /// pipelines of the SDK's sizes. The time of the sends.
    ///
    /// # Panics
    ///
    /// When a Redis call fails, or a claim was held already.
    #[allow(clippy::panic)]
    pub fn raw(&mut self) -> Duration {
        self.flush();
        let started = Instant::now();
        for chunk in self.entries.chunks(CATALOG_PIPELINE) {
            let mut pipe = redis::pipe();
            for (key, value) in chunk {
                pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(CATALOG_TTL_MS).ignore();
            }
            pipe.query::<()>(&mut self.conn).unwrap_or_else(|err| panic!("{err}"));
        }
        let mut claimed = 0;
        for chunk in self.claims.chunks(CLAIM_PIPELINE) {
            let mut pipe = redis::pipe();
            for (key, run) in chunk {
                pipe.cmd("SET").arg(key).arg(*run).arg("NX").arg("GET").arg("PX").arg(TTL_30_DAYS_MS);
            }
            let held: Vec<Option<u64>> = pipe.query(&mut self.conn).unwrap_or_else(|err| panic!("{err}"));
            claimed += held.iter().filter(|h| h.is_none()).count();
        }
        let elapsed = started.elapsed();
        assert_eq!(claimed, ITEMS);
        elapsed
    }
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload").field("redis", &self.redis).field("items", &self.names.len()).finish_non_exhaustive()
    }
}

/// The async side of the fan-out (feature `fleet-all`): the SDK through its async API
/// against a raw async pipeline sending the commands the SDK sends, in pipelines of
/// the same sizes, awaited one after another as the SDK awaits them.
#[cfg(feature = "fleet-all")]
pub mod async_fan_out {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use idempotency_catalog::{Catalog, CatalogBuilder, Redis, RedisBuilder};
    use idempotency_sdk::{Engine, ItemOptions, RunContext, Scope, Sdk};

    use super::ITEMS;

    /// The async SDK's pipeline sizes: catalog writes, runs.
    const CATALOG_PIPELINE: usize = 1_024;
    const RUN_PIPELINE: usize = 250;

    /// Both sides against one server.
    pub struct AsyncWorkload {
        redis: Redis,
        conn: redis::aio::MultiplexedConnection,
        names: Vec<String>,
        run: RunContext,
        /// What the raw side sends, prepared beforehand: catalog entries and runs.
        entries: Vec<(String, String)>,
        runs: Vec<(String, String)>,
    }

    impl std::fmt::Debug for AsyncWorkload {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("AsyncWorkload")
                .field("redis", &self.redis)
                .field("items", &self.names.len())
                .finish_non_exhaustive()
        }
    }

    impl AsyncWorkload {
        /// The workload against `url`.
        ///
        /// # Panics
        ///
        /// When the server cannot be reached.
        #[allow(clippy::panic, clippy::unwrap_used)] // a bench may stop at a failure
        pub async fn new(url: &str) -> Self {
            let redis = RedisBuilder::new(url).build_async().await.unwrap_or_else(|err| panic!("{err}"));
            let conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
            let (names, run, keys, entries) = super::items();
            // A record as long as the SDK's: status, a 48-hex id, task, options, time.
            let runs = keys
                .iter()
                .zip(&names)
                .map(|(key, i)| {
                    let record = format!(
                        r#"{{"status":"pending","id":"run_{}0000000000000000","task":"child-task","options":{{"key":"item-{i}","scope":"global"}},"created_at":1796169275841}}"#,
                        &key.to_string()[..32]
                    );
                    (format!("idempotency:claim:{{{}}}", &key.to_string()[..32]), record)
                })
                .collect();
            AsyncWorkload { redis, conn, names, run, entries, runs }
        }

        #[allow(clippy::unwrap_used)]
        async fn flush(&mut self) {
            redis::cmd("FLUSHALL").query_async::<()>(&mut self.conn).await.unwrap();
        }

        /// The SDK's fan-out through its async API on an emptied server.
        ///
        /// # Panics
        ///
        /// When a call fails, or an item was not a new run.
        #[allow(clippy::panic)]
        pub async fn sdk(&mut self) -> Duration {
            self.flush().await;
            let catalog = CatalogBuilder::new()
                .redis_async(self.redis.clone())
                .build_redis()
                .unwrap_or_else(|err| panic!("{err}"));
            let engine = Engine::on_redis_async(&self.redis).await.unwrap_or_else(|err| panic!("{err}"));
            let started = Instant::now();
            let sdk = Sdk::new(Arc::clone(&catalog) as Arc<dyn Catalog>).with_run(self.run.clone());
            let mut batch = sdk.batch("child-task", ITEMS);
            for i in &self.names {
                batch.item(None, ItemOptions::new().key(sdk.create_key(["item", i.as_str()], Scope::Global)));
            }
            let batch = batch.build().unwrap_or_else(|err| panic!("{err}"));
            let handles = engine.trigger_owned_async(batch).await.unwrap_or_else(|err| panic!("{err}"));
            drop(sdk);
            catalog.flush_async().await.unwrap_or_else(|err| panic!("{err}"));
            let elapsed = started.elapsed();
            assert_eq!(handles.iter().filter(|h| !h.cached).count(), ITEMS);
            elapsed
        }

        /// The raw side on an emptied server.
        ///
        /// # Panics
        ///
        /// When a call fails, or a run existed already.
        #[allow(clippy::panic)]
        pub async fn raw(&mut self) -> Duration {
            self.flush().await;
            let started = Instant::now();
            for chunk in self.entries.chunks(CATALOG_PIPELINE) {
                let mut pipe = redis::pipe();
                for (key, value) in chunk {
                    pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(86_400_000u64).ignore();
                }
                pipe.query_async::<()>(&mut self.conn).await.unwrap_or_else(|err| panic!("{err}"));
            }
            let mut created = 0;
            for chunk in self.runs.chunks(RUN_PIPELINE) {
                let mut pipe = redis::pipe();
                for (key, record) in chunk {
                    pipe.cmd("SET").arg(key).arg(record).arg("NX").arg("GET").arg("PX").arg(2_592_000_000u64);
                }
                let held: Vec<Option<Vec<u8>>> =
                    pipe.query_async(&mut self.conn).await.unwrap_or_else(|err| panic!("{err}"));
                created += held.iter().filter(|h| h.is_none()).count();
            }
            let elapsed = started.elapsed();
            assert_eq!(created, ITEMS);
            elapsed
        }
    }
}
