//! What an operator sees: `tracing` warnings captured as the fmt subscriber prints them,
//! and the eviction listener's guarantees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idempotency_catalog::{
    BatchScaledCatalog, Catalog, CatalogBuilder, CatalogKind, Digest, KeyOptions, LruCatalog, RemovalCause,
    Reservation, Scope,
};
use support::digest;

mod support;

fn options(i: u32) -> KeyOptions {
    KeyOptions::new(&format!("customer-{i}@example.com"), Scope::Global)
}

/// Registers outside any reservation.
fn fill(catalog: &dyn Catalog, range: std::ops::Range<u32>) {
    for i in range {
        catalog.register(digest(i), options(i));
    }
}

/// Registers through a reservation (a run or a batch).
fn fill_held(reservation: &Reservation<'_>, range: std::ops::Range<u32>) {
    for i in range {
        reservation.register(digest(i), options(i));
    }
}

/// Runs `f` and returns the lines a fmt subscriber printed for WARN and above.
fn log_lines(f: impl FnOnce()) -> Vec<String> {
    testkit::warnings(f).1
}

/// Runs `f` and returns every line a fmt subscriber printed.
fn all_lines(f: impl FnOnce()) -> Vec<String> {
    testkit::captured(f).1.lines().map(str::to_owned).collect()
}

fn field(line: &str, name: &str) -> Option<u64> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[test]
fn lru_of_1000_fed_6235_keeps_the_newest_and_warns_a_bounded_number_of_times() {
    let catalog = LruCatalog::with_capacity(1_000).unwrap();
    let lines = log_lines(|| {
        let batch = catalog.reserve(6_235);
        assert_eq!(batch.shortfall(), 5_235);
        fill(&catalog, 0..6_235);
        drop(batch); // the end of the batch summarises what is left
    });
    assert_eq!(catalog.len(), 1_000);
    assert!((0..5_235).all(|i| catalog.get(&digest(i)).is_none()));
    assert!((5_235..6_235).all(|i| catalog.get(&digest(i)).is_some()));
    assert_eq!(catalog.stats().evicted, 5_235);

    assert!(lines.len() <= 6, "{lines:#?}");
    assert!(lines.iter().all(|l| l.contains(" WARN ") && l.contains("idempotency_catalog::events")));
    // The first names the capacity, the count and the remedy at once.
    let first = &lines[0];
    assert_eq!(field(first, "capacity"), Some(1_000));
    assert_eq!(field(first, "total_evicted"), Some(1));
    // Made with `LruCatalog::with_capacity`: the remedy names that call, and no
    // variable, which this catalog never reads (docs/telemetry.md, "What a remedy names").
    assert!(first.contains("limit=entries source=builder"), "{first}");
    assert!(first.contains("raise the capacity given to LruCatalog::with_capacity (1000)"), "{first}");
    assert!(!first.contains("IDEMPOTENCY_CATALOG_"), "{first}");
    // Every eviction is covered by exactly one line.
    let covered: u64 = lines.iter().filter_map(|l| field(l, "evicted")).sum();
    assert_eq!(covered, 5_235, "{lines:#?}");
    // The digest is shown, never the original key.
    assert!(first.contains(&digest(0).to_string()), "{first}");
    assert!(lines.iter().all(|l| !l.contains("@example.com")));
}

#[test]
fn a_hundred_thousand_evictions_print_a_handful_of_lines() {
    let catalog = LruCatalog::with_capacity(10).unwrap();
    let lines = log_lines(|| {
        fill(&catalog, 0..100_010);
        catalog.clear();
    });
    assert!(lines.len() <= 7, "{lines:#?}");
    let covered: u64 = lines.iter().filter_map(|l| field(l, "evicted")).sum();
    assert_eq!(covered, 100_000);
}

#[test]
fn dropping_a_catalog_reports_what_was_left_unreported() {
    let lines = log_lines(|| {
        let catalog = LruCatalog::with_capacity(1).unwrap();
        fill(&catalog, 0..6);
    });
    let covered: u64 = lines.iter().filter_map(|l| field(l, "evicted")).sum();
    assert_eq!((lines.len(), covered), (2, 5), "{lines:#?}");
}

