//! What the SDK's test suites share, compiled into each test binary that names it
//! (`mod support;`), as redis-rs keeps its `tests/support`: batches of numbered keys,
//! the harness that runs a test binary again as a worker process, and the check
//! each fleet fault test ends with. Servers come from
//! `testkit`.
#![allow(dead_code)] // each test binary uses its part

pub(crate) mod batches;
#[cfg(feature = "redis")]
pub(crate) mod fleet;
pub(crate) mod workers;
