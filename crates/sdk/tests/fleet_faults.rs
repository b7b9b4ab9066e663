//! What a fleet meets, against real `redis-server`s (feature `redis`): a foreign value
//! under a claim, connections killed every 50 ms, a worker killed with `SIGKILL`
//! mid-batch, Redis paused past the command timeout, Redis losing its data between two
//! workers, an ACL user losing `EVAL`. After each, a fresh engine over the same keys
//! finds every key held by exactly one run, and every answer names a run it can read.
//!
//! Workers that must die are this test binary run again: a worker is a test
//! (`worker_*`) that does nothing unless `FAULT_WORKER` is set in its environment.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use idempotency_catalog::{CatalogBuilder, CatalogKind, RedisBuilder};
use idempotency_sdk::{
    Engine, IdempotencyKey, ItemOptions, KeyTarget, RunId, RunStatus, Scope, Sdk, Triggered, Ttl, WireItem,
};
use testkit::RedisServer;

mod support;
use support::batches::batch;
use support::fleet::{a_fresh_engine_finds_every_key_held_once, a_fresh_engine_finds_every_key_held_once_in, engine};

const WORKER: &str = "FAULT_WORKER";

/// Wire items of every kind the store writes differently, `each` of each: keys held
/// for 30 days (the claim is the record), for an hour (less than the record's TTL: the
/// record apart too), for `0s` (holding nothing: a wire TTL, `Ttl` refuses it), and no
/// key.
fn mixed_items(each: usize, salt: &str) -> Vec<WireItem> {
    let sdk = Sdk::new(CatalogBuilder::new().kind(CatalogKind::Unbounded).build().unwrap());
    let mut batch = sdk.batch("mixed-task", 4 * each);
    for i in 0..each {
        for ttl in ["30d", "1h", "1s"] {
            let key = sdk.create_key([salt, ttl, &i.to_string()], Scope::Global).unwrap();
            batch.item(None, ItemOptions::new().key(key).ttl(ttl.parse::<Ttl>().unwrap()));
        }
        batch.item(None, ItemOptions::new());
    }
    let mut items: Vec<WireItem> = batch.build().unwrap().wire_items().collect();
    for item in items.iter_mut().skip(2).step_by(4) {
        item.options.as_mut().unwrap().idempotency_key_ttl = Some("0s".to_owned());
    }
    items
}

fn assert_all_readable(engine: &Engine, handles: &[Triggered]) {
    let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    assert!(engine.read_runs(&ids).unwrap().iter().all(Option::is_some));
}

#[test]
fn a_foreign_value_under_one_claim_fails_the_trigger_naming_it_and_orphans_nothing() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let first = engine(&server);
    // Find the claim key of item-7 by claiming it alone, then put foreign data there.
    let one = {
        let sdk = Sdk::new(CatalogBuilder::new().build().unwrap());
        let mut b = sdk.batch("child-task", 1);
        b.item(None, ItemOptions::new().key(sdk.create_key(["item", "7"], Scope::Global)));
        b.build().unwrap()
    };
    first.trigger(&one).unwrap();
    let claim = server.keys("idempotency:claim:*").pop().unwrap();
    let mut admin = server.client();
    for foreign in ["garbage", "0", "18446744073709551615", r#"{"status":"pending","id":"run_00000001"}"#] {
        redis::cmd("SET").arg(&claim).arg(foreign).query::<()>(&mut admin).unwrap();
        let engine = engine(&server);
        let err = engine.trigger(&batch(20_000)).unwrap_err().to_string();
        let expected = format!("redis at {url}: cannot create runs: {claim} holds ");
        assert!(err.starts_with(&expected), "{err}");
        // No run id was taken from it; the other 9,999 items of its pipeline have their
        // runs (made by the first of these engines: the later ones find them cached),
        // and the trigger stopped there.
        assert_eq!(engine.run_count(), if foreign == "garbage" { 9_999 } else { 0 }, "{foreign}");
    }
    redis::cmd("DEL").arg(&claim).query::<()>(&mut admin).unwrap();
    let left = a_fresh_engine_finds_every_key_held_once(&server, 20_000);
    assert_eq!(left, 10_001, "item-7 and the pipeline the trigger did not send");
}

