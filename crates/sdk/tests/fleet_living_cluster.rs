//! Fleet mode on a living Redis Cluster (feature `cluster`): a 3+3 cluster with the
//! append-only file on and a password on every node, four worker processes (two sync,
//! two async) triggering the same 20,000 keys while
//!
//! - a replica is promoted with `CLUSTER FAILOVER FORCE` while its master holds
//!   thousands of claims it never sent it,
//! - a master is killed (`SIGKILL`) and the cluster fails it over,
//! - 2,000 slots move to another master (`redis-cli --cluster reshard`),
//!
//! and then a replica that stops acknowledging, so that claims cannot be as durable as
//! asked. After each: every worker exited 0, per key one run was reported created in
//! all, every answer names that run and reads back where it was given, a fresh engine
//! finds every key held once, and no output shows the password.
//!
//! Workers are this test binary run again: a worker is a test (`worker`) that does
//! nothing unless `LIVING_CLUSTER_WORKER` is set in its environment. The scenarios share
//! one cluster (a cluster takes seconds to start), each under a key prefix of its own,
//! one after the other, in one test.
#![cfg(all(feature = "cluster", feature = "tokio"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::collections::HashMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use idempotency_catalog::fleet::Durability;
use idempotency_catalog::{Redis, RedisBuilder};
use idempotency_sdk::{Batch, Engine, RunId, Triggered};
use testkit::{ClusterOptions, RedisCluster};

mod support;
use support::batches::keyed;
use support::workers::now_ms;

const WORKER: &str = "LIVING_CLUSTER_WORKER";
const KEYS: usize = 20_000;
/// Items per trigger: a worker triggers its 20,000 keys in ten batches, so that a fault
/// meets some of them in flight whenever it comes.
const BATCH: usize = 2_000;
const PASSWORD: &str = "Living-Cluster-s3cret";

/// Keys `item-<i>` for `i` in `keys`, global scope, held an hour, for task `child-task`.
fn batch(keys: impl ExactSizeIterator<Item = usize>) -> Batch {
    keyed("child-task", keys, Some("1h"), |_| None)
}

/// The batches of a worker that starts at key `offset`: every key once, in batches of
/// [`BATCH`], wrapping around.
fn batches(offset: usize) -> impl Iterator<Item = (Vec<usize>, Batch)> {
    (0..KEYS / BATCH).map(move |b| {
        let keys: Vec<usize> = (0..BATCH).map(|i| (offset + b * BATCH + i) % KEYS).collect();
        let built = batch(keys.iter().copied());
        (keys, built)
    })
}

/// A worker: `<urls> <prefix> <start ms> <offset> <sync|async>`. Prints `A <key> <run
/// id> <created|cached>` for every answer, then `U <answers that do not read back>`;
/// exits 1 with `E <error>` when a trigger fails.
#[test]
fn worker() {
    let Ok(args) = std::env::var(WORKER) else { return };
    let args: Vec<&str> = args.split(' ').collect();
    let [urls, prefix, start, offset, mode] = args[..] else { panic!("worker arguments: {args:?}") };
    let (start, offset): (u64, usize) = (start.parse().unwrap(), offset.parse().unwrap());
    let batches: Vec<(Vec<usize>, Batch)> = batches(offset).collect();
    let wait = || std::thread::sleep(Duration::from_millis(start.saturating_sub(now_ms())));
    let builder = RedisBuilder::new(urls).prefix(prefix);
    let mut answers: Vec<(usize, Triggered)> = Vec::with_capacity(KEYS);
    let unreadable = if mode == "async" {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let redis = builder.build_async().await.unwrap();
            let engine = Engine::on_redis_async(&redis).await.unwrap();
            wait();
            for (keys, batch) in &batches {
                match engine.trigger_async(batch).await {
                    Ok(handles) => answers.extend(keys.iter().copied().zip(handles)),
                    Err(err) => fail(&err),
                }
            }
            let ids: Vec<RunId> = answers.iter().map(|(_, h)| h.id).collect();
            engine.read_runs_async(&ids).await.unwrap().iter().filter(|r| r.is_none()).count()
        })
    } else {
        let redis = builder.build().unwrap();
        let engine = Engine::on_redis(&redis).unwrap();
        wait();
        for (keys, batch) in &batches {
            match engine.trigger(batch) {
                Ok(handles) => answers.extend(keys.iter().copied().zip(handles)),
                Err(err) => fail(&err),
            }
        }
        let ids: Vec<RunId> = answers.iter().map(|(_, h)| h.id).collect();
        engine.read_runs(&ids).unwrap().iter().filter(|r| r.is_none()).count()
    };
    // A new line first: libtest's `test worker ... ` starts the one it is on.
    let mut out = String::with_capacity(KEYS * 80);
    out.push('\n');
    for (key, handle) in &answers {
        let how = if handle.cached { "cached" } else { "created" };
        out.push_str(&format!("A {key} {} {how}\n", handle.id));
    }
    print!("{out}");
    println!("U {unreadable}");
}

