//! The `idempotency` binary end to end, against a `redis-server` each test starts
//! (ignored by the README's `cargo test --workspace`, which needs no server; CI runs
//! them with `--ignored`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use idempotency_sdk::catalog::{Catalog, RedisBuilder};
use idempotency_sdk::{CatalogBuilder, Engine, IdempotencyKey, ItemOptions, RunStatus, Scope, Sdk, Ttl};
use serde_json::Value;
use testkit::RedisServer;

/// What one run of the binary did.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| panic!("{err}: {:?} {:?}", self.stdout, self.stderr))
    }
}

/// Runs `idempotency args…`, with `stdin` as its input, and none of the
/// `IDEMPOTENCY_*` variables of this process.
fn cli(args: &[&str], stdin: &str) -> Out {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idempotency"));
    for (name, _) in std::env::vars() {
        if name.starts_with("IDEMPOTENCY_") {
            command.env_remove(name);
        }
    }
    let mut child =
        command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Registers `item-<i>` for `i` in `keys`, scope global, in the shared catalog on
/// `url`, as a worker's batch does; returns their digests.
fn register(url: &str, keys: std::ops::Range<usize>) -> Vec<String> {
    let redis = RedisBuilder::new(url).build().unwrap();
    let catalog = CatalogBuilder::new().redis(redis).build().unwrap();
    let sdk = Sdk::new(Arc::clone(&catalog));
    let digests = keys.map(|i| sdk.create_key(["item", &i.to_string()], Scope::Global).unwrap().to_string()).collect();
    drop(sdk);
    catalog.flush().unwrap();
    digests
}

#[test]
fn hash_reproduces_every_reference_vector() {
    let vectors = include_str!("../../sdk/tests/data/hash_vectors.jsonl");
    let mut checked = 0;
    for line in vectors.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["fn"] == "makeIdempotencyKey" {
            continue; // raw input where a key is expected: not a derivation
        }
        let scope = v["scope"].as_str().unwrap();
        let mut args = vec!["--json".to_owned(), "hash".to_owned(), "--scope".to_owned(), scope.to_owned()];
        if let Some(run) = v["run_id"].as_str() {
            args.extend(["--run-id".to_owned(), run.to_owned()]);
            args.extend(["--attempt".to_owned(), v["attempt"].as_u64().unwrap_or(1).to_string()]);
        }
        args.push("--".to_owned());
        match &v["key"] {
            Value::String(s) => args.push(s.clone()),
            Value::Array(parts) => args.extend(parts.iter().map(|p| p.as_str().unwrap().to_owned())),
            other => panic!("{other}"),
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cli(&args, "");
        assert_eq!(out.code, 0, "{}", out.stderr);
        let json = out.json();
        assert_eq!(json["digest"], v["hash"], "{line}");
        assert_eq!(json["key"], v["user_key"], "{line}");
        assert_eq!(json["scope"], v["scope"], "{line}");
        checked += 1;
    }
    assert!(checked >= 30, "{checked}");
    // Without --json: the digest alone, as IdempotencyKey::derive computes it.
    let out = cli(&["hash", "--scope", "attempt", "--run-id", "run_abc123", "--attempt", "2", "a", "b"], "");
    let derived =
        IdempotencyKey::derive(["a", "b"], Scope::Attempt, Some(&idempotency_sdk::RunContext::new("run_abc123", 2)));
    assert_eq!((out.code, out.stdout.trim()), (0, derived.to_string().as_str()));
    // Bad input is an error (1), a bad option a usage error (2).
    assert_eq!(cli(&["hash", "--attempt", "1", "x"], "").code, 1);
    assert_eq!(cli(&["hash", "--scope", "forever", "x"], "").code, 2);
}

#[test]
#[ignore = "needs redis-server: cargo test --manifest-path crates/cli/Cargo.toml -- --ignored"]
fn lookup_finds_a_thousand_registered_keys_with_scope_and_ttl() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let digests = register(&url, 0..1_000);
    let mut args = vec!["--json", "lookup", "--redis", &url];
    args.extend(digests.iter().map(String::as_str));
    let out = cli(&args, "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = out.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1_000);
    for (i, (row, digest)) in rows.iter().zip(&digests).enumerate() {
        assert_eq!(row["digest"], digest.as_str());
        assert_eq!(row["found"], true);
        assert_eq!(row["key"], format!("item-{i}"));
        assert_eq!(row["scope"], "global");
        let ttl = row["ttl_ms"].as_i64().unwrap();
        assert!(ttl > 0 && ttl <= 24 * 3_600_000, "{ttl}"); // the default catalog TTL: a day
        assert!(row.get("run").is_none(), "no --task, no run column");
    }
    // The same from stdin, one a line, as a table.
    let stdin = digests.iter().take(3).map(|d| format!("{d}\n")).collect::<String>() + "\n";
    let out = cli(&["lookup", "--redis", &url], &stdin);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(lines[0].starts_with("DIGEST") && lines[0].contains("TTL_MS"), "{}", lines[0]);
    assert!(lines[2].starts_with(&digests[1]) && lines[2].contains("item-1") && lines[2].contains("global"));
}

#[test]
#[ignore = "needs redis-server: cargo test --manifest-path crates/cli/Cargo.toml -- --ignored"]
fn lookup_of_an_unknown_digest_exits_3_and_a_bad_one_1() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let known = register(&url, 0..1).remove(0);
    let unknown = "ab".repeat(32);
    let out = cli(&["--json", "lookup", "--redis", &url, &known, &unknown], "");
    assert_eq!(out.code, 3, "{}", out.stderr);
    let rows = out.json();
    assert_eq!((rows[0]["found"].clone(), rows[1]["found"].clone()), (Value::Bool(true), Value::Bool(false)));
    assert_eq!((rows[1]["key"].clone(), rows[1]["ttl_ms"].clone()), (Value::Null, Value::Null));
    let table = cli(&["lookup", "--redis", &url, &unknown], "");
    assert_eq!(table.code, 3);
    assert!(table.stdout.contains("unknown"), "{}", table.stdout);
    let bad = cli(&["lookup", "--redis", &url, "not-a-digest"], "");
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.starts_with("error: bad digest"), "{}", bad.stderr);
    // The URL from the environment.
    let mut command = Command::new(env!("CARGO_BIN_EXE_idempotency"));
    let status = command.args(["lookup", &known]).env("IDEMPOTENCY_REDIS_URL", &url).stdout(Stdio::null()).status();
    assert_eq!(status.unwrap().code(), Some(0));
}

