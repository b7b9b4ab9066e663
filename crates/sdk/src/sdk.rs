use std::sync::Arc;

use idempotency_catalog::{Catalog, Scope, default_catalog};

use crate::batch::{BatchBuilder, LossPolicy};
use crate::context::RunContext;
use crate::error::Error;
use crate::key::{IdempotencyKey, KeyParts};
use crate::key_input::{KeyInput, register};

/// The SDK as a task sees it: the catalog, the run it executes in (if any) and what a
/// batch does when items lose their key options.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{RunContext, Scope, Sdk};
///
/// let sdk = Sdk::from_env()?.with_run(RunContext::new("run_abc123", 1));
/// let key = sdk.create_key(["item", "42"], Scope::Global);
/// assert_eq!(key.options().map(|o| o.key()), Some("item-42"));
/// // Registered: a bare digest string finds its options again.
/// let again = sdk.resolve(&key.to_string().into())?.unwrap();
/// assert_eq!(again, key);
/// # Ok::<(), idempotency_sdk::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sdk {
    catalog: Arc<dyn Catalog>,
    run: Option<RunContext>,
    loss_policy: LossPolicy,
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

    /// The same SDK inside `run`.
    pub fn with_run(mut self, run: RunContext) -> Self {
        self.run = Some(run);
        self
    }

    /// The same SDK with another [`LossPolicy`].
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
        self.run.as_ref()
    }

    /// The loss policy batches use.
    pub fn loss_policy(&self) -> LossPolicy {
        self.loss_policy
    }

    /// Creates the key for `parts` in `scope` in this SDK's run, and registers its
    /// options in the catalog, for callers that pass the digest on alone.
    pub fn create_key(&self, parts: impl KeyParts, scope: Scope) -> IdempotencyKey {
        register(self.catalog.as_ref(), IdempotencyKey::derive(parts, scope, self.run.as_ref()))
    }

    /// Resolves whatever was passed as a key, with the reference SDK's rules (see
    /// [`KeyInput`]). `Ok(None)` means no key (an empty string).
    ///
    /// # Errors
    ///
    /// [`Error::NotADigest`] for a 64-character string that is not lowercase hex.
    pub fn resolve(&self, input: &KeyInput) -> Result<Option<IdempotencyKey>, Error> {
        input.resolve(self.catalog.as_ref(), self.run.as_ref())
    }

    /// Starts a batch for `task` of about `expected_items` items, and reserves that
    /// room in the catalog at once: keys created from now until the batch is built
    /// keep their options even when they are passed on as bare digests.
    pub fn batch(&self, task: impl Into<String>, expected_items: usize) -> BatchBuilder<'_> {
        BatchBuilder::new(self, task.into(), expected_items)
    }
}
