//! The runs an engine created, in the order it numbered them, with the task names they
//! refer to by number.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;

use super::budget::record_bytes;
use super::run::Run;

/// Task names, each stored once and referred to by a number.
#[derive(Default)]
pub(crate) struct Tasks {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl Tasks {
    pub(crate) fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    pub(crate) fn find(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    #[expect(clippy::expect_used, reason = "an invariant: every task id was made by `id`")]
    pub(crate) fn name(&self, id: u32) -> &str {
        // A bug must not show runs under an empty task name: fail loudly instead.
        self.names.get(id as usize).expect("every stored task id names a task")
    }
}

/// The retained runs, oldest first, by number (from 1).
///
/// In memory every number taken is a run, so runs sit at `number - first`. On a shared
/// store, numbers taken by items answered from cache are never used: there each run
/// keeps its number and the tag of its fleet id beside it, and is found by binary
/// search, so that a worker answered mostly from cache pays nothing for the numbers it
/// did not use.
pub(crate) struct Log {
    pub(crate) tasks: Tasks,
    runs: VecDeque<Run>,
    /// On a shared store, each run's number and tag, beside it; empty in memory.
    places: VecDeque<(u64, u128)>,
    /// In memory, the number of `runs[0]`; on a shared store, the lowest number a run
    /// may still be recorded under (those below were trimmed, or older).
    first: u64,
    /// The number of the next run.
    next: u64,
    /// Runs created, and how many of them are retained.
    created: u64,
    pub(crate) max_runs: Option<NonZeroUsize>,
    /// What the retained records cost, as `budget` counts them.
    bytes: usize,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            tasks: Tasks::default(),
            runs: VecDeque::new(),
            places: VecDeque::new(),
            first: 1,
            next: 1,
            created: 0,
            max_runs: None,
            bytes: 0,
        }
    }
}

