//! The SDK's spans as OpenTelemetry traces, with no collector: a `tracing-opentelemetry`
//! layer over an OpenTelemetry tracer whose exporter keeps the finished spans in memory.
//!
//! A service sends them to its backend by putting its own exporter (OTLP, say) where
//! [`Collector`] is: the layer and the SDK's spans do not change.
//!
//! ```
//! use opentelemetry_demo::{fan_out, traced, tree};
//!
//! let (report, spans) = traced(|| fan_out(100, 10)).unwrap();
//! assert_eq!(report.unwrap().runs, 100);
//! let roots = tree(&spans);
//! assert_eq!(roots[0].name, "fanout");
//! assert!(roots[0].children.iter().any(|child| child.name == "idempotency.trigger"));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use idempotency_sdk::catalog::{Catalog, CatalogBuilder, CatalogKind};
use idempotency_sdk::{Engine, IdempotencyKey, ItemOptions, Scope, Sdk};
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

/// An in-process span exporter: every span that ends is kept, in the order they ended.
#[derive(Clone, Debug, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<SpanData>>>,
}

impl Collector {
    /// The spans exported so far, leaving none behind.
    pub fn take(&self) -> Vec<SpanData> {
        std::mem::take(&mut *self.spans.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl SpanExporter for Collector {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner).append(&mut batch);
        Ok(())
    }
}

/// Runs `f` with a `tracing-opentelemetry` layer as this thread's subscriber, and returns
/// what it returned with every span that ended meanwhile.
///
/// The provider exports each span as it ends (a simple processor, not a batching one):
/// nothing is waiting in a queue when `f` returns.
pub fn traced<T>(f: impl FnOnce() -> T) -> Result<(T, Vec<SpanData>), OTelSdkError> {
    let collector = Collector::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(collector.clone()).build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("opentelemetry-demo"));
    let out = tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    provider.shutdown()?;
    Ok((out, collector.take()))
}

/// What one [`fan_out`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FanOut {
    /// Items in the batch.
    pub items: usize,
    /// Items the batch sent without their key's options (the catalog had evicted them).
    pub without_options: usize,
    /// Runs the first trigger made.
    pub runs: usize,
    /// Answers of the second trigger that named the first's runs.
    pub cached: usize,
}

/// The main job, in a `fanout` span of the caller's: `items` digest keys created first
/// under an LRU catalog of `capacity` named `fanout` (the reference's bug: a batch larger
/// than the catalog loses options, and says so), batched for `child-task`, triggered
/// twice, then the catalog flushed.
pub fn fan_out(items: usize, capacity: usize) -> Result<FanOut, idempotency_sdk::Error> {
    let _span = tracing::info_span!("fanout", items).entered();
    let catalog = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(capacity).name("fanout").build()?;
    let sdk = Sdk::new(Arc::clone(&catalog) as Arc<dyn Catalog>);
    let keys: Vec<IdempotencyKey> =
        (0..items).map(|i| sdk.create_key(["item", &i.to_string()], Scope::Global)).collect::<Result<_, _>>()?;
    let mut batch = sdk.batch("child-task", items);
    for (i, key) in keys.iter().enumerate() {
        batch.item(json!({ "i": i }), ItemOptions::new().key(key.to_string()));
    }
    let batch = batch.build()?;
    let engine = Engine::new();
    let first = engine.trigger(&batch)?;
    let second = engine.trigger(&batch)?;
    catalog.flush()?;
    Ok(FanOut {
        items,
        without_options: batch.report().without_options,
        runs: first.iter().filter(|run| !run.cached).count(),
        cached: second.iter().zip(&first).filter(|(again, run)| again.cached && again.id == run.id).count(),
    })
}

/// One span of a trace, with the spans it is the parent of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The span's name.
    pub name: String,
    /// Its attributes, as text.
    pub attributes: BTreeMap<String, String>,
    /// Its events (a `tracing` event inside the span becomes one): name, attributes.
    pub events: Vec<(String, BTreeMap<String, String>)>,
    /// The spans whose parent it is, in the order they started.
    pub children: Vec<Node>,
}

/// The spans as trees: roots (spans whose parent is not among them) in the order they
/// started, each with its children.
pub fn tree(spans: &[SpanData]) -> Vec<Node> {
    let mut spans: Vec<&SpanData> = spans.iter().collect();
    spans.sort_by_key(|span| span.start_time);
    let known = |id: SpanId| spans.iter().any(|span| span.span_context.span_id() == id);
    let children_of = |parent: Option<SpanId>| -> Vec<&SpanData> {
        spans
            .iter()
            .copied()
            .filter(|span| match parent {
                Some(parent) => span.parent_span_id == parent,
                None => !known(span.parent_span_id),
            })
            .collect()
    };
    fn build<'a>(span: &SpanData, children_of: &dyn Fn(Option<SpanId>) -> Vec<&'a SpanData>) -> Node {
        let text = |kvs: &[opentelemetry::KeyValue]| {
            kvs.iter().map(|kv| (kv.key.to_string(), kv.value.to_string())).collect::<BTreeMap<_, _>>()
        };
        Node {
            name: span.name.to_string(),
            attributes: text(&span.attributes),
            events: span.events.iter().map(|event| (event.name.to_string(), text(&event.attributes))).collect(),
            children: children_of(Some(span.span_context.span_id()))
                .into_iter()
                .map(|child| build(child, children_of))
                .collect(),
        }
    }
    children_of(None).into_iter().map(|root| build(root, &children_of)).collect()
}

/// Attributes every span carries that say where it came from rather than what it did.
const PROVENANCE: [&str; 8] = [
    "code.file.path",
    "code.module.name",
    "code.line.number",
    "thread.id",
    "thread.name",
    "target",
    "busy_ns",
    "idle_ns",
];

impl fmt::Display for Node {
    /// The tree indented, a span and its attributes on a line, its events below it:
    /// provenance attributes (source location, thread, timings) left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn line(f: &mut fmt::Formatter<'_>, node: &Node, depth: usize) -> fmt::Result {
            let shown = |attributes: &BTreeMap<String, String>| {
                attributes
                    .iter()
                    .filter(|(key, _)| !PROVENANCE.contains(&key.as_str()))
                    .map(|(key, value)| format!(" {key}={value}"))
                    .collect::<String>()
            };
            writeln!(f, "{:indent$}{}{}", "", node.name, shown(&node.attributes), indent = depth * 2)?;
            for (name, attributes) in &node.events {
                writeln!(f, "{:indent$}- event {name:?}{}", "", shown(attributes), indent = depth * 2 + 2)?;
            }
            node.children.iter().try_for_each(|child| line(f, child, depth + 1))
        }
        line(f, self, 0)
    }
}
