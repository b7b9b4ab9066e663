//! Resident memory per entry at 1,000,000 entries with 12-character keys, per kind,
//! and for a run's keys (held by a reservation of the default batch-scaled catalog).
//!
//! Each kind is measured in a child process of its own, so that one kind's freed
//! memory cannot hide another's growth. Linux only (reads `/proc/self/statm`).
//!
//! ```text
//! cargo run --release -p idempotency-catalog --example memory [ENTRIES]
//! ```

use std::process::Command;

use idempotency_catalog::{CatalogBuilder, CatalogKind, Digest, KeyOptions, Scope};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let entries: usize = args.next().map_or(Ok(1_000_000), |n| n.parse())?;
    match args.next() {
        Some(kind) if kind == RUN => measure_run(entries),
        Some(kind) => measure(kind.parse()?, entries),
        None => {
            println!("| kind | entries | resident bytes | bytes per entry |");
            println!("|---|---:|---:|---:|");
            for kind in ["unbounded", "batch-scaled", "lru", RUN] {
                let out = Command::new(std::env::current_exe()?).arg(entries.to_string()).arg(kind).output()?;
                print!("{}", String::from_utf8_lossy(&out.stdout));
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        }
    }
}

fn measure(kind: CatalogKind, entries: usize) -> Result<(), Box<dyn std::error::Error>> {
    let builder = CatalogBuilder::new().kind(kind);
    // The LRU and batch-scaled catalogs are sized to hold every entry: this measures
    // what an entry costs, not what eviction saves.
    let catalog = match kind {
        CatalogKind::Unbounded => builder.build()?,
        _ => builder.capacity(entries).build()?,
    };
    let before = resident_bytes()?;
    fill(entries, |digest, options| catalog.register(digest, options));
    let after = resident_bytes()?;
    assert_eq!(catalog.len(), entries);
    report(kind.as_str(), entries, after.saturating_sub(before));
    Ok(())
}

/// The row for a run's keys.
const RUN: &str = "batch-scaled, held by a run";

/// The default path: a batch-scaled catalog at its defaults, every key registered
/// through a run's reservation.
fn measure_run(entries: usize) -> Result<(), Box<dyn std::error::Error>> {
    let catalog = CatalogBuilder::new().max_capacity(entries.max(1_000)).build()?;
    let run = catalog.reserve(0);
    let before = resident_bytes()?;
    fill(entries, |digest, options| run.register(digest, options));
    let after = resident_bytes()?;
    assert_eq!(catalog.len(), entries);
    report(RUN, entries, after.saturating_sub(before));
    Ok(())
}

fn fill(entries: usize, mut register: impl FnMut(Digest, KeyOptions)) {
    for i in 0..entries {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        register(Digest::from_bytes(bytes), KeyOptions::new(&format!("item-{i:07}"), Scope::Global));
    }
}

fn report(what: &str, entries: usize, grown: u64) {
    println!("| {what} | {entries} | {grown} | {:.1} |", grown as f64 / entries as f64);
}

fn resident_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).ok_or("no resident field in /proc/self/statm")?.parse()?;
    Ok(pages * 4096)
}
