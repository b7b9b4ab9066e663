//! The reproduction: a fan-out of thousands of keyed items under each catalog kind, in
//! both orders (each key added as it is created, or every key created first, as in the
//! reference SDK's bug report). Typed keys never lose their options; digest strings
//! lose them only where the catalog cannot hold the run's keys, and then a warning
//! says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;

use idempotency_catalog::{Catalog, CatalogBuilder, CatalogKind};
use idempotency_sdk::{Batch, Engine, IdempotencyKey, ItemOptions, LossPolicy, RunContext, Scope, Sdk};
use serde_json::json;

#[derive(Clone, Copy, PartialEq)]
enum Form {
    Typed,
    Digest,
}

#[derive(Clone, Copy, PartialEq)]
enum Order {
    /// Each key is added to the batch as soon as it is created.
    AsCreated,
    /// Every key is created before the batch opens.
    KeysFirst,
}

fn catalog(kind: CatalogKind) -> Arc<dyn Catalog> {
    CatalogBuilder::new().kind(kind).build().unwrap()
}

fn in_run(catalog: Arc<dyn Catalog>) -> Sdk {
    Sdk::new(catalog).with_run(RunContext::new("run_abc123", 1))
}

/// Creates one global key per item and adds it to a batch, typed or as a digest.
fn fan_out(sdk: &Sdk, items: usize, form: Form, order: Order) -> Result<Batch, idempotency_sdk::Error> {
    let create = |i: usize| sdk.create_key(["item", &i.to_string()], Scope::Global).unwrap();
    let mut created: std::vec::IntoIter<IdempotencyKey> =
        if order == Order::KeysFirst { (0..items).map(create).collect() } else { Vec::new() }.into_iter();
    let mut batch = sdk.batch("child-task", items);
    for i in 0..items {
        let key = created.next().unwrap_or_else(|| create(i));
        let options = match form {
            Form::Typed => ItemOptions::new().key(key),
            Form::Digest => ItemOptions::new().key(key.to_string()),
        };
        batch.item(json!({ "i": i }), options);
    }
    batch.build()
}

#[test]
fn typed_keys_keep_every_option_under_every_kind() {
    for kind in CatalogKind::ALL {
        for items in [3_000, 6_235] {
            let sdk = Sdk::new(catalog(kind));
            let batch = fan_out(&sdk, items, Form::Typed, Order::KeysFirst).unwrap();
            assert_eq!((batch.report().with_options, batch.report().without_options), (items, 0), "{kind}");
            let engine = Engine::new();
            engine.trigger(&batch).unwrap();
            let runs = engine.runs();
            assert_eq!(runs.len(), items);
            for (i, run) in runs.iter().enumerate() {
                assert_eq!(run.idempotency_key.as_deref(), Some(format!("item-{i}").as_str()), "{kind}");
                assert_eq!(run.idempotency_key_scope, Some(Scope::Global));
            }
        }
    }
}

#[test]
fn inside_a_run_digest_keys_created_first_keep_every_option_and_nothing_is_evicted() {
    for kind in [CatalogKind::default(), CatalogKind::Unbounded] {
        for items in [3_000, 6_235] {
            let catalog = catalog(kind);
            let sdk = in_run(Arc::clone(&catalog));
            let (batch, text) = testkit::captured(|| fan_out(&sdk, items, Form::Digest, Order::KeysFirst));
            let report = *batch.unwrap().report();
            assert_eq!((report.with_options, report.without_options, report.evictions), (items, 0, 0), "{kind}");
            let (_, text_at_end) = testkit::captured(|| drop(sdk));
            assert!(!text.contains(" WARN ") && !text_at_end.contains(" WARN "), "{text}{text_at_end}");
            // The run ended: the catalog is back to its base, by releases, not evictions.
            let stats = catalog.stats();
            assert_eq!(stats.evicted, 0, "{kind}");
            assert_eq!(stats.len, if kind == CatalogKind::Unbounded { 0 } else { 1_000 }, "{kind}");
            assert_eq!(stats.released, items as u64 - stats.len as u64, "{kind}");
        }
    }
}

