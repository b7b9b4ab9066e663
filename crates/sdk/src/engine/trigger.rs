//! One trigger on its way through a store: its items, the rules it is held to whatever
//! the store (the payload policy's check before claiming, what each answer means for
//! the caller), and what became of each item. No I/O here: the engine's sync and async
//! faces both drive it.

use super::budget::Budget;
use super::clock::Millis;
use super::incoming::{Incoming, WireGroups};
use super::key::KeyRef;
use super::mismatch::Mismatches;
use super::run::Triggered;
use super::store::Holder;
use crate::error::Error;
use crate::payload::{Fingerprint, PayloadPolicy};
use crate::run_id::RunId;
use crate::wire::WireItem;

/// A trigger's items, as they come (one at a time, from a batch being moved into the
/// records), or held together once a check must read them all before any is claimed.
pub(crate) enum Items<'a> {
    Streamed(Box<dyn Iterator<Item = Incoming<'a>> + Send + 'a>),
    Held(std::vec::IntoIter<Incoming<'a>>),
}

impl<'a> Items<'a> {
    /// The items not claimed yet, all of them held.
    pub(crate) fn held(&mut self) -> &[Incoming<'a>] {
        if let Items::Streamed(items) = self {
            *self = Items::Held(items.collect::<Vec<_>>().into_iter());
        }
        match self {
            Items::Held(items) => items.as_slice(),
            Items::Streamed(_) => &[],
        }
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Incoming<'a>;

    #[inline]
    fn next(&mut self) -> Option<Incoming<'a>> {
        match self {
            Items::Streamed(items) => items.next(),
            Items::Held(items) => items.next(),
        }
    }
}

/// One trigger of one task.
pub(crate) struct Trigger<'a> {
    pub(crate) task: &'a str,
    /// When it began, on the engine's clock.
    pub(crate) now: Millis,
    /// How many items it has.
    pub(crate) len: usize,
    pub(crate) policy: PayloadPolicy,
    /// The in-memory engine's byte budget.
    pub(crate) budget: Budget,
    /// Whether run records on a store across the network keep their payload.
    pub(crate) share_payloads: bool,
    /// The items not claimed yet.
    pub(crate) items: Items<'a>,
    /// One answer per item claimed so far, in order.
    pub(crate) handles: Vec<Triggered>,
    /// The items answered by a run made with another payload, or that repeat within the
    /// trigger with another one.
    pub(crate) mismatches: Mismatches,
    /// Whether the payload policy refused the trigger (its error says so; no warning).
    refused: bool,
}

impl<'a> Trigger<'a> {
    pub(crate) fn new(task: &'a str, now: Millis, len: usize, items: Items<'a>) -> Self {
        Trigger {
            task,
            now,
            len,
            policy: PayloadPolicy::default(),
            budget: Budget::default(),
            share_payloads: false,
            items,
            handles: Vec::new(),
            mismatches: Mismatches::default(),
            refused: false,
        }
    }

    /// Whether its items are checked against the keys' holders before any is claimed:
    /// under [`PayloadPolicy::Fail`].
    pub(crate) fn checks_first(&self) -> bool {
        self.policy == PayloadPolicy::Fail
    }

    /// The keys of its items, in order, whose holders [`check`](Self::check) needs.
    pub(crate) fn keys(&mut self) -> Vec<KeyRef<'a>> {
        Mismatches::keyed(self.items.held())
    }

    /// Before anything is claimed, under [`PayloadPolicy::Fail`]: the refusal, when an
    /// item's key is held (as `held` says, in the order of [`keys`](Self::keys)) by a
    /// run made with another payload, or repeats in the trigger with another one.
    pub(crate) fn check(&mut self, held: &[Holder]) -> Result<(), Error> {
        let found = Mismatches::before_claiming(self.items.held(), held);
        let Some(refusal) = found.refusal(self.task) else { return Ok(()) };
        self.mismatches = found;
        self.refused = true;
        Err(refusal)
    }

    /// `id` was created for the next item.
    #[inline]
    pub(crate) fn created(&mut self, id: RunId) {
        self.handles.push(Triggered { id, cached: false });
    }

    /// `item` is answered by run `held`, which holds its key, made with a payload of
    /// fingerprint `held_with` (`None`: its record does not say).
    #[inline]
    pub(crate) fn cached(&mut self, item: &Incoming<'_>, held: RunId, held_with: Option<Fingerprint>) {
        self.mismatches.check(item, held, held_with);
        self.handles.push(Triggered { id: held, cached: true });
    }

    /// Whether the payload policy refused it.
    pub(crate) fn refused(&self) -> bool {
        self.refused
    }
}

