//! The README's "seeing the warnings": which `EnvFilter`s let the losses through. A fan-out
//! that loses options under each filter, its output captured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::io::Write;
use std::sync::{Arc, Mutex};

use idempotency_sdk::catalog::{CatalogBuilder, CatalogKind};
use idempotency_sdk::{ItemOptions, Scope, Sdk};
use serde_json::json;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// What a `fmt` subscriber under `filter` prints while 50 digest keys created first are
/// batched under an LRU of 10: 40 evictions (the catalog's WARN) and a batch that lost
/// them (the SDK's).
fn printed_under(filter: EnvFilter) -> String {
    let out = Captured::default();
    let subscriber =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(out.clone()).with_ansi(false).finish();
    tracing::subscriber::with_default(subscriber, || {
        let catalog = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(10).build().unwrap();
        let sdk = Sdk::new(catalog);
        let keys: Vec<String> =
            (0..50).map(|i| sdk.create_key(["item", &i.to_string()], Scope::Global).unwrap().to_string()).collect();
        let mut batch = sdk.batch("child-task", keys.len());
        for key in &keys {
            batch.item(json!({}), ItemOptions::new().key(key.as_str()));
        }
        assert_eq!(batch.build().unwrap().report().without_options, 40);
    });
    String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
}

const EVICTED: &str = "WARN idempotency_catalog::events: catalog full";
const LOST: &str = "WARN idempotency_sdk::batch: batch items lost their idempotency key options";

#[test]
fn without_rust_log_from_default_env_prints_nothing() {
    // `from_default_env` is `from_env_lossy` on `RUST_LOG`; a variable no one sets stands
    // for it unset, whatever this test process was started with.
    let unset = EnvFilter::builder().with_env_var("IDEMPOTENCY_TEST_NEVER_SET").from_env_lossy();
    assert_eq!(printed_under(unset), "", "the filter's default is ERROR: losses are invisible");
}

#[test]
fn the_readme_default_of_warn_prints_both_crates_losses() {
    let text = printed_under(EnvFilter::new("warn"));
    assert!(text.contains(EVICTED) && text.contains(LOST), "{text}");
}

#[test]
fn rust_log_idempotency_warn_selects_both_crates_by_prefix() {
    for directive in ["idempotency=warn", "idempotency_catalog=warn,idempotency_sdk=warn"] {
        let text = printed_under(EnvFilter::new(format!("error,{directive}")));
        assert!(text.contains(EVICTED) && text.contains(LOST), "{directive}: {text}");
    }
    // One crate's directive alone lets only that crate's warnings through.
    let text = printed_under(EnvFilter::new("idempotency_sdk=warn"));
    assert!(text.contains(LOST) && !text.contains(EVICTED), "{text}");
}

/// The README's subscriber line, as it is written there.
fn readme_subscriber() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
}

#[test]
fn the_readme_subscriber_line_is_the_one_tested() {
    let readme = include_str!("../../../README.md");
    for line in [
        ".with_writer(std::io::stderr)",
        ".with_ansi(std::io::stderr().is_terminal())",
        r#".with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))"#,
    ] {
        assert!(readme.contains(line), "README.md no longer has {line}");
    }
}

#[test]
fn the_readme_subscriber_writes_to_stderr_without_colour_when_stderr_is_a_pipe() {
    const CHILD: &str = "IDEMPOTENCY_TEST_README_SUBSCRIBER";
    if std::env::var_os(CHILD).is_some() {
        // In the child: the README's line, then a loss to warn about.
        readme_subscriber();
        let catalog = CatalogBuilder::new().kind(CatalogKind::Lru).capacity(1).build().unwrap();
        let sdk = Sdk::new(catalog);
        let keys: Vec<String> =
            (0..3).map(|i| sdk.create_key(["item", &i.to_string()], Scope::Global).unwrap().to_string()).collect();
        let mut batch = sdk.batch("child-task", keys.len());
        for key in &keys {
            batch.item(json!({}), ItemOptions::new().key(key.as_str()));
        }
        batch.build().unwrap();
        return;
    }
    // This test again, in a process whose stdout and stderr are pipes, not terminals.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_readme_subscriber_writes_to_stderr_without_colour_when_stderr_is_a_pipe", "--nocapture"])
        .env(CHILD, "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains(EVICTED) && stderr.contains(LOST), "the warnings go to stderr: {stderr}");
    assert!(!stdout.contains(" WARN "), "nothing on stdout: {stdout}");
    assert!(!stderr.contains('\u{1b}'), "no colour on a pipe: {stderr:?}");
}
