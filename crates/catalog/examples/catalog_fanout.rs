//! The reference SDK's failure at the catalog level: 6,235 digests registered as one
//! batch (registered through its reservation), under each catalog kind, and how many
//! still have their metadata when the batch has been built. Warnings go to stderr.
//!
//! ```text
//! cargo run -p idempotency-catalog --example catalog_fanout
//! ```

use idempotency_catalog::{CatalogBuilder, CatalogKind, Digest, KeyOptions, Scope};

const ITEMS: u32 = 6_235;

fn main() -> Result<(), idempotency_catalog::Error> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(ansi).with_max_level(tracing::Level::WARN).init();
    println!("{:<13} {:>8} {:>14} {:>17} {:>10}", "catalog", "items", "with metadata", "without metadata", "evictions");
    for kind in CatalogKind::ALL {
        let catalog = CatalogBuilder::new().kind(kind).build()?;
        let digests: Vec<Digest> = (0..ITEMS).map(digest).collect();
        let batch = catalog.reserve(digests.len());
        for (i, digest) in digests.iter().enumerate() {
            batch.register(*digest, KeyOptions::new(&format!("item-{i}"), Scope::Global));
        }
        let kept = digests.iter().filter(|d| catalog.get(d).is_some()).count();
        drop(batch);
        let evictions = catalog.stats().evicted;
        println!("{:<13} {:>8} {:>14} {:>17} {:>10}", kind.as_str(), ITEMS, kept, digests.len() - kept, evictions);
    }
    Ok(())
}

fn digest(i: u32) -> Digest {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    Digest::from_bytes(bytes)
}
