//! Why batch items lost their options, counted by cause (evicted before the batch
//! opened, evicted while it was built, never registered in this process), and the one
//! warning that names the cause, the limit that bound and where it was set; following
//! the remedy it prints changes the outcome.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, RemovalCause, env};
use idempotency_sdk::{BatchReport, IdempotencyKey, ItemOptions, RunContext, Scope, Sdk};
use proptest::prelude::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn key(sdk: &Sdk, i: usize, len: usize) -> IdempotencyKey {
    let pad = "x".repeat(len);
    sdk.create_key(["item", &i.to_string(), &pad], Scope::Global).unwrap()
}

/// Creates `n` keys (of about `len` bytes) first, then adds their digests to a batch:
/// the report and the lost-options warning.
fn keys_first(sdk: &Sdk, n: usize, len: usize) -> (BatchReport, Option<String>) {
    let (report, lines) = testkit::warnings(|| {
        let keys: Vec<IdempotencyKey> = (0..n).map(|i| key(sdk, i, len)).collect();
        let mut batch = sdk.batch("child-task", n);
        for key in &keys {
            batch.item(None, ItemOptions::new().key(key.to_string()));
        }
        *batch.build().unwrap().report()
    });
    (report, lines.into_iter().find(|l| l.contains("lost their idempotency key options")))
}

fn assert_adds_up(report: &BatchReport) {
    assert_eq!(
        report.evicted_before_open + report.evicted_while_building + report.never_registered,
        report.without_options,
        "{report:?}"
    );
}

