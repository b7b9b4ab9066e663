//! Every limit a catalog warns about (entries, ceiling, bytes, retention), set from each
//! source (a builder call, a variable, the default, a constructor): the warning names
//! the limit, its source, and a remedy that raises it from where it was set; doing what
//! the remedy says removes the evictions, and (for a builder value) raising the
//! variable instead changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;
use std::time::Duration;

use idempotency_catalog::{
    BatchScaledCatalog, Catalog, CatalogBuilder, CatalogKind, KeyOptions, Limit, LruCatalog, Scope, env,
};
use support::{digest, lookup};

mod support;

/// What a workload does to a catalog.
#[derive(Clone, Copy)]
enum Work {
    /// `n` keys outside any run, each of `len` bytes.
    Free { n: u32 },
    /// `n` keys held by one run, each of `len` bytes.
    Run { n: u32, len: usize },
}

/// Runs `work` on `catalog`: its evictions and the first WARN line.
fn run(catalog: &dyn Catalog, work: Work) -> (u64, Option<String>) {
    let ((), lines) = testkit::warnings(|| match work {
        Work::Free { n } => {
            for i in 0..n {
                catalog.register(digest(i), KeyOptions::new(&format!("k{i}"), Scope::Global));
            }
            catalog.flush().unwrap();
        }
        Work::Run { n, len } => {
            let run = catalog.reserve(0);
            let pad = "k".repeat(len.saturating_sub(10));
            for i in 0..n {
                run.register(digest(i), KeyOptions::new(&format!("{i:010}{pad}"), Scope::Global));
            }
        }
    });
    (catalog.stats().evicted, lines.into_iter().find(|l| l.contains("catalog full")))
}

struct Case {
    name: &'static str,
    limit: Limit,
    source: &'static str,
    work: Work,
    /// The catalog as set up, with the limit too low.
    low: fn() -> Arc<dyn Catalog>,
    /// What the remedy must say.
    says: &'static [&'static str],
    /// What it must not say: a knob that would be ignored.
    not: &'static [&'static str],
    /// The catalog with the remedy followed.
    followed: fn() -> Arc<dyn Catalog>,
    /// The catalog with the knob the remedy does not name raised instead: still short.
    ignored: Option<fn() -> Arc<dyn Catalog>>,
}

fn lru() -> CatalogBuilder {
    CatalogBuilder::new().kind(CatalogKind::Lru)
}

