//! What the SDK takes from the catalog crate beyond its main API: byte counts and their
//! text, the environment's byte sizes, and a Redis error's kind. One place, so that
//! where the catalog keeps them can change in one line.

pub(crate) use idempotency_catalog::budget::{MIN_MAX_BYTES, chunk, heap_bytes, parse_bytes, show_bytes};
#[cfg(feature = "redis")]
pub(crate) use idempotency_catalog::fleet::server_error_of;
