//! The async build of a handle: the same [`Startup`] steps as the sync build
//! (`startup.rs`), its questions sent over async connections.

use ::redis::{Cmd, Value};

use super::link::{open_async, within};
use crate::error::Error;
use crate::fleet::builder::RedisBuilder;
use crate::fleet::handle::Redis;
use crate::fleet::link::{Single, remaining};
use crate::fleet::startup::{Answers, Collected, Startup};

impl RedisBuilder {
    /// As [`build`](Self::build), from async code (feature `tokio`): connects and
    /// checks without blocking a thread of the runtime. The handle serves sync and
    /// async calls alike.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use idempotency_catalog::RedisBuilder;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // Nothing listens on port 1: the error names the URL, with the password hidden.
    /// let err = RedisBuilder::new("redis://:hunter2@127.0.0.1:1/").build_async().await.unwrap_err();
    /// assert!(err.to_string().starts_with("redis at redis://:***@127.0.0.1:1/: cannot connect: "), "{err}");
    /// # }
    /// ```
    pub async fn build_async(self) -> Result<Redis, Error> {
        let (mut startup, mut ask) = Startup::new(self.plan()?)?;
        while let Some((node, cmds)) = ask {
            ask = match answers_async(&startup, &node, cmds).await {
                Ok(answers) => startup.answer(answers)?,
                Err(err) => startup.unreachable(&err, &node)?,
            };
        }
        Ok(startup.redis)
    }
}

/// As the sync build's `answers`, over an async connection.
async fn answers_async(startup: &Startup, node: &Single, cmds: Vec<Cmd>) -> Result<Answers, ::redis::RedisError> {
    let left = remaining(startup.deadline)?;
    let mut conn = open_async(node, left, left).await?;
    let deadline = startup.deadline;
    let mut answers = Collected::new(cmds.len());
    for cmd in &cmds {
        let Ok(left) = remaining(deadline) else { break };
        let sent = ::redis::aio::ConnectionLike::req_packed_command(&mut conn, cmd);
        if !answers.push(within(left, sent).await.and_then(Value::extract_error)) {
            break;
        }
    }
    Ok(answers.all())
}
