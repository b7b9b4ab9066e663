//! Benchmarks only: see `benches/`. The library holds what two benches share.

#[cfg(feature = "redis")]
pub mod fleet;

/// The workspace README, compiled and run as a doctest so that its examples stay true.
/// (Here, in the unpublished crate, since the README is outside the published ones.)
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct WorkspaceReadmeDoctests;

/// docs/fleet.md, compiled as doctests with feature `redis`, so that its recipe stays
/// true (it does not run: it needs a server).
#[doc = include_str!("../../docs/fleet.md")]
#[cfg(all(doctest, feature = "redis"))]
pub struct FleetDocDoctests;
