//! Resident memory per entry at 1,000,000 entries with 12-character keys, per kind.
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
        Some(kind) => measure(kind.parse()?, entries),
        None => {
            println!("| kind | entries | resident bytes | bytes per entry |");
            println!("|---|---:|---:|---:|");
            for kind in [CatalogKind::Unbounded, CatalogKind::BatchScaled, CatalogKind::Lru] {
                let out =
                    Command::new(std::env::current_exe()?).arg(entries.to_string()).arg(kind.as_str()).output()?;
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
    for i in 0..entries {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        catalog.register(Digest::from_bytes(bytes), KeyOptions::new(&format!("item-{i:07}"), Scope::Global));
    }
    let after = resident_bytes()?;
    assert_eq!(catalog.len(), entries);
    let grown = after.saturating_sub(before);
    println!("| {kind} | {entries} | {grown} | {:.1} |", grown as f64 / entries as f64);
    Ok(())
}

fn resident_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).ok_or("no resident field in /proc/self/statm")?.parse()?;
    Ok(pages * 4096)
}
