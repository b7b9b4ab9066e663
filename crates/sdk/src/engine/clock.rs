//! The engine's clock: the time since some fixed origin, in milliseconds, which a test
//! may move.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the engine clock's origin.
pub(crate) type Millis = u64;

/// The time since some fixed origin.
pub(crate) type Clock = Box<dyn Fn() -> Duration + Send + Sync>;

/// The system clock: the time since the Unix epoch.
pub(crate) fn system() -> Clock {
    Box::new(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

pub(crate) fn millis(duration: Duration) -> Millis {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
