//! Durable writes on one server with a replica (feature `redis`): writes wait for the
//! replica under `auto`, fail naming the master when it stops acknowledging under
//! `replicas:1`, and a durability the deployment cannot give is refused at `build`.
//! (On a Redis Cluster: `crates/sdk/tests/fleet_living_cluster.rs`.)
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::time::{Duration, Instant};

use idempotency_catalog::{
    Catalog, CatalogBuilder, Digest, FaultKind, KeyOptions, RedisBuilder, Scope, fleet::Durability,
};
use support::entry_key;
use testkit::RedisServer;

mod support;

/// A master and a replica of it, the replica in sync (its first full sync at once, not
/// after Redis's default 5 s).
fn master_and_replica() -> (RedisServer, RedisServer) {
    let master = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    let port = master.port().to_string();
    let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &port]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !info(&master, "replication").contains("state=online") {
        assert!(Instant::now() < deadline, "the replica never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    (master, replica)
}

fn info(server: &RedisServer, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(&mut server.client()).unwrap()
}

/// How many `WAIT`s the server has run.
fn waits(server: &RedisServer) -> u64 {
    let stats = info(server, "commandstats");
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_wait:calls=")?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

fn register(catalog: &dyn Catalog, n: u8) {
    let run = catalog.reserve(0);
    run.register(Digest::from_bytes([n; 32]), KeyOptions::new(&format!("item-{n}"), Scope::Global));
}

#[test]
fn writes_wait_for_the_replica_and_fail_naming_the_master_when_it_stops_acknowledging() {
    let (master, replica) = master_and_replica();
    let redis = RedisBuilder::new(master.url()).build().unwrap();
    assert_eq!(redis.masters(), [(redis.url().to_owned(), 1)], "the replica found at build");
    assert_eq!(redis.durability(), Durability::Auto);
    let catalog = CatalogBuilder::new().redis(redis.clone()).build().unwrap();
    register(catalog.as_ref(), 1);
    catalog.flush().unwrap();
    assert_eq!(waits(&master), 1, "one WAIT for the pipeline");
    catalog.get(&Digest::from_bytes([1; 32]));
    assert_eq!(waits(&master), 1, "reads wait for nothing");
    let replicated: Option<String> =
        redis::cmd("GET").arg(entry_key(&Digest::from_bytes([1; 32]))).query(&mut replica.client()).unwrap();
    assert!(replicated.is_some_and(|v| v.ends_with(":global:item-1")), "on the replica once acknowledged");

    // `none` sends no WAIT, and says at build what it costs where there are replicas.
    let (loose, warned) = testkit::warnings(|| RedisBuilder::new(master.url()).durability(Durability::None).build());
    let loose = loose.unwrap();
    assert!(
        warned
            .iter()
            .any(|w| w.contains("redis durability is none: a claim is reported created before any replica has it")),
        "{warned:?}"
    );
    let (_, logged) = testkit::captured(|| RedisBuilder::new(master.url()).build().unwrap());
    assert!(logged.contains("redis masters and their replicas") && logged.contains("(1 replicas)"), "{logged}");
    let catalog = CatalogBuilder::new().redis(loose).build().unwrap();
    register(catalog.as_ref(), 2);
    catalog.flush().unwrap();
    assert_eq!(waits(&master), 1);

    // `replicas:1` with the replica stopped: the write fails naming the master, counted
    // as not durable, and stays queued; it goes once the replica is back.
    let strict = RedisBuilder::new(master.url())
        .durability(Durability::Replicas(1))
        .durability_timeout(Duration::from_millis(200))
        .failover_window(Duration::from_millis(500))
        .build()
        .unwrap();
    let catalog = CatalogBuilder::new().redis(strict.clone()).build().unwrap();
    replica.pause();
    // The run's end sends its registration: it fails, and stays queued.
    register(catalog.as_ref(), 3);
    let err = catalog.flush().unwrap_err().to_string();
    replica.resume();
    let expected = format!(
        "redis at {}: cannot write catalog entries: NOTDURABLE master {}: 0 of 1 replicas acknowledged within 200ms",
        strict.url(),
        strict.url()
    );
    assert!(err.starts_with(&expected), "{err}");
    assert_eq!(strict.faults(), 2, "the run's end and the flush");
    catalog.flush().unwrap();
    assert_eq!(catalog.stats().faults, 2, "sent once the replica is back");
    assert_eq!(FaultKind::NotDurable.as_str(), "not-durable");
}

#[test]
fn a_durability_the_deployment_cannot_give_is_refused_at_build() {
    let server = RedisServer::start(&[]);
    let err = RedisBuilder::new(server.url()).durability(Durability::Replicas(1)).build().unwrap_err().to_string();
    let expected = format!(
        "redis at {url}: cannot accept the server's configuration: durability replicas:1 asks for 1 replicas of every write, but master {url} has 0",
        url = server.url()
    );
    assert!(err.starts_with(&expected), "{err}");
    // WAITAOF: Redis 7.2 and later, with the append-only file on.
    let version = info(&server, "server");
    let version = version.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or_default().trim().to_owned();
    let err = RedisBuilder::new(server.url()).durability(Durability::Aof(0)).build().unwrap_err().to_string();
    if version.as_str() < "7.2" {
        assert!(
            err.contains(&format!(
                "durability aof:0 needs WAITAOF (Redis 7.2 or later, Valkey): the server is {}",
                &version[..3]
            )),
            "{err}"
        );
    } else {
        assert!(err.contains("needs the append-only file on every master"), "{err}");
        // With it on, writes wait for the fsync (`WAITAOF 1 0`).
        let fsynced = RedisServer::start(&["--appendonly", "yes"]);
        let redis = RedisBuilder::new(fsynced.url()).durability(Durability::Aof(0)).build().unwrap();
        let catalog = CatalogBuilder::new().redis(redis).build().unwrap();
        register(catalog.as_ref(), 9);
        catalog.flush().unwrap();
        let stats = info(&fsynced, "commandstats");
        assert!(stats.contains("cmdstat_waitaof:calls=1,"), "{stats}");
    }
    // The variable's grammar is checked before anything connects.
    let env = |name: &str| (name == "IDEMPOTENCY_REDIS_DURABILITY").then(|| "replicas:0".to_owned());
    let err = RedisBuilder::from_env_with(env).url(server.url()).build().unwrap_err().to_string();
    assert!(err.starts_with(r#"invalid IDEMPOTENCY_REDIS_DURABILITY "replicas:0": expected `auto`"#), "{err}");
    let err =
        RedisBuilder::new(server.url()).durability_timeout(Duration::from_secs(5)).build().unwrap_err().to_string();
    assert!(err.contains("expected less than the command timeout (5s)"), "{err}");
}
