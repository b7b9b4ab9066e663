//! The value of each setting that neither a builder call nor its
//! [variable](crate::env) sets, under the same name as the variable's constant.
//!
//! # Examples
//!
//! ```
//! use idempotency_sdk::{Engine, defaults};
//!
//! let stats = Engine::new().stats();
//! assert_eq!(stats.max_bytes, defaults::ENGINE_MAX_BYTES);
//! assert_eq!(defaults::PAYLOAD_POLICY, idempotency_sdk::PayloadPolicy::Warn);
//! ```

use crate::payload::PayloadPolicy;

/// The in-memory engine's byte budget: 256 MiB.
///
/// A keyed run with a small payload counts 240 bytes (its claim and its record), so
/// 256 MiB remembers about 1,118,000 keyed runs: a day of a service triggering 46,000
/// keyed items an hour, or 67 minutes of one triggering a million. Past that, the
/// oldest keys are forgotten before their TTL, and one `WARN` says how long keys are
/// remembered instead (see `docs/configuration.md`).
pub const ENGINE_MAX_BYTES: usize = 256 << 20;

/// What the engine does with an item whose key is held by a run made with another
/// payload: [`PayloadPolicy::Warn`].
pub const PAYLOAD_POLICY: PayloadPolicy = PayloadPolicy::Warn;
