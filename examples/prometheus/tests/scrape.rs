//! Scrapes the demo over HTTP and checks every catalog counter and gauge against the
//! catalog's own `Stats`, and the SDK's counters against what the fan-out did.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

/// `name{a="x",b="y"} value` lines, keyed by name and sorted labels.
fn parse(text: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        out.insert((name.to_owned(), labels), value.parse::<f64>().unwrap());
    }
    out
}

#[test]
fn every_exported_metric_matches_the_catalogs_stats_after_a_6235_item_fan_out() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_prometheus-demo"))
        .args(["--requests", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(demo.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let stats = &first["stats"];

    let mut stream = TcpStream::connect(first["addr"].as_str().unwrap()).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(demo.wait().unwrap().success());
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let metrics = parse(body);

    let labels = |extra: &[(&str, &str)]| {
        let mut labels: BTreeMap<String, String> =
            [("catalog", "fanout"), ("kind", "lru")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        labels
    };
    let value = |name: &str, extra: &[(&str, &str)]| {
        metrics.get(&(name.to_owned(), labels(extra))).copied().unwrap_or_else(|| panic!("{name} {extra:?} missing"))
    };
    let stat = |field: &str| stats[field].as_f64().unwrap();

    let expected = [
        ("idempotency_catalog_registrations_total", &[][..], stat("registered")),
        ("idempotency_catalog_replacements_total", &[], stat("replaced")),
        ("idempotency_catalog_hits_total", &[], stat("hits")),
        ("idempotency_catalog_misses_total", &[], stat("misses")),
        ("idempotency_catalog_removals_total", &[("cause", "capacity")], stat("evicted")),
        ("idempotency_catalog_removals_total", &[("cause", "released")], stat("released")),
        ("idempotency_catalog_removals_total", &[("cause", "explicit")], stat("removed")),
        ("idempotency_catalog_removals_total", &[("cause", "cleared")], stat("cleared")),
        ("idempotency_catalog_listener_panics_total", &[], stat("listener_panics")),
        ("idempotency_catalog_entries", &[], stat("len")),
        ("idempotency_catalog_capacity_entries", &[], stat("capacity")),
        ("idempotency_catalog_max_capacity_entries", &[], stat("max_capacity")),
        ("idempotency_catalog_reserved_entries", &[], stat("reserved")),
        ("idempotency_catalog_bytes", &[], stat("bytes")),
        // No budget on this LRU: the gauge is +Inf, as the capacity of an unbounded catalog.
        ("idempotency_catalog_max_bytes", &[], stats["max_bytes"].as_f64().unwrap_or(f64::INFINITY)),
    ];
    for (name, extra, want) in expected {
        assert_eq!(value(name, extra), want, "{name} {extra:?}");
    }
    // The fan-out really happened: the reference's loss, counted on both sides.
    assert_eq!((stat("registered"), stat("evicted")), (6_235.0, 5_235.0));
    // An LRU is always at its ceiling: the ceiling alert is for batch-scaled catalogs.
    assert_eq!((stat("capacity"), stat("max_capacity")), (1_000.0, 1_000.0));
    // Every catalog series is one of those above: nothing exported goes unchecked.
    let catalog_series = metrics.keys().filter(|(name, _)| name.starts_with("idempotency_catalog_")).count();
    assert_eq!(catalog_series, expected.len());

    let report = &first["report"];
    let sdk = |name: &str| metrics[&(name.to_owned(), BTreeMap::new())];
    assert_eq!(sdk("idempotency_sdk_batch_items_total"), report["items"].as_f64().unwrap());
    assert_eq!(sdk("idempotency_sdk_batch_items_without_options_total"), report["without_options"].as_f64().unwrap());
    assert_eq!(report["without_options"].as_f64(), Some(5_235.0));
    // The second trigger answered every item from the first's runs.
    assert_eq!(sdk("idempotency_sdk_cached_answers_total"), 6_235.0);
    // The small engine's budget: what it forgot, and its gauges (the last trigger's).
    let engine = &first["engine"];
    let forgot = engine["evicted_keys"].as_f64().unwrap();
    assert!(forgot > 0.0, "{engine}");
    let by_entry = |entry: &str| {
        let labels: BTreeMap<String, String> = [("entry".to_owned(), entry.to_owned())].into();
        metrics[&("idempotency_sdk_engine_evictions_total".to_owned(), labels)]
    };
    assert_eq!((by_entry("key"), by_entry("run")), (forgot, engine["evicted_runs"].as_f64().unwrap()));
    assert_eq!(sdk("idempotency_sdk_engine_bytes"), engine["bytes"].as_f64().unwrap());
    assert_eq!(sdk("idempotency_sdk_engine_max_bytes"), 262_144.0);
    // Every metric is described once, with its unit.
    assert_eq!(body.matches("# HELP idempotency_catalog_removals_total").count(), 1);
}