impl Log {
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.runs.reserve(additional);
    }

    /// The number the next run created in memory takes.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// Records a run made in memory, numbered [`next`](Self::next).
    pub(crate) fn push(&mut self, run: Run) {
        self.bytes += record_bytes(&run);
        self.runs.push_back(run);
        self.next += 1;
        self.created += 1;
    }

    /// Takes `n` numbers for runs to be created on a shared store; the first of them.
    pub(crate) fn take(&mut self, n: usize) -> u64 {
        let first = self.next;
        self.next += n as u64;
        first
    }

    /// Where run `number` of a shared store is, or would go.
    fn place(&self, number: u64) -> Result<usize, usize> {
        self.places.binary_search_by_key(&number, |&(n, _)| n)
    }

    /// Records run `number`, made on a shared store, in its place: last as a rule, or
    /// before later ones (a run whose answer came late). Whether it was recorded.
    pub(crate) fn put(&mut self, number: u64, tag: u128, run: Run) -> bool {
        if number >= self.next {
            return false;
        }
        self.created += 1;
        if number < self.first {
            // Older than every retained record (`with_max_runs`): created, not kept.
            return false;
        }
        let at = match self.places.back() {
            Some(&(last, _)) if last < number => self.places.len(),
            None => 0,
            Some(_) => match self.place(number) {
                Ok(_) => {
                    self.created -= 1;
                    return false;
                }
                Err(at) => at,
            },
        };
        self.places.insert(at, (number, tag));
        self.bytes += record_bytes(&run);
        self.runs.insert(at, run);
        true
    }

    /// Whether number `number` was taken on a shared store and no run is recorded
    /// under it, nor was: a run whose creation was not confirmed, or a number an item
    /// answered from cache left unused.
    pub(crate) fn is_gap(&self, number: u64) -> bool {
        (self.first..self.next).contains(&number) && self.place(number).is_err()
    }

    fn at(&self, number: u64) -> Option<usize> {
        if self.places.is_empty() {
            usize::try_from(number.checked_sub(self.first)?).ok()
        } else {
            self.place(number).ok()
        }
    }

    pub(crate) fn get(&self, number: u64) -> Option<&Run> {
        self.runs.get(self.at(number)?)
    }

    pub(crate) fn get_mut(&mut self, number: u64) -> Option<&mut Run> {
        let at = self.at(number)?;
        self.runs.get_mut(at)
    }

    /// The tag recorded beside run `number` (0 in memory).
    pub(crate) fn tag(&self, number: u64) -> u128 {
        self.place(number).ok().and_then(|at| self.places.get(at)).map_or(0, |&(_, tag)| tag)
    }

    /// Every retained run with its number and tag, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u128, &Run)> + '_ {
        // In memory the places are implicit: consecutive numbers, tag 0.
        let implicit = (self.first..).map(|n| (n, 0));
        let places: Box<dyn Iterator<Item = (u64, u128)> + '_> =
            if self.places.is_empty() { Box::new(implicit) } else { Box::new(self.places.iter().copied()) };
        places.zip(&self.runs).map(|((n, tag), run)| (n, tag, run))
    }

    pub(crate) fn created(&self) -> u64 {
        self.created
    }

    pub(crate) fn retained(&self) -> usize {
        self.runs.len()
    }

    /// Drops the oldest records past the cap.
    pub(crate) fn trim(&mut self) {
        let Some(max) = self.max_runs else { return };
        while self.runs.len() > max.get() {
            self.pop_oldest();
        }
    }

    /// What the retained records cost, as `budget` counts them.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The number of the oldest retained record.
    pub(crate) fn oldest(&self) -> Option<u64> {
        match self.places.front() {
            Some(&(number, _)) => Some(number),
            None => (!self.runs.is_empty()).then_some(self.first),
        }
    }

    /// Drops the oldest retained record; whether there was one.
    pub(crate) fn pop_oldest(&mut self) -> bool {
        let Some(run) = self.runs.pop_front() else { return false };
        self.bytes -= record_bytes(&run);
        self.first = match self.places.pop_front() {
            Some((number, _)) => number + 1,
            None => self.first + 1,
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::run::{NO_CLAIM, RunKey, RunStatus};

    fn run(task: u32) -> Run {
        Run { payload: None, key: RunKey::None, task, claim: NO_CLAIM, status: RunStatus::Pending }
    }

    #[test]
    fn numbers_answered_from_cache_cost_nothing() {
        let mut log = Log::default();
        for round in 0..1_000u32 {
            let first = log.take(10_000);
            log.put(first, u128::from(round), run(0));
        }
        assert_eq!((log.runs.len(), log.places.len(), log.created()), (1_000, 1_000, 1_000));
        assert!(log.runs.capacity() < 2_048 && log.places.capacity() < 2_048);
    }

    #[test]
    fn shared_numbers_leave_gaps_that_a_late_answer_can_fill_once() {
        let mut log = Log::default();
        let first = log.take(3);
        assert_eq!(first, 1);
        assert!(log.put(1, 11, run(0)));
        assert!(log.put(3, 33, run(0)), "number 2 was answered from cache: a gap");
        assert!(log.is_gap(2) && !log.is_gap(1) && !log.is_gap(4));
        assert!(log.put(2, 22, run(0)));
        assert!(!log.put(2, 22, run(0)), "a place takes one run");
        assert!(!log.put(4, 44, run(0)), "a number never taken");
        assert_eq!((log.created(), log.retained()), (3, 3));
        let seen: Vec<(u64, u128)> = log.iter().map(|(n, tag, _)| (n, tag)).collect();
        assert_eq!(seen, [(1, 11), (2, 22), (3, 33)]);
    }

    #[test]
    fn trimming_keeps_the_newest_and_their_tags() {
        let mut log = Log { max_runs: NonZeroUsize::new(2), ..Log::default() };
        log.take(4);
        for n in [1, 2, 4] {
            log.put(n, u128::from(n) * 10, run(0));
        }
        log.trim();
        assert_eq!(log.retained(), 2);
        let seen: Vec<(u64, u128)> = log.iter().map(|(n, tag, _)| (n, tag)).collect();
        assert_eq!(seen, [(2, 20), (4, 40)]);
        assert!(log.get(1).is_none() && log.get(2).is_some());
        assert!(!log.put(1, 10, run(0)), "older than every retained record");
        assert_eq!(log.created(), 4);
    }

    #[test]
    fn runs_made_in_memory_are_numbered_in_order() {
        let mut log = Log::default();
        for _ in 0..3 {
            let n = log.next();
            log.push(run(0));
            assert!(log.get(n).is_some());
        }
        assert_eq!(log.iter().map(|(n, tag, _)| (n, tag)).collect::<Vec<_>>(), [(1, 0), (2, 0), (3, 0)]);
    }
}
