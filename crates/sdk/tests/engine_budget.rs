//! The in-memory engine's byte budget: at it the oldest keys and run records go first,
//! each key forgotten before its TTL is counted, one warning names the budget, where it
//! was set and the dedup window kept, and following its remedy keeps every key; under
//! `BudgetPolicy::Refuse` a trigger past the budget is refused whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use idempotency_catalog::Source;
use idempotency_sdk::{Batch, BudgetPolicy, Engine, Error, env};
use serde_json::json;

mod support;
use support::batches::keyed;

/// An engine on a clock the test moves, in minutes.
fn clocked(engine: impl FnOnce(Engine) -> Engine) -> (Engine, Arc<AtomicU64>) {
    let minutes = Arc::new(AtomicU64::new(0));
    let clock = Arc::clone(&minutes);
    let base = Engine::with_clock(move || Duration::from_secs(60 * clock.load(Ordering::Relaxed)));
    (engine(base), minutes)
}

/// Items `from..to`, keyed `item-<i>` (30 days by default), with a payload of `pad` bytes.
fn batch(from: usize, to: usize, pad: usize) -> Batch {
    let pad = "p".repeat(pad);
    keyed("child-task", from..to, None, |i| Some(json!({ "i": i, "pad": pad })))
}

/// Triggers `rounds` batches of `size`, a minute apart: the warnings printed.
fn work(engine: &Engine, minutes: &AtomicU64, rounds: usize, size: usize, pad: usize) -> Vec<String> {
    testkit::warnings(|| {
        for round in 0..rounds {
            engine.trigger_owned(batch(round * size, (round + 1) * size, pad)).unwrap();
            minutes.fetch_add(1, Ordering::Relaxed);
        }
    })
    .1
}

#[test]
fn at_its_budget_the_engine_forgets_the_oldest_keys_counts_them_and_warns_once() {
    let (engine, minutes) = clocked(|e| e.with_max_bytes(1 << 20).unwrap());
    let lines = work(&engine, &minutes, 60, 1_000, 0);
    let stats = engine.stats();
    assert!(stats.bytes <= 1 << 20, "{stats:?}");
    assert!(stats.evicted_keys > 0 && stats.evicted_runs > 0, "{stats:?}");
    assert_eq!(stats.max_bytes_source, Source::Builder);
    // Oldest first: the first keys are forgotten, and would run again; the newest are held.
    let again = engine.trigger(&batch(0, 1, 0)).unwrap();
    assert!(!again[0].cached, "the oldest key was forgotten");
    assert!(engine.trigger(&batch(59_999, 60_000, 0)).unwrap()[0].cached, "the newest key is held");
    // One warning, however many keys were forgotten.
    let forgot: Vec<&String> = lines.iter().filter(|l| l.contains("engine at its byte budget")).collect();
    assert_eq!(forgot.len(), 1, "{lines:#?}");
    let line = forgot[0];
    // Batches came a minute apart: what was held when the budget first bound was some
    // minutes' worth, far from the keys' 30 days.
    // 1 MiB holds 4,369 of these runs (240 bytes each): the budget first bound in the
    // fifth minute, forgetting keys made four minutes before.
    assert!(line.contains("keys are remembered 4m, not 30d") && line.contains("remembered=4m"), "{line}");
    for field in ["max_bytes=1MiB", "source=builder", "ttl=30d", "raise Engine::with_max_bytes (set in code to 1MiB;"] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    // The window in the stats is the latest forgotten key's age: minutes, not days.
    let window = Duration::from_millis(stats.remembered_ms.unwrap());
    assert!(window >= Duration::from_secs(240) && window <= Duration::from_secs(300), "{window:?}");

    // Following the remedy: a budget that holds the workload forgets nothing.
    let (roomy, minutes) = clocked(|e| e.with_max_bytes(64 << 20).unwrap());
    let lines = work(&roomy, &minutes, 60, 1_000, 0);
    let stats = roomy.stats();
    assert_eq!((stats.evicted_keys, stats.evicted_runs, stats.keys), (0, 0, 60_000), "{stats:?}");
    assert!(lines.is_empty(), "{lines:#?}");
    assert!(roomy.trigger(&batch(0, 1, 0)).unwrap()[0].cached);
}

