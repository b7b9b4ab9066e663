//! The main job: the reference SDK's 6,235-item fan-out, under each catalog kind and
//! key form, and how many runs kept their key and scope.
//!
//! ```text
//! cargo run --release -p fanout                 # the whole table
//! cargo run --release -p fanout -- --catalog lru --capacity 1000 --key-form digest
//! cargo run --release -p fanout -- --json      # catalog from the environment
//! ```
//!
//! The fan-out runs as a task does, inside a run (`run_fanout`, attempt 1): every key
//! it creates is held by the run until the run ends. `--outside-run` runs it as a
//! backend does, with no run at all: the keys are free keys of the catalog, kept past
//! its base for the retention time (`IDEMPOTENCY_CATALOG_RETAIN`).
//!
//! Options: `--items N` (default 6235), `--catalog lru|unbounded|batch-scaled` (default:
//! from `IDEMPOTENCY_CATALOG_*`), `--capacity N`, `--key-form typed|digest` (default
//! typed), `--keys-first` (create every key before opening the batch, then add the
//! items: the order of the reference SDK's bug report), `--json` (one JSON object on
//! stdout), `--ndjson PATH` (write the batch request). Without any option it runs every
//! kind with typed keys, digest keys, and digest keys created first. Warnings go to
//! stderr (`RUST_LOG` filters them by level and target, `warn` by default).
//!
//! Fleet mode (this crate's feature `redis`, see docs/fleet.md): `--redis URL` puts the dedup store
//! and the catalog on Redis, so that several processes share them; `runs` then counts
//! the runs this process created, `cached` the items answered with an existing run
//! (possibly another process's), and `cached_without_record` the cached answers whose
//! run this process cannot read (the promise is 0). `--digests-from FILE` builds the batch from the digest
//! strings in FILE, one per line (as the `keys` example prints them), instead of
//! creating keys: a digest minted by another process resolves through the shared
//! catalog, or visibly does not without it.
//!
//! ```text
//! cargo run --release -p idempotency-sdk --features redis --example keys -- --items 5000 --redis redis://127.0.0.1:6379 > d.txt
//! cargo run --release -p fanout --features redis -- --digests-from d.txt --redis redis://127.0.0.1:6379 --json
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use idempotency_sdk::catalog::{Catalog, CatalogBuilder, CatalogKind};
use idempotency_sdk::{Engine, IdempotencyKey, ItemOptions, RunContext, RunId, Scope, Sdk, Ttl};
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
    outside_run: bool,
    json: bool,
    ndjson: Option<std::path::PathBuf>,
    redis: Option<String>,
    digests_from: Option<std::path::PathBuf>,
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
        outside_run: false,
        json: false,
        ndjson: None,
        redis: None,
        digests_from: None,
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
            Long("outside-run") => args.outside_run = true,
            Long("json") => args.json = true,
            Long("ndjson") => args.ndjson = Some(parser.value()?.into()),
            Long("redis") => args.redis = Some(parser.value()?.string()?),
            Long("digests-from") => args.digests_from = Some(parser.value()?.into()),
            Long("help") | Short('h') => {
                println!(
                    "usage: fanout [--items N] [--catalog lru|unbounded|batch-scaled] [--capacity N] [--key-form typed|digest] [--keys-first] [--outside-run] [--json] [--ndjson PATH] [--redis URL] [--digests-from FILE]"
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
    /// Cached answers whose run this process cannot read (0 is the promise).
    cached_without_record: usize,
    /// Entries the catalog dropped while they may still have been needed (each warned).
    evicted: u64,
    /// Entries released when the batch and the run ended (expected, not warned).
    released: u64,
    kind: CatalogKind,
    capacity: Option<usize>,
}

/// Where the keys come from.
enum Source {
    /// Created here: `items` keys `item-<i>`, in `form`, as each is added or all first.
    Create { items: usize, form: KeyForm, keys_first: bool },
    /// Digest strings, made elsewhere.
    Digests(Vec<String>),
}

/// Inside a run (unless `outside_run`), creates the keys (or takes the digests) and
/// adds them to a batch, builds the batch and triggers it on a fresh engine (on Redis
/// with `shared`); then ends the run.
fn fan_out(
    catalog: Arc<dyn Catalog>,
    source: Source,
    outside_run: bool,
    ndjson: Option<&std::path::Path>,
    shared: Option<&Shared>,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let sdk = Sdk::new(Arc::clone(&catalog));
    let sdk = if outside_run { sdk } else { sdk.with_run(RunContext::new("run_fanout", 1)) };
    let ttl: Ttl = "7d".parse()?;
    let items = match &source {
        Source::Create { items, .. } => *items,
        Source::Digests(digests) => digests.len(),
    };
    let mut batch = sdk.batch("child-task", items);
    match source {
        Source::Create { items, form, keys_first } => {
            let create = |i: usize| sdk.create_key(["item", &i.to_string()], Scope::Global);
            let options = |key: IdempotencyKey| match form {
                KeyForm::Typed => ItemOptions::new().key(key).ttl(ttl),
                KeyForm::Digest => ItemOptions::new().key(key.to_string()).ttl(ttl),
            };
            let created: Vec<IdempotencyKey> =
                if keys_first { (0..items).map(create).collect::<Result<_, _>>()? } else { Vec::new() };
            let mut created = created.into_iter();
            for i in 0..items {
                let key = match created.next() {
                    Some(key) => key,
                    None => create(i)?,
                };
                batch.item(json!({ "i": i }), options(key));
            }
        }
        Source::Digests(digests) => {
            for (i, digest) in digests.into_iter().enumerate() {
                batch.item(json!({ "i": i }), ItemOptions::new().key(digest).ttl(ttl));
            }
        }
    }
    let batch = batch.build()?;
    let capacity = catalog.capacity();
    if let Some(path) = ndjson {
        batch.write_ndjson(std::io::BufWriter::new(std::fs::File::create(path)?))?;
    }
    let engine = engine(shared)?;
    let handles = engine.trigger_owned(batch)?;
    // Every cached answer must name a run this process can read, wherever it was made.
    let cached: Vec<RunId> = handles.iter().filter(|h| h.cached).map(|h| h.id).collect();
    let cached_without_record = engine.read_runs(&cached)?.iter().filter(|r| r.is_none()).count();
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
        cached: cached.len(),
        cached_without_record,
        evicted: stats.evicted,
        released: stats.released,
        kind: catalog.kind(),
        capacity,
    })
}

