//! Test support for the workspace, unpublished: what several test suites and benches
//! share, so that none keeps a copy.
//!
//! - [`RedisServer`]: a real `redis-server`, started on a free loopback port (or a unix
//!   socket only) in a directory of its own, with persistence off unless asked, killed
//!   when dropped.
//! - [`TlsServer`]: a `redis-server` that speaks TLS only, with a CA, a server and a
//!   client certificate made for it by `openssl`, mutual TLS on request.
//! - [`RedisCluster`]: a Redis Cluster of masters and replicas on loopback, with the
//!   means to kill, pause and fail over its nodes.
//! - [`LosingProxy`]: a proxy in front of a server that loses an answer when told, as
//!   a connection killed between a request and its answer does.
//! - [`PipelineProxy`]: a proxy in front of a server that counts the commands of each
//!   pipeline a client sends.
//! - [`captured`]: what a global `tracing` fmt subscriber printed on this thread while
//!   a closure ran, at every level.
//! - [`assert_small_and_thread_safe`]: the check every crate's error type passes.
//!
//! The servers need `redis-server` and `redis-cli` on `PATH` (`apt-get install
//! redis-server`), or another server binary named by [`SERVER_BINARY_VAR`]
//! (`TESTKIT_REDIS_SERVER`, a path or a name on `PATH`: Valkey's `valkey-server`), and [`TlsServer`] needs `openssl`; a test that cannot find one fails,
//! saying what to install. Everything a guard started dies when the guard drops, a
//! panicking test's included, but not when the test process is killed outright.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support may stop at a failure; library code may not

mod capture;
mod cluster;
mod pipelines;
mod process;
mod proxy;
mod redis_server;
mod tls;

pub use capture::{captured, warnings};
pub use cluster::{ClusterOptions, RedisCluster};
pub use pipelines::{Pipeline, PipelineProxy};
pub use process::{SERVER_BINARY_VAR, server_binary};
pub use proxy::LosingProxy;
pub use redis_server::RedisServer;
pub use tls::TlsServer;

/// Checks what every error type of the workspace promises (reqwest's check): that it
/// is `Send`, `Sync` and `'static`, so that it crosses threads and converts into a
/// boxed `dyn Error + Send + Sync`, and at most `max_bytes`, since it travels in every
/// `Result` its crate returns.
///
/// # Panics
///
/// When `T` is larger than `max_bytes`, naming the type and its size.
pub fn assert_small_and_thread_safe<T: Send + Sync + 'static>(max_bytes: usize) {
    let size = std::mem::size_of::<T>();
    assert!(size <= max_bytes, "{} is {size} bytes, more than {max_bytes}", std::any::type_name::<T>());
}
