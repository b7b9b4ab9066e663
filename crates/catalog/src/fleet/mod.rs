//! Fleet mode (feature `redis`): one Redis shared by many worker processes.
//!
//! [`Redis`] is a handle on one server or a cluster: its address (any password redacted in every
//! message), the key prefix, timeouts, and the fault counter and warnings shared by
//! everything built on it. [`RedisCatalog`] puts a process-local catalog in front of
//! it; the SDK's engine claims keys on it.

mod builder;
mod catalog;
mod checks;
mod connection;
mod deployment;
mod dispatch;
mod durability;
mod fault;
mod handle;
mod link;
mod pool;
mod settings;
mod startup;
mod url;

pub use self::builder::{
    DEFAULT_REDIS_CATALOG_TTL, DEFAULT_REDIS_CONNECT_TIMEOUT, DEFAULT_REDIS_DURABILITY_TIMEOUT,
    DEFAULT_REDIS_IO_TIMEOUT, DEFAULT_REDIS_POOL_SIZE, DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_RUN_TTL,
    ENV_REDIS_CATALOG_TTL, ENV_REDIS_DURABILITY, ENV_REDIS_FAILOVER_WINDOW, ENV_REDIS_PREFIX, ENV_REDIS_RUN_TTL,
    ENV_REDIS_TLS_CA, ENV_REDIS_TLS_CERT, ENV_REDIS_TLS_KEY, ENV_REDIS_URL, RedisBuilder,
};
pub use self::catalog::RedisCatalog;
pub use self::connection::RedisConnection;
pub use self::durability::Durability;
pub use self::fault::server_error_of;
pub use self::handle::Redis;

/// After a failed connect, how long calls on the handle fail at once (`not reconnected
/// yet: …`) instead of each waiting out the connect timeout: a server that is down
/// must not cost every registration a connect timeout.
pub const REDIS_RECONNECT_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);