#[test]
fn a_budget_from_the_environment_is_named_as_the_variable_and_raising_it_keeps_every_key() {
    let env = |value: &'static str| move |name: &str| (name == env::ENGINE_MAX_BYTES).then(|| value.to_owned());
    let engine = Engine::from_env_with(env("1MiB")).unwrap();
    assert_eq!(engine.stats().max_bytes_source, Source::Env);
    let lines = testkit::warnings(|| {
        for round in 0..60 {
            engine.trigger_owned(batch(round * 1_000, (round + 1) * 1_000, 0)).unwrap();
        }
    })
    .1;
    let line = lines.iter().find(|l| l.contains("engine at its byte budget")).unwrap();
    assert!(line.contains("source=env") && line.contains("raise IDEMPOTENCY_ENGINE_MAX_BYTES (set to 1MiB)"), "{line}");
    assert!(!line.contains("Engine::with_max_bytes"), "{line}");
    let roomy = Engine::from_env_with(env("64MiB")).unwrap();
    for round in 0..60 {
        roomy.trigger_owned(batch(round * 1_000, (round + 1) * 1_000, 0)).unwrap();
    }
    assert_eq!(roomy.stats().evicted_keys, 0);
    // The code's value wins over the variable.
    let code = Engine::from_env_with(env("1MiB")).unwrap().with_max_bytes(64 << 20).unwrap();
    assert_eq!((code.stats().max_bytes, code.stats().max_bytes_source), (64 << 20, Source::Builder));
}

#[test]
fn the_default_budget_binds_at_256_mib_and_names_both_ways_to_raise_it() {
    // 200 batches of 1,000 items with 1,300-byte payloads: about 1.6 KB counted each,
    // past the default 256 MiB.
    let engine = Engine::new();
    let lines = testkit::warnings(|| {
        for round in 0..200 {
            engine.trigger_owned(batch(round * 1_000, (round + 1) * 1_000, 1_300)).unwrap();
        }
    })
    .1;
    let stats = engine.stats();
    assert_eq!((stats.max_bytes, stats.max_bytes_source), (256 << 20, Source::Default));
    assert!(stats.evicted_keys > 0 && stats.bytes <= 256 << 20, "{stats:?}");
    let line = lines.iter().find(|l| l.contains("engine at its byte budget")).unwrap();
    assert!(line.contains("IDEMPOTENCY_ENGINE_MAX_BYTES or Engine::with_max_bytes (the default, 256MiB)"), "{line}");
    drop(engine);
    // Following it: 512 MiB holds the same work.
    let engine = Engine::new().with_max_bytes(512 << 20).unwrap();
    for round in 0..200 {
        engine.trigger_owned(batch(round * 1_000, (round + 1) * 1_000, 1_300)).unwrap();
    }
    assert_eq!(engine.stats().evicted_keys, 0);
}

#[test]
fn under_refuse_a_trigger_past_the_budget_is_refused_whole_and_held_keys_still_answer() {
    let engine = Engine::new().with_max_bytes(1 << 20).unwrap().with_budget_policy(BudgetPolicy::Refuse);
    let mut filled = 0;
    let err = loop {
        match engine.trigger_owned(batch(filled, filled + 500, 0)) {
            Ok(_) => filled += 500,
            Err(err) => break err,
        }
        // 1 MiB holds some 3,000 keyed runs: far fewer than this.
        assert!(filled < 100_000, "never refused: {:?}", engine.stats());
    };
    let before = (engine.run_count(), engine.stats().keys);
    match &err {
        Error::EngineFull { max_bytes, origin, items, needed, remedy } => {
            assert_eq!((*max_bytes, *origin, *items), (1 << 20, Source::Builder, 500));
            assert!(*needed > 0 && remedy.starts_with("raise Engine::with_max_bytes"), "{err}");
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().starts_with("engine at its byte budget of 1MiB (set by builder): a trigger of 500 item(s)"),
        "{err}"
    );
    let stats = engine.stats();
    assert_eq!((stats.evicted_keys, stats.refused), (0, 500), "nothing forgotten: {stats:?}");
    assert_eq!((engine.run_count(), stats.keys), before, "nothing of the refused trigger was claimed");
    // Keys already held cost nothing: their repeat is answered.
    let cached = engine.trigger(&batch(0, 500, 0)).unwrap();
    assert!(cached.iter().all(|h| h.cached));
    // Following the remedy: a larger budget takes the trigger.
    let roomy = Engine::new().with_max_bytes(4 << 20).unwrap().with_budget_policy(BudgetPolicy::Refuse);
    for from in (0..filled + 500).step_by(500) {
        roomy.trigger_owned(batch(from, from + 500, 0)).unwrap();
    }
}

#[test]
fn what_is_held_is_counted_and_given_back_when_keys_are_released_or_reset() {
    let engine = Engine::new();
    let empty = engine.stats().bytes;
    assert_eq!(empty, 0);
    let handles = engine.trigger_owned(batch(0, 100, 10)).unwrap();
    let full = engine.stats();
    assert_eq!((full.keys, full.runs_retained), (100, 100));
    // 100 claims and records, each a few hundred bytes.
    assert!(full.bytes > 100 * 200 && full.bytes < 100 * 1_000, "{full:?}");
    engine.set_status(handles[0].id, idempotency_sdk::RunStatus::Failed).unwrap();
    assert!(engine.stats().bytes < full.bytes, "a released key gives its claim back");
    let json = serde_json::to_string(&engine.stats()).unwrap();
    assert!(json.contains(r#""max_bytes_source":"default""#) && json.contains(r#""evicted_keys":0"#), "{json}");
}
