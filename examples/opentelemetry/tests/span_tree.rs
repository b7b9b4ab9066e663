//! The span tree one fan-out exports through `tracing-opentelemetry`: which spans, under
//! which parent, with which attributes, and the warning as an event of the span it was
//! emitted in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use opentelemetry_demo::{Node, fan_out, traced, tree};

fn attribute<'a>(node: &'a Node, key: &str) -> &'a str {
    node.attributes.get(key).unwrap_or_else(|| panic!("{} has no {key}: {:?}", node.name, node.attributes))
}

#[test]
fn one_fan_out_exports_one_trace_of_the_sdks_spans_under_the_callers() {
    let (report, spans) = traced(|| fan_out(50, 10)).unwrap();
    let report = report.unwrap();
    assert_eq!((report.items, report.without_options, report.runs, report.cached), (50, 40, 50, 50));

    // One trace: every span shares the root's trace id.
    let trace = spans[0].span_context.trace_id();
    assert!(spans.iter().all(|span| span.span_context.trace_id() == trace), "more than one trace");

    let roots = tree(&spans);
    assert_eq!(roots.len(), 1, "{roots:#?}");
    let root = &roots[0];
    assert_eq!((root.name.as_str(), attribute(root, "items")), ("fanout", "50"));
    let names: Vec<&str> = root.children.iter().map(|child| child.name.as_str()).collect();
    assert_eq!(
        names,
        ["idempotency.batch.build", "idempotency.trigger", "idempotency.trigger", "idempotency.catalog.flush"],
        "{root}"
    );
    assert!(root.children.iter().all(|child| child.children.is_empty()), "{root}");
    assert_eq!(spans.len(), 5, "no span outside the tree");

    // Keys are created in the caller's span: the catalog's eviction warnings are its
    // events, and name the catalog. Summarised: the first, then one per doubling.
    let evictions: Vec<_> = root.events.iter().filter(|(name, _)| name.starts_with("catalog full")).collect();
    assert!(!evictions.is_empty(), "{root}");
    for (_, attributes) in &evictions {
        assert_eq!(attributes.get("catalog").map(String::as_str), Some("fanout"), "{attributes:?}");
        assert_eq!(attributes.get("level").map(String::as_str), Some("WARN"), "{attributes:?}");
    }
    let last = evictions.last().and_then(|(_, attributes)| attributes.get("total_evicted"));
    assert_eq!(last.map(String::as_str), Some("40"), "the warnings add up to every eviction");

    let build = &root.children[0];
    assert_eq!((attribute(build, "task"), attribute(build, "items")), ("child-task", "50"));
    // The lost-options warning is an event of the build span, its fields attributes.
    let (name, warning) = build
        .events
        .iter()
        .find(|(name, _)| name.starts_with("batch items lost their idempotency key options"))
        .unwrap_or_else(|| panic!("no warning in {build}"));
    assert_eq!(warning.get("level").map(String::as_str), Some("WARN"), "{name}: {warning:?}");
    assert_eq!(warning.get("lost").map(String::as_str), Some("40"), "{warning:?}");
    assert_eq!(warning.get("task").map(String::as_str), Some("child-task"), "{warning:?}");

    for trigger in &root.children[1..3] {
        for (key, value) in [("task", "child-task"), ("items", "50"), ("store", "memory"), ("policy", "warn")] {
            assert_eq!(attribute(trigger, key), value, "{trigger}");
        }
        // `db.system` is Redis's (OpenTelemetry's database conventions); in memory there is none.
        assert!(!trigger.attributes.contains_key("db.system"), "{trigger}");
        assert!(trigger.events.is_empty(), "a healthy trigger warns about nothing: {trigger}");
    }

    let flush = &root.children[3];
    assert_eq!((attribute(flush, "catalog"), attribute(flush, "kind")), ("fanout", "lru"), "{flush}");
}

#[test]
fn the_demo_prints_the_tree_it_exported() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_opentelemetry-demo"))
        .args(["--items", "50", "--capacity", "10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("50 items, 40 without options; 50 runs, 50 cached answers; 5 spans exported"), "{text}");
    let lines: Vec<&str> = text.lines().skip(2).collect();
    assert!(lines[0].starts_with("fanout items=50"), "{text}");
    let build = lines.iter().position(|line| line.starts_with("  idempotency.batch.build")).unwrap();
    assert!(lines[build].contains(" task=child-task") && !lines[build].contains("code.file.path"), "{text}");
    assert!(lines[build + 1].starts_with("    - event \"batch items lost their idempotency key options"), "{text}");
    assert_eq!(lines.iter().filter(|line| line.starts_with("  idempotency.trigger ")).count(), 2, "{text}");
}

#[test]
fn bad_arguments_are_refused_naming_them() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_opentelemetry-demo"))
        .args(["--items", "many"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--items \"many\""), "{err}");
}
