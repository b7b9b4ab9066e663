//! The engine's async face (feature `tokio`): the engine's calls that may touch the
//! network, awaited instead of blocking a thread, and the store's async forms
//! ([`AsyncStore`]). The rules are the sync face's (`embedded.rs`, `trigger.rs`,
//! `remote.rs`): only the store's calls are awaited here, and in memory the async
//! forms do what the sync ones do.

use std::future::Future;
use std::pin::Pin;

use parking_lot::Mutex;
use tracing::Instrument as _;

use super::clock::{self, Millis};
use super::embedded::{Engine, KeyTarget, reset_keys};
use super::incoming::Incoming;
use super::key::KeyRef;
use super::log::Log;
use super::memory::MemoryStore;
use super::run::{RunRecord, RunStatus, Triggered};
use super::store::{Holder, Store};
use super::trigger::{Items, Trigger, WireTrigger};
use crate::batch::Batch;
use crate::error::Error;
use crate::run_id::RunId;
use crate::wire::WireItem;

/// A future a store returns: boxed, since the engine holds the store as a trait
/// object, and `Send`, so that the engine's own futures are.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store's calls from async code. By default each is the sync call, for stores that
/// never wait (in memory, the tests' fake); Redis awaits its connection.
pub(crate) trait AsyncStore: Store {
    /// As [`Store::trigger`], from async code.
    fn trigger_async<'a>(
        &'a self,
        log: &'a Mutex<Log>,
        trigger: &'a mut Trigger<'_>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let done = self.trigger(log, trigger);
        Box::pin(async move { done })
    }

    /// As [`Store::peek`], from async code.
    fn peek_async<'a>(
        &'a self,
        log: &'a Mutex<Log>,
        task: &'a str,
        keys: &'a [KeyRef<'a>],
        now: Millis,
    ) -> BoxFuture<'a, Result<Vec<Holder>, Error>> {
        let held = self.peek(log, task, keys, now);
        Box::pin(async move { held })
    }

    /// As [`Store::read`], from async code.
    fn read_async<'a>(
        &'a self,
        log: &'a Mutex<Log>,
        ids: &'a [RunId],
    ) -> BoxFuture<'a, Result<Vec<Option<RunRecord>>, Error>> {
        let read = self.read(log, ids);
        Box::pin(async move { read })
    }

    /// As [`Store::set_status`], from async code.
    fn set_status_async<'a>(
        &'a self,
        log: &'a Mutex<Log>,
        id: RunId,
        status: RunStatus,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        let set = self.set_status(log, id, status);
        Box::pin(async move { set })
    }

    /// As [`Store::reset`], from async code.
    fn reset_async<'a>(
        &'a self,
        log: &'a Mutex<Log>,
        task: &'a str,
        key: KeyRef<'a>,
        held_by: Option<RunId>,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        let reset = self.reset(log, task, key, held_by);
        Box::pin(async move { reset })
    }
}

impl AsyncStore for MemoryStore {}

