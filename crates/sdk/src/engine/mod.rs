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
pub use run::{RunHandle, RunId, RunRecord, RunStatus, RunView};
