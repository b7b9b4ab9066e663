use std::sync::Arc;

use idempotency_catalog::{Catalog, Reservation, Scope, default_catalog};

use crate::batch::{BatchBuilder, LossPolicy};
use crate::context::RunContext;
use crate::error::Error;
use crate::key::{IdempotencyKey, KeyParts};
use crate::key_input::{KeyInput, Keys};

/// The SDK as a task sees it: the catalog, the run it executes in (if any) and what a
/// batch does when items lose their key options.
///
/// Inside a run ([`with_run`](Self::with_run)) every key the SDK registers is held by
/// the run until it ends, as the reference SDK (4.5 and later) keeps a run's keys: a
/// task may create all its keys first and pass them on as bare digests later. Outside
/// a run, keys are registered as free entries, which a bounded catalog keeps only up
/// to its base capacity; batches still resolve digest strings as items are added, so
/// creating a key and adding it at once never loses it.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{RunContext, Scope, Sdk};
///
/// let sdk = Sdk::from_env()?.with_run(RunContext::new("run_abc123", 1));
/// let key = sdk.create_key(["item", "42"], Scope::Global)?;
/// assert_eq!(key.options().map(|o| o.key()), Some("item-42"));
/// // Registered: a bare digest string finds its options again.
/// let again = sdk.resolve(&key.to_string().into())?.unwrap();
/// assert_eq!(again, key);
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sdk {
    catalog: Arc<dyn Catalog>,
    run: Option<Arc<Run>>,
    loss_policy: LossPolicy,
}

/// A run in progress: its context, and the reservation that holds its keys until the
/// last `Sdk` in it is dropped.
#[derive(Debug)]
struct Run {
    context: RunContext,
    keys: Reservation<'static>,
}

impl Sdk {
    /// An SDK over `catalog`, outside any run, with [`LossPolicy::Warn`].
    pub fn new(catalog: Arc<dyn Catalog>) -> Self {
        Sdk { catalog, run: None, loss_policy: LossPolicy::default() }
    }

    /// An SDK over the process-global default catalog, which is built from the
    /// environment on first use.
    ///
    /// # Errors
    ///
    /// The catalog's configuration error, naming the variable and the bad value.
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self::new(default_catalog()?))
    }

    /// The same SDK inside `run`: keys are derived in its context, and every key this
    /// SDK (or a clone of it) registers is held by the run until it ends.
    ///
    /// The run ends when the returned `Sdk` and all its clones are dropped; the catalog
    /// then releases the run's keys (an expected release, never a warning). Keep one
    /// for as long as the task runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use idempotency_sdk::{Catalog, RunContext, Scope, Sdk};
    /// use idempotency_catalog::CatalogBuilder;
    ///
    /// let catalog: Arc<dyn Catalog> = CatalogBuilder::new().capacity(10).build()?;
    /// let task = Sdk::new(Arc::clone(&catalog)).with_run(RunContext::new("run_abc123", 1));
    /// let keys: Vec<_> = (0..100).map(|i| task.create_key(["item", &i.to_string()], Scope::Global)).collect::<Result<_, _>>()?;
    /// // All 100 kept, though the catalog's base is 10: the run holds them.
    /// assert!(keys.iter().all(|k| catalog.get(&k.digest()).is_some()));
    /// drop(task); // the run ends
    /// assert_eq!(catalog.len(), 10);
    /// assert_eq!((catalog.stats().released, catalog.stats().evicted), (90, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use = "the run ends when the returned Sdk is dropped"]
    pub fn with_run(mut self, run: RunContext) -> Self {
        let keys = Reservation::shared(Arc::clone(&self.catalog), 0);
        self.run = Some(Arc::new(Run { context: run, keys }));
        self
    }

    /// The same SDK with another [`LossPolicy`].
    #[must_use]
    pub fn with_loss_policy(mut self, policy: LossPolicy) -> Self {
        self.loss_policy = policy;
        self
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// The run, if inside one.
    pub fn run(&self) -> Option<&RunContext> {
        self.run.as_ref().map(|run| &run.context)
    }

    /// Where this SDK registers keys: the run's reservation, or the catalog.
    pub(crate) fn keys(&self) -> Keys<'_> {
        Keys::new(self.catalog.as_ref(), self.run.as_ref().map(|run| run.keys.id()))
    }

    /// The loss policy batches use.
    pub fn loss_policy(&self) -> LossPolicy {
        self.loss_policy
    }

    /// Creates the key for `parts` in `scope` in this SDK's run, and registers its
    /// options in the catalog (held by the run, inside one), for callers that pass the
    /// digest on alone.
    ///
    /// The result can be given to [`ItemOptions::key`](crate::ItemOptions::key) as it
    /// is: a key that could not be made then fails the batch's
    /// [`build`](crate::BatchBuilder::build), naming the item, so that a loop adding
    /// items needs no `?` per key.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKeyMaterial`] when the parts joined with `-` are empty (an empty
    /// key means no key, as `ItemOptions::key("")` does; the reference SDK would hash
    /// the empty string). Nothing is registered then. Material of any length is taken,
    /// as the reference SDK takes it: the digest travels as the idempotency key, the
    /// material whole as the options' key.
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_sdk::{Error, ItemOptions, Scope, Sdk};
    ///
    /// let sdk = Sdk::from_env()?;
    /// assert_eq!(sdk.create_key(["order", "7"], Scope::Global)?.options().map(|o| o.key()), Some("order-7"));
    /// assert!(matches!(sdk.create_key("", Scope::Global), Err(Error::InvalidKeyMaterial { .. })));
    /// let long = sdk.create_key("k".repeat(100_000), Scope::Global)?;
    /// assert_eq!((long.to_string().len(), long.options().map(|o| o.key().len())), (64, Some(100_000)));
    ///
    /// // Given to an item as it is: the batch names the item.
    /// let mut batch = sdk.batch("child-task", 1);
    /// batch.item(None, ItemOptions::new().key(sdk.create_key("", Scope::Global)));
    /// assert!(batch.build().unwrap_err().to_string().starts_with("item 0: invalid key material \"\""));
    /// # Ok::<(), idempotency_sdk::Error>(())
    /// ```
    pub fn create_key(&self, parts: impl KeyParts, scope: Scope) -> Result<IdempotencyKey, Error> {
        let key = IdempotencyKey::derive(parts, scope, self.run()).check_material()?;
        Ok(self.keys().register(key))
    }

    /// Resolves whatever was passed as a key, with the reference SDK's rules (see
    /// [`KeyInput`]). `Ok(None)` means no key (an empty string).
    ///
    /// # Errors
    ///
    /// [`Error::NotADigest`] for a 64-character string that is not lowercase hex.
    pub fn resolve(&self, input: &KeyInput) -> Result<Option<IdempotencyKey>, Error> {
        input.resolve(&self.keys(), self.run())
    }

    /// Starts a batch for `task` of about `expected_items` items, and reserves that
    /// room in the catalog at once: the report's `shortfall` says at once whether the
    /// catalog can hold them. Keys the batch itself makes (from raw strings, lists or
    /// the batch key) are held by the run, or outside a run by the batch until it is
    /// built.
    pub fn batch(&self, task: impl Into<String>, expected_items: usize) -> BatchBuilder {
        BatchBuilder::new(self, task.into(), expected_items)
    }
}
