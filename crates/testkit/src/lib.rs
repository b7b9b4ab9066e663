//! Test support for the workspace, unpublished: what several test suites and benches
//! share, so that none keeps a copy.
//!
//! - [`RedisServer`]: a real `redis-server`, started on a free loopback port in a
//!   directory of its own, with persistence off unless asked, killed when dropped.
//! - [`LosingProxy`]: a proxy in front of a server that loses an answer when told, as
//!   a connection killed between a request and its answer does.
//! - [`captured`]: what a global `tracing` fmt subscriber printed on this thread while
//!   a closure ran, at every level.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support may stop at a failure; library code may not

mod capture;
mod proxy;
mod redis_server;

pub use capture::{captured, warnings};
pub use proxy::LosingProxy;
pub use redis_server::RedisServer;