#[test]
fn connections_killed_every_50_ms_leave_no_key_held_without_a_run() {
    let server = RedisServer::start(&[]);
    let engine = engine(&server);
    // The 20,000 keys in batches of 2,000, small enough for some to get through.
    let batch = batch(20_000);
    let batches: Vec<Vec<WireItem>> = batch.wire_items().collect::<Vec<_>>().chunks(2_000).map(<[_]>::to_vec).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (mut admin, stop) = (server.client(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut kills = 0;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
                // Every client but this one.
                kills += redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query::<u64>(&mut admin).unwrap();
            }
            kills
        })
    };
    let (mut answered, mut failed, started) = (Vec::new(), 0, Instant::now());
    for items in batches.iter().cycle() {
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
        match engine.trigger_items(items) {
            Ok(handles) => answered.extend(handles),
            Err(_) => failed += 1,
        }
    }
    stop.store(true, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    // A killed connection is opened again and the pipeline sent again, which must be
    // harmless; a kill during that second attempt fails the trigger.
    assert!(kills > 0 && !answered.is_empty(), "{kills} kills, {} answers, {failed} failed triggers", answered.len());
    assert_all_readable(&engine, &answered);
    a_fresh_engine_finds_every_key_held_once(&server, 20_000);
}

/// A worker that triggers `items` keys and never finishes by itself: the test kills it.
#[test]
fn worker_trigger_until_killed() {
    let Ok(args) = std::env::var(WORKER) else { return };
    let (url, items) = args.split_once(' ').unwrap();
    let engine = Engine::on_redis(&RedisBuilder::new(url).build().unwrap()).unwrap();
    let batch = batch(items.parse().unwrap());
    loop {
        let _ = engine.trigger(&batch);
    }
}

#[test]
fn a_worker_killed_mid_batch_leaves_no_key_held_without_a_run() {
    let server = RedisServer::start(&[]);
    let items = 200_000;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["worker_trigger_until_killed", "--exact", "--nocapture", "--test-threads=1"])
        .env(WORKER, format!("{} {items}", server.url()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut probe = server.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Mid-batch, and inside a pipeline of 10,000: some of its items applied, not all.
    while redis::cmd("DBSIZE").query::<usize>(&mut probe).unwrap() < 30_001 {
        assert!(Instant::now() < deadline, "the worker never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What the server had read of the pipeline when the process died still runs.
    let mut held = redis::cmd("DBSIZE").query::<usize>(&mut probe).unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = redis::cmd("DBSIZE").query::<usize>(&mut probe).unwrap();
        if now == held {
            break;
        }
        held = now;
    }
    assert!(held < items, "killed mid-batch, with {held} keys held");
    assert_eq!(a_fresh_engine_finds_every_key_held_once(&server, items), items - held);
}

#[test]
fn redis_paused_past_the_command_timeout_fails_the_trigger_and_orphans_nothing() {
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).io_timeout(Duration::from_millis(300)).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let batch = batch(100_000);
    let pauser = {
        let (mut probe, pid) = (server.client(), server.pid());
        std::thread::spawn(move || {
            while redis::cmd("DBSIZE").query::<usize>(&mut probe).unwrap() < 10_000 {
                std::thread::sleep(Duration::from_millis(1));
            }
            Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap();
            std::thread::sleep(Duration::from_millis(1_000));
            Command::new("kill").args(["-CONT", &pid.to_string()]).status().unwrap();
        })
    };
    let err = engine.trigger(&batch).unwrap_err().to_string();
    pauser.join().unwrap();
    assert!(err.starts_with(&format!("redis at {}: cannot create runs: ", server.url())), "{err}");
    assert!(err.ends_with("no answer within 300ms"), "{err}");
    std::thread::sleep(Duration::from_millis(300)); // past the reconnect pause
    a_fresh_engine_finds_every_key_held_once(&server, 100_000);
}

#[test]
fn a_stalled_server_fails_a_whole_pipeline_within_the_command_timeout() {
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).io_timeout(Duration::from_millis(300)).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let batch = batch(10_000);
    // Paused for 5 s: a pipeline read answer by answer, each with the whole timeout,
    // waits until the server is back.
    server.pause();
    let resumer = {
        let pid = server.pid();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            Command::new("kill").args(["-CONT", &pid.to_string()]).status().unwrap();
        })
    };
    let started = Instant::now();
    let err = engine.trigger(&batch).unwrap_err().to_string();
    let waited = started.elapsed();
    resumer.join().unwrap();
    assert!(err.ends_with("no answer within 300ms"), "{err}");
    // The bound is the timeout and an eighth of it; 2 s leaves room for a slow machine.
    assert!(waited < Duration::from_secs(2), "10,000 commands took {waited:?} to fail against a 300 ms timeout");
    std::thread::sleep(Duration::from_millis(300)); // past the reconnect pause
    a_fresh_engine_finds_every_key_held_once(&server, 10_000);
}

