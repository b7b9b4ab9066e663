//! The embedded engine: what triggering a batch does, with the reference server's
//! rules, in this process or on a store shared by a fleet.

mod budget;
mod incoming;
mod key;
mod local_engine;
mod log;
mod memory;
mod mismatch;
#[cfg(feature = "redis")]
mod redis;
mod run;
mod shared;

pub use budget::{BudgetPolicy, DEFAULT_ENGINE_MAX_BYTES, ENV_ENGINE_MAX_BYTES, EngineStats};
pub use local_engine::{LocalEngine, ResetTarget};

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
pub use run::{RunHandle, RunId, RunRecord, RunStatus, RunView};
