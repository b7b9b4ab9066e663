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
#[cfg(feature = "metrics")]
const ENGINE_EVICTIONS: &str = "idempotency_sdk_engine_evictions_total";
#[cfg(feature = "metrics")]
const ENGINE_REFUSED: &str = "idempotency_sdk_engine_refused_items_total";
#[cfg(feature = "metrics")]
const ENGINE_BYTES: &str = "idempotency_sdk_engine_bytes";
#[cfg(feature = "metrics")]
const ENGINE_MAX_BYTES: &str = "idempotency_sdk_engine_max_bytes";

/// The in-memory engine's budget made it forget `keys` keys before their TTL and drop
/// `runs` run records.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn engine_evicted(keys: u64, runs: u64) {
    #[cfg(feature = "metrics")]
    {
        describe();
        metrics::counter!(ENGINE_EVICTIONS, "entry" => "key").increment(keys);
        metrics::counter!(ENGINE_EVICTIONS, "entry" => "run").increment(runs);
    }
}

/// The in-memory engine refused a trigger of `items` items at its budget.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn engine_refused(items: usize) {
    #[cfg(feature = "metrics")]
    {
        describe();
        metrics::counter!(ENGINE_REFUSED).increment(items as u64);
    }
}

/// What the in-memory engine holds, and its budget, after a trigger.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn engine_bytes(bytes: usize, max_bytes: usize) {
    #[cfg(feature = "metrics")]
    {
        describe();
        metrics::gauge!(ENGINE_BYTES).set(bytes as f64);
        metrics::gauge!(ENGINE_MAX_BYTES).set(max_bytes as f64);
    }
}

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

/// The engine answered `cached` items with a run that already existed.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn answered(cached: usize) {
    #[cfg(feature = "metrics")]
    {
        describe();
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
            ENGINE_EVICTIONS,
            Unit::Count,
            "keys (entry=key: forgotten before their ttl, a repeat may run twice) and run records (entry=run) the in-memory engine dropped at its byte budget"
        );
        metrics::describe_counter!(ENGINE_REFUSED, Unit::Count, "items of triggers the in-memory engine refused at its byte budget");
        metrics::describe_gauge!(ENGINE_BYTES, Unit::Bytes, "what the in-memory engine's keys and run records take, as it counts them");
        metrics::describe_gauge!(ENGINE_MAX_BYTES, Unit::Bytes, "the in-memory engine's byte budget");
        metrics::describe_counter!(
            PAYLOAD_MISMATCHES,
            Unit::Count,
            "items whose idempotency key was held by a run made with another payload, or repeated in their trigger with another one"
        );
    });
}