#[test]
fn a_capacity_set_in_code_is_named_as_code_and_raising_it_there_keeps_every_option() {
    // The variable says 5,000, but code set 100: the code's value decides.
    let build = |capacity: usize| {
        let catalog = CatalogBuilder::from_env_with(env(&[(env::CAPACITY, "5000")]))
            .kind(CatalogKind::Lru)
            .capacity(capacity)
            .build()
            .unwrap();
        Sdk::new(catalog)
    };
    let (report, line) = keys_first(&build(100), 1_000, 0);
    assert_eq!((report.without_options, report.evicted_before_open), (900, 900));
    assert_eq!(report.shortfall, 900);
    assert_adds_up(&report);
    let line = line.unwrap();
    assert!(line.contains(r#"cause="evicted before open""#) && line.contains("evicted_before_open=900"), "{line}");
    assert!(line.contains("raise CatalogBuilder::capacity (set in code to 100;"), "{line}");
    assert!(!line.contains("raise IDEMPOTENCY_CATALOG_CAPACITY"), "{line}");
    // Following it:
    let (report, line) = keys_first(&build(1_000), 1_000, 0);
    assert_eq!((report.without_options, line), (0, None));
}

#[test]
fn the_byte_budget_that_bound_is_the_one_the_sdk_names() {
    // Inside a run the keys are held until the run ends; the budget (from the
    // environment) drops them, not the entry ceiling.
    let build = |budget: &str| {
        let catalog = CatalogBuilder::from_env_with(env(&[(env::MAX_BYTES, budget)])).build().unwrap();
        Sdk::new(catalog).with_run(RunContext::new("run_abc123", 1))
    };
    let (report, line) = keys_first(&build("64KiB"), 1_000, 200);
    assert!(report.without_options > 0, "{report:?}");
    assert_eq!(report.limit, Some(idempotency_catalog::Limit::Bytes));
    assert_adds_up(&report);
    let line = line.unwrap();
    assert!(
        line.contains(r#"limit="bytes""#) && line.contains("raise IDEMPOTENCY_CATALOG_MAX_BYTES (set to 64KiB)"),
        "{line}"
    );
    assert!(!line.contains("MAX_CAPACITY"), "{line}");
    let (report, line) = keys_first(&build("1MiB"), 1_000, 200);
    assert_eq!((report.without_options, line), (0, None));
}

#[test]
fn a_retention_turned_off_by_the_environment_is_named() {
    let build = |retain: &str| {
        let catalog =
            CatalogBuilder::from_env_with(env(&[(env::RETAIN, retain), (env::CAPACITY, "100")])).build().unwrap();
        Sdk::new(catalog)
    };
    let (report, line) = keys_first(&build("0s"), 1_000, 0);
    assert_eq!((report.without_options, report.evicted_before_open), (900, 900));
    let line = line.unwrap();
    assert!(
        line.contains(r#"limit="retention""#) && line.contains("IDEMPOTENCY_CATALOG_RETAIN=0s keeps no free key"),
        "{line}"
    );
    let (report, line) = keys_first(&build("10m"), 1_000, 0);
    assert_eq!((report.without_options, line), (0, None));
}

#[test]
fn digests_minted_elsewhere_are_never_registered_and_typed_keys_fix_them() {
    let sdk = Sdk::new(CatalogBuilder::new().build().unwrap());
    // Another process's keys: derived there, never registered here.
    let elsewhere: Vec<IdempotencyKey> =
        (0..500).map(|i| IdempotencyKey::derive(["item", &i.to_string()], Scope::Global, None)).collect();
    let (report, lines) = testkit::warnings(|| {
        let mut batch = sdk.batch("child-task", elsewhere.len());
        for key in &elsewhere {
            batch.item(None, ItemOptions::new().key(key.to_string()));
        }
        *batch.build().unwrap().report()
    });
    assert_eq!((report.without_options, report.never_registered, report.evicted_before_open), (500, 500, 0));
    assert_eq!((report.shortfall, report.limit), (0, None));
    let line = lines.iter().find(|l| l.contains("lost their idempotency key options")).unwrap();
    assert!(line.contains(r#"cause="never registered""#) && line.contains("never_registered=500"), "{line}");
    assert!(line.contains("pass IdempotencyKey values") && !line.contains("IDEMPOTENCY_CATALOG_"), "{line}");
    // Following it: the same keys passed as values carry their options.
    let mut batch = sdk.batch("child-task", elsewhere.len());
    for key in &elsewhere {
        batch.item(None, ItemOptions::new().key(key.clone()));
    }
    assert_eq!(batch.build().unwrap().report().without_options, 0);
}

#[test]
fn keys_evicted_after_the_batch_opened_are_counted_as_evicted_while_building() {
    let sdk = Sdk::new(CatalogBuilder::new().kind(CatalogKind::Lru).capacity(10).build().unwrap());
    let early: Vec<IdempotencyKey> = (0..5).map(|i| key(&sdk, i, 0)).collect();
    let mut batch = sdk.batch("child-task", 30);
    // 20 more keys after the batch opened: the 5 early ones and 10 of these go.
    let late: Vec<IdempotencyKey> = (5..25).map(|i| key(&sdk, i, 0)).collect();
    for key in early.iter().chain(&late) {
        batch.item(None, ItemOptions::new().key(key.to_string()));
    }
    let report = *batch.build().unwrap().report();
    assert_eq!(
        (report.without_options, report.evicted_before_open, report.evicted_while_building),
        (15, 0, 15),
        "{report:?}"
    );
    assert_eq!(report.evictions, 15);
}

/// What the test does between creating keys and building, in order.
#[derive(Clone, Debug)]
enum Step {
    /// Creates key `n` (registered in the catalog).
    Create(u8),
    /// Opens the batch (once; later ones do nothing).
    Open,
    /// Adds key `n`'s digest to the batch: created here or not.
    Add(u8),
    /// Adds the digest of a key minted in another process.
    Foreign(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..60).prop_map(Step::Create),
        1 => Just(Step::Open),
        4 => (0u8..60).prop_map(Step::Add),
        1 => (0u8..60).prop_map(Step::Foreign),
    ]
}

proptest! {
    /// Whatever the order of creating keys, opening the batch and adding digests, the
    /// causes add up to the items without options, and each agrees with the catalog's
    /// eviction listener: an item whose digest was last evicted after the batch opened
    /// is counted as evicted while building, before it as evicted before open, and one
    /// never created here as never registered.
    #[test]
    fn causes_add_up_and_agree_with_the_eviction_listener(
        capacity in 1usize..20,
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let opened = Arc::new(Mutex::new(false));
        let evicted: Arc<Mutex<Vec<(Digest, bool)>>> = Arc::default();
        let (flag, sink) = (Arc::clone(&opened), Arc::clone(&evicted));
        let catalog = CatalogBuilder::new()
            .kind(CatalogKind::Lru)
            .capacity(capacity)
            .listener(move |digest: &Digest, _: &KeyOptions, _: RemovalCause| {
                sink.lock().unwrap().push((*digest, *flag.lock().unwrap()));
            })
            .build()
            .unwrap();
        let sdk = Sdk::new(Arc::clone(&catalog) as Arc<dyn Catalog>);
        let mut created = HashSet::new();
        let mut pending: Vec<(Digest, Option<u8>)> = Vec::new();
        let mut batch = None;
        // What the model expects: before open, while building, never registered.
        let mut expected = [0usize; 3];
        let mut add = |batch: &mut idempotency_sdk::BatchBuilder, digest: Digest, created_here: bool| {
            if catalog.get(&digest).is_none() {
                let last = evicted.lock().unwrap().iter().rev().find(|(d, _)| *d == digest).map(|(_, after)| *after);
                match (created_here, last) {
                    (true, Some(false)) => expected[0] += 1,
                    (true, Some(true)) => expected[1] += 1,
                    _ => expected[2] += 1,
                }
            }
            batch.item(None, ItemOptions::new().key(digest.to_string()));
        };
        for step in steps {
            match step {
                Step::Create(n) => {
                    created.insert(n);
                    key(&sdk, usize::from(n), 0);
                }
                Step::Open if batch.is_none() => {
                    batch = Some(sdk.batch("child-task", 0));
                    *opened.lock().unwrap() = true;
                }
                Step::Open => {}
                Step::Add(n) => {
                    let digest = IdempotencyKey::derive(["item", &n.to_string(), ""], Scope::Global, None).digest();
                    pending.push((digest, Some(n)));
                }
                Step::Foreign(n) => {
                    let digest = IdempotencyKey::derive(["elsewhere", &n.to_string()], Scope::Global, None).digest();
                    pending.push((digest, None));
                }
            }
            // An item resolves its digest when it is added: what is pending goes in once open.
            if let Some(batch) = batch.as_mut() {
                for (digest, n) in pending.drain(..) {
                    add(batch, digest, n.is_some_and(|n| created.contains(&n)));
                }
            }
        }
        let mut batch = batch.unwrap_or_else(|| {
            let batch = sdk.batch("child-task", 0);
            *opened.lock().unwrap() = true;
            batch
        });
        for (digest, n) in pending.drain(..) {
            add(&mut batch, digest, n.is_some_and(|n| created.contains(&n)));
        }
        let report = *batch.build().unwrap().report();
        prop_assert_eq!(
            report.evicted_before_open + report.evicted_while_building + report.never_registered,
            report.without_options
        );
        prop_assert_eq!(
            [report.evicted_before_open, report.evicted_while_building, report.never_registered],
            expected
        );
    }
}

#[test]
fn the_default_configuration_reports_no_shortfall_for_batches_that_fit() {
    // 3,000 items on a catalog whose base alone is 10,000,000, and 1,000,000 items under
    // the default: nothing is short, and nothing is lost.
    let sdk = Sdk::new(CatalogBuilder::new().capacity(10_000_000).build().unwrap());
    let mut batch = sdk.batch("child-task", 3_000);
    for i in 0..3_000 {
        batch.item(None, ItemOptions::new().key(key(&sdk, i, 0)));
    }
    assert_eq!(batch.build().unwrap().report().shortfall, 0);
    let sdk = Sdk::new(CatalogBuilder::new().build().unwrap());
    let batch = sdk.batch("child-task", 1_000_000);
    let report = *batch.build().unwrap().report();
    assert_eq!(report.shortfall, 0);
}
