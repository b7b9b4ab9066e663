//! The items of one trigger whose key is held by a run made with another payload, or
//! that repeat within the trigger with another payload: counted, and the first kept
//! for the warning or the error.

use std::collections::HashMap;

use super::incoming::Incoming;
use super::key::KeyRef;
use super::store::Holder;
use crate::error::Error;
use crate::payload::{Fingerprint, PayloadPolicy};
use crate::run_id::RunId;

#[derive(Debug, Default)]
pub(crate) struct Mismatches {
    pub(crate) count: usize,
    /// The first: its key as shown, and the run holding it (`None`: a repeat within
    /// the trigger, whose first occurrence has no run yet).
    first: Option<(String, Option<RunId>)>,
}

impl Mismatches {
    /// `item` was answered by (or would be answered by) `held`, made with `held_with`.
    #[inline]
    pub(crate) fn check(&mut self, item: &Incoming<'_>, held: RunId, held_with: Option<Fingerprint>) {
        if held_with.is_some_and(|fingerprint| fingerprint != item.fingerprint) {
            self.note(item, Some(held));
        }
    }

    fn note(&mut self, item: &Incoming<'_>, held: Option<RunId>) {
        self.count += 1;
        self.first.get_or_insert_with(|| (item.shown_key(), held));
    }

    /// Under [`PayloadPolicy::Fail`], before anything is claimed: the items that
    /// repeat in `items` with another payload, or whose key `held` says is held by a
    /// run made with another one. `held` answers for the keys of `keyed(items)`, in
    /// order.
    pub(crate) fn before_claiming(items: &[Incoming<'_>], held: &[Holder]) -> Mismatches {
        let mut found = Mismatches::default();
        // The first item of each free key that claims it (a TTL of 0 claims nothing,
        // but is answered by a run that holds its key all the same).
        let mut firsts: HashMap<KeyRef<'_>, Fingerprint> = HashMap::new();
        let keyed = items.iter().filter_map(|item| Some((item.key?, item)));
        for ((key, item), held) in keyed.zip(held) {
            match (firsts.get(&key), held) {
                (Some(&first), _) if first != item.fingerprint => found.note(item, None),
                (Some(_), _) => {}
                (None, Some((run, with))) => found.check(item, *run, *with),
                (None, None) => {}
            }
            // Only an item that claims its key answers the later ones.
            if item.ttl > 0 && held.is_none() {
                firsts.entry(key).or_insert(item.fingerprint);
            }
        }
        found
    }

    /// The keys [`before_claiming`](Self::before_claiming) needs answers for.
    pub(crate) fn keyed<'a>(items: &[Incoming<'a>]) -> Vec<KeyRef<'a>> {
        items.iter().filter_map(|item| item.key).collect()
    }

    /// Adds another group's mismatches (a trigger of several tasks).
    pub(crate) fn add(&mut self, other: Mismatches) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    /// The error [`PayloadPolicy::Fail`] answers with, when any item differed.
    pub(crate) fn refusal(&self, task: &str) -> Option<Error> {
        let (key, run) = self.first.clone()?;
        Some(Error::PayloadMismatch { task: task.to_owned(), key, run, items: self.count })
    }

    /// Emits the one `WARN` of a trigger: under [`PayloadPolicy::Warn`], or under
    /// [`PayloadPolicy::Fail`] for what was found after the check (another process
    /// claimed a key with another payload between the check and the claim).
    pub(crate) fn warn(&self, task: &str, policy: PayloadPolicy) {
        let Some((key, run)) = &self.first else { return };
        if policy == PayloadPolicy::Ignore {
            return;
        }
        // Every field is documented in `docs/telemetry.md`.
        tracing::warn!(
            task,
            mismatched = self.count,
            key = %key,
            run = run.map(tracing::field::display),
            remedy = "derive the key from everything that makes the request different, or refuse such triggers with PayloadPolicy::Fail: Engine::with_payload_policy, or IDEMPOTENCY_PAYLOAD_POLICY=fail where the program reads it (Engine::from_env, PayloadPolicy::from_env)",
            "idempotency key reused with another payload; answered with the run that holds the key"
        );
    }
}
