//! The check each fleet fault test ends with (`docs/fleet.md`, "When Redis fails": a
//! fresh engine finds every key held once). `.ci/doc-tests` checks that every fault
//! test the docs name calls [`a_fresh_engine_finds_every_key_held_once`] or
//! [`a_fresh_engine_finds_every_key_held_once_in`].

use std::collections::HashSet;

use idempotency_catalog::RedisBuilder;
use idempotency_sdk::{Engine, RunId, Triggered, WireItem};
use testkit::RedisServer;

use super::batches::batch;

/// An engine on `server` with the default settings.
pub(crate) fn engine(server: &RedisServer) -> Engine {
    Engine::on_redis(&RedisBuilder::new(server.url()).build().unwrap()).unwrap()
}

/// The ids of every claim on the server, read from the records they hold.
pub(crate) fn claimed_runs(server: &RedisServer) -> Vec<RunId> {
    let mut conn = server.client();
    let keys = server.keys("idempotency:claim:*");
    let mut ids = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(10_000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("GET").arg(key);
        }
        let values: Vec<String> = pipe.query(&mut conn).unwrap();
        for value in values {
            let record: serde_json::Value = serde_json::from_str(&value).unwrap();
            ids.push(record["id"].as_str().unwrap().parse().unwrap());
        }
    }
    ids
}

/// After a fault: a fresh engine triggers the same `items` keys of [`batch`]; every key
/// is held by exactly one run, each with a record this engine reads, and every answer
/// it gets is readable (`cached_without_record` is 0). Returns how many runs it had to
/// create.
pub(crate) fn a_fresh_engine_finds_every_key_held_once(server: &RedisServer, items: usize) -> usize {
    let fresh = engine(server);
    let handles = fresh.trigger(&batch(items)).unwrap();
    every_key_held_once(server, &fresh, &handles, &vec![true; items], items)
}

/// The same for any wire items, of which `held` keys are held (not `0s`, not keyless):
/// one claim per held key, each naming a readable run of its key; every answer
/// readable, and each keyed item's answer a run of its own key.
pub(crate) fn a_fresh_engine_finds_every_key_held_once_in(
    server: &RedisServer,
    items: &[WireItem],
    held: usize,
) -> usize {
    let fresh = engine(server);
    let handles = fresh.trigger_items(items).unwrap();
    let keyed: Vec<bool> =
        items.iter().map(|item| item.options.as_ref().is_some_and(|o| o.idempotency_key.is_some())).collect();
    every_key_held_once(server, &fresh, &handles, &keyed, held)
}

fn every_key_held_once(
    server: &RedisServer,
    fresh: &Engine,
    handles: &[Triggered],
    keyed: &[bool],
    held: usize,
) -> usize {
    let ids: Vec<RunId> = handles.iter().map(|h| h.id).collect();
    let records = fresh.read_runs(&ids).unwrap();
    let cached_without_record = handles.iter().zip(&records).filter(|(h, r)| h.cached && r.is_none()).count();
    assert_eq!(cached_without_record, 0);
    assert!(records.iter().all(Option::is_some), "every answer names a run this engine reads");
    let keys: Vec<&String> = records
        .iter()
        .zip(keyed)
        .filter(|(_, keyed)| **keyed)
        .map(|(record, _)| record.as_ref().unwrap().idempotency_key.as_ref().unwrap())
        .collect();
    let distinct: HashSet<&String> = keys.iter().copied().collect();
    assert_eq!(distinct.len(), keys.len(), "every answer names the run of its own key");

    let claimed = claimed_runs(server);
    assert_eq!(claimed.len(), held, "one claim per key held");
    let records = fresh.read_runs(&claimed).unwrap();
    let keys: HashSet<String> = records.into_iter().map(|r| r.unwrap().idempotency_key.unwrap()).collect();
    assert_eq!(keys.len(), held, "every claim names a readable run of its key");
    handles.iter().filter(|h| !h.cached).count()
}
