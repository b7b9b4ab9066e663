//! The names of every Redis key this crate and the SDK write, in one place: what the
//! catalog, the SDK's engine and the `idempotency` command build and scan.
//!
//! Every key starts with the handle's [prefix](crate::fleet::Redis::prefix)
//! (`idempotency:` by default), then its kind:
//!
//! | kind | key | value | written by |
//! |---|---|---|---|
//! | catalog entry | `<prefix>key:<digest>` ([`entry_key`]) | `<check>:<scope>:<key>` | [`RedisCatalog`](crate::fleet::RedisCatalog) |
//! | claim | `<prefix>claim:{<tag>}` ([`claim_key`]) | the record of the run that holds the key | the SDK's engine |
//! | run record | `<prefix>run:{<tag>}:<nonce>` ([`run_key`]) | the record of a run that holds no key | the SDK's engine |
//! | barrier | `<prefix>sync`, or `<prefix>sync:{<n>}` on a Redis Cluster | `1`, for 60 s | a batch that writes, before its `WAIT` |
//!
//! `<tag>` is 32 hex digits naming a (task, key): the claim and the records of its runs
//! share it as their hash tag, so that on a Redis Cluster they share a slot. A barrier
//! key exists only to land a write in the slot a `WAIT` covers; `<n>` is the smallest
//! number that hashes to that slot.
//!
//! # Examples
//!
//! ```
//! use idempotency_catalog::Digest;
//! use idempotency_catalog::fleet::layout;
//!
//! let digest = Digest::from_bytes([7; 32]);
//! assert_eq!(layout::entry_key("app:", &digest), format!("app:key:{digest}"));
//! assert_eq!(layout::claim_key("app:", 0xab), "app:claim:{000000000000000000000000000000ab}");
//! // A key's kind, from what follows the prefix: what `SCAN MATCH app:claim:*` counts.
//! assert!("claim:{000000000000000000000000000000ab}".starts_with(layout::CLAIM));
//! ```

use crate::digest::Digest;

/// What follows the prefix in the name of a catalog entry.
pub const ENTRY: &str = "key:";
/// What follows the prefix in the name of a claim.
pub const CLAIM: &str = "claim:";
/// What follows the prefix in the name of a run record kept apart from its claim.
pub const RUN: &str = "run:";
/// What follows the prefix in the name of a barrier key.
pub const BARRIER: &str = "sync";

/// The key of the catalog entry of `digest`: `<prefix>key:<digest>`.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::Digest;
/// use idempotency_catalog::fleet::layout::entry_key;
///
/// let digest = Digest::from_bytes([0; 32]);
/// assert_eq!(entry_key("idempotency:", &digest), format!("idempotency:key:{}", "0".repeat(64)));
/// ```
pub fn entry_key(prefix: &str, digest: &Digest) -> String {
    format!("{prefix}{ENTRY}{digest}")
}

/// The claim of the (task, key) whose tag is `tag`: `<prefix>claim:{<tag>}`, the tag in
/// 32 hex digits as the key's hash tag, so that it shares a slot with its runs' records
/// (the prefix has no braces: [`RedisBuilder`](crate::fleet::RedisBuilder) refuses them).
///
/// # Examples
///
/// ```
/// use idempotency_catalog::fleet::layout::claim_key;
///
/// assert_eq!(claim_key("p:", 1), "p:claim:{00000000000000000000000000000001}");
/// ```
pub fn claim_key(prefix: &str, tag: u128) -> String {
    format!("{prefix}{CLAIM}{{{tag:032x}}}")
}

/// Where the record of run (`tag`, `nonce`) lives once its run holds no key:
/// `<prefix>run:{<tag>}:<nonce>`, the nonce in 16 hex digits.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::fleet::layout::{claim_key, run_key};
///
/// let run = run_key("p:", 1, 42);
/// assert_eq!(run, "p:run:{00000000000000000000000000000001}:000000000000002a");
/// // The same hash tag as the claim: one slot for both.
/// assert!(claim_key("p:", 1).ends_with(&run[6..40]));
/// ```
pub fn run_key(prefix: &str, tag: u128, nonce: u64) -> String {
    format!("{prefix}{RUN}{{{tag:032x}}}:{nonce:016x}")
}

/// The barrier key of one server (`None`), or of the cluster slot whose smallest
/// number is `n`: `<prefix>sync`, `<prefix>sync:{<n>}`.
pub(super) fn barrier_key(prefix: &str, n: Option<u32>) -> String {
    match n {
        Some(n) => format!("{prefix}{BARRIER}:{{{n}}}"),
        None => format!("{prefix}{BARRIER}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_starts_with_its_kind_prefix() {
        let digest = Digest::from_bytes([1; 32]);
        for (key, kind) in [
            (entry_key("p:", &digest), ENTRY),
            (claim_key("p:", 7), CLAIM),
            (run_key("p:", 7, 9), RUN),
            (barrier_key("p:", Some(3)), BARRIER),
            (barrier_key("p:", None), BARRIER),
        ] {
            assert!(key.strip_prefix("p:").is_some_and(|rest| rest.starts_with(kind)), "{key}");
        }
        assert_eq!(barrier_key("p:", Some(3)), "p:sync:{3}");
        assert_eq!(barrier_key("p:", None), "p:sync");
    }
}
