//! The names of the environment variables this crate reads, each in a constant: for
//! deployment manifests, and for the lookups given to
//! [`Engine::from_env_with`](crate::Engine::from_env_with) and
//! [`PayloadPolicy::from_env_with`](crate::PayloadPolicy::from_env_with). A builder call
//! wins over the variable for its setting, and the variable over
//! [the default](crate::defaults). The catalog's variables are the catalog crate's.
//!
//! # Examples
//!
//! ```
//! use idempotency_sdk::{Engine, PayloadPolicy, env};
//!
//! let vars = [(env::ENGINE_MAX_BYTES, "32MiB"), (env::PAYLOAD_POLICY, "fail")];
//! let lookup = |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
//! let engine = Engine::from_env_with(lookup)?;
//! assert_eq!(engine.stats().max_bytes, 32 << 20);
//! assert_eq!(PayloadPolicy::from_env_with(lookup)?, PayloadPolicy::Fail);
//! assert_eq!(env::PAYLOAD_POLICY, "IDEMPOTENCY_PAYLOAD_POLICY");
//! # Ok::<(), idempotency_sdk::Error>(())
//! ```

/// The variable that sets the in-memory engine's byte budget: a number of bytes,
/// optionally with a `KiB`, `MiB` or `GiB` suffix (`32MiB`), from 64 KiB.
pub const ENGINE_MAX_BYTES: &str = "IDEMPOTENCY_ENGINE_MAX_BYTES";

/// The variable that sets what the engine does with an item whose key is held by a run
/// made with another payload: `ignore`, `warn` or `fail` (see
/// [`PayloadPolicy`](crate::PayloadPolicy)).
pub const PAYLOAD_POLICY: &str = "IDEMPOTENCY_PAYLOAD_POLICY";
