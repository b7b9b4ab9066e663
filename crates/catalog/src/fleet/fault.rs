//! How a failed Redis operation counts: its [`FaultKind`] and message.

use std::time::Duration;

use ::redis::ErrorKind;

use crate::telemetry::FaultKind;

/// How a Redis error counts, and its message: for an error the server answered, its
/// code and details, and for a pipeline how many of its commands failed (not each of
/// them: at `maxmemory`, that would be thousands of lines). `timeout` is the one that
/// was in force, named when it ran out.
pub(super) fn describe(err: &::redis::RedisError, timeout: Duration) -> (FaultKind, String) {
    let answered = err.clone().into_server_errors();
    let Some((index, first)) = answered.as_deref().and_then(<[_]>::first) else {
        let kind = fault_kind(err);
        let message = if kind == FaultKind::Timeout {
            // The OS says "Resource temporarily unavailable": say what happened.
            format!("no answer within {timeout:?}")
        } else if err.kind() == ErrorKind::AuthenticationFailed {
            // redis-rs's own words: "Password authentication failed- AuthenticationFailed".
            "the server refused the user and password in the URL".to_owned()
        } else {
            err.to_string()
        };
        return (kind, message);
    };
    let (kind, said) = server_error(first);
    let failed = answered.as_deref().map_or(1, <[_]>::len);
    let message = match failed {
        1 if *index == 0 => said,
        _ => format!("{said} ({failed} commands of the pipeline failed, the first at {index})"),
    };
    (kind, message)
}

/// How an error one command of a batch met counts, and what it said: the server's code
/// and details, or the error. For stores built on a [`RedisConnection`](super::RedisConnection)
/// that read the answers of their batches one by one (the SDK's run store), so that they
/// count a command's failure as the connection counts a batch's.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::FaultKind;
/// use idempotency_catalog::fleet::server_error_of;
///
/// let detail = "command not allowed when used memory > 'maxmemory'";
/// let oom = redis::make_extension_error("OOM".to_owned(), Some(detail.to_owned()));
/// assert_eq!(server_error_of(&oom), (FaultKind::OutOfMemory, format!("OOM {detail}")));
///
/// let refused = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
/// assert_eq!(server_error_of(&refused).0, FaultKind::Unreachable);
/// ```
pub fn server_error_of(err: &::redis::RedisError) -> (FaultKind, String) {
    match (err.code(), err.detail()) {
        (Some(code), detail) => {
            let kind = code_kind(code);
            (kind, detail.map_or_else(|| code.to_owned(), |detail| format!("{code} {detail}")))
        }
        (None, _) => (fault_kind(err), err.to_string()),
    }
}

/// How an error the server answered counts, and what it said (code and details).
pub(super) fn server_error(err: &::redis::ServerError) -> (FaultKind, String) {
    let details = err.details().map(|d| format!(" {d}")).unwrap_or_default();
    (code_kind(err.code()), format!("{}{details}", err.code()))
}

/// The codes of the errors a command gets from this crate rather than from the server
/// (see [`dispatch`](super::dispatch)): a write that fell short of its durability, and a
/// cluster node that could not be reached or did not answer in time.
pub(super) const NOT_DURABLE: &str = "NOTDURABLE";
pub(super) const UNREACHABLE: &str = "UNREACHABLE";
pub(super) const TIMEOUT: &str = "TIMEOUT";

fn code_kind(code: &str) -> FaultKind {
    match code {
        "OOM" => FaultKind::OutOfMemory,
        NOT_DURABLE => FaultKind::NotDurable,
        UNREACHABLE => FaultKind::Unreachable,
        TIMEOUT => FaultKind::Timeout,
        // A key of ours holds a hash, a list…, or what a script found is not a record:
        // someone else wrote it.
        "WRONGTYPE" | "FOREIGN" => FaultKind::Foreign,
        _ => FaultKind::Rejected,
    }
}

fn fault_kind(err: &::redis::RedisError) -> FaultKind {
    if err.code() == Some("OOM") {
        FaultKind::OutOfMemory
    } else if err.is_timeout() {
        FaultKind::Timeout
    } else if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() {
        FaultKind::Unreachable
    } else {
        FaultKind::Rejected
    }
}
