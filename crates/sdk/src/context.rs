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
    // Every `attempt`-scoped key hashes the number as text: format it once per run.
    attempt_text: String,
}

impl RunContext {
    /// The context of attempt `attempt` of run `run_id`.
    pub fn new(run_id: impl Into<String>, attempt: u32) -> Self {
        RunContext { run_id: run_id.into(), attempt, attempt_text: attempt.to_string() }
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The attempt number, as the reference SDK counts it (the first attempt is 1).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The attempt number in decimal, as keys hash it.
    pub(crate) fn attempt_text(&self) -> &str {
        &self.attempt_text
    }
}