fn cases() -> Vec<Case> {
    let free = Work::Free { n: 1_000 };
    let held = Work::Run { n: 1_000, len: 100 };
    vec![
        // Entries: an LRU's capacity.
        Case {
            name: "lru capacity from the builder",
            limit: Limit::Entries,
            source: "builder",
            work: free,
            low: || lru().capacity(100).build().unwrap(),
            says: &["raise CatalogBuilder::capacity (set in code to 100;", "IDEMPOTENCY_CATALOG_CAPACITY is not read"],
            not: &["raise IDEMPOTENCY_CATALOG_CAPACITY"],
            followed: || lru().capacity(1_000).build().unwrap(),
            ignored: Some(|| {
                CatalogBuilder::from_env_with(lookup(&[(env::CAPACITY, "5000")]))
                    .kind(CatalogKind::Lru)
                    .capacity(100)
                    .build()
                    .unwrap()
            }),
        },
        Case {
            name: "lru capacity from the environment",
            limit: Limit::Entries,
            source: "env",
            work: free,
            low: || {
                CatalogBuilder::from_env_with(lookup(&[(env::KIND, "lru"), (env::CAPACITY, "100")])).build().unwrap()
            },
            says: &["raise IDEMPOTENCY_CATALOG_CAPACITY (set to 100)", "IDEMPOTENCY_CATALOG_KIND=batch-scaled"],
            not: &["CatalogBuilder::capacity"],
            followed: || {
                CatalogBuilder::from_env_with(lookup(&[(env::KIND, "lru"), (env::CAPACITY, "1000")])).build().unwrap()
            },
            ignored: None,
        },
        Case {
            name: "lru capacity by default",
            limit: Limit::Entries,
            source: "default",
            work: Work::Free { n: 2_000 },
            low: || CatalogBuilder::from_env_with(lookup(&[(env::KIND, "lru")])).build().unwrap(),
            says: &["IDEMPOTENCY_CATALOG_CAPACITY or CatalogBuilder::capacity (the default, 1000)"],
            not: &[],
            followed: || {
                CatalogBuilder::from_env_with(lookup(&[(env::KIND, "lru"), (env::CAPACITY, "2000")])).build().unwrap()
            },
            ignored: None,
        },
        Case {
            name: "lru capacity from its constructor",
            limit: Limit::Entries,
            source: "builder",
            work: free,
            low: || Arc::new(LruCatalog::with_capacity(100).unwrap()),
            says: &["raise the capacity given to LruCatalog::with_capacity (100)"],
            not: &["IDEMPOTENCY_CATALOG_"],
            followed: || Arc::new(LruCatalog::with_capacity(1_000).unwrap()),
            ignored: None,
        },
        // The ceiling of a batch-scaled catalog, met by a run.
        Case {
            name: "ceiling from the builder",
            limit: Limit::Ceiling,
            source: "builder",
            work: held,
            low: || CatalogBuilder::new().capacity(10).max_capacity(200).build().unwrap(),
            says: &["raise CatalogBuilder::max_capacity (set in code to 200;"],
            not: &["raise IDEMPOTENCY_CATALOG_MAX_CAPACITY"],
            followed: || CatalogBuilder::new().capacity(10).max_capacity(1_000).build().unwrap(),
            ignored: Some(|| {
                CatalogBuilder::from_env_with(lookup(&[(env::MAX_CAPACITY, "5000")]))
                    .capacity(10)
                    .max_capacity(200)
                    .build()
                    .unwrap()
            }),
        },
        Case {
            name: "ceiling from the environment",
            limit: Limit::Ceiling,
            source: "env",
            work: held,
            low: || CatalogBuilder::from_env_with(lookup(&[(env::MAX_CAPACITY, "200")])).capacity(10).build().unwrap(),
            says: &["raise IDEMPOTENCY_CATALOG_MAX_CAPACITY (set to 200)"],
            not: &["CatalogBuilder::max_capacity"],
            followed: || {
                CatalogBuilder::from_env_with(lookup(&[(env::MAX_CAPACITY, "1000")])).capacity(10).build().unwrap()
            },
            ignored: None,
        },
        Case {
            name: "ceiling by default",
            limit: Limit::Ceiling,
            source: "default",
            work: Work::Run { n: 1_000_100, len: 10 },
            low: || CatalogBuilder::new().build().unwrap(),
            says: &["IDEMPOTENCY_CATALOG_MAX_CAPACITY or CatalogBuilder::max_capacity (the default, 1000000)"],
            not: &[],
            followed: || CatalogBuilder::from_env_with(lookup(&[(env::MAX_CAPACITY, "1000100")])).build().unwrap(),
            ignored: None,
        },
        Case {
            name: "ceiling from its constructor",
            limit: Limit::Ceiling,
            source: "builder",
            work: held,
            low: || Arc::new(BatchScaledCatalog::new(10, 200).unwrap()),
            says: &["raise the ceiling given to BatchScaledCatalog::new (200)"],
            not: &["IDEMPOTENCY_CATALOG_"],
            followed: || Arc::new(BatchScaledCatalog::new(10, 1_000).unwrap()),
            ignored: None,
        },
        // The byte budget, met by a run of 1,000 keys of 100 bytes (247 KB counted).
        Case {
            name: "budget from the builder",
            limit: Limit::Bytes,
            source: "builder",
            work: held,
            low: || CatalogBuilder::new().max_bytes(64 << 10).build().unwrap(),
            says: &["raise CatalogBuilder::max_bytes (set in code to 64KiB;"],
            not: &["raise IDEMPOTENCY_CATALOG_MAX_BYTES"],
            followed: || CatalogBuilder::new().max_bytes(1 << 20).build().unwrap(),
            ignored: Some(|| {
                CatalogBuilder::from_env_with(lookup(&[(env::MAX_BYTES, "64MiB")])).max_bytes(64 << 10).build().unwrap()
            }),
        },
        Case {
            name: "budget from the environment",
            limit: Limit::Bytes,
            source: "env",
            work: held,
            low: || CatalogBuilder::from_env_with(lookup(&[(env::MAX_BYTES, "64KiB")])).build().unwrap(),
            says: &["raise IDEMPOTENCY_CATALOG_MAX_BYTES (set to 64KiB)"],
            not: &["CatalogBuilder::max_bytes"],
            followed: || CatalogBuilder::from_env_with(lookup(&[(env::MAX_BYTES, "1MiB")])).build().unwrap(),
            ignored: None,
        },
        Case {
            name: "budget by default",
            limit: Limit::Bytes,
            source: "default",
            // 62,000 keys of 2,048 bytes: 2,199 bytes each counted, past 128 MiB.
            work: Work::Run { n: 62_000, len: 2_048 },
            low: || CatalogBuilder::new().build().unwrap(),
            says: &["IDEMPOTENCY_CATALOG_MAX_BYTES or CatalogBuilder::max_bytes (the default, 128MiB)"],
            not: &[],
            followed: || CatalogBuilder::from_env_with(lookup(&[(env::MAX_BYTES, "256MiB")])).build().unwrap(),
            ignored: None,
        },
        // The retention of free keys past a batch-scaled catalog's base, turned off.
        Case {
            name: "retention off from the builder",
            limit: Limit::Retention,
            source: "builder",
            work: free,
            low: || CatalogBuilder::new().capacity(100).retain(Duration::ZERO).build().unwrap(),
            says: &["CatalogBuilder::retain(0s) in code keeps no free key past the base of 100", "Sdk::with_run"],
            not: &["set it to a duration such as 10m, or unset"],
            followed: || CatalogBuilder::new().capacity(100).retain(Duration::from_secs(600)).build().unwrap(),
            ignored: Some(|| {
                CatalogBuilder::from_env_with(lookup(&[(env::RETAIN, "10m")]))
                    .capacity(100)
                    .retain(Duration::ZERO)
                    .build()
                    .unwrap()
            }),
        },
        Case {
            name: "retention off from the environment",
            limit: Limit::Retention,
            source: "env",
            work: free,
            low: || {
                CatalogBuilder::from_env_with(lookup(&[(env::RETAIN, "0s"), (env::CAPACITY, "100")])).build().unwrap()
            },
            says: &["IDEMPOTENCY_CATALOG_RETAIN=0s keeps no free key past the base of 100"],
            not: &["CatalogBuilder::retain"],
            followed: || {
                CatalogBuilder::from_env_with(lookup(&[(env::RETAIN, "10m"), (env::CAPACITY, "100")])).build().unwrap()
            },
            ignored: None,
        },
        Case {
            name: "no retention from its constructor",
            limit: Limit::Retention,
            source: "builder",
            work: free,
            low: || Arc::new(BatchScaledCatalog::new(100, 10_000).unwrap()),
            says: &[
                "BatchScaledCatalog::new keeps no free key past its base of 100",
                "build the catalog with CatalogBuilder",
            ],
            not: &["IDEMPOTENCY_CATALOG_"],
            followed: || CatalogBuilder::new().capacity(100).max_capacity(10_000).build().unwrap(),
            ignored: None,
        },
    ]
}

