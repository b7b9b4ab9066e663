//! What a fleet meets, against real `redis-server`s (feature `redis`): a foreign value
//! under a claim, connections killed every 50 ms, a worker killed with `SIGKILL`
//! mid-batch, Redis paused past the command timeout, Redis losing its data between two
//! workers, an ACL user losing `EVALSHA`. After each, a fresh engine over the same keys
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
use idempotency_sdk::{Batch, ItemOptions, LocalEngine, RunHandle, RunId, RunStatus, Scope, Sdk};
use testkit::RedisServer;

const WORKER: &str = "FAULT_WORKER";

/// `items` keys `item-<i>` in scope global, for task `child-task`.
fn batch(items: usize) -> Batch {
    let sdk = Sdk::new(CatalogBuilder::new().kind(CatalogKind::Unbounded).build().unwrap());
    let mut batch = sdk.batch("child-task", items);
    for i in 0..items {
        batch.item(None, ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global)));
    }
    batch.build().unwrap()
}

fn engine(server: &RedisServer) -> LocalEngine {
    LocalEngine::on_redis(&RedisBuilder::new(server.url()).build().unwrap()).unwrap()
}

/// The ids of every claim on the server, read from the records they hold.
fn claimed_runs(server: &RedisServer) -> Vec<RunId> {
    let mut conn = server.client();
    server
        .keys("idempotency:claim:*")
        .iter()
        .map(|key| {
            let value: String = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
            let record: serde_json::Value = serde_json::from_str(&value).unwrap();
            record["id"].as_str().unwrap().parse().unwrap()
        })
        .collect()
}

/// After a fault: a fresh engine triggers the same `items` keys; every key is held by
/// exactly one run, each with a record this engine reads, and every answer it gets is
/// readable (`cached_without_record` is 0). Returns how many runs it had to create.
fn a_fresh_engine_finds_every_key_held_once(server: &RedisServer, items: usize) -> usize {
    let fresh = engine(server);
    let handles = fresh.trigger(&batch(items)).unwrap();
    let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    let records = fresh.read_runs(&ids).unwrap();
    let cached_without_record = handles.iter().zip(&records).filter(|(h, r)| h.cached && r.is_none()).count();
    assert_eq!(cached_without_record, 0);
    let keys: HashSet<&str> = records.iter().map(|r| r.as_ref().unwrap().idempotency_key.as_deref().unwrap()).collect();
    assert_eq!(keys.len(), items, "every answer names the run of its own key");

    let claimed = claimed_runs(server);
    assert_eq!(claimed.len(), items, "one claim per key");
    let records = fresh.read_runs(&claimed).unwrap();
    let keys: HashSet<String> = records.into_iter().map(|r| r.unwrap().idempotency_key.unwrap()).collect();
    assert_eq!(keys.len(), items, "every claim names a readable run of its key");
    handles.iter().filter(|h| !h.cached).count()
}

fn assert_all_readable(engine: &LocalEngine, handles: &[RunHandle]) {
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
    let engine = engine(&server);
    let batch = batch(20_000);
    let (mut failed, started) = (0, Instant::now());
    while started.elapsed() < Duration::from_secs(4) {
        match engine.trigger(&batch) {
            Ok(handles) => assert_all_readable(&engine, &handles),
            Err(_) => failed += 1,
        }
    }
    stop.store(true, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    // A killed connection is opened again and the pipeline sent again, which must be
    // harmless; a kill during that second attempt fails the trigger.
    assert!(kills > 0, "the faults happened: {kills} kills, {failed} failed triggers");
    a_fresh_engine_finds_every_key_held_once(&server, 20_000);
}

/// A worker that triggers `items` keys and never finishes by itself: the test kills it.
#[test]
fn worker_trigger_until_killed() {
    let Ok(args) = std::env::var(WORKER) else { return };
    let (url, items) = args.split_once(' ').unwrap();
    let engine = LocalEngine::on_redis(&RedisBuilder::new(url).build().unwrap()).unwrap();
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
    // Mid-batch: some pipelines have landed, not all.
    while redis::cmd("DBSIZE").query::<usize>(&mut probe).unwrap() < 30_000 {
        assert!(Instant::now() < deadline, "the worker never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let held = redis::cmd("DBSIZE").query::<usize>(&mut probe).unwrap();
    assert!(held < items, "killed mid-batch, with {held} keys held");
    assert_eq!(a_fresh_engine_finds_every_key_held_once(&server, items), items - held);
}

#[test]
fn redis_paused_past_the_command_timeout_fails_the_trigger_and_orphans_nothing() {
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).io_timeout(Duration::from_millis(300)).build().unwrap();
    let engine = LocalEngine::on_redis(&redis).unwrap();
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
    let engine = LocalEngine::on_redis(&RedisBuilder::new(&url).build().unwrap()).unwrap();
    let b = batch(1);
    let run = engine.trigger(&b).unwrap()[0];

    redis::cmd("ACL").arg("SETUSER").arg("app").arg("-evalsha").query::<()>(&mut admin).unwrap();
    let err = engine.set_status(run.id, RunStatus::Failed).unwrap_err().to_string();
    assert!(err.contains("NOPERM"), "{err}");
    // Not here, not on Redis, and the key is still held by the run.
    assert_eq!(engine.runs()[0].status, RunStatus::Pending);
    assert_eq!(observer.run(run.id).unwrap().unwrap().status, RunStatus::Pending);
    let again = observer.trigger(&b).unwrap()[0];
    assert!(again.cached && again.id == run.id);
    // An engine that starts without the permission fails at once, not at its first change.
    let err = LocalEngine::on_redis(&RedisBuilder::new(&url).build().unwrap()).unwrap_err().to_string();
    assert!(err.contains("NOPERM"), "{err}");

    redis::cmd("ACL").arg("SETUSER").arg("app").arg("+evalsha").query::<()>(&mut admin).unwrap();
    engine.set_status(run.id, RunStatus::Failed).unwrap();
    assert_eq!(engine.runs()[0].status, RunStatus::Failed);
    assert!(!observer.trigger(&b).unwrap()[0].cached, "the failed run released its key");
}

/// A worker that triggers keys and prints the ids of the runs it made.
#[test]
fn worker_trigger_and_print() {
    let Ok(args) = std::env::var(WORKER) else { return };
    let (url, items) = args.split_once(' ').unwrap();
    let engine = LocalEngine::on_redis(&RedisBuilder::new(url).build().unwrap()).unwrap();
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
}