#[test]
fn outside_a_run_digest_keys_added_as_created_keep_every_option_and_nothing_is_evicted() {
    let catalog = catalog(CatalogKind::default());
    let sdk = Sdk::new(Arc::clone(&catalog));
    let (batch, text) = testkit::captured(|| fan_out(&sdk, 6_235, Form::Digest, Order::AsCreated));
    let report = *batch.unwrap().report();
    assert_eq!((report.with_options, report.without_options), (6_235, 0));
    // Outside a run, keys past the base of 1,000 are kept for the retention time.
    assert_eq!(report.evictions, 0);
    assert!(!text.contains(" WARN "), "{text}");
    assert_eq!(catalog.stats().evicted, 0);
}

#[test]
fn outside_a_run_digest_keys_created_first_keep_every_option_under_the_default_configuration() {
    // The reference SDK's most common setting (a backend, no run) in the bug report's
    // order: every key created, then the batch built from their digest strings.
    for items in [3_000, 6_235, 200_000] {
        let catalog: Arc<dyn Catalog> = CatalogBuilder::from_env_with(|_| None).build().unwrap();
        let sdk = Sdk::new(Arc::clone(&catalog));
        let (batch, text) = testkit::captured(|| fan_out(&sdk, items, Form::Digest, Order::KeysFirst));
        let report = *batch.unwrap().report();
        assert_eq!((report.with_options, report.without_options, report.evictions), (items, 0, 0), "{items}");
        assert!(!text.contains(" WARN "), "{items}: {text}");
        assert_eq!(catalog.stats().evicted, 0, "{items}");
    }
}

#[test]
fn outside_a_run_without_a_retention_the_base_is_an_lru_and_says_so() {
    let catalog: Arc<dyn Catalog> = CatalogBuilder::new().retain(std::time::Duration::ZERO).build().unwrap();
    let sdk = Sdk::new(Arc::clone(&catalog));
    let (batch, text) = testkit::captured(|| fan_out(&sdk, 6_235, Form::Digest, Order::AsCreated));
    let report = *batch.unwrap().report();
    assert_eq!((report.with_options, report.without_options), (6_235, 0));
    // The base is an LRU of 1,000: the catalog did drop keys, and said so.
    assert_eq!(report.evictions, 5_235);
    assert!(text.contains("catalog full") && text.contains("Sdk::with_run"), "{text}");
}

#[test]
fn digest_keys_created_first_under_an_lru_of_1000_lose_exactly_the_oldest_and_warn() {
    // The reference SDK's 4.4 behaviour, in its bug report's order, even inside a run:
    // a fixed LRU cannot hold a run's keys.
    let sdk = in_run(CatalogBuilder::new().kind(CatalogKind::Lru).capacity(1_000).build().unwrap());
    let (batch, text) = testkit::captured(|| fan_out(&sdk, 6_235, Form::Digest, Order::KeysFirst));
    let batch = batch.unwrap();
    let report = batch.report();
    assert_eq!((report.with_options, report.without_options, report.shortfall), (1_000, 5_235, 5_235));
    // Every eviction happened while the keys were created, before the batch opened.
    assert_eq!((report.evictions, sdk.catalog().stats().evicted), (0, 5_235));
    let items: Vec<_> = batch.wire_items().collect();
    for (i, item) in items.iter().enumerate() {
        let options = item.options.as_ref().unwrap();
        assert_eq!(options.idempotency_key_options.is_some(), i >= 5_235, "item {i}");
    }
    let engine = Engine::new();
    engine.trigger(&batch).unwrap();
    let runs = engine.runs();
    // A run without options shows the digest instead of the key.
    assert_eq!(runs[0].idempotency_key.as_deref(), items[0].options.as_ref().unwrap().idempotency_key.as_deref());
    assert_eq!(runs[6_234].idempotency_key.as_deref(), Some("item-6234"));

    let lost: Vec<&str> = text.lines().filter(|l| l.contains("lost their idempotency key options")).collect();
    assert_eq!(lost.len(), 1, "{text}");
    assert!(lost[0].contains("lost=5235") && lost[0].contains("capacity=1000"), "{}", lost[0]);
    // Every loss was an eviction before the batch opened, at the capacity set in code:
    // the remedy raises the builder call (the variable would be ignored).
    assert_eq!((report.evicted_before_open, report.evicted_while_building, report.never_registered), (5_235, 0, 0));
    assert!(lost[0].contains("evicted_before_open=5235") && lost[0].contains("limit=\"entries\""), "{}", lost[0]);
    assert!(lost[0].contains("raise CatalogBuilder::capacity (set in code to 1000;"), "{}", lost[0]);
    assert!(text.contains("catalog full"), "{text}");
}