#[test]
fn keys_are_logged_only_when_asked() {
    let catalog = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(1).log_keys(true).build().unwrap();
    let lines = log_lines(|| fill(catalog.as_ref(), 0..2));
    assert!(lines[0].contains("customer-0@example.com"), "{lines:#?}");
}

#[test]
fn batch_scaled_with_a_6235_batch_loses_none_and_releases_back_to_base_without_a_warning() {
    let catalog = BatchScaledCatalog::new(1_000, 1_000_000).unwrap();
    let lines = all_lines(|| {
        let batch = catalog.reserve(6_235);
        fill_held(&batch, 0..6_235);
        assert!((0..6_235).all(|i| catalog.get(&digest(i)).is_some()));
        assert_eq!(catalog.stats().evicted, 0);
        drop(batch);
    });
    assert_eq!(catalog.len(), 1_000);
    let stats = catalog.stats();
    assert_eq!((stats.evicted, stats.released, stats.peak_len), (0, 5_235, 6_235));
    // One line, below WARN, with the count.
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(" DEBUG ") && lines[0].contains("reservation ended"), "{}", lines[0]);
    assert_eq!(field(&lines[0], "released"), Some(5_235));
}

#[test]
fn batch_scaled_at_its_ceiling_names_the_ceiling_remedy() {
    let catalog = BatchScaledCatalog::new(10, 100).unwrap();
    let lines = log_lines(|| {
        let batch = catalog.reserve(1_000);
        fill_held(&batch, 0..101);
    });
    // Made with `BatchScaledCatalog::new`: the ceiling given to it, not a variable.
    assert!(lines[0].contains("limit=ceiling") && lines[0].contains("BatchScaledCatalog::new (100)"), "{lines:#?}");
    assert!(!lines[0].contains("IDEMPOTENCY_CATALOG_"), "{lines:#?}");
    assert_eq!(catalog.stats().evicted, 1);
}

#[test]
fn batch_scaled_outside_any_run_warns_with_the_run_remedy() {
    let catalog = BatchScaledCatalog::new(10, 100).unwrap();
    let lines = log_lines(|| fill(&catalog, 0..11));
    assert!(lines[0].contains("Reservation::register") && lines[0].contains("capacity=10"), "{lines:#?}");
}

#[test]
fn the_listener_sees_every_eviction_with_its_cause() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let catalog = CatalogBuilder::new()
        .capacity(2)
        .max_capacity(6)
        .listener(move |d: &Digest, o: &KeyOptions, cause: RemovalCause| {
            sink.lock().unwrap().push((*d, o.key().to_owned(), cause));
        })
        .build()
        .unwrap();
    let batch = catalog.reserve(4);
    fill_held(&batch, 0..7); // 6 is the ceiling: the batch's oldest makes room
    drop(batch); // back to 2: four released, which is no loss
    catalog.remove(&digest(6));
    catalog.clear();
    let seen = seen.lock().unwrap();
    let causes: Vec<RemovalCause> = seen.iter().map(|(_, _, c)| *c).collect();
    assert_eq!(causes, [RemovalCause::Capacity]);
    assert_eq!(seen[0].0, digest(0));
    assert_eq!(seen[0].1, "customer-0@example.com");
    let stats = catalog.stats();
    assert_eq!((stats.evicted, stats.released, stats.removed, stats.cleared), (1, 4, 1, 1));
}

