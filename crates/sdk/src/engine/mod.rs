//! The embedded engine: what triggering a batch does, with the reference server's
//! rules, in this process or on a store shared by a fleet.
//!
//! [`Engine`] holds the rules (`embedded.rs`, its async face in `future.rs`, one
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

pub use budget::{BudgetPolicy, EngineStats};
pub use embedded::{Engine, KeyTarget};
pub use run::{RunRecord, RunStatus, RunView, Triggered};
