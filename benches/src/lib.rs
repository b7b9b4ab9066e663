//! Benchmarks only: see `benches/`. The library holds what two benches share.

#[cfg(feature = "redis")]
pub mod fleet;

/// The workspace README, compiled and run as a doctest so that its examples stay true.
/// (Here, in the unpublished crate, since the README is outside the published ones.)
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct WorkspaceReadmeDoctests;
