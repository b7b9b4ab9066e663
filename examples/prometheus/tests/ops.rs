//! The alert rules (`ops/prometheus`) and the dashboard (`ops/grafana`) query only
//! series the crates emit: every `idempotency_…` name they use is one of the names in
//! the crates' `meter.rs` (read from the source, not copied here), and every `cause`
//! they select is one the catalog labels removals with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// Every `idempotency_…` identifier in `text`.
fn names(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("idempotency_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        found.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    found
}

/// The values of `cause="…"` selectors in `text`.
fn causes(text: &str) -> BTreeSet<String> {
    text.split("cause=\"").skip(1).filter_map(|s| s.split('"').next()).map(str::to_owned).collect()
}

#[test]
fn rules_and_dashboard_query_only_series_the_crates_emit() {
    let catalog_meter = read("crates/catalog/src/meter.rs");
    let emitted: BTreeSet<String> = names(&catalog_meter)
        .into_iter()
        .chain(names(&read("crates/sdk/src/meter.rs")))
        .filter(|name| name.starts_with("idempotency_catalog_") || name.starts_with("idempotency_sdk_"))
        .collect();
    assert!(emitted.len() >= 15, "the meters' names were not found: {emitted:?}");
    for file in [
        "ops/prometheus/idempotency.rules.yml",
        "ops/prometheus/idempotency.rules.test.yml",
        "ops/grafana/idempotency-dashboard.json",
    ] {
        let text = read(file);
        let used = names(&text);
        assert!(!used.is_empty(), "{file} queries nothing");
        let unknown: Vec<_> = used.difference(&emitted).collect();
        assert!(unknown.is_empty(), "{file} uses series no crate emits: {unknown:?}");
        for cause in causes(&text) {
            assert!(catalog_meter.contains(&format!("removal(\"{cause}\")")), "{file}: no removal cause {cause:?}");
        }
    }
    // The rules cover what an operator must hear about.
    let rules = read("ops/prometheus/idempotency.rules.yml");
    for series in [
        "idempotency_catalog_removals_total",
        "idempotency_sdk_batch_items_without_options_total",
        "idempotency_catalog_bytes",
        "idempotency_catalog_faults_total",
        "idempotency_catalog_unshared_total",
        "idempotency_sdk_payload_mismatches_total",
        "idempotency_sdk_engine_evictions_total",
    ] {
        assert!(names(&rules).contains(series), "no rule on {series}");
    }
}
