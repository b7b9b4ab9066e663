//! What the SDK takes from the catalog crate beyond its public API: byte counts and
//! their text, the environment's byte sizes, and a Redis error's kind. One place, so
//! that where the catalog keeps them can change in one line.

#[cfg(feature = "redis")]
pub(crate) use idempotency_catalog::__private::server_error_of;
pub(crate) use idempotency_catalog::__private::{MIN_MAX_BYTES, chunk, heap_bytes, parse_bytes, show_bytes};
