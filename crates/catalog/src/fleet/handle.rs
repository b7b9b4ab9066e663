//! [`Redis`]: the handle every catalog and engine on one deployment shares, with its fault
//! counter, listener and warnings.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::deployment::Deployment;
use super::durability::Durability;
use super::fault::describe;
use super::future::AsyncLinks;
use super::pool::{self, Pool};
use super::settings::Settings;
use crate::error::Error;
use crate::events::{self, EvictionLog, ListenerSlot};
use crate::telemetry::{Fault, FaultKind, Listener};

/// A handle on one Redis server or (feature `cluster`) one Redis Cluster, shared by the
/// catalogs and engines built on it: its URL (shown with any password redacted), key prefix and timeouts, and one fault
/// counter, listener and rate-limited warning for all of them. Cheap to clone.
///
/// # Examples
///
/// ```no_run
/// use idempotency_catalog::{Catalog, CatalogBuilder, Redis};
///
/// // IDEMPOTENCY_REDIS_URL, _PREFIX, _CATALOG_TTL, _RUN_TTL; `None` when no URL is set.
/// if let Some(redis) = Redis::from_env()? {
///     let catalog = CatalogBuilder::from_env().redis(redis.clone()).build()?;
///     assert_eq!(catalog.stats().faults, 0);
/// }
/// # Ok::<(), idempotency_catalog::Error>(())
/// ```
#[derive(Clone)]
pub struct Redis {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    settings: Settings,
    deployment: Deployment,
    pool: Pool,
    /// The async connections (feature `tokio`; nothing without it), which only
    /// `future/` reads.
    pub(super) aio: AsyncLinks,
    faults: AtomicU64,
    /// When failures are worth a line, and the latest, for the summary at drop.
    log: Mutex<(EvictionLog, Option<Fault>)>,
    listener: ListenerSlot,
}

impl Redis {
    /// After a failed connect to one server, how long calls on the handle fail at once
    /// (`not reconnected yet: …`) instead of each waiting out the connect timeout: a
    /// server that is down must not cost every registration a connect timeout.
    pub const RECONNECT_PAUSE: Duration = pool::RECONNECT_AFTER;

    pub(super) fn new(
        settings: Settings,
        deployment: Deployment,
        pool_size: usize,
        listener: Option<Arc<dyn Listener>>,
    ) -> Self {
        let shared = Shared {
            settings,
            deployment,
            pool: Pool::new(pool_size),
            aio: AsyncLinks::default(),
            faults: AtomicU64::new(0),
            log: Mutex::new((EvictionLog::new(), None)),
            listener: ListenerSlot::new(listener),
        };
        Redis { shared: Arc::new(shared) }
    }

    /// The server's URL as every message shows it: any password replaced by `***`,
    /// query parameters other than `db`, `protocol` and `user` dropped.
    pub fn url(&self) -> &str {
        &self.shared.settings.url
    }

    /// The prefix of every key written.
    pub fn prefix(&self) -> &str {
        &self.shared.settings.prefix
    }

    /// How long a catalog entry lives in Redis.
    pub fn catalog_ttl(&self) -> Duration {
        self.shared.settings.catalog_ttl
    }

    /// How long the SDK engine keeps a run record on Redis when its key's TTL is
    /// shorter; a record always lives at least as long as the claim on its key. See
    /// [`RedisBuilder::run_ttl`](super::RedisBuilder::run_ttl).
    pub fn run_ttl(&self) -> Duration {
        self.shared.settings.run_ttl
    }

    /// How many copies of a write the handle waits for: see [`Durability`].
    pub fn durability(&self) -> Durability {
        self.shared.settings.durability
    }

    /// How long a call waits for a failover before it fails: see
    /// [`RedisBuilder::failover_window`](super::RedisBuilder::failover_window).
    pub fn failover_window(&self) -> Duration {
        self.shared.deployment.window()
    }

    /// The masters commands go to now, each with the number of replicas it has (as last
    /// seen), as `host:port` (a cluster) or the URL (one server). For startup logs and
    /// status pages.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_catalog::RedisBuilder;
    ///
    /// let redis = RedisBuilder::new("redis://127.0.0.1:6379").build()?;
    /// for (master, replicas) in redis.masters() {
    ///     println!("{master}: {replicas} replicas");
    /// }
    /// # Ok::<(), idempotency_catalog::Error>(())
    /// ```
    pub fn masters(&self) -> Vec<(String, usize)> {
        let topology = self.shared.deployment.topology();
        topology.masters().iter().map(|m| (m.addr.to_string(), m.replicas)).collect()
    }

