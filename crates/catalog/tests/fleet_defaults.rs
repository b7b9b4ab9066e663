//! The defaults of a Redis handle (feature `redis`), against real servers: each is the
//! public constant, the handle behaves by it, and `docs/fleet.md` says it.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::time::{Duration, Instant};

use idempotency_catalog::{Redis, RedisBuilder, defaults};
use testkit::RedisServer;

/// A duration as the docs write it: `2 s`, `250 ms`.
fn spoken(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{} s", d.as_secs()) } else { format!("{} ms", d.as_millis()) }
}

fn fleet_md() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fleet.md")).unwrap();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The last cell of the configuration table's row that starts with `setting`.
fn default_cell(setting: &str) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fleet.md")).unwrap();
    let row = text
        .lines()
        .find(|line| line.starts_with(&format!("| {setting}")))
        .unwrap_or_else(|| panic!("docs/fleet.md has no row for {setting}"));
    row.trim_end_matches('|').rsplit('|').next().unwrap().trim().to_owned()
}

#[test]
fn the_docs_say_the_defaults_the_constants_hold() {
    let docs = fleet_md();
    assert_eq!(spoken(defaults::REDIS_CONNECT_TIMEOUT), "2 s");
    assert_eq!(spoken(defaults::REDIS_IO_TIMEOUT), "5 s");
    assert_eq!((defaults::REDIS_POOL_SIZE, spoken(Redis::RECONNECT_PAUSE).as_str()), (8, "250 ms"));
    assert_eq!(default_cell("connect timeout"), spoken(defaults::REDIS_CONNECT_TIMEOUT));
    assert_eq!(default_cell("command timeout"), spoken(defaults::REDIS_IO_TIMEOUT));
    assert_eq!(default_cell("sync connections at most"), format!("{} (from 1)", defaults::REDIS_POOL_SIZE));
    for quoted in [
        format!("calls fail at once for {} (`not reconnected yet: …`)", spoken(Redis::RECONNECT_PAUSE)),
        format!("`pool_size` at most ({} by default)", defaults::REDIS_POOL_SIZE),
        format!("an unreachable address fails here within {}", spoken(defaults::REDIS_CONNECT_TIMEOUT)),
    ] {
        assert!(docs.contains(&quoted), "docs/fleet.md does not say: {quoted}");
    }
}

#[test]
fn by_default_a_silent_server_fails_the_build_after_the_default_connect_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = RedisBuilder::new(format!("redis://{}/", silent.local_addr().unwrap())).build().unwrap_err();
    let expected = format!(": cannot connect: no answer within {:?}", defaults::REDIS_CONNECT_TIMEOUT);
    assert!(err.to_string().ends_with(&expected), "{err}");
}

#[test]
fn by_default_a_paused_server_fails_a_call_after_the_default_command_timeout() {
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let conn = redis.connection();
    conn.query::<()>("ping", &redis::cmd("PING")).unwrap();
    server.pause();
    let err = conn.query::<()>("ping", &redis::cmd("PING")).unwrap_err();
    server.resume();
    assert!(err.to_string().ends_with(&format!("no answer within {:?}", defaults::REDIS_IO_TIMEOUT)), "{err}");
}

#[test]
fn by_default_a_handle_opens_at_most_the_default_pool_of_sync_connections() {
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let mut admin = server.client();
    let clients = |admin: &mut redis::Connection| {
        let list: String = redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("normal").query(admin).unwrap();
        list.lines().count() - 1 // but this one
    };
    // Twice the pool, each call blocked on the server for a second.
    let threads: Vec<_> = (0..2 * defaults::REDIS_POOL_SIZE)
        .map(|i| {
            let conn = redis.connection();
            std::thread::spawn(move || {
                let mut cmd = redis::cmd("BLPOP");
                cmd.arg(format!("nothing-{i}")).arg(1);
                conn.query::<Option<(String, String)>>("wait", &cmd).unwrap()
            })
        })
        .collect();
    let (mut most, deadline) = (0, Instant::now() + Duration::from_secs(3));
    while Instant::now() < deadline && !threads.iter().all(std::thread::JoinHandle::is_finished) {
        most = most.max(clients(&mut admin));
        std::thread::sleep(Duration::from_millis(10));
    }
    for thread in threads {
        assert_eq!(thread.join().unwrap(), None);
    }
    assert_eq!(most, defaults::REDIS_POOL_SIZE, "connections open at once");
    assert_eq!(clients(&mut admin), defaults::REDIS_POOL_SIZE, "and kept open");
}

#[test]
fn after_a_failed_connect_calls_fail_at_once_for_the_reconnect_pause() {
    let mut server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let conn = redis.connection();
    server.kill();
    let first = conn.query::<()>("ping", &redis::cmd("PING")).unwrap_err().to_string();
    assert!(!first.contains("not reconnected yet"), "{first}");
    let second = conn.query::<()>("ping", &redis::cmd("PING")).unwrap_err().to_string();
    assert!(second.contains("not reconnected yet"), "{second}");
    std::thread::sleep(Redis::RECONNECT_PAUSE + Duration::from_millis(100));
    let after = conn.query::<()>("ping", &redis::cmd("PING")).unwrap_err().to_string();
    assert!(!after.contains("not reconnected yet"), "tried again after the pause: {after}");
}
