//! A Rust service on the async fleet API (feature `tokio`), and whether it stalls: a
//! current-thread tokio runtime, `--handlers N` tasks each triggering `--items M` keys
//! (`item-<i>`, the same for every handler, so that one makes each run and the others
//! are answered from cache) in batches of `--batch B`, `--rounds R` times, and a ticker
//! task that sleeps 1 ms at a time and records how late it wakes. A call into the
//! library that blocked the thread would show there.
//!
//! ```text
//! cargo run --release -p idempotency-sdk --features tokio --example service -- --handlers 8 --items 20000 --redis redis://127.0.0.1:6379
//! ```
//!
//! Prints one JSON object: `max_stall_ms` (the ticker's worst lateness), `runs` (runs
//! this service created), `cached`, `errors` (calls that failed, such as timeouts while
//! Redis is paused; the handlers go on), `first_error`, `runs_after_errors` (items
//! answered after the last error: the service went on without a restart),
//! `flush_error` (the final flush of the catalog's writes, `null` when it succeeded)
//! and `seconds`. The figures are printed whatever failed once the service ran: a
//! failed final flush (Redis still paused) prints them with the error beside them, and
//! exits 1. Options: `--io-timeout-ms` (default 500), `--rounds` (default 1),
//! `--event-interval` (default 1).
//! `IDEMPOTENCY_REDIS_*` variables apply.
//!
//! `--event-interval` is the runtime's: how many task polls it runs before it looks at
//! its timers and sockets again (tokio's default is 61). At 1 the ticker waits for the
//! tasks queued before it, each for one poll, which a call that blocked would lengthen:
//! the measure this example is for. At 61 it also waits for up to 61 short polls of
//! busy handlers, whatever the library does (`docs/performance.md` has both).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use idempotency_catalog::{Catalog, CatalogBuilder, RedisBuilder};
use idempotency_sdk::{Engine, ItemOptions, Scope, Sdk};
use parking_lot::Mutex;
use serde_json::json;

struct Args {
    handlers: usize,
    items: usize,
    batch: usize,
    rounds: usize,
    io_timeout: Duration,
    event_interval: u32,
    redis: String,
}

