/// The run a task executes in: its id and attempt number. Passed explicitly; outside a
/// run there is none, and `run`- and `attempt`-scoped keys then hash like global ones,
/// as in the reference SDK.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::RunContext;
///
/// let run = RunContext::new("run_abc123", 1);
/// assert_eq!((run.run_id(), run.attempt()), ("run_abc123", 1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunContext {
    run_id: String,
    attempt: u32,
    // Every `attempt`-scoped key hashes `run_id-attempt` at its end: join it once per
    // run, so that a key appends one part instead of formatting and appending two.
    attempt_suffix: String,
}

impl RunContext {
    /// The context of attempt `attempt` of run `run_id`.
    pub fn new(run_id: impl Into<String>, attempt: u32) -> Self {
        let run_id = run_id.into();
        RunContext { attempt_suffix: format!("{run_id}-{attempt}"), run_id, attempt }
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The attempt number, as the reference SDK counts it (the first attempt is 1).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// What an `attempt`-scoped key appends: `run_id-attempt`.
    pub(crate) fn attempt_suffix(&self) -> &str {
        &self.attempt_suffix
    }
}
