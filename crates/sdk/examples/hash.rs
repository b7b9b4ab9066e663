//! Which digest does this key have? Prints `{"hash":…,"user_key":…}` for key parts in a
//! scope and run context, exactly as the reference SDK derives it.
//!
//! ```text
//! cargo run -q -p idempotency-sdk --example hash -- --scope attempt --run-id run_abc123 --attempt 1 my-key
//! cargo run -q -p idempotency-sdk --example hash -- --scope global -- -starts-with-a-dash item
//! ```
//!
//! `--scope run|attempt|global` (default `run`), `--run-id R`, `--attempt N` (needed
//! with `--run-id` for scope `attempt`), then the parts; after `--` every argument is
//! a part. Zero parts and empty parts are valid, as in the reference.

use std::process::ExitCode;

use idempotency_sdk::{IdempotencyKey, RunContext, Scope};

fn run() -> Result<String, Box<dyn std::error::Error>> {
    use lexopt::prelude::*;
    let mut scope = Scope::Run;
    let mut run_id: Option<String> = None;
    let mut attempt: Option<u32> = None;
    let mut parts: Vec<String> = Vec::new();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("scope") => scope = parser.value()?.string()?.parse()?,
            Long("run-id") => run_id = Some(parser.value()?.string()?),
            Long("attempt") => attempt = Some(parser.value()?.parse()?),
            Value(part) => parts.push(part.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let run = match (run_id, attempt) {
        (None, Some(_)) => return Err("--attempt needs --run-id".into()),
        (None, None) => None,
        (Some(_), None) if scope == Scope::Attempt => {
            return Err("scope `attempt` inside a run needs --attempt N".into());
        }
        (Some(id), attempt) => Some(RunContext::new(id, attempt.unwrap_or(1))),
    };
    let key = IdempotencyKey::derive(&parts, scope, run.as_ref());
    let user_key = key.options().map(|o| o.key());
    Ok(serde_json::json!({ "hash": key.to_string(), "user_key": user_key }).to_string())
}

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
