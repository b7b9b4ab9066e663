//! `docs/fleet.md`'s sizing table, measured (feature `redis`): the bytes of Redis memory
//! (`used_memory`) per catalog entry and per run, 100,000 of each on a server emptied
//! between them, within 10% of the column for the server the test runs on (the
//! table has one per server measured; a server it lacks fails the test, with what was
//! measured, to be added).
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use idempotency_catalog::{CatalogBuilder, CatalogKind, RedisBuilder};
use idempotency_sdk::{Engine, ItemOptions, Scope, Sdk, Ttl};
use serde_json::json;
use testkit::RedisServer;

const ITEMS: usize = 100_000;
/// How far a measurement may be from the table, as a fraction of the table's number.
const TOLERANCE: f64 = 0.10;

/// A field of `INFO <section>`.
fn info(conn: &mut redis::Connection, section: &str, field: &str) -> Option<String> {
    let text: String = redis::cmd("INFO").arg(section).query(conn).unwrap();
    text.lines().find_map(|line| line.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_owned()))
}

fn used_memory(conn: &mut redis::Connection) -> i64 {
    info(conn, "memory", "used_memory").unwrap().parse().unwrap()
}

/// The server's name and version: `("Valkey", "9.1.2")`, `("Redis", "7.0.15")`.
fn server(conn: &mut redis::Connection) -> (&'static str, String) {
    match info(conn, "server", "valkey_version") {
        Some(version) => ("Valkey", version),
        None => ("Redis", info(conn, "server", "redis_version").unwrap()),
    }
}

/// Bytes per item that `fill` adds to an emptied server.
fn per_item(server: &RedisServer, fill: impl FnOnce()) -> f64 {
    let mut conn = server.client();
    redis::cmd("FLUSHALL").arg("SYNC").query::<()>(&mut conn).unwrap();
    let before = used_memory(&mut conn);
    fill();
    let after = used_memory(&mut conn);
    (after - before) as f64 / ITEMS as f64
}

/// One trigger of `ITEMS` items of task `child-task`: keys `item-<i>` held for `ttl`
/// (the item's default when `None`), or no key.
fn trigger(engine: &Engine, key: bool, ttl: Option<&str>) {
    let sdk = Sdk::new(CatalogBuilder::new().kind(CatalogKind::Unbounded).build().unwrap());
    let mut batch = sdk.batch("child-task", ITEMS);
    for i in 0..ITEMS {
        let mut options = ItemOptions::new();
        if key {
            options = options.key(sdk.create_key(["item", &i.to_string()], Scope::Global));
        }
        if let Some(ttl) = ttl {
            options = options.ttl(ttl.parse::<Ttl>().unwrap());
        }
        batch.item(json!({ "i": i }), options);
    }
    engine.trigger_owned(batch.build().unwrap()).unwrap();
}

/// The sizing table: its header cells, and each row's cells.
fn table() -> (Vec<String>, Vec<Vec<String>>) {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fleet.md")).unwrap();
    let section = docs.split("\n## Sizing\n").nth(1).unwrap();
    let cells = |line: &str| line.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect::<Vec<_>>();
    let mut lines = section.lines().skip_while(|l| !l.starts_with("| entry |"));
    let header = cells(lines.next().unwrap());
    let rows = lines.skip(1).take_while(|l| l.starts_with('|')).map(cells).collect();
    (header, rows)
}

#[test]
fn the_sizing_table_holds_for_the_server_it_runs_on() {
    let server = RedisServer::start(&[]);
    let (name, version) = self::server(&mut server.client());
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let measured = [
        per_item(&server, || {
            let sdk =
                Sdk::new(CatalogBuilder::new().kind(CatalogKind::Unbounded).redis(redis.clone()).build().unwrap());
            for i in 0..ITEMS {
                sdk.create_key(["item", &i.to_string()], Scope::Global).unwrap();
            }
            sdk.catalog().flush().unwrap();
        }),
        per_item(&server, || trigger(&engine, true, None)),
        per_item(&server, || trigger(&engine, true, Some("1h"))),
        per_item(&server, || trigger(&engine, false, None)),
    ];
    let said = format!("measured on {name} {version}: {measured:.0?} bytes");
    eprintln!("{said}");
    let (header, rows) = table();
    let minor = version.rsplit_once('.').map_or(version.as_str(), |(minor, _)| minor);
    let column = header
        .iter()
        .position(|h| h.strip_prefix(name).is_some_and(|v| v.trim().starts_with(&format!("{minor}."))))
        .unwrap_or_else(|| {
            panic!("docs/fleet.md's sizing table has no column for {name} {minor}.x ({header:?}); {said}")
        });
    let labels = [
        "catalog entry",
        "a run holding a key for `run_ttl` or longer",
        "a run holding a key for less",
        "a run without a key",
    ];
    assert_eq!(rows.len(), labels.len(), "{rows:?}");
    for ((row, label), measured) in rows.iter().zip(labels).zip(measured) {
        assert!(row[0].starts_with(label), "row {row:?} is not {label}");
        let documented: f64 = row[column].parse().unwrap();
        let off = (measured - documented).abs() / documented;
        assert!(off <= TOLERANCE, "{label}: {documented} documented for {}, {said}", header[column]);
    }
}
