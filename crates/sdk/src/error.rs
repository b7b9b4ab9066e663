use idempotency_catalog::Scope;

use crate::from_catalog::show_bytes;
use crate::run_id::RunId;

/// Everything that can go wrong in this crate. Messages are lowercase and name the
/// offending value or item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A catalog error: its configuration, a digest or a TTL that does not parse, or a
    /// failure on Redis (feature `redis`).
    #[error(transparent)]
    Catalog(#[from] idempotency_catalog::Error),
    /// A raw key 64 UTF-16 code units long (JavaScript's `length`) is taken as a digest,
    /// as the reference SDK does, but this one is not lowercase hex.
    #[error(
        "invalid key {value}: 64 UTF-16 code units long (JavaScript's `length`), so it is taken as a digest, but {reason}"
    )]
    NotADigest {
        /// The key, quoted and cut to 64 characters.
        value: String,
        /// Why it is not a digest.
        reason: String,
    },
    /// Key material that makes no key: empty (an empty key means no key, as where a
    /// key is expected).
    #[error("invalid key material {value}: {reason}")]
    InvalidKeyMaterial {
        /// The material joined with `-`, quoted and cut to 64 characters.
        value: String,
        /// Why it makes no key, and what to do.
        reason: String,
    },
    /// An item's idempotency key is longer than the server accepts.
    #[error("item {index}: idempotency key is {len} characters long; the server accepts at most 2048")]
    KeyTooLong {
        /// The item's index in the batch.
        index: usize,
        /// The key's length in characters.
        len: usize,
    },
    /// An item failed to resolve.
    // Not a `#[source]`: the message already includes it, and an error reporter that
    // walks the chain would print it twice.
    #[error("item {index}: {error}")]
    Item {
        /// The item's index in the batch.
        index: usize,
        /// What went wrong.
        error: Box<Error>,
    },
    /// Items lost their key options, under [`LossPolicy::Fail`](crate::LossPolicy::Fail).
    #[error(
        "{lost} of {items} batch items lost their key options (catalog {kind}, capacity {}; most {cause}); nothing was sent; {remedy}",
        capacity.map_or_else(|| "unbounded".to_owned(), |c| c.to_string())
    )]
    OptionsLost {
        /// Items without options.
        lost: usize,
        /// Items in the batch.
        items: usize,
        /// The catalog's kind.
        kind: idempotency_catalog::CatalogKind,
        /// The catalog's capacity; `None` when unbounded.
        capacity: Option<usize>,
        /// The cause of most of them, as [`BatchReport::cause`](crate::BatchReport::cause) names it.
        cause: &'static str,
        /// What to change: the limit that dropped them, raised from where it was set.
        remedy: String,
    },
    /// A run- or attempt-scoped key was to be derived without the run it belongs to.
    #[error("cannot derive a `{scope}`-scoped key without its run context; pass the run id{}", if *.scope == Scope::Attempt { " and attempt number" } else { "" })]
    ScopeNeedsRun {
        /// The scope asked for.
        scope: Scope,
    },
    /// A batch item that does not match the wire format.
    #[error("invalid batch item at {path}: {message}")]
    Wire {
        /// Where in the item: `index`, `options.idempotencyKeyOptions.scope`, …
        path: String,
        /// What was expected.
        message: String,
    },
    /// The engine has no record of a run.
    #[error("unknown run {id}: the engine never created it, or no longer keeps its record")]
    UnknownRun {
        /// The run asked for.
        id: RunId,
    },
    /// A string that should hold a run id does not.
    #[error("invalid run id {value}: expected `run_` followed by a number or by 48 lowercase hex characters")]
    InvalidRunId {
        /// The input, quoted and cut to 64 characters.
        value: String,
    },
    /// A string that should name a run status does not.
    #[error(
        "invalid run status {value}: expected one of `pending`, `executing`, `succeeded`, `failed`, `system-failure`, `crashed`, `interrupted`, `timed-out`, `expired`, `cancelled`"
    )]
    InvalidRunStatus {
        /// The input, quoted and cut to 64 characters.
        value: String,
    },
    /// A string that should name a [`PayloadPolicy`](crate::PayloadPolicy) does not.
    #[error("invalid {source_name} {value}: expected one of `ignore`, `warn`, `fail`")]
    InvalidPayloadPolicy {
        /// Where it came from: the variable, or `PayloadPolicy` when parsed.
        source_name: &'static str,
        /// The input, quoted and cut to 64 characters.
        value: String,
    },
    /// Under [`PayloadPolicy::Fail`](crate::PayloadPolicy::Fail): an item's key is held
    /// by a run made with another payload, or repeats in its batch with another one.
    /// Nothing of the trigger was claimed or created.
    #[error(
        "task {}: idempotency key {key} {}; {items} item(s) of this trigger differ, nothing was triggered",
        shown(task),
        holder(run.as_ref())
    )]
    PayloadMismatch {
        /// The task triggered.
        task: String,
        /// The first differing item's key, for people: its original key, escaped and cut
        /// by [`shown`](idempotency_catalog::shown), and its scope (`"item-42" (global)`),
        /// or as sent when its options are unknown.
        key: String,
        /// The run that holds it; `None` when the key repeats within the trigger with
        /// another payload.
        run: Option<RunId>,
        /// How many items differed.
        items: usize,
    },
    /// The in-memory engine is at its byte budget, under
    /// [`BudgetPolicy::Refuse`](crate::BudgetPolicy::Refuse): nothing of the trigger was
    /// claimed or created.
    #[error(
        "engine at its byte budget of {} (set by {origin}): a trigger of {items} item(s) needs {needed} more bytes; nothing was triggered; {remedy}",
        show_bytes(*max_bytes)
    )]
    EngineFull {
        /// The budget.
        max_bytes: usize,
        /// Where it came from.
        origin: idempotency_catalog::Source,
        /// Items in the refused trigger.
        items: usize,
        /// The bytes the trigger would have added past the budget.
        needed: usize,
        /// What to change.
        remedy: String,
    },
    /// Writing the batch request failed.
    #[error("cannot write the batch request: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) use idempotency_catalog::shown;

fn holder(run: Option<&RunId>) -> String {
    match run {
        Some(run) => format!("is held by run {run}, made with another payload"),
        None => "repeats in this trigger with another payload".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small_and_thread_safe() {
        testkit::assert_small_and_thread_safe::<Error>(96);
    }

    #[test]
    fn scope_errors_say_what_to_pass() {
        let run = Error::ScopeNeedsRun { scope: Scope::Run }.to_string();
        assert_eq!(run, "cannot derive a `run`-scoped key without its run context; pass the run id");
        let attempt = Error::ScopeNeedsRun { scope: Scope::Attempt }.to_string();
        assert!(attempt.ends_with("pass the run id and attempt number"), "{attempt}");
    }
}