fn parse_args() -> Result<Args, Box<dyn std::error::Error>> {
    use lexopt::prelude::*;
    let mut args = Args {
        handlers: 8,
        items: 20_000,
        batch: 2_000,
        rounds: 1,
        io_timeout: Duration::from_millis(500),
        event_interval: 1,
        redis: String::new(),
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("handlers") => args.handlers = parser.value()?.parse()?,
            Long("items") => args.items = parser.value()?.parse()?,
            Long("batch") => args.batch = parser.value()?.parse()?,
            Long("rounds") => args.rounds = parser.value()?.parse()?,
            Long("io-timeout-ms") => args.io_timeout = Duration::from_millis(parser.value()?.parse()?),
            Long("event-interval") => args.event_interval = parser.value()?.parse()?,
            Long("redis") => args.redis = parser.value()?.string()?,
            Long("help") | Short('h') => {
                println!(
                    "usage: service --redis URL [--handlers N] [--items M] [--batch B] [--rounds R] [--io-timeout-ms T] [--event-interval E]"
                );
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if args.redis.is_empty() {
        return Err("--redis URL is required".into());
    }
    if args.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    Ok(args)
}

/// What the handlers saw, shared between the tasks.
#[derive(Default)]
struct Tally {
    runs: AtomicUsize,
    cached: AtomicUsize,
    errors: AtomicUsize,
    first_error: Mutex<Option<String>>,
    /// Items answered since the last error.
    since_error: AtomicUsize,
}

/// The figures, and the error that should fail the process after they are printed
/// (the final flush, or a handler that panicked).
async fn serve(args: Args) -> Result<(serde_json::Value, Option<String>), Box<dyn std::error::Error>> {
    let redis = RedisBuilder::from_env().url(&args.redis).io_timeout(args.io_timeout).build_async().await?;
    let catalog = CatalogBuilder::from_env().redis_async(redis.clone()).build_redis()?;
    let engine = Arc::new(Engine::on_redis_async(&redis).await?);

    let max_stall = Arc::new(AtomicU64::new(0));
    let ticking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ticker = {
        let (max_stall, ticking) = (Arc::clone(&max_stall), Arc::clone(&ticking));
        tokio::spawn(async move {
            while ticking.load(Ordering::Relaxed) {
                let asked = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                let late = asked.elapsed().saturating_sub(Duration::from_millis(1));
                max_stall.fetch_max(u64::try_from(late.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
            }
        })
    };

    let started = Instant::now();
    let tally = Arc::new(Tally::default());
    let handlers: Vec<_> = (0..args.handlers)
        .map(|_| {
            let sdk = Sdk::new(Arc::clone(&catalog) as Arc<dyn Catalog>);
            let (engine, tally) = (Arc::clone(&engine), Arc::clone(&tally));
            let (items, size, rounds) = (args.items, args.batch, args.rounds);
            tokio::spawn(async move {
                for _ in 0..rounds {
                    for from in (0..items).step_by(size) {
                        let to = (from + size).min(items);
                        let mut batch = sdk.batch("child-task", to - from);
                        for i in from..to {
                            batch.item(
                                None,
                                ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global)),
                            );
                            // The handler's own work: let the others run between items.
                            if i % 250 == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                        let answered = match batch.build() {
                            Ok(batch) => engine.trigger_owned_async(batch).await,
                            Err(err) => Err(err),
                        };
                        match answered {
                            Ok(handles) => {
                                let cached = handles.iter().filter(|h| h.cached).count();
                                tally.cached.fetch_add(cached, Ordering::Relaxed);
                                tally.runs.fetch_add(handles.len() - cached, Ordering::Relaxed);
                                tally.since_error.fetch_add(handles.len(), Ordering::Relaxed);
                            }
                            Err(err) => {
                                tally.errors.fetch_add(1, Ordering::Relaxed);
                                tally.since_error.store(0, Ordering::Relaxed);
                                tally.first_error.lock().get_or_insert_with(|| err.to_string());
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut failed = None;
    for handler in handlers {
        if let Err(err) = handler.await {
            failed.get_or_insert(format!("a handler failed: {err}"));
        }
    }
    // What the catalog's sender has not sent yet goes out before the runtime stops;
    // when it cannot (Redis still paused), the figures are printed all the same.
    let flush_error = catalog.flush_async().await.err().map(|err| err.to_string());
    let seconds = started.elapsed().as_secs_f64();
    ticking.store(false, Ordering::Relaxed);
    if let Err(err) = ticker.await {
        failed.get_or_insert(format!("the ticker failed: {err}"));
    }
    if let Some(err) = &flush_error {
        failed.get_or_insert(format!("final flush: {err}"));
    }
    let first_error = tally.first_error.lock().clone();
    let figures = json!({
        "handlers": args.handlers,
        "items": args.items,
        "rounds": args.rounds,
        "max_stall_ms": max_stall.load(Ordering::Relaxed) as f64 / 1_000.0,
        "runs": tally.runs.load(Ordering::Relaxed),
        "cached": tally.cached.load(Ordering::Relaxed),
        "errors": tally.errors.load(Ordering::Relaxed),
        "first_error": first_error,
        "runs_after_errors": tally.since_error.load(Ordering::Relaxed),
        "flush_error": flush_error,
        "seconds": seconds,
    });
    Ok((figures, failed))
}

fn main() -> ExitCode {
    let run = || -> Result<(serde_json::Value, Option<String>), Box<dyn std::error::Error>> {
        let args = parse_args()?;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(filter)
            .init();
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().event_interval(args.event_interval).build()?;
        runtime.block_on(serve(args))
    };
    match run() {
        Ok((figures, failed)) => {
            println!("{figures}");
            match failed {
                None => ExitCode::SUCCESS,
                Some(err) => {
                    eprintln!("error: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
