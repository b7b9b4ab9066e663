//! The async forms of fleet mode (feature `tokio`), gated once, each file the
//! counterpart of the sync file of the same name: the rules (where a command goes,
//! what its answer means, what a build checks, what a read or write of the catalog
//! sends) are written once in the sync files' sans-I/O parts (`dispatch.rs`,
//! [`Startup`](super::startup::Startup), the catalog's `Reads` and write pipelines),
//! and these files only carry them over the async client.

mod catalog;
mod connection;
mod link;
mod pool;
mod sender;
mod startup;

pub(super) use self::pool::AsyncLinks;
pub(super) use self::sender::Sender;