#[test]
fn after_redis_loses_its_data_no_id_names_two_runs() {
    let mut server = RedisServer::start(&[]);
    let before = engine(&server);
    let old = before.trigger(&batch(20_000)).unwrap();
    // A restart without persistence: every claim and record is gone.
    server.restart();
    std::thread::sleep(Duration::from_millis(300));
    let after = engine(&server);
    let new = after.trigger(&batch(20_000)).unwrap();
    assert!(new.iter().all(|h| !h.cached), "the keys were forgotten: new runs");
    let old_ids: HashSet<RunId> = old.iter().map(|h| h.id).collect();
    assert!(new.iter().all(|h| !old_ids.contains(&h.id)), "an id names two runs");
    // A handle from before the loss never reads another run's record.
    let ids: Vec<RunId> = old.iter().map(|h| h.id).collect();
    assert!(before.read_runs(&ids).unwrap().iter().all(Option::is_none));
    // And the old engine, going on, numbers apart from the new one.
    let more = before.trigger(&batch(20_001)).unwrap();
    assert!(more[..20_000].iter().zip(&new).all(|(m, n)| m.cached && m.id == n.id));
    assert!(!more[20_000].cached && !old_ids.contains(&more[20_000].id));

    // The same after FLUSHALL, with both engines connected throughout.
    redis::cmd("FLUSHALL").query::<()>(&mut server.client()).unwrap();
    let again = after.trigger(&batch(20_000)).unwrap();
    let seen: HashSet<RunId> = old.iter().chain(&new).chain(&more).map(|h| h.id).collect();
    assert!(again.iter().all(|h| !h.cached && !seen.contains(&h.id)));
    assert_eq!(a_fresh_engine_finds_every_key_held_once(&server, 20_000), 0);
}

#[test]
fn a_status_change_the_server_refuses_changes_nothing_anywhere() {
    let server = RedisServer::start(&[]);
    let mut admin = server.client();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg("on")
        .arg(">app-secret")
        .arg("~*")
        .arg("+@all")
        .query::<()>(&mut admin)
        .unwrap();
    let url = server.url().replace("redis://", "redis://app:app-secret@");
    let observer = engine(&server);
    let engine = Engine::on_redis(&RedisBuilder::new(&url).build().unwrap()).unwrap();
    let b = batch(1);
    let run = engine.trigger(&b).unwrap()[0];

    redis::cmd("ACL").arg("SETUSER").arg("app").arg("-eval").query::<()>(&mut admin).unwrap();
    let err = engine.set_status(run.id, RunStatus::Failed).unwrap_err().to_string();
    assert!(err.contains("NOPERM"), "{err}");
    // Not here, not on Redis, and the key is still held by the run.
    assert_eq!(engine.runs()[0].status, RunStatus::Pending);
    assert_eq!(observer.run(run.id).unwrap().unwrap().status, RunStatus::Pending);
    let again = observer.trigger(&b).unwrap()[0];
    assert!(again.cached && again.id == run.id);
    // An engine that starts without the permission fails at once, not at its first change.
    let err = Engine::on_redis(&RedisBuilder::new(&url).build().unwrap()).unwrap_err().to_string();
    assert!(err.contains("NOPERM"), "{err}");

    redis::cmd("ACL").arg("SETUSER").arg("app").arg("+eval").query::<()>(&mut admin).unwrap();
    engine.set_status(run.id, RunStatus::Failed).unwrap();
    assert_eq!(engine.runs()[0].status, RunStatus::Failed);
    assert!(!observer.trigger(&b).unwrap()[0].cached, "the failed run released its key");
    assert_eq!(a_fresh_engine_finds_every_key_held_once(&server, 1), 0);
}

/// A worker that triggers keys and prints the ids of the runs it made.
#[test]
fn worker_trigger_and_print() {
    let Ok(args) = std::env::var(WORKER) else { return };
    let (url, items) = args.split_once(' ').unwrap();
    let engine = Engine::on_redis(&RedisBuilder::new(url).build().unwrap()).unwrap();
    for handle in engine.trigger(&batch(items.parse().unwrap())).unwrap() {
        println!("RUN {}", handle.id);
    }
}

