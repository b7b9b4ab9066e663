//! [`Settings`]: what a handle was built with, every value checked.

use std::time::Duration;

use super::durability::Durability;
use super::url::Secrets;

/// What a handle was built with, checked.
pub(super) struct Settings {
    /// The URL as shown, password redacted.
    pub(super) url: String,
    pub(super) secrets: Secrets,
    pub(super) prefix: String,
    pub(super) catalog_ttl: Duration,
    pub(super) run_ttl: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) io_timeout: Duration,
    pub(super) durability: Durability,
    /// How long a `WAIT` waits for replicas.
    pub(super) durability_timeout: Duration,
    /// How long a call waits for a failover; `None`: from the cluster's node timeout,
    /// read at build.
    pub(super) failover_window: Option<Duration>,
}
