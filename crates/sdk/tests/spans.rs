//! The spans a fan-out runs in, and which of them each warning sits in: recorded by a
//! `tracing` layer of the test's own (one test in this binary, so that its subscriber
//! is the only one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::{Arc, Mutex};

use idempotency_sdk::catalog::{Catalog, CatalogBuilder, CatalogKind};
use idempotency_sdk::{Engine, ItemOptions, Scope, Sdk};
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}").trim_matches('"').to_owned()));
    }
}

/// A span opened: its name, its fields, its parent's name.
type Opened = (String, Vec<(String, String)>, Option<String>);

/// What was seen: spans opened, and events (level, message, the names of the spans they
/// were in, innermost first).
#[derive(Default)]
struct Seen {
    spans: Vec<Opened>,
    events: Vec<(tracing::Level, String, Vec<String>)>,
}

struct Recorder(Arc<Mutex<Seen>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let parent = ctx.span(id).and_then(|span| span.parent()).map(|parent| parent.name().to_owned());
        self.0.lock().unwrap().spans.push((attrs.metadata().name().to_owned(), fields.0, parent));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.iter().find(|(k, _)| k == "message").map(|(_, v)| v.clone()).unwrap_or_default();
        let scope =
            ctx.event_scope(event).map(|scope| scope.map(|span| span.name().to_owned()).collect()).unwrap_or_default();
        self.0.lock().unwrap().events.push((*event.metadata().level(), message, scope));
    }
}

#[test]
fn a_fan_out_runs_in_named_spans_and_its_warnings_carry_them() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let subscriber = tracing_subscriber::registry().with(Recorder(Arc::clone(&seen)));
    tracing::subscriber::with_default(subscriber, || {
        // An LRU of 10: a batch of 50 digest keys created first loses 40 and warns
        // while it is built; triggering it twice with other payloads warns in the trigger.
        let catalog: Arc<dyn Catalog> =
            CatalogBuilder::new().kind(CatalogKind::Lru).capacity(10).name("spans").build().unwrap();
        let sdk = Sdk::new(Arc::clone(&catalog));
        let keys: Vec<String> =
            (0..50).map(|i| sdk.create_key(["item", &i.to_string()], Scope::Global).unwrap().to_string()).collect();
        let build = |amount: u32| {
            let mut batch = sdk.batch("child-task", keys.len());
            for key in &keys {
                batch.item(json!({ "amount": amount }), ItemOptions::new().key(key.as_str()));
            }
            batch.build().unwrap()
        };
        let engine = Engine::new();
        engine.trigger(&build(1)).unwrap();
        engine.trigger(&build(2)).unwrap();
        catalog.flush().unwrap();
    });

    let seen = seen.lock().unwrap();
    let span = |name: &str| {
        seen.spans.iter().find(|(n, ..)| n == name).unwrap_or_else(|| panic!("no span {name}: {:?}", seen.spans))
    };
    let (_, fields, parent) = span("idempotency.trigger");
    for (key, value) in [("task", "child-task"), ("items", "50"), ("store", "memory"), ("policy", "warn")] {
        assert!(fields.iter().any(|(k, v)| k == key && v == value), "trigger span without {key}={value}: {fields:?}");
    }
    assert_eq!(parent, &None, "a root span");
    let (_, fields, _) = span("idempotency.batch.build");
    assert!(fields.iter().any(|(k, v)| k == "task" && v == "child-task"), "{fields:?}");
    let (_, fields, _) = span("idempotency.catalog.flush");
    assert!(fields.iter().any(|(k, v)| k == "catalog" && v == "spans"), "{fields:?}");

    let warning_in = |message: &str| {
        seen.events
            .iter()
            .find(|(level, m, _)| *level == tracing::Level::WARN && m.starts_with(message))
            .map(|(_, _, scope)| scope.clone())
            .unwrap_or_else(|| panic!("no WARN {message:?}: {:?}", seen.events))
    };
    assert_eq!(warning_in("batch items lost their idempotency key options"), ["idempotency.batch.build"]);
    assert_eq!(warning_in("idempotency key reused with another payload"), ["idempotency.trigger"]);
}