/// The async forms (feature `tokio`): every call that may touch the network, awaited
/// on the redis crate's multiplexed connection instead of blocking a thread. In memory
/// they do what the sync calls do.
impl Engine {
    /// As [`on_redis`](Self::on_redis), from async code.
    ///
    /// # Errors
    ///
    /// As [`on_redis`](Self::on_redis).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_sdk::catalog::{CatalogBuilder, RedisBuilder};
    /// use idempotency_sdk::{Engine, ItemOptions, Scope, Sdk};
    ///
    /// # async fn handler() -> Result<(), idempotency_sdk::Error> {
    /// let redis = RedisBuilder::from_env().build_async().await?;
    /// let catalog = CatalogBuilder::from_env().redis_async(redis.clone()).build()?;
    /// let engine = Engine::on_redis_async(&redis).await?;
    /// let sdk = Sdk::new(catalog);
    /// let mut batch = sdk.batch("child-task", 1);
    /// batch.item(None, ItemOptions::new().key(sdk.create_key("order-7", Scope::Global)));
    /// let handles = engine.trigger_owned_async(batch.build()?).await?;
    /// let run = engine.run_async(handles[0].id).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn on_redis_async(redis: &idempotency_catalog::Redis) -> Result<Self, Error> {
        Ok(Self::on(Box::new(super::redis::RedisStore::connect_async(redis).await?), clock::system()))
    }

    /// As [`trigger`](Self::trigger), from async code.
    ///
    /// # Errors
    ///
    /// As [`trigger`](Self::trigger).
    pub async fn trigger_async(&self, batch: &Batch) -> Result<Vec<Triggered>, Error> {
        let items = Items::Streamed(Box::new(batch.entries().map(Incoming::from_entry)));
        self.run_items_async(batch.task(), batch.len(), items).await
    }

    /// As [`trigger_owned`](Self::trigger_owned), from async code.
    ///
    /// # Errors
    ///
    /// As [`trigger`](Self::trigger).
    pub async fn trigger_owned_async(&self, batch: Batch) -> Result<Vec<Triggered>, Error> {
        let (task, len) = (batch.task().to_owned(), batch.len());
        let items = Items::Streamed(Box::new(batch.into_entries().map(Incoming::from_owned)));
        self.run_items_async(&task, len, items).await
    }

    /// As [`trigger_items`](Self::trigger_items), from async code.
    ///
    /// # Errors
    ///
    /// As [`trigger_items`](Self::trigger_items).
    pub async fn trigger_items_async(&self, items: &[WireItem]) -> Result<Vec<Triggered>, Error> {
        let mut wire = WireTrigger::new(items, self.payload_policy)?;
        while let Some((task, keys)) = wire.to_check() {
            wire.checked(self.store.peek_async(&self.log, task, &keys, self.now()).await);
        }
        while let Some((task, group)) = wire.next_group() {
            wire.answered(self.run_items_async(task, group.len(), Items::Held(group.into_iter())).await);
        }
        self.counted(wire.finish())
    }

    async fn run_items_async<'a>(&self, task: &'a str, len: usize, items: Items<'a>) -> Result<Vec<Triggered>, Error> {
        let span = self.trigger_span(task, len);
        let mut trigger = self.start(task, len, items);
        let done = self.store.trigger_async(&self.log, &mut trigger).instrument(span.clone()).await;
        span.in_scope(|| self.finish(trigger, done))
    }

    /// As [`run`](Self::run), from async code.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn run_async(&self, id: RunId) -> Result<Option<RunRecord>, Error> {
        Ok(self.read_runs_async(&[id]).await?.pop().flatten())
    }

    /// As [`read_runs`](Self::read_runs), from async code.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn read_runs_async(&self, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, Error> {
        self.store.read_async(&self.log, ids).await
    }

    /// As [`set_status`](Self::set_status), from async code.
    ///
    /// # Errors
    ///
    /// As [`set_status`](Self::set_status).
    pub async fn set_status_async(&self, id: RunId, status: RunStatus) -> Result<(), Error> {
        let known = self.store.set_status_async(&self.log, id, status).await?;
        self.status_set(id, status, known)
    }

    /// As [`reset_key`](Self::reset_key), from async code.
    ///
    /// # Errors
    ///
    /// As [`reset_key`](Self::reset_key).
    pub async fn reset_key_async(&self, task: &str, target: KeyTarget<'_>) -> Result<bool, Error> {
        self.reset_async(task, &target, None).await
    }

    /// As [`reset_key_held_by`](Self::reset_key_held_by), from async code.
    ///
    /// # Errors
    ///
    /// As [`reset_key`](Self::reset_key).
    pub async fn reset_key_held_by_async(&self, task: &str, target: KeyTarget<'_>, run: RunId) -> Result<bool, Error> {
        self.reset_async(task, &target, Some(run)).await
    }

    async fn reset_async(&self, task: &str, target: &KeyTarget<'_>, held_by: Option<RunId>) -> Result<bool, Error> {
        for key in reset_keys(target)? {
            if self.store.reset_async(&self.log, task, key, held_by).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