/// A worker on the server at `url`: its shared catalog, its engine, and an SDK on both.
fn fleet(url: &str) -> (Arc<dyn Catalog>, Engine, Sdk) {
    let redis = RedisBuilder::new(url).build().unwrap();
    let catalog = CatalogBuilder::new().redis(redis.clone()).build().unwrap();
    let engine = Engine::on_redis(&redis).unwrap();
    let sdk = Sdk::new(Arc::clone(&catalog));
    (catalog, engine, sdk)
}

#[test]
#[ignore = "needs redis-server: cargo test --manifest-path crates/cli/Cargo.toml -- --ignored"]
fn lookup_with_a_task_shows_the_holder_and_reset_frees_the_key() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let (catalog, engine, sdk) = fleet(&url);
    let key = sdk.create_key("order-7", Scope::Global).unwrap();
    let mut batch = sdk.batch("charge", 1);
    batch.item(serde_json::json!({ "n": 7 }), ItemOptions::new().key(&key).ttl("1h".parse::<Ttl>().unwrap()));
    let batch = batch.build().unwrap();
    let run = engine.trigger(&batch).unwrap()[0];
    catalog.flush().unwrap();
    engine.set_status(run.id, RunStatus::Executing).unwrap();
    let digest = key.to_string();

    let out = cli(&["--json", "lookup", "--redis", &url, "--task", "charge", &digest], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let row = &out.json()[0];
    assert_eq!((row["key"].as_str(), row["scope"].as_str()), (Some("order-7"), Some("global")));
    assert_eq!(row["run"]["id"], run.id.to_string());
    assert_eq!(row["run"]["status"], "executing");
    let table = cli(&["lookup", "--redis", &url, "--task", "charge", &digest], "");
    assert!(table.stdout.contains(&run.id.to_string()) && table.stdout.contains("executing"), "{}", table.stdout);
    // Another task holds nothing under that key (the catalog entry is still known).
    let other = cli(&["--json", "lookup", "--redis", &url, "--task", "refund", &digest], "");
    assert_eq!((other.code, other.json()[0]["run"].clone()), (0, Value::Null));

    // Reset by digest: held, and the next trigger is not cached.
    let out = cli(&["--json", "reset", "--redis", &url, "--task", "charge", "--digest", &digest], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["held"], true);
    assert_eq!(out.json()["run"], run.id.to_string());
    let again = engine.trigger(&batch).unwrap()[0];
    assert!(!again.cached && again.id != run.id);
    // Reset by key and scope, as a table; then nothing is held: exit 3.
    let out = cli(&["reset", "--redis", &url, "--task", "charge", "--key", "order-7", "--scope", "global"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("was held"), "{}", out.stdout);
    assert!(!engine.trigger(&batch).unwrap()[0].cached);
    let gone = cli(&["--json", "reset", "--redis", &url, "--task", "refund", "--digest", &digest], "");
    assert_eq!((gone.code, gone.json()["held"].clone()), (3, Value::Bool(false)));
    // Fenced by the run expected: another run frees nothing (exit 3, the holder named);
    // the holder frees it.
    let held = engine.trigger(&batch).unwrap()[0];
    let stale = run.id.to_string();
    let out = cli(&["reset", "--redis", &url, "--task", "charge", "--digest", &digest, "--run", &stale], "");
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("run {stale} does not hold the key (it is held by {}", held.id)),
        "{}",
        out.stdout
    );
    assert!(engine.trigger(&batch).unwrap()[0].cached, "the newer run still holds the key");
    let ours = held.id.to_string();
    let out = cli(&["--json", "reset", "--redis", &url, "--task", "charge", "--digest", &digest, "--run", &ours], "");
    assert_eq!(
        (out.code, out.json()["held"].clone(), out.json()["held_by"].clone()),
        (0, Value::Bool(true), Value::from(ours))
    );
    assert!(!engine.trigger(&batch).unwrap()[0].cached);
    let out = cli(&["reset", "--redis", &url, "--task", "charge", "--digest", &digest, "--run", "run_x"], "");
    assert_eq!(out.code, 1, "a run id that does not parse: {}", out.stderr);
    assert!(out.stderr.contains("invalid run id"), "{}", out.stderr);
    // A run-scoped key needs its run: an error, not a guess.
    let out = cli(&["reset", "--redis", &url, "--task", "charge", "--key", "k", "--scope", "run"], "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    // --digest and --key together: a usage error.
    let out =
        cli(&["reset", "--redis", &url, "--task", "t", "--digest", &digest, "--key", "k", "--scope", "global"], "");
    assert_eq!(out.code, 2);
}