#[test]
fn the_fail_policy_refuses_a_lossy_batch_before_anything_is_sent() {
    let catalog = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(10).build().unwrap();
    let sdk = Sdk::new(catalog).with_loss_policy(LossPolicy::Fail);
    let err = fan_out(&sdk, 25, Form::Digest, Order::KeysFirst).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "15 of 25 batch items lost their key options (catalog lru, capacity 10; most evicted before open); \
             nothing was sent; raise CatalogBuilder::capacity (set in code to 10;"
        ),
        "{err}"
    );
    // The same batch with typed keys is fine.
    assert!(fan_out(&sdk, 25, Form::Typed, Order::KeysFirst).is_ok());
}

#[test]
fn items_without_a_key_derive_one_from_the_batch_key_material_and_their_index() {
    let run = RunContext::new("run_abc123", 1);
    let sdk = in_run(catalog(CatalogKind::Unbounded));
    let mut batch = sdk.batch("child-task", 3);
    batch.batch_key("my-batch");
    batch.item(None, ItemOptions::new());
    batch.item(None, ItemOptions::new().key("own-key"));
    batch.item(None, ItemOptions::new().key("")); // no key of its own: derived too
    let batch = batch.build().unwrap();
    let items: Vec<_> = batch.wire_items().collect();
    // The reference: makeIdempotencyKey(["my-batch", "0"]), scope run, in this run.
    for (at, index) in [(0, "0"), (2, "2")] {
        let options = items[at].options.as_ref().unwrap();
        let expected = IdempotencyKey::derive(["my-batch", index], Scope::Run, Some(&run));
        assert_eq!(options.idempotency_key.as_deref(), Some(expected.to_string().as_str()));
        let readable = options.idempotency_key_options.as_ref().map(|o| (o.key().to_owned(), o.scope()));
        assert_eq!(readable, Some((format!("my-batch-{index}"), Scope::Run)));
    }
    let second = items[1].options.as_ref().unwrap();
    assert_eq!(second.idempotency_key_options.as_ref().map(|o| o.key()), Some("own-key"));
}

#[test]
fn repeated_keys_are_counted_and_the_engine_serves_them_from_one_run() {
    let sdk = Sdk::new(catalog(CatalogKind::default()));
    let key = sdk.create_key("same", Scope::Global).unwrap();
    let mut batch = sdk.batch("child-task", 3);
    for _ in 0..3 {
        batch.item(None, ItemOptions::new().key(&key));
    }
    let batch = batch.build().unwrap();
    assert_eq!(batch.report().repeated, 2);
    let handles = Engine::new().trigger(&batch).unwrap();
    assert_eq!(handles.iter().filter(|h| h.cached).count(), 2);
    assert!(handles.iter().all(|h| h.id == handles[0].id));
}

#[test]
fn ndjson_has_one_item_a_line_and_omits_absent_fields() {
    let sdk = Sdk::new(catalog(CatalogKind::default()));
    let mut batch = sdk.batch("child-task", 2);
    batch.item(
        json!({ "i": 0 }),
        ItemOptions::new().key(sdk.create_key("item-0", Scope::Global)).ttl("1h".parse().unwrap()),
    );
    batch.item(None, ItemOptions::new());
    let mut out = Vec::new();
    batch.build().unwrap().write_ndjson(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        r#"{"index":0,"task":"child-task","payload":{"i":0},"options":{"idempotencyKey":"69b65bbed30ca00a0c4bbebbfd780cbd0d20cf36422420b8093fd92e47f3f9e9","idempotencyKeyTTL":"1h","idempotencyKeyOptions":{"key":"item-0","scope":"global"}}}"#
    );
    assert_eq!(lines[1], r#"{"index":1,"task":"child-task"}"#);
    for line in lines {
        idempotency_sdk::WireItem::from_json(line).unwrap();
    }
}

#[test]
fn an_item_whose_key_does_not_resolve_is_named_by_index() {
    let sdk = Sdk::new(catalog(CatalogKind::default()));
    let mut batch = sdk.batch("child-task", 2);
    batch.item(None, ItemOptions::new().key("fine"));
    batch.item(None, ItemOptions::new().key("K".repeat(64)));
    let err = batch.build().unwrap_err().to_string();
    assert!(err.starts_with("item 1: invalid key \"KKKK"), "{err}");
    assert!(err.contains("64 UTF-16 code units long (JavaScript's `length`), so it is taken as a digest"), "{err}");
}
