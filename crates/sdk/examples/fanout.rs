//! The main job: the reference SDK's 6,235-item fan-out, under each catalog kind and
//! key form, and how many runs kept their key and scope.
//!
//! ```text
//! cargo run --release -p idempotency-sdk --example fanout                 # the whole table
//! cargo run --release -p idempotency-sdk --example fanout -- --catalog lru --capacity 1000 --key-form digest
//! cargo run --release -p idempotency-sdk --example fanout -- --json      # catalog from the environment
//! ```
//!
//! The fan-out runs as a task does, inside a run (`run_fanout`, attempt 1): every key
//! it creates is held by the run until the run ends.
//!
//! Options: `--items N` (default 6235), `--catalog lru|unbounded|batch-scaled` (default:
//! from `IDEMPOTENCY_CATALOG_*`), `--capacity N`, `--key-form typed|digest` (default
//! typed), `--keys-first` (create every key before opening the batch, then add the
//! items: the order of the reference SDK's bug report), `--json` (one JSON object on
//! stdout), `--ndjson PATH` (write the batch request). Without any option it runs every
//! kind with typed keys, digest keys, and digest keys created first. Warnings go to stderr (`RUST_LOG` filters them; default
//! `warn`).

use std::process::ExitCode;
use std::sync::Arc;

use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind};
use idempotency_sdk::{IdempotencyKey, ItemOptions, LocalEngine, RunContext, Scope, Sdk, Ttl};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyForm {
    /// `IdempotencyKey` values, which carry their own options.
    Typed,
    /// The digest strings alone, as a caller relaying keys through a payload would.
    Digest,
}

impl KeyForm {
    fn name(self) -> &'static str {
        match self {
            KeyForm::Typed => "typed",
            KeyForm::Digest => "digest",
        }
    }
}

struct Args {
    items: usize,
    catalog: Option<CatalogKind>,
    capacity: Option<usize>,
    key_form: KeyForm,
    keys_first: bool,
    json: bool,
    ndjson: Option<std::path::PathBuf>,
    any: bool,
}