#[test]
fn a_listener_that_calls_back_into_the_catalog_does_not_deadlock() {
    let catalog: Arc<Mutex<Option<Arc<dyn Catalog>>>> = Arc::default();
    let inner = Arc::clone(&catalog);
    let lookups = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&lookups);
    let built = CatalogBuilder::new()
        .kind(CatalogKind::Lru)
        .capacity(1)
        .listener(move |d: &Digest, _: &KeyOptions, _: RemovalCause| {
            let current = inner.lock().unwrap().clone();
            if let Some(c) = current {
                assert!(c.get(d).is_none());
                c.register(Digest::from_bytes([0xff; 32]), KeyOptions::new("from-listener", Scope::Run));
                counted.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    *catalog.lock().unwrap() = Some(Arc::clone(&built));
    fill(built.as_ref(), 0..3);
    assert!(lookups.load(Ordering::Relaxed) >= 2);
    catalog.lock().unwrap().take();
}

#[test]
fn a_panicking_listener_is_disabled_and_reported_once() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let catalog = CatalogBuilder::new()
        .kind(CatalogKind::Lru)
        .capacity(1)
        .listener(move |_: &Digest, _: &KeyOptions, _: RemovalCause| {
            counted.fetch_add(1, Ordering::Relaxed);
            panic!("listener bug");
        })
        .build()
        .unwrap();
    let text = log_lines(|| fill(catalog.as_ref(), 0..50)).join("\n");
    assert_eq!(text.matches(" ERROR ").count(), 1, "{text}");
    assert!(text.contains("eviction listener panicked"), "{text}");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let stats = catalog.stats();
    assert_eq!((stats.listener_panics, stats.evicted, stats.len), (1, 49, 1));
    // Still fully usable.
    catalog.register(digest(1_000), KeyOptions::new("after", Scope::Run));
    assert!(catalog.get(&digest(1_000)).is_some());
}

#[test]
fn a_slow_listener_does_not_hold_the_lock() {
    use std::sync::mpsc::channel;
    let (inside_tx, inside_rx) = channel::<()>();
    let (go_tx, go_rx) = channel::<()>();
    let (inside_tx, go_rx) = (Mutex::new(inside_tx), Mutex::new(go_rx));
    let catalog = CatalogBuilder::new()
        .kind(CatalogKind::Lru)
        .capacity(1)
        .listener(move |_: &Digest, _: &KeyOptions, _: RemovalCause| {
            inside_tx.lock().unwrap().send(()).unwrap();
            // Stays inside the listener until the test has used the catalog.
            go_rx.lock().unwrap().recv_timeout(Duration::from_secs(30)).unwrap();
        })
        .build()
        .unwrap();
    fill(catalog.as_ref(), 0..1);
    std::thread::scope(|s| {
        let slow = s.spawn(|| fill(catalog.as_ref(), 1..2));
        inside_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        // The listener is running: the catalog must still answer from other threads.
        let (tx, rx) = channel();
        let reader = Arc::clone(&catalog);
        s.spawn(move || tx.send((reader.len(), reader.get(&digest(1)).is_some())).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok((1, true)), "the catalog is blocked by its listener");
        go_tx.send(()).unwrap();
        slow.join().unwrap();
    });
}

#[test]
fn a_reservation_dropped_while_unwinding_still_releases_its_room() {
    let catalog = BatchScaledCatalog::new(10, 1_000).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let room = catalog.reserve(500);
        fill_held(&room, 0..400);
        panic!("building the batch failed");
    }));
    assert!(result.is_err());
    let stats = catalog.stats();
    assert_eq!((stats.reserved, stats.capacity, stats.len, stats.released), (0, Some(10), 10, 390));
    // The newest survived.
    assert!(catalog.get(&digest(399)).is_some() && catalog.get(&digest(389)).is_none());
}