#[test]
#[ignore = "needs redis-server: cargo test --manifest-path crates/cli/Cargo.toml -- --ignored"]
fn stats_counts_what_was_written() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let (catalog, engine, sdk) = fleet(&url);
    let mut batch = sdk.batch("child-task", 300);
    for i in 0..300 {
        batch.item(None, ItemOptions::new().key(sdk.create_key(["item", &i.to_string()], Scope::Global)));
    }
    let handles = engine.trigger_owned(batch.build().unwrap()).unwrap();
    // Ten runs release their keys: their records move to run keys.
    for handle in &handles[..10] {
        engine.set_status(handle.id, RunStatus::Failed).unwrap();
    }
    catalog.flush().unwrap();
    // Something else on the server, outside the prefix, is not counted.
    redis::cmd("SET").arg("other:key:x").arg("1").query::<()>(&mut server.client()).unwrap();

    let out = cli(&["--json", "stats", "--redis", &url], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stats = out.json();
    assert_eq!(stats["catalog_entries"]["count"], 300);
    assert_eq!(stats["claims"]["count"], 290);
    assert_eq!(stats["run_records"]["count"], 10);
    assert_eq!(stats["catalog_entries"]["sampled"], 100);
    assert_eq!(stats["run_records"]["sampled"], 10);
    for kind in ["catalog_entries", "claims", "run_records"] {
        let bytes = stats[kind]["estimated_bytes"].as_u64().unwrap();
        let count = stats[kind]["count"].as_u64().unwrap();
        assert!(bytes >= count * 50 && bytes <= count * 1_000, "{kind}: {bytes} for {count}");
    }
    let table = cli(&["stats", "--redis", &url], "");
    assert_eq!(table.code, 0);
    assert!(table.stdout.contains("catalog_entries") && table.stdout.contains("300"), "{}", table.stdout);
    // Another prefix holds nothing.
    let other = cli(&["--json", "stats", "--redis", &url, "--prefix", "other:"], "");
    assert_eq!(other.json()["catalog_entries"]["count"], 1);
    assert_eq!(other.json()["claims"]["count"], 0);
}

#[test]
#[ignore = "needs redis-server: cargo test --manifest-path crates/cli/Cargo.toml -- --ignored"]
fn a_password_is_never_printed() {
    let server = RedisServer::start(&[]);
    redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("s3cr3t").query::<()>(&mut server.client()).unwrap();
    let good = format!("redis://:s3cr3t@127.0.0.1:{}", server.port());
    let wrong = format!("redis://:s3cr3t-not@127.0.0.1:{}", server.port());
    let digest = "ab".repeat(32);
    let runs = [
        cli(&["stats", "--redis", &good], ""),
        cli(&["--json", "stats", "--redis", &good], ""),
        cli(&["stats", "--redis", &wrong], ""),
        cli(&["lookup", "--redis", &wrong, &digest], ""),
        cli(&["--json", "lookup", "--redis", &good, "--task", "t", &digest], ""),
        cli(&["reset", "--redis", &wrong, "--task", "t", "--digest", &digest], ""),
        cli(&["lookup", "--redis", "redis://:s3cr3t@127.0.0.1:1", &digest], ""),
        cli(&["lookup", "--redis", "redis://:s3cr3t@[bad", &digest], ""),
    ];
    let codes: Vec<i32> = runs.iter().map(|r| r.code).collect();
    assert_eq!(codes, [0, 0, 1, 1, 3, 1, 1, 1]);
    for run in &runs {
        assert!(!run.stdout.contains("s3cr3t") && !run.stderr.contains("s3cr3t"), "{} {}", run.stdout, run.stderr);
    }
    assert!(runs[0].stdout.contains(":***@"), "{}", runs[0].stdout);
    assert!(runs[2].stderr.starts_with("error: "), "{}", runs[2].stderr);
}