fn fail(err: &idempotency_sdk::Error) -> ! {
    println!("\nE {err}");
    std::process::exit(1)
}

/// Starts the four workers on `prefix`, two sync and two async, each from another key.
fn workers(cluster: &RedisCluster, prefix: &str) -> Vec<Child> {
    let urls = cluster.urls().join(",");
    let start = now_ms() + 1_500;
    (0..4)
        .map(|w| {
            let mode = if w % 2 == 0 { "sync" } else { "async" };
            Command::new(std::env::current_exe().unwrap())
                .args(["worker", "--exact", "--nocapture", "--test-threads=1"])
                .env(WORKER, format!("{urls} {prefix} {start} {} {mode}", w * KEYS / 4))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// What the workers said, checked: each exited 0 showing no password, every answer
/// read back where it was given, and per key one run, reported created exactly once
/// in all. The run of each key.
fn judged(scenario: &str, outputs: Vec<Output>) -> HashMap<usize, RunId> {
    let mut runs: HashMap<usize, (RunId, usize)> = HashMap::with_capacity(KEYS);
    for (w, out) in outputs.into_iter().enumerate() {
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let errors: Vec<&str> = stdout.lines().filter(|l| l.starts_with("E ")).collect();
        assert!(out.status.success(), "{scenario}: worker {w} failed: {errors:?}\n{}", tail(&stderr));
        assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD), "{scenario}: worker {w} showed the password");
        let mut answered = 0;
        for line in stdout.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[..] {
                ["A", key, id, how] => {
                    let (key, id): (usize, RunId) = (key.parse().unwrap(), id.parse().unwrap());
                    let run = runs.entry(key).or_insert((id, 0));
                    assert_eq!(run.0, id, "{scenario}: key {key} has two runs: {} and {id} (worker {w})", run.0);
                    run.1 += usize::from(how == "created");
                    answered += 1;
                }
                ["U", unreadable] => {
                    assert_eq!(unreadable, "0", "{scenario}: worker {w}: cached answers without a record")
                }
                _ => {}
            }
        }
        assert_eq!(answered, KEYS, "{scenario}: worker {w} answered {answered} keys");
    }
    assert_eq!(runs.len(), KEYS, "{scenario}: keys answered");
    let twice: Vec<usize> =
        runs.iter().filter(|(_, (_, created))| *created != 1).map(|(key, _)| *key).take(5).collect();
    assert!(twice.is_empty(), "{scenario}: keys not reported created exactly once, such as {twice:?}");
    runs.into_iter().map(|(key, (id, _))| (key, id)).collect()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A fresh engine over `prefix` triggers keys `0..runs.len()`: every key answered from
/// cache with the run the workers made, which reads back; the cluster holds one claim
/// per key.
fn a_fresh_engine_finds_every_key_held_once_on_the_cluster(
    cluster: &RedisCluster,
    prefix: &str,
    runs: &HashMap<usize, RunId>,
) {
    let redis = RedisBuilder::new(cluster.urls().join(",")).prefix(prefix).build().unwrap();
    let fresh = Engine::on_redis(&redis).unwrap();
    let handles = fresh.trigger(&batch(0..runs.len())).unwrap();
    for (key, handle) in handles.iter().enumerate() {
        assert!(handle.cached && Some(&handle.id) == runs.get(&key), "{prefix} key {key}: {handle:?}");
    }
    let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    assert!(fresh.read_runs(&ids).unwrap().iter().all(Option::is_some));
    assert_eq!(cluster.count(&format!("{prefix}claim:*")), runs.len(), "{prefix}: one claim per key");
}

/// Runs the workers on `prefix`, calling `fault` once the master on `master` holds
/// `claims` more keys than before; checks what they did. The workers print only once
/// done, so their pipes need no reading meanwhile.
fn round(cluster: &mut RedisCluster, prefix: &str, master: u16, claims: usize, fault: impl FnOnce(&mut RedisCluster)) {
    let before = cluster.dbsize(master);
    let children = workers(cluster, prefix);
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.dbsize(master) < before + claims {
        assert!(Instant::now() < deadline, "{prefix} the workers never reached {claims} claims on {master}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    fault(cluster);
    eprintln!("{prefix} fault took {:?}", started.elapsed());
    let outputs: Vec<Output> = children.into_iter().map(|child| child.wait_with_output().unwrap()).collect();
    let runs = judged(prefix, outputs);
    a_fresh_engine_finds_every_key_held_once_on_the_cluster(cluster, prefix, &runs);
}

/// A master of the cluster that has a replica, and that replica.
fn master_with_replica(cluster: &RedisCluster) -> (u16, u16) {
    cluster
        .masters()
        .into_iter()
        .find_map(|master| cluster.replicas_of(master).first().map(|&replica| (master, replica)))
        .expect("a master with a replica")
}

#[test]
fn failovers_and_reshards_cost_a_pause_never_a_duplicate_run_or_a_failed_batch() {
    let options = ClusterOptions { password: Some(PASSWORD.to_owned()), append_only: true };
    let mut cluster = RedisCluster::start_with(3, 1, options);

    // (a) The master's link to its replica is cut while the workers claim, and the
    // replica is promoted at once: the claims it never got are lost with the old master.
    let (master, replica) = master_with_replica(&cluster);
    round(&mut cluster, "forced:", master, 3_000, |cluster| {
        cluster.cli(master, &["client", "kill", "type", "replica"]);
        std::thread::sleep(Duration::from_millis(100));
        cluster.failover_force(replica);
    });

    // (b) A master is killed; the cluster promotes its replica; then the old master
    // comes back as a replica.
    let (master, replica) = master_with_replica(&cluster);
    round(&mut cluster, "killed:", master, 3_000, |cluster| {
        cluster.kill(master);
        cluster.wait_master(replica);
    });
    // The old master comes back as its replica's replica: a 3+3 cluster again.
    cluster.restart(master);
    let deadline = Instant::now() + Duration::from_secs(30);
    let in_sync =
        |cluster: &RedisCluster| cluster.cli(master, &["info", "replication"]).contains("master_link_status:up");
    while !(cluster.replicas_of(replica).contains(&master) && in_sync(&cluster)) {
        assert!(Instant::now() < deadline, "the restarted node did not rejoin as a replica");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_ok(Duration::from_secs(30));

    // (c) 2,000 slots move between two masters while the workers claim.
    let masters = cluster.masters();
    let (from, to) = (masters[0], masters[1]);
    round(&mut cluster, "resharded:", from, 1_000, |cluster| cluster.reshard(from, to, 2_000));

    // (d), on the same cluster, 3+3 again since (b)'s old master came back.
    let runs = writes_short_of_their_replicas_fail_clearly_and_a_retry_makes_each_run_once(&cluster);
    a_fresh_engine_finds_every_key_held_once_on_the_cluster(&cluster, "short:", &runs);
}

/// (d) A replica that stops acknowledging: claims cannot reach the one replica asked, the
/// trigger fails naming the master and what it lacks, and once the replica is back a
/// retry of the same batch makes each run once; another process then finds each key
/// held by that run.
fn writes_short_of_their_replicas_fail_clearly_and_a_retry_makes_each_run_once(
    cluster: &RedisCluster,
) -> HashMap<usize, RunId> {
    let (master, replica) = master_with_replica(cluster);
    let build = || -> Redis {
        RedisBuilder::new(cluster.urls().join(","))
            .prefix("short:")
            .durability(Durability::Replicas(1))
            .durability_timeout(Duration::from_millis(300))
            .failover_window(Duration::from_secs(1))
            .build()
            .unwrap()
    };
    let (redis, other) = (build(), build());
    let engine = Engine::on_redis(&redis).unwrap();
    let keys = batch(0..5_000);
    cluster.pause(replica);
    let failed = engine.trigger(&keys).map(|handles| handles.len());
    cluster.resume(replica);
    let err = match failed {
        Err(err) => err.to_string(),
        Ok(n) => panic!("{n} runs reported without the replica asked"),
    };
    assert!(
        err.contains(&format!("NOTDURABLE master 127.0.0.1:{master}: 0 of 1 replicas acknowledged within 300ms")),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
    cluster.wait_ok(Duration::from_secs(30));
    let handles = engine.trigger(&keys).unwrap();
    let again = Engine::on_redis(&other).unwrap().trigger(&keys).unwrap();
    for (first, second) in handles.iter().zip(&again) {
        assert_eq!(first.id, second.id, "one run per key");
        assert!(second.cached);
    }
    let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    assert!(engine.read_runs(&ids).unwrap().iter().all(Option::is_some));
    assert_eq!(cluster.count("short:claim:*"), 5_000);

    // Under `auto` a replica that stops answering costs a pause: once the cluster marks
    // it failing (the node timeout, 2 s), its master is no longer waited for.
    let auto = RedisBuilder::new(cluster.urls().join(","))
        .prefix("auto:")
        .durability_timeout(Duration::from_millis(300))
        .failover_window(Duration::from_secs(20))
        .build()
        .unwrap();
    let engine = Engine::on_redis(&auto).unwrap();
    cluster.pause(replica);
    let started = Instant::now();
    let made = engine.trigger(&keys).map(|handles| handles.iter().filter(|h| !h.cached).count());
    let paused_for = started.elapsed();
    cluster.resume(replica);
    assert_eq!(made.unwrap(), 5_000, "every run made, after a pause of {paused_for:?}");
    assert!(paused_for >= Duration::from_millis(300), "the master's writes waited for its replica first");
    cluster.wait_ok(Duration::from_secs(30));
    handles.iter().enumerate().map(|(key, handle)| (key, handle.id)).collect()
}