#[test]
fn a_run_made_in_one_process_is_read_and_failed_from_another() {
    let server = RedisServer::start(&[]);
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["worker_trigger_and_print", "--exact", "--nocapture", "--test-threads=1"])
        .env(WORKER, format!("{} 100", server.url()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let ids: Vec<RunId> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once("RUN ").map(|(_, id)| id.parse().unwrap()))
        .collect();
    assert_eq!(ids.len(), 100);

    let here = engine(&server);
    let records = here.read_runs(&ids).unwrap();
    for (i, record) in records.iter().enumerate() {
        let record = record.as_ref().unwrap();
        assert_eq!((record.task.as_str(), record.status), ("child-task", RunStatus::Pending));
        let key = (record.idempotency_key.as_deref(), record.idempotency_key_scope);
        assert_eq!(key, (Some(format!("item-{i}").as_str()), Some(Scope::Global)));
    }
    here.set_status(ids[0], RunStatus::Crashed).unwrap();
    here.set_status(ids[1], RunStatus::Succeeded).unwrap();
    assert_eq!(here.run(ids[0]).unwrap().unwrap().status, RunStatus::Crashed);
    let handles = here.trigger(&batch(2)).unwrap();
    assert!(!handles[0].cached && handles[0].id != ids[0], "the crashed run released its key");
    assert!(handles[1].cached && handles[1].id == ids[1], "the succeeded run still holds its key");
    // The crashed run stays readable after its key moved on.
    assert_eq!(here.run(ids[0]).unwrap().unwrap().status, RunStatus::Crashed);
    assert_eq!(a_fresh_engine_finds_every_key_held_once(&server, 100), 0);
}

#[test]
fn an_answer_lost_with_its_connection_is_sent_again_and_every_run_counts_once() {
    let server = RedisServer::start(&[]);
    let proxy = testkit::LosingProxy::start(server.port());
    let redis = RedisBuilder::new(proxy.url()).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let items = mixed_items(25, "lost");

    // The server runs the whole pipeline; its answer never arrives, the connection
    // closes, and the pipeline goes again on a new one.
    proxy.lose_next_answer();
    let handles = engine.trigger_items(&items).unwrap();
    assert_eq!(proxy.lost(), 1);
    assert!(handles.iter().all(|h| !h.cached), "every run was made by this trigger: {handles:?}");
    assert_eq!(engine.run_count(), 100);
    assert_all_readable(&engine, &handles);
    // Claims for the 30-day and one-hour keys; records apart for the one-hour keys, the
    // `0s` keys and the runs without a key. Nothing twice.
    assert_eq!((server.count("idempotency:claim:*"), server.count("idempotency:run:*")), (50, 75));
    assert_eq!(redis.faults(), 0, "a connection closed and opened again is not a fault");

    // A status change and a reset whose answers are lost go through once.
    proxy.lose_next_answer();
    engine.set_status(handles[0].id, RunStatus::Failed).unwrap();
    assert_eq!(engine.run(handles[0].id).unwrap().unwrap().status, RunStatus::Failed);
    let again = engine.trigger_items(&items).unwrap();
    assert!(!again[0].cached && again[1].cached, "the failed run released its key, and only it");
    let digest = items[1].options.as_ref().unwrap().idempotency_key.as_deref().unwrap().parse().unwrap();
    proxy.lose_next_answer();
    assert!(engine.reset_key("mixed-task", KeyTarget::Digest(digest)).unwrap());
    assert!(!engine.reset_key("mixed-task", KeyTarget::Digest(digest)).unwrap());
    assert_eq!(proxy.lost(), 3);
    // The 30-day and one-hour keys held once each, the reset one claimed again now.
    assert_eq!(a_fresh_engine_finds_every_key_held_once_in(&server, &items, 50), 1 + 50);
}

