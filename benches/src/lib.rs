//! Benchmarks only: see `benches/`. The library holds what two benches share.

#[cfg(feature = "redis")]
pub mod fleet;

/// The workspace README, compiled and run as a doctest so that its examples stay true.
/// (Here, in the unpublished crate, since the README is outside the published ones.)
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct WorkspaceReadmeDoctests;

/// docs/fleet.md, compiled as doctests with feature `fleet-all`, so that its recipes
/// stay true (they do not run: they need a server).
#[doc = include_str!("../../docs/fleet.md")]
#[cfg(all(doctest, feature = "fleet-all"))]
pub struct FleetDocDoctests;
