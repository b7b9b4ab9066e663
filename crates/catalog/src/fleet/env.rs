//! [`Env`]: the variables a [`RedisBuilder`](super::RedisBuilder) falls back on, read
//! once, when the builder is made; checked by its `build`, only where no builder call
//! sets the setting.

use crate::env::{
    REDIS_CATALOG_TTL, REDIS_DURABILITY, REDIS_FAILOVER_WINDOW, REDIS_PREFIX, REDIS_RUN_TTL, REDIS_TLS_CA,
    REDIS_TLS_CERT, REDIS_TLS_KEY, REDIS_URL,
};

/// The variables as read: never printed, since the URL may hold a password.
#[derive(Clone, Default)]
pub(super) struct Env {
    pub(super) url: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) catalog_ttl: Option<String>,
    pub(super) run_ttl: Option<String>,
    pub(super) durability: Option<String>,
    pub(super) failover_window: Option<String>,
    // Read only for `rediss://`, which needs feature `tls`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(super) tls_ca: Option<String>,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(super) tls_cert: Option<String>,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(super) tls_key: Option<String>,
}

impl Env {
    /// Every variable of [`crate::env`] a handle reads, through `lookup`.
    pub(super) fn read(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Env {
            url: lookup(REDIS_URL),
            prefix: lookup(REDIS_PREFIX),
            catalog_ttl: lookup(REDIS_CATALOG_TTL),
            run_ttl: lookup(REDIS_RUN_TTL),
            durability: lookup(REDIS_DURABILITY),
            failover_window: lookup(REDIS_FAILOVER_WINDOW),
            tls_ca: lookup(REDIS_TLS_CA),
            tls_cert: lookup(REDIS_TLS_CERT),
            tls_key: lookup(REDIS_TLS_KEY),
        }
    }
}