fn parse_args() -> Result<Args, Box<dyn std::error::Error>> {
    use lexopt::prelude::*;
    let mut args = Args {
        items: 6_235,
        catalog: None,
        capacity: None,
        key_form: KeyForm::Typed,
        keys_first: false,
        json: false,
        ndjson: None,
        any: false,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        args.any = true;
        match arg {
            Long("items") => args.items = parser.value()?.parse()?,
            Long("catalog") => args.catalog = Some(parser.value()?.string()?.parse()?),
            Long("capacity") => args.capacity = Some(parser.value()?.parse()?),
            Long("key-form") => {
                args.key_form = match parser.value()?.string()?.as_str() {
                    "typed" => KeyForm::Typed,
                    "digest" => KeyForm::Digest,
                    other => return Err(format!("invalid --key-form {other:?}: expected `typed` or `digest`").into()),
                }
            }
            Long("keys-first") => args.keys_first = true,
            Long("json") => args.json = true,
            Long("ndjson") => args.ndjson = Some(parser.value()?.into()),
            Long("help") | Short('h') => {
                println!(
                    "usage: fanout [--items N] [--catalog lru|unbounded|batch-scaled] [--capacity N] [--key-form typed|digest] [--keys-first] [--json] [--ndjson PATH]"
                );
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(args)
}

/// What one fan-out produced.
struct Outcome {
    items: usize,
    runs: usize,
    runs_with_key: usize,
    runs_without_key: usize,
    cached: usize,
    /// Entries the catalog dropped while they may still have been needed (each warned).
    evicted: u64,
    /// Entries released when the batch and the run ended (expected, not warned).
    released: u64,
    kind: CatalogKind,
    capacity: Option<usize>,
}

/// Inside a run, creates `items` keys and adds them to a batch (as each is created, or
/// all first), builds the batch and triggers it on a fresh local engine; then ends the
/// run.
fn fan_out(
    catalog: Arc<dyn Catalog>,
    items: usize,
    form: KeyForm,
    keys_first: bool,
    ndjson: Option<&std::path::Path>,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let sdk = Sdk::new(Arc::clone(&catalog)).with_run(RunContext::new("run_fanout", 1));
    let ttl: Ttl = "7d".parse()?;
    let create = |i: usize| sdk.create_key(["item", &i.to_string()], Scope::Global);
    let options = |key: IdempotencyKey| match form {
        KeyForm::Typed => ItemOptions::new().key(key).ttl(ttl),
        KeyForm::Digest => ItemOptions::new().key(key.to_string()).ttl(ttl),
    };
    let created: Vec<IdempotencyKey> = if keys_first { (0..items).map(create).collect() } else { Vec::new() };
    let mut batch = sdk.batch("child-task", items);
    let mut created = created.into_iter();
    for i in 0..items {
        let key = match created.next() {
            Some(key) => key,
            None => create(i),
        };
        batch.item(json!({ "i": i }), options(key));
    }
    let batch = batch.build()?;
    let capacity = catalog.capacity();
    if let Some(path) = ndjson {
        batch.write_ndjson(std::io::BufWriter::new(std::fs::File::create(path)?))?;
    }
    let engine = LocalEngine::new();
    let handles = engine.trigger_owned(batch)?;
    // Read in place: a million-run engine copies nothing to be counted.
    let (mut runs, mut with_key) = (0, 0);
    engine.for_each_run(|run| {
        runs += 1;
        with_key += usize::from(run.idempotency_key_scope().is_some());
    });
    drop(sdk); // the run ends, and the catalog releases its keys
    let stats = catalog.stats();
    Ok(Outcome {
        items,
        runs,
        runs_with_key: with_key,
        runs_without_key: runs - with_key,
        cached: handles.iter().filter(|h| h.cached).count(),
        evicted: stats.evicted,
        released: stats.released,
        kind: catalog.kind(),
        capacity,
    })
}

fn build(kind: Option<CatalogKind>, capacity: Option<usize>) -> Result<Arc<dyn Catalog>, idempotency_catalog::Error> {
    let builder = match kind {
        Some(kind) => CatalogBuilder::new().kind(kind),
        None => CatalogBuilder::from_env(),
    };
    match capacity {
        Some(capacity) => builder.capacity(capacity).build(),
        None => builder.build(),
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(ansi).with_env_filter(filter).init();

    if !args.any {
        println!(
            "{:<13} {:<19} {:>6} {:>6} {:>16} {:>19} {:>10} {:>17}",
            "catalog", "keys", "items", "runs", "with key+scope", "without key+scope", "evicted", "released after run"
        );
        for kind in CatalogKind::ALL {
            for (form, keys_first) in [(KeyForm::Typed, false), (KeyForm::Digest, false), (KeyForm::Digest, true)] {
                let o = fan_out(build(Some(kind), None)?, args.items, form, keys_first, None)?;
                println!(
                    "{:<13} {:<19} {:>6} {:>6} {:>16} {:>19} {:>10} {:>17}",
                    kind.as_str(),
                    if keys_first { format!("{}, keys first", form.name()) } else { form.name().to_owned() },
                    o.items,
                    o.runs,
                    o.runs_with_key,
                    o.runs_without_key,
                    o.evicted,
                    o.released
                );
            }
        }
        return Ok(());
    }

    let catalog = build(args.catalog, args.capacity)?;
    let o = fan_out(catalog, args.items, args.key_form, args.keys_first, args.ndjson.as_deref())?;
    if args.json {
        let out = json!({
            "items": o.items,
            "runs": o.runs,
            "runs_with_key": o.runs_with_key,
            "runs_without_key": o.runs_without_key,
            "cached": o.cached,
            "evicted": o.evicted,
            "released": o.released,
            "catalog_kind": o.kind.as_str(),
            "catalog_capacity": o.capacity,
        });
        println!("{out}");
    } else {
        println!(
            "{} {} keys: {} items, {} runs, {} with key and scope, {} without; {} evicted, {} released after the run (capacity {})",
            o.kind,
            args.key_form.name(),
            o.items,
            o.runs,
            o.runs_with_key,
            o.runs_without_key,
            o.evicted,
            o.released,
            o.capacity.map_or_else(|| "unbounded".to_owned(), |c| c.to_string())
        );
    }
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