fn build(
    kind: Option<CatalogKind>,
    capacity: Option<usize>,
    shared: Option<&Shared>,
) -> Result<Arc<dyn Catalog>, idempotency_sdk::catalog::Error> {
    let builder = match kind {
        Some(kind) => CatalogBuilder::new().kind(kind),
        None => CatalogBuilder::from_env(),
    };
    let builder = match capacity {
        Some(capacity) => builder.capacity(capacity),
        None => builder,
    };
    match shared {
        Some(shared) => on_redis(builder, shared).build(),
        None => builder.build(),
    }
}

/// The Redis handle in fleet mode; without the feature, a type with no value.
#[cfg(feature = "redis")]
type Shared = idempotency_sdk::catalog::Redis;
#[cfg(not(feature = "redis"))]
type Shared = std::convert::Infallible;

#[cfg(feature = "redis")]
fn connect(url: &str) -> Result<Shared, Box<dyn std::error::Error>> {
    Ok(idempotency_sdk::catalog::RedisBuilder::from_env().url(url).build()?)
}

#[cfg(not(feature = "redis"))]
fn connect(_: &str) -> Result<Shared, Box<dyn std::error::Error>> {
    Err("--redis needs the `redis` feature: cargo run --release -p fanout --features redis -- --redis URL".into())
}

#[cfg(feature = "redis")]
fn on_redis(builder: CatalogBuilder, shared: &Shared) -> CatalogBuilder {
    builder.redis(shared.clone())
}

#[cfg(not(feature = "redis"))]
fn on_redis(_: CatalogBuilder, shared: &Shared) -> CatalogBuilder {
    match *shared {}
}

fn engine(shared: Option<&Shared>) -> Result<Engine, idempotency_sdk::Error> {
    match shared {
        #[cfg(feature = "redis")]
        Some(shared) => Engine::on_redis(shared),
        #[cfg(not(feature = "redis"))]
        Some(shared) => match *shared {},
        None => Ok(Engine::new()),
    }
}

/// Prints `tracing` events on stderr, without colour: those `RUST_LOG` selects
/// (`warn`, `idempotency=debug`, …: levels and targets, the `Targets` grammar), `WARN`
/// and above by default or when it does not parse.
fn warnings_to_stderr() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let targets = std::env::var("RUST_LOG").ok().and_then(|directives| directives.parse::<Targets>().ok());
    let targets = targets.unwrap_or_else(|| Targets::new().with_default(LevelFilter::WARN));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false);
    tracing_subscriber::registry().with(fmt).with(targets).init();
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    warnings_to_stderr();

    let shared = args.redis.as_deref().map(connect).transpose()?;
    if !args.any {
        println!(
            "{:<13} {:<19} {:>6} {:>6} {:>16} {:>19} {:>10} {:>17}",
            "catalog", "keys", "items", "runs", "with key+scope", "without key+scope", "evicted", "released after run"
        );
        for kind in CatalogKind::ALL {
            for (form, keys_first) in [(KeyForm::Typed, false), (KeyForm::Digest, false), (KeyForm::Digest, true)] {
                let source = Source::Create { items: args.items, form, keys_first };
                let o = fan_out(build(Some(kind), None, None)?, source, false, None, None)?;
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

    let catalog = build(args.catalog, args.capacity, shared.as_ref())?;
    let source = match &args.digests_from {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
            Source::Digests(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
        }
        None => Source::Create { items: args.items, form: args.key_form, keys_first: args.keys_first },
    };
    let o = fan_out(Arc::clone(&catalog), source, args.outside_run, args.ndjson.as_deref(), shared.as_ref())?;
    catalog.flush()?;
    if args.json {
        let out = json!({
            "items": o.items,
            "runs": o.runs,
            "runs_with_key": o.runs_with_key,
            "runs_without_key": o.runs_without_key,
            "cached": o.cached,
            "cached_without_record": o.cached_without_record,
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
