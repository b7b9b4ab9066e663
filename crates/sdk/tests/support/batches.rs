//! Batches of numbered keys: `item-<i>`, scope global, one item each.

use idempotency_sdk::catalog::UnboundedCatalog;
use idempotency_sdk::{Batch, ItemOptions, Scope, Sdk, Ttl};
use serde_json::Value;

/// Keys `item-<i>` for `i` in `keys`, of task `task`, held for `ttl` (the server's
/// default when `None`), item `i` with `payload(i)`.
pub(crate) fn keyed<K>(task: &str, keys: K, ttl: Option<&str>, payload: impl Fn(usize) -> Option<Value>) -> Batch
where
    K: IntoIterator<Item = usize>,
    K::IntoIter: ExactSizeIterator,
{
    let keys = keys.into_iter();
    let sdk = Sdk::new(std::sync::Arc::new(UnboundedCatalog::new()));
    let mut batch = sdk.batch(task, keys.len());
    for i in keys {
        let mut options = ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global));
        if let Some(ttl) = ttl {
            options = options.ttl(ttl.parse::<Ttl>().unwrap());
        }
        batch.item(payload(i), options);
    }
    batch.build().unwrap()
}

/// `items` keys `item-<i>` of task `child-task`, without payloads, held for the
/// server's default.
pub(crate) fn batch(items: usize) -> Batch {
    keyed("child-task", 0..items, None, |_| None)
}