/// Wire items of several tasks, triggered a run of one task at a time: under
/// [`PayloadPolicy::Fail`] every group is checked against its keys' holders before any
/// is claimed (and each again as it is claimed); the answers of every group, in order;
/// one warning for the TTLs the server's grammar refuses, however the call ends.
pub(crate) struct WireTrigger<'a> {
    groups: Vec<(&'a str, Vec<Incoming<'a>>)>,
    /// How many groups were checked (all of them when no check is due), then triggered.
    checked: usize,
    triggered: usize,
    /// What the checks found, and the task of the first group that differed.
    found: Mismatches,
    first_task: &'a str,
    handles: Vec<Triggered>,
    error: Option<Error>,
    read: WireGroups<'a>,
}

impl<'a> WireTrigger<'a> {
    /// `items`, once every one is valid, to trigger under `policy`.
    pub(crate) fn new(items: &'a [WireItem], policy: PayloadPolicy) -> Result<Self, Error> {
        let mut read = WireGroups::new(items)?;
        let mut groups = Vec::new();
        while let Some(group) = read.next_group() {
            groups.push(group);
        }
        let checked = if policy == PayloadPolicy::Fail { 0 } else { groups.len() };
        Ok(WireTrigger {
            groups,
            checked,
            triggered: 0,
            found: Mismatches::default(),
            first_task: "",
            handles: Vec::with_capacity(items.len()),
            error: None,
            read,
        })
    }

    /// The next group to check before any is claimed: its task and its keys.
    pub(crate) fn to_check(&self) -> Option<(&'a str, Vec<KeyRef<'a>>)> {
        let (task, items) = self.groups.get(self.checked).filter(|_| self.error.is_none())?;
        Some((task, Mismatches::keyed(items)))
    }

    /// The holders of the keys [`to_check`](Self::to_check) gave.
    pub(crate) fn checked(&mut self, held: Result<Vec<Holder>, Error>) {
        let Some((task, items)) = self.groups.get(self.checked) else { return };
        match held {
            Ok(held) => {
                let found = Mismatches::before_claiming(items, &held);
                if found.count > 0 && self.found.count == 0 {
                    self.first_task = task;
                }
                self.found.add(found);
                self.checked += 1;
            }
            // Nothing is refused, nor counted, when the checks could not finish.
            Err(err) => {
                self.found = Mismatches::default();
                self.error = Some(err);
            }
        }
    }

    /// The next group to trigger: none once a check found an item to refuse, or a
    /// group failed.
    pub(crate) fn next_group(&mut self) -> Option<(&'a str, Vec<Incoming<'a>>)> {
        if self.triggered == 0 && self.error.is_none() {
            self.error = self.found.refusal(self.first_task);
        }
        let (task, items) = self.groups.get_mut(self.triggered).filter(|_| self.error.is_none())?;
        self.triggered += 1;
        Some((task, std::mem::take(items)))
    }

    /// What triggering the group [`next_group`](Self::next_group) gave answered.
    pub(crate) fn answered(&mut self, answered: Result<Vec<Triggered>, Error>) {
        match answered {
            Ok(handles) => self.handles.extend(handles),
            Err(err) => self.error = Some(err),
        }
    }

    /// Every item's answer, or the error that stopped the call, and the items the
    /// checks found to differ (to count); warns about the TTLs the server's grammar
    /// refuses.
    pub(crate) fn finish(self) -> (Mismatches, Result<Vec<Triggered>, Error>) {
        self.read.warn();
        let result = match self.error {
            Some(err) => Err(err),
            None => Ok(self.handles),
        };
        (self.found, result)
    }
}