    /// Failed operations so far, of everything built on this handle.
    pub fn faults(&self) -> u64 {
        self.shared.faults.load(Ordering::Relaxed)
    }

    /// Calls of the handle's listener that panicked (it is disabled after the first).
    pub(super) fn listener_panics(&self) -> u64 {
        self.shared.listener.panics()
    }

    pub(super) fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    pub(super) fn deployment(&self) -> &Deployment {
        &self.shared.deployment
    }

    pub(super) fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    /// Puts the handle on `deployment`: while [`build`](super::RedisBuilder::build) still
    /// holds the only reference, once it knows where the commands go.
    pub(super) fn set_deployment(&mut self, deployment: Deployment) -> Result<(), Error> {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => {
                shared.deployment = deployment;
                Ok(())
            }
            None => Err(Error::Redis {
                url: self.url().to_owned(),
                operation: "connect",
                message: "the handle was shared before its build ended".to_owned(),
            }),
        }
    }

    /// Whether the handle is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.shared.deployment.is_cluster()
    }

    /// `text` without the URL's password in any form.
    pub(super) fn scrub(&self, text: &str) -> String {
        self.shared.settings.secrets.scrub(text)
    }

    /// Counts, reports and warns about `err`, which `operation` met with `timeout` in
    /// force; the error to return.
    pub(super) fn failed(&self, operation: &'static str, err: &::redis::RedisError, timeout: Duration) -> Error {
        let (kind, message) = describe(err, timeout);
        self.fault(operation, kind, message)
    }

    /// Counts, reports and warns about a failed operation; the error to return.
    pub(super) fn fault(&self, operation: &'static str, kind: FaultKind, message: String) -> Error {
        let shared = &self.shared;
        // Belt and braces: the redis crate's messages might echo what it was given.
        let message = shared.settings.secrets.scrub(&message);
        let fault = Fault { store: shared.settings.url.clone(), operation, kind, message };
        shared.faults.fetch_add(1, Ordering::Relaxed);
        crate::meter::fault(kind);
        shared.listener.notify_fault(&fault);
        let due = {
            let mut log = shared.log.lock();
            log.1 = Some(fault.clone());
            log.0.record(1)
        };
        if let Some(summary) = due {
            events::warn_fault(summary, &fault);
        }
        Error::Redis { url: fault.store, operation, message: fault.message }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let (log, last) = self.log.get_mut();
        if let (Some(summary), Some(last)) = (log.flush(), last.as_ref()) {
            events::warn_fault(summary, last);
        }
    }
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.shared.settings.url)
            .field("prefix", &self.shared.settings.prefix)
            .field("catalog_ttl", &self.shared.settings.catalog_ttl)
            .field("run_ttl", &self.shared.settings.run_ttl)
            .field("durability", &self.shared.settings.durability)
            .field("faults", &self.faults())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn faults_are_counted_on_the_metrics_facade_by_kind() {
        use std::collections::HashMap;

        use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

        /// Keeps every counter, by name and labels.
        #[derive(Default)]
        struct Counters(parking_lot::Mutex<HashMap<String, Arc<AtomicU64>>>);

        impl Recorder for Counters {
            fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
                let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
                let name = format!("{}{{{}}}", key.name(), labels.join(","));
                Counter::from_arc(Arc::clone(self.0.lock().entry(name).or_default()))
            }
            fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
                Gauge::noop()
            }
            fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
                Histogram::noop()
            }
        }

        let counters = Counters::default();
        // Nothing listens on port 1: two refused connects.
        metrics::with_local_recorder(&counters, || {
            for _ in 0..2 {
                super::super::RedisBuilder::new("redis://127.0.0.1:1").build().unwrap_err();
            }
        });
        let seen = counters.0.lock();
        let unreachable =
            seen.get("idempotency_catalog_faults_total{fault=unreachable}").map(|c| c.load(Ordering::Relaxed));
        assert_eq!(unreachable, Some(2), "{:?}", seen.keys().collect::<Vec<_>>());
    }
}
