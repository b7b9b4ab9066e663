//! The SDK's counters on the `metrics` facade (feature `metrics`); without the feature
//! these functions are empty. No labels: a task name is the caller's string, and a
//! label made from it would have as many values as there are tasks.

#[cfg(feature = "metrics")]
const BATCH_ITEMS: &str = "idempotency_sdk_batch_items_total";
#[cfg(feature = "metrics")]
const ITEMS_WITHOUT_OPTIONS: &str = "idempotency_sdk_batch_items_without_options_total";
#[cfg(feature = "metrics")]
const CACHED_ANSWERS: &str = "idempotency_sdk_cached_answers_total";
#[cfg(feature = "metrics")]
const PAYLOAD_MISMATCHES: &str = "idempotency_sdk_payload_mismatches_total";

/// A batch was built with `items` items, `without_options` of them keyed but without
/// their key and scope.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn batch_built(items: usize, without_options: usize) {
    #[cfg(feature = "metrics")]
    {
        describe();
        metrics::counter!(BATCH_ITEMS).increment(items as u64);
        metrics::counter!(ITEMS_WITHOUT_OPTIONS).increment(without_options as u64);
    }
}

/// The engine answered: count the handles that name a run that already existed.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn answered(handles: &[crate::engine::RunHandle]) {
    #[cfg(feature = "metrics")]
    {
        describe();
        let cached = handles.iter().filter(|handle| handle.cached).count();
        metrics::counter!(CACHED_ANSWERS).increment(cached as u64);
    }
}

/// A trigger found `n` items whose key was held, or repeated, with another payload.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn payload_mismatches(n: usize) {
    #[cfg(feature = "metrics")]
    {
        describe();
        metrics::counter!(PAYLOAD_MISMATCHES).increment(n as u64);
    }
}

#[cfg(feature = "metrics")]
fn describe() {
    use metrics::Unit;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(BATCH_ITEMS, Unit::Count, "items in built batches");
        metrics::describe_counter!(
            ITEMS_WITHOUT_OPTIONS,
            Unit::Count,
            "keyed batch items whose key and scope were lost (a bare digest the catalog no longer knew)"
        );
        metrics::describe_counter!(CACHED_ANSWERS, Unit::Count, "items the engine answered with an existing run");
        metrics::describe_counter!(
            PAYLOAD_MISMATCHES,
            Unit::Count,
            "items whose idempotency key was held by a run made with another payload, or repeated in their trigger with another one"
        );
    });
}