#[test]
fn following_the_remedy_of_every_limit_from_every_source_removes_the_evictions() {
    for case in cases() {
        let name = case.name;
        let low = (case.low)();
        let (evicted, line) = run(low.as_ref(), case.work);
        assert!(evicted > 0, "{name}: the limit did not bind");
        let line = line.unwrap_or_else(|| panic!("{name}: no warning for {evicted} evictions"));
        assert!(line.contains(&format!("limit={} source={}", case.limit, case.source)), "{name}: {line}");
        let remedy = line.split(" remedy=").nth(1).unwrap_or_else(|| panic!("{name}: no remedy in {line}"));
        for says in case.says {
            assert!(remedy.contains(says), "{name}: {remedy:?} does not say {says:?}");
        }
        for not in case.not {
            assert!(!remedy.contains(not), "{name}: {remedy:?} says {not:?}");
        }
        // The catalog's own answer for the limit is the line's.
        assert_eq!(format!("{:?}", low.remedy(case.limit).unwrap()), remedy, "{name}");

        let followed = (case.followed)();
        let (after, line) = run(followed.as_ref(), case.work);
        assert_eq!((after, line), (0, None), "{name}: following {remedy} left evictions");
        if let Some(ignored) = case.ignored {
            let (still, _) = run(ignored().as_ref(), case.work);
            assert_eq!(still, evicted, "{name}: the knob the remedy does not name changed the outcome");
        }
    }
}

#[test]
fn at_the_default_retention_free_keys_past_the_base_are_kept_and_nothing_warns() {
    // The retention binds only when it is off: at its default a free key past the base
    // is kept ten minutes, then released (not a warning; see `Catalog::forgotten`).
    let catalog = CatalogBuilder::new().capacity(100).build().unwrap();
    let (evicted, line) = run(catalog.as_ref(), Work::Free { n: 1_000 });
    assert_eq!((evicted, line), (0, None));
    assert_eq!(catalog.stats().sources.retain, idempotency_catalog::Source::Default);
}
