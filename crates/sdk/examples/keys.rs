//! Creates and registers `--items N` keys `item-<i>` in scope global and prints their
//! digests on stdout, one per line: the other half of `fanout --digests-from`.
//!
//! ```text
//! cargo run --release -p idempotency-sdk --features redis --example keys -- --items 5000 --redis redis://127.0.0.1:6379 > d.txt
//! ```
//!
//! With `--redis URL` (feature `redis`) the keys are registered in the catalog shared
//! on Redis, so that another process resolves the digests; without it they are
//! registered in this process's catalog only, and go with it.

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::sync::Arc;

use idempotency_catalog::{Catalog, CatalogBuilder};
use idempotency_sdk::{Scope, Sdk};

fn run() -> Result<(), Box<dyn std::error::Error>> {
    use lexopt::prelude::*;
    let (mut items, mut redis) = (1_000usize, None::<String>);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("items") => items = parser.value()?.parse()?,
            Long("redis") => redis = Some(parser.value()?.string()?),
            Long("help") | Short('h') => {
                println!("usage: keys [--items N] [--redis URL]");
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .init();

    let catalog: Arc<dyn Catalog> = match redis {
        #[cfg(feature = "redis")]
        Some(url) => {
            let redis = idempotency_catalog::RedisBuilder::from_env().url(url).build()?;
            CatalogBuilder::from_env().redis(redis).build()?
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => {
            return Err("--redis needs the `redis` feature: cargo run -p idempotency-sdk --features redis --example keys -- --redis URL".into());
        }
        None => CatalogBuilder::from_env().build()?,
    };
    let sdk = Sdk::new(Arc::clone(&catalog));
    let mut out = BufWriter::new(std::io::stdout().lock());
    for i in 0..items {
        writeln!(out, "{}", sdk.create_key(["item", &i.to_string()], Scope::Global)?)?;
    }
    out.flush()?;
    // Every registration sent before the process exits.
    catalog.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