#[test]
fn scripts_survive_a_server_that_forgot_them() {
    let server = RedisServer::start(&[]);
    let engine = engine(&server);
    let items = mixed_items(10, "flushed");
    let first = engine.trigger_items(&items).unwrap();
    redis::cmd("SCRIPT").arg("FLUSH").query::<()>(&mut server.client()).unwrap();
    let again = engine.trigger_items(&items).unwrap();
    // Held keys (30 days, one hour, one second) answer cached; `0s` keys and runs
    // without a key are new runs.
    let cached: Vec<bool> = again.iter().map(|h| h.cached).collect();
    assert_eq!(cached, std::iter::repeat_n([true, true, false, false], 10).flatten().collect::<Vec<_>>());
    engine.set_status(first[1].id, RunStatus::Crashed).unwrap();
    assert_eq!(engine.run(first[1].id).unwrap().unwrap().status, RunStatus::Crashed);
    // The 30-day and one-hour keys, the crashed one claimed again now; `0s` keys and
    // runs without a key are new runs each time.
    assert_eq!(a_fresh_engine_finds_every_key_held_once_in(&server, &items, 20), 1 + 20);
}

/// The claim key holding the record of `id`.
fn claim_of(server: &RedisServer, id: RunId) -> String {
    let mut conn = server.client();
    server
        .keys("idempotency:claim:*")
        .into_iter()
        .find(|key| redis::cmd("GET").arg(key).query::<String>(&mut conn).unwrap().contains(&format!("\"{id}\"")))
        .unwrap()
}

#[test]
fn a_status_change_or_reset_that_times_out_changes_nothing_here_and_may_be_called_again() {
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).io_timeout(Duration::from_millis(300)).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let runs = engine.trigger(&batch(2)).unwrap();
    let key = IdempotencyKey::derive(["item", "1"], Scope::Global, None);

    server.pause();
    let err = engine.set_status(runs[0].id, RunStatus::Failed).unwrap_err().to_string();
    assert!(err.starts_with(&format!("redis at {}: cannot ", server.url())), "{err}");
    assert!(err.ends_with("no answer within 300ms"), "{err}");
    let err = engine.reset_key("child-task", KeyTarget::Key(&key)).unwrap_err().to_string();
    assert!(err.ends_with("no answer within 300ms"), "{err}");
    assert_eq!(engine.runs()[0].status, RunStatus::Pending, "nothing changed here");
    server.resume();
    std::thread::sleep(Duration::from_millis(300)); // past the reconnect pause

    // Redis may have applied them once it resumed: called again, each goes through
    // (or finds it done), and nothing happens twice.
    engine.set_status(runs[0].id, RunStatus::Failed).unwrap();
    assert_eq!(engine.runs()[0].status, RunStatus::Failed);
    assert_eq!(engine.run(runs[0].id).unwrap().unwrap().status, RunStatus::Failed);
    engine.reset_key("child-task", KeyTarget::Key(&key)).unwrap();
    assert!(!engine.reset_key("child-task", KeyTarget::Key(&key)).unwrap(), "reset already");
    // Both keys free: the fresh engine makes both runs again, once.
    assert_eq!(a_fresh_engine_finds_every_key_held_once(&server, 2), 2);
}

#[test]
fn a_status_change_or_reset_that_meets_a_foreign_value_fails_naming_the_key_and_changes_nothing() {
    let server = RedisServer::start(&[]);
    let engine = engine(&server);
    let runs = engine.trigger(&batch(2)).unwrap();
    let claim = claim_of(&server, runs[0].id);
    let mut admin = server.client();
    redis::cmd("SET").arg(&claim).arg("garbage").query::<()>(&mut admin).unwrap();
    let key = IdempotencyKey::derive(["item", "0"], Scope::Global, None);

    let err = engine.set_status(runs[0].id, RunStatus::Failed).unwrap_err().to_string();
    assert!(err.starts_with(&format!("redis at {}: cannot ", server.url())) && err.contains(&claim), "{err}");
    let err = engine.reset_key("child-task", KeyTarget::Key(&key)).unwrap_err().to_string();
    assert!(err.contains(&claim), "{err}");
    // Nothing changed: not here, not on Redis.
    assert_eq!(engine.runs()[0].status, RunStatus::Pending);
    assert_eq!(redis::cmd("GET").arg(&claim).query::<String>(&mut admin).unwrap(), "garbage");
    assert_eq!(server.count("idempotency:run:*"), 0, "no record moved out of a claim");

    // Once the foreign value is gone, the key is free again: one new run, the other held.
    redis::cmd("DEL").arg(&claim).query::<()>(&mut admin).unwrap();
    assert_eq!(a_fresh_engine_finds_every_key_held_once(&server, 2), 1);
}
