//! The main job's 6,235-item fan-out under an LRU of 1,000 (digest keys created first,
//! the reference's bug), triggered twice, with the `metrics` feature on and the
//! Prometheus recorder installed; then serves the metrics in Prometheus text on a
//! loopback port.
//!
//! ```text
//! cargo run -p prometheus-demo                 # serves until stopped
//! cargo run -p prometheus-demo -- --requests 1 # serves one scrape, then exits
//! curl -s http://ADDR/metrics                  # ADDR: printed on the first line
//! ```
//!
//! The first line on stdout is JSON: the address, and the catalog's `Stats` and a small
//! engine's `EngineStats` to compare the metrics with.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use idempotency_sdk::catalog::{CatalogBuilder, CatalogKind};
use idempotency_sdk::{Engine, IdempotencyKey, ItemOptions, RunContext, Scope, Sdk};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;

const ITEMS: usize = 6_235;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let requests: Option<usize> = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => None,
        [flag, n] if flag == "--requests" => Some(n.parse()?),
        other => return Err(format!("usage: prometheus-demo [--requests N], not {other:?}").into()),
    };
    // Before any catalog is built: catalogs register their metric handles when built.
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    let catalog = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(1_000).name("fanout").build()?;
    let sdk = Sdk::new(catalog.clone()).with_run(RunContext::new("run_metrics", 1));
    let keys: Vec<IdempotencyKey> =
        (0..ITEMS).map(|i| sdk.create_key(["item", &i.to_string()], Scope::Global)).collect::<Result<_, _>>()?;
    let mut batch = sdk.batch("child-task", ITEMS);
    for (i, key) in keys.iter().enumerate() {
        batch.item(json!({ "i": i }), ItemOptions::new().key(key.to_string()));
    }
    let batch = batch.build()?;
    let engine = Engine::new();
    engine.trigger(&batch)?;
    engine.trigger(&batch)?; // every item again: answered from the cache
    // An engine whose byte budget holds a fraction of the batch: it forgets the oldest
    // keys (counted on `idempotency_sdk_engine_evictions_total`); its gauges are the
    // last trigger's.
    let small = Engine::new().with_max_bytes(256 << 10)?;
    small.trigger(&batch)?;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let first = json!({ "addr": listener.local_addr()?.to_string(), "stats": catalog.stats(), "report": {
        "items": batch.report().items, "without_options": batch.report().without_options,
    }, "engine": small.stats() });
    println!("{first}");
    std::io::stdout().flush()?;

    for (served, stream) in listener.incoming().enumerate() {
        let mut stream = stream?;
        // The request line and headers, up to the blank line; any path gets the metrics.
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 2 {
            line.clear();
        }
        let body = prometheus.render();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        if requests.is_some_and(|n| served + 1 >= n) {
            break;
        }
    }
    Ok(())
}
