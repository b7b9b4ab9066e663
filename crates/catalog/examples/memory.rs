//! Resident memory per entry, and the byte budget honoured.
//!
//! Three tables:
//!
//! - per kind, 1,000,000 entries with 12-character keys, and a run's keys (held by a
//!   reservation of the default batch-scaled catalog);
//! - per key length (12, 64, 256 and 2,048 bytes), a run holding 1,000,000 keys: the
//!   resident bytes per entry beside what the catalog counts (`Stats::bytes`), which is
//!   meant to be an upper bound of what its entries hold;
//! - per key length, the same run under `IDEMPOTENCY_CATALOG_MAX_BYTES=64MiB`: the
//!   resident growth stays within the budget plus a slack (`SLACK`, the allocator's
//!   and the hash table's), the counted bytes within the budget, and the catalog warns
//!   naming the budget. The example fails (exit 1) when one of these does not hold.
//!
//! Each row is measured in a child process of its own, so that one row's freed memory
//! cannot hide another's growth. Linux only (reads `/proc/self/statm`).
//!
//! ```text
//! cargo run --release -p idempotency-catalog --example memory [ENTRIES]
//! cargo run --release -p idempotency-catalog --example memory -- 1000000 budget   # the budget table alone
//! ```

use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use idempotency_catalog::{CatalogBuilder, CatalogKind, Digest, KeyOptions, Scope, env};

const KEY_LENGTHS: [usize; 4] = [12, 64, 256, 2_048];
const BUDGET: u64 = 64 << 20;
/// What resident memory may grow beyond the budget: the hash table's slack between
/// the load the count assumes and its real one, and the allocator's free chunks.
const SLACK: u64 = 8 << 20;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let entries: usize = args.next().map_or(Ok(1_000_000), |n| n.parse())?;
    let what: Vec<String> = args.collect();
    match what.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["kind", kind] => measure_kind(kind, entries),
        ["length", len] => measure_length(len.parse()?, entries, false),
        ["budget", len] => measure_length(len.parse()?, entries, true),
        ["budget"] => budget_table(entries),
        [] => {
            println!("| kind | entries | resident bytes | bytes per entry |");
            println!("|---|---:|---:|---:|");
            for kind in ["unbounded", "batch-scaled", "lru", RUN] {
                child(entries, &["kind", kind])?;
            }
            println!();
            println!("| key length | entries | resident bytes per entry | counted bytes per entry |");
            println!("|---:|---:|---:|---:|");
            for len in KEY_LENGTHS {
                child(entries, &["length", &len.to_string()])?;
            }
            println!();
            budget_table(entries)
        }
        _ => Err("usage: memory [ENTRIES] [budget]".into()),
    }
}

fn budget_table(entries: usize) -> Result<bool, Box<dyn std::error::Error>> {
    println!("Held by a run, {}=64MiB:", env::MAX_BYTES);
    println!();
    println!(
        "| key length | entries registered | entries kept | resident growth | counted bytes | within budget + slack | warned naming the budget |"
    );
    println!("|---:|---:|---:|---:|---:|---|---|");
    let mut ok = true;
    for len in KEY_LENGTHS {
        ok &= child(entries, &["budget", &len.to_string()])?;
    }
    Ok(ok)
}

/// Runs this example again with `args`, passing its table row through.
fn child(entries: usize, args: &[&str]) -> Result<bool, Box<dyn std::error::Error>> {
    let out = Command::new(std::env::current_exe()?).arg(entries.to_string()).args(args).output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(out.status.success())
}

/// The row for a run's keys.
const RUN: &str = "batch-scaled, held by a run";

fn measure_kind(kind: &str, entries: usize) -> Result<bool, Box<dyn std::error::Error>> {
    let catalog = if kind == RUN {
        // The default path: a batch-scaled catalog at its defaults, every key registered
        // through a run's reservation.
        CatalogBuilder::new().max_capacity(entries.max(1_000)).build()?
    } else {
        let kind: CatalogKind = kind.parse()?;
        let builder = CatalogBuilder::new().kind(kind);
        // The LRU and batch-scaled catalogs are sized to hold every entry: this
        // measures what an entry costs, not what eviction saves.
        match kind {
            CatalogKind::Unbounded => builder.build()?,
            _ => builder.capacity(entries).build()?,
        }
    };
    let run = (kind == RUN).then(|| catalog.reserve(0));
    let before = resident_bytes()?;
    fill(entries, 12, |digest, options| match &run {
        Some(run) => run.register(digest, options),
        None => catalog.register(digest, options),
    });
    let grown = resident_bytes()?.saturating_sub(before);
    assert_eq!(catalog.len(), entries);
    println!("| {kind} | {entries} | {grown} | {:.1} |", grown as f64 / entries as f64);
    Ok(true)
}

/// A run holding `entries` keys of `len` bytes, without a budget (room for all) or
/// under 64 MiB given as the variable.
fn measure_length(len: usize, entries: usize, budget: bool) -> Result<bool, Box<dyn std::error::Error>> {
    let warned = Arc::new(AtomicBool::new(false));
    let catalog = if budget {
        tracing::subscriber::set_global_default(BudgetWarnings(Arc::clone(&warned)))?;
        CatalogBuilder::from_env_with(|name| (name == env::MAX_BYTES).then(|| "64MiB".to_owned())).build()?
    } else {
        CatalogBuilder::new().max_capacity(entries.max(1_000)).max_bytes(usize::MAX).build()?
    };
    let run = catalog.reserve(0);
    let before = resident_bytes()?;
    fill(entries, len, |digest, options| run.register(digest, options));
    let grown = resident_bytes()?.saturating_sub(before);
    let stats = catalog.stats();
    if !budget {
        assert_eq!(stats.len, entries);
        let per = |bytes: u64| bytes as f64 / entries as f64;
        println!("| {len} | {entries} | {:.1} | {:.1} |", per(grown), per(stats.bytes as u64));
        return Ok(true);
    }
    catalog.flush()?;
    let within = grown <= BUDGET + SLACK && stats.bytes as u64 <= BUDGET;
    let warned = warned.load(Ordering::Relaxed);
    println!(
        "| {len} | {entries} | {} | {grown} | {} | {} | {} |",
        stats.len,
        stats.bytes,
        if within { "yes" } else { "**no**" },
        if warned { "yes" } else { "**no**" }
    );
    Ok(within && warned && stats.evicted > 0)
}

fn fill(entries: usize, len: usize, mut register: impl FnMut(Digest, KeyOptions)) {
    let mut key = String::with_capacity(len);
    for i in 0..entries {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        key.clear();
        key.push_str(&format!("item-{i:07}"));
        while key.len() < len {
            key.push('x');
        }
        register(Digest::from_bytes(bytes), KeyOptions::new(&key, Scope::Global));
    }
}

fn resident_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).ok_or("no resident field in /proc/self/statm")?.parse()?;
    Ok(pages * 4096)
}

/// A subscriber that only notes whether a `WARN` named the 64 MiB budget and the
/// variable to raise.
struct BudgetWarnings(Arc<AtomicBool>);

impl tracing::Subscriber for BudgetWarnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() == tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.max_bytes == Some(BUDGET) && fields.remedy.contains(env::MAX_BYTES) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[derive(Default)]
struct Fields {
    max_bytes: Option<u64>,
    remedy: String,
}

impl tracing::field::Visit for Fields {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "max_bytes" {
            self.max_bytes = Some(value);
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "remedy" {
            value.clone_into(&mut self.remedy);
        }
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}
