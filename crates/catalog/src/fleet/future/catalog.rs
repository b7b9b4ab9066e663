//! The async forms of [`RedisCatalog`]'s calls and its background sender: the same
//! [`Reads`](crate::fleet::catalog::Reads) and write pipelines as the sync ones
//! (`catalog.rs`), sent from async code.

use std::sync::Arc;

use super::sender::Sender;
use crate::catalog::Catalog;
use crate::digest::Digest;
use crate::error::Error;
use crate::fleet::catalog::{READ, Reads, RedisCatalog, Shared, WRITE};
use crate::fleet::handle::Redis;

impl RedisCatalog {
    /// `local` in front of `redis` in async mode (feature `tokio`): see
    /// [`CatalogBuilder::redis_async`](crate::CatalogBuilder::redis_async). A task on
    /// the current tokio runtime sends the writes.
    pub(crate) fn new_async(local: Arc<dyn Catalog>, redis: &Redis) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "CatalogBuilder::redis_async",
                redis.url(),
                "build it inside a tokio runtime: it spawns its sender there",
            )
        })?;
        let shared = Arc::new(Shared::new(redis, Some(Sender::default())));
        runtime.spawn(sending(Arc::clone(&shared)));
        Ok(RedisCatalog { local, shared })
    }

    /// As [`prefetch`](Self::prefetch), from async code (feature `tokio`), in pipelines
    /// of [`ASYNC_READ_PIPELINE`](Self::ASYNC_READ_PIPELINE) with a yield between two.
    ///
    /// # Errors
    ///
    /// As [`prefetch`](Self::prefetch).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_catalog::{CatalogBuilder, Digest, RedisBuilder};
    ///
    /// # async fn service() -> Result<(), idempotency_catalog::Error> {
    /// let redis = RedisBuilder::new("redis://127.0.0.1:6379").build_async().await?;
    /// let catalog = CatalogBuilder::new().redis_async(redis).build_redis()?;
    /// let digests = [Digest::from_bytes([7; 32])]; // minted by another worker
    /// let found = catalog.prefetch_async(&digests).await?;
    /// assert!(found <= 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn prefetch_async(&self, digests: &[Digest]) -> Result<usize, Error> {
        let mut reads = Reads::new(self.missing(digests), Self::ASYNC_READ_PIPELINE);
        while let Some((read, cmds)) = reads.next(&self.shared) {
            let answers = self.shared.conn.send_async(READ, cmds).await?;
            self.keep(&mut reads, read, answers);
            tokio::task::yield_now().await;
        }
        Ok(reads.found)
    }

    /// Sends every queued registration, from async code (feature `tokio`): what
    /// [`flush`](Catalog::flush) does in sync mode.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] naming the URL when the write failed; the registrations stay
    /// queued for the next send.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use idempotency_catalog::{Catalog, CatalogBuilder, Digest, KeyOptions, RedisBuilder, Scope};
    ///
    /// # async fn service() -> Result<(), idempotency_catalog::Error> {
    /// let redis = RedisBuilder::new("redis://127.0.0.1:6379").build_async().await?;
    /// let catalog = CatalogBuilder::new().redis_async(redis).build_redis()?;
    /// catalog.register(Digest::from_bytes([7; 32]), KeyOptions::new("order-7", Scope::Global));
    /// catalog.flush_async().await?; // sent: every worker on this Redis now resolves it
    /// # Ok(())
    /// # }
    /// ```
    pub async fn flush_async(&self) -> Result<(), Error> {
        let local = self.local.flush();
        send_async(&self.shared).await.and(local)
    }
}

/// Sends every queued registration,
/// [`ASYNC_WRITE_PIPELINE`](RedisCatalog::ASYNC_WRITE_PIPELINE) at a time with a yield
/// between two, so that building a pipeline's commands never holds the runtime's
/// thread long; as the sync send otherwise.
async fn send_async(shared: &Shared) -> Result<(), Error> {
    let mut left = shared.queued();
    while let Some((batch, cmds)) = shared.next_writes(&mut left, RedisCatalog::ASYNC_WRITE_PIPELINE) {
        shared.sent(batch, shared.conn.send_async(WRITE, cmds).await)?;
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// The background sender: sends when rung, and every 100 ms, until the catalog is
/// dropped; then once more.
async fn sending(shared: Arc<Shared>) {
    let Some(sender) = &shared.sender else { return };
    loop {
        sender.rung().await;
        // Counted and warned inside; what failed waits for the next send.
        let _ = send_async(&shared).await;
        if sender.closed() {
            return;
        }
    }
}
