//! The embedded engine: what triggering a batch does, with the reference server's
//! rules, in this process or on a store shared by a fleet.
//!
//! [`LocalEngine`] holds the rules (`embedded.rs`, its async face in `future.rs`, one
//! trigger's in `trigger.rs`) over the [`Store`](store::Store) seam: the in-memory
//! store (`memory.rs` over `dedup.rs`), Redis (`redis.rs`, sending through
//! `remote.rs`), or in tests a fake store with faults injected (`fake.rs`).

mod budget;
mod clock;
mod dedup;
mod embedded;
#[cfg(test)]
mod fake;
#[cfg(feature = "tokio")]
mod future;
mod incoming;
mod key;
mod log;
mod memory;
mod mismatch;
#[cfg(feature = "redis")]
mod redis;
mod remote;
mod run;
mod store;
#[cfg(test)]
mod tests;
mod trigger;

pub use budget::{BudgetPolicy, DEFAULT_ENGINE_MAX_BYTES, ENV_ENGINE_MAX_BYTES, EngineStats};
pub use embedded::{LocalEngine, ResetTarget};

/// Items a trigger sends to Redis in one pipeline from sync code (feature `redis`): a
/// pipeline must come back whole within the command timeout, so a batch of any size
/// goes as many pipelines of this size, never one that grows with it.
#[cfg(feature = "redis")]
pub const REDIS_TRIGGER_PIPELINE: usize = redis::CHUNK;
/// Runs (two `GET`s each) or keys (one `GET` each, the payload check) read in one
/// pipeline from sync code (feature `redis`).
#[cfg(feature = "redis")]
pub const REDIS_READ_PIPELINE: usize = redis::READ_CHUNK;
/// Items sent, runs read or keys checked in one pipeline from async code (feature
/// `tokio`), with a yield between two pipelines.
#[cfg(feature = "tokio")]
pub const REDIS_ASYNC_PIPELINE: usize = redis::ASYNC_CHUNK;
pub use run::{RunHandle, RunRecord, RunStatus, RunView};