#[test]
fn releases_reach_neither_the_listener_nor_the_warnings() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let catalog = CatalogBuilder::new()
        .capacity(5)
        .listener(move |_: &Digest, _: &KeyOptions, _: RemovalCause| {
            counted.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let room = catalog.reserve(100);
    fill_held(&room, 0..100);
    let lines = log_lines(|| drop(room));
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    assert!(lines.is_empty(), "{lines:#?}");
    let stats = catalog.stats();
    assert_eq!((stats.len, stats.released, stats.evicted), (5, 95, 0));
    assert!(catalog.get(&digest(99)).is_some());
}

#[test]
fn a_thousand_batches_release_below_warn_and_count_every_released_entry() {
    let catalog = BatchScaledCatalog::new(10, 1_000).unwrap();
    let lines = all_lines(|| {
        for batch in 0..1_000u32 {
            let room = catalog.reserve(20);
            fill_held(&room, batch * 20..batch * 20 + 20);
        }
    });
    assert!(lines.iter().all(|l| l.contains(" DEBUG ")), "{lines:#?}");
    let released: u64 = lines.iter().filter_map(|l| field(l, "released")).sum();
    // The first batch releases 10 (20 held, base 10); every later one releases 20:
    // the 10 it could not keep, and the 10 older free entries its newest replaced.
    assert_eq!(released, 10 + 999 * 20);
    assert_eq!(catalog.stats().released, released);
}

#[test]
fn overlapping_batches_never_ratchet_the_capacity() {
    // A busy worker: 200 batches of 100, each overlapping the next, never more than two live.
    let catalog = BatchScaledCatalog::new(100, 1_000_000).unwrap();
    let mut previous = None;
    let mut most = 0;
    for batch in 0..200u32 {
        let room = catalog.reserve(100);
        fill_held(&room, batch * 100..batch * 100 + 100);
        most = most.max(catalog.capacity().unwrap());
        previous = Some(room); // the one before ends once this one is full
    }
    assert!(most <= 100 + 2 * 100, "capacity reached {most}");
    drop(previous);
    assert_eq!(catalog.capacity(), Some(100));
    assert_eq!(catalog.stats().evicted, 0);
}

#[test]
fn stats_name_each_kinds_ceiling_and_a_batch_scaled_capacity_reaches_it() {
    let build = |builder: CatalogBuilder| builder.build().unwrap();
    let lru = build(CatalogBuilder::new().kind(CatalogKind::Lru).capacity(7));
    assert_eq!((lru.stats().capacity, lru.stats().max_capacity), (Some(7), Some(7)));
    let unbounded = build(CatalogBuilder::new().kind(CatalogKind::Unbounded));
    assert_eq!(unbounded.stats().max_capacity, None);

    let scaled = build(CatalogBuilder::new().kind(CatalogKind::BatchScaled).capacity(10).max_capacity(100));
    assert_eq!((scaled.stats().capacity, scaled.stats().max_capacity), (Some(10), Some(100)));
    // A batch asking for more than the ceiling leaves room up to it, never past it.
    let batch = scaled.reserve(500);
    assert_eq!((scaled.stats().capacity, scaled.stats().max_capacity), (Some(100), Some(100)));
    drop(batch);
    assert_eq!(scaled.stats().capacity, Some(10));
}

#[test]
fn a_logged_key_with_control_characters_stays_on_one_escaped_line() {
    // With `log_keys`, the evicted key is shown: through `shown`, like every key.
    let catalog = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(1).log_keys(true).build().unwrap();
    let hostile = "order\n2026-01-01T00:00:00Z  WARN forged: \r\0\u{1b}[31mred";
    let (_, text) = testkit::captured(|| {
        catalog.register(digest(0), KeyOptions::new(hostile, Scope::Global));
        catalog.register(digest(1), KeyOptions::new("next", Scope::Global));
    });
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.trim_end().chars().any(char::is_control), "{text:?}");
    assert!(text.contains(r#"key="order\n2026-01-01T00:00:00Z  WARN forged: \r\0\u{1b}[31mred""#), "{text}");
    let emoji = "😀".repeat(2_048);
    // A new catalog: its first eviction is the one that shows a key at once.
    let catalog = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(1).log_keys(true).build().unwrap();
    let (_, text) = testkit::captured(|| {
        catalog.register(digest(2), KeyOptions::new(&emoji, Scope::Global));
        catalog.register(digest(3), KeyOptions::new("next", Scope::Global));
    });
    assert!(text.contains("… (2048 characters)"), "{text}");
    assert!(text.len() < 1_024, "{} bytes: {text}", text.len());
}
