//! `idempotency`: the operators' command for a fleet of idempotency-sdk workers.
//!
//! - `hash`: a key's digest, as `IdempotencyKey::derive` computes it;
//! - `lookup`: what the shared catalog on Redis knows of digests (key, scope, TTL), and
//!   with `--task` which run holds each key;
//! - `reset`: forgets a task's key, so that its next trigger makes a new run (with
//!   `--run`, only while that run holds it);
//! - `stats`: how many catalog entries, claims and run records Redis holds, and about
//!   how much memory each kind takes.
//!
//! Every command prints a table, or with `--json` one JSON value. Errors go to stderr
//! as `error: ...`; a Redis URL is only ever shown redacted (`Redis::url`). See the
//! crate's README.md for the exit codes.

use std::io::{BufRead as _, Write as _};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use idempotency_sdk::catalog::fleet::layout;
use idempotency_sdk::catalog::{RedisBuilder, RedisCatalog, shown};
use idempotency_sdk::{
    Catalog as _, CatalogBuilder, Digest, Engine, IdempotencyKey, KeyTarget, RunContext, RunId, RunRecord, Scope,
};
use serde_json::{Value, json};

type Failure = Box<dyn std::error::Error>;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error: Redis unreachable or refused a command, a bad digest or key, bad settings
  2  usage error (unknown or missing arguments)
  3  lookup: a digest is unknown (no catalog entry, and with --task no run holds it);
     reset: no key was held (with --run: that run does not hold the key)";

/// Exit code of `lookup` when a digest is unknown, and of `reset` when nothing was held.
const NOT_FOUND: u8 = 3;

/// Digests looked up per round trip (and held by the local catalog at once).
const CHUNK: usize = 1_000;
/// Keys `SCAN` is asked for per call.
const SCAN_COUNT: usize = 1_000;
/// Keys per kind whose `MEMORY USAGE` `stats` samples.
const SAMPLE: usize = 100;

#[derive(Debug, Parser)]
#[command(name = "idempotency", version, about = "Operate a fleet of idempotency-sdk workers: hash keys, look digests up on Redis, reset keys, count what Redis holds", after_help = EXIT_CODES)]
struct Cli {
    /// Print one JSON object (or array) on stdout instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the digest of key parts, as `IdempotencyKey::derive` computes it.
    #[command(after_help = EXIT_CODES)]
    Hash(HashArgs),
    /// What the shared catalog knows of digests (from the arguments, else stdin, one a line).
    #[command(after_help = EXIT_CODES)]
    Lookup(LookupArgs),
    /// Forget a task's key, so that its next trigger makes a new run (the run's record stays).
    #[command(after_help = EXIT_CODES)]
    Reset(ResetArgs),
    /// Count catalog entries, claims and run records, with their estimated memory.
    #[command(after_help = EXIT_CODES)]
    Stats(StatsArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScopeArg {
    Run,
    Attempt,
    Global,
}

impl From<ScopeArg> for Scope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::Run => Scope::Run,
            ScopeArg::Attempt => Scope::Attempt,
            ScopeArg::Global => Scope::Global,
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The run the key was created in (scopes `run` and `attempt`).
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
    /// The attempt the key was created in (scope `attempt`; needs --run-id).
    #[arg(long, value_name = "N")]
    attempt: Option<u32>,
}

impl RunArgs {
    fn context(&self, scope: Scope) -> Result<Option<RunContext>, Failure> {
        match (&self.run_id, self.attempt) {
            (None, Some(_)) => Err("--attempt needs --run-id".into()),
            (None, None) => Ok(None),
            (Some(_), None) if scope == Scope::Attempt => Err("scope `attempt` inside a run needs --attempt N".into()),
            (Some(id), attempt) => Ok(Some(RunContext::new(id.clone(), attempt.unwrap_or(1)))),
        }
    }
}

#[derive(Debug, Args)]
struct RedisArgs {
    /// The Redis URL (else IDEMPOTENCY_REDIS_URL); never printed with its password.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// The key prefix the fleet uses (else IDEMPOTENCY_REDIS_PREFIX, else the default).
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
}

impl RedisArgs {
    fn builder(&self) -> RedisBuilder {
        let mut builder = RedisBuilder::from_env();
        if let Some(url) = &self.redis {
            builder = builder.url(url.clone());
        }
        if let Some(prefix) = &self.prefix {
            builder = builder.prefix(prefix.clone());
        }
        builder
    }

    fn connect(&self) -> Result<idempotency_sdk::catalog::Redis, Failure> {
        Ok(self.builder().build()?)
    }
}

#[derive(Debug, Args)]
struct HashArgs {
    /// The scope the key is created in.
    #[arg(long, value_enum, default_value = "run")]
    scope: ScopeArg,
    #[command(flatten)]
    run: RunArgs,
    /// The key's parts (none and empty parts are valid); after `--` every argument is a part.
    parts: Vec<String>,
}

#[derive(Debug, Args)]
struct LookupArgs {
    /// Digests (64 hex characters); read from stdin, one a line, when none are given.
    #[arg(value_name = "DIGEST")]
    digests: Vec<String>,
    /// Also show the run of this task that holds each key, and its status.
    #[arg(long, value_name = "T")]
    task: Option<String>,
    #[command(flatten)]
    redis: RedisArgs,
}

#[derive(Debug, Args)]
struct ResetArgs {
    /// The task whose key to reset.
    #[arg(long, value_name = "T")]
    task: String,
    /// The key's digest (64 hex characters).
    #[arg(long, value_name = "D", conflicts_with_all = ["key", "scope"], required_unless_present = "key")]
    digest: Option<String>,
    /// The key as created (its parts joined with `-`), with --scope.
    #[arg(long, value_name = "K", requires = "scope")]
    key: Option<String>,
    /// The scope the key was created in.
    #[arg(long, value_enum, requires = "key")]
    scope: Option<ScopeArg>,
    #[command(flatten)]
    run: RunArgs,
    /// Reset only while this run holds the key (`run_…`, as `lookup --task` shows it):
    /// a reset meant for a run whose key has expired since, and is now held by a newer
    /// run, frees nothing. Exit 3 when the run does not hold the key.
    #[arg(long = "run", value_name = "RUN_ID")]
    held_by: Option<String>,
    #[command(flatten)]
    redis: RedisArgs,
}

#[derive(Debug, Args)]
struct StatsArgs {
    #[command(flatten)]
    redis: RedisArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::Hash(args) => hash(args, cli.json),
        Command::Lookup(args) => lookup(args, cli.json),
        Command::Reset(args) => reset(args, cli.json),
        Command::Stats(args) => stats(args, cli.json),
    }
}

/// Writes `text` and a newline on stdout; a closed pipe is an error, not a panic.
fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()?;
    Ok(())
}

fn hash(args: &HashArgs, json: bool) -> Result<u8, Failure> {
    let scope = Scope::from(args.scope);
    let run = args.run.context(scope)?;
    let key = IdempotencyKey::derive(&args.parts, scope, run.as_ref());
    let digest = key.to_string();
    if json {
        let options = key.options();
        let value = json!({
            "digest": digest,
            "key": options.map(|o| o.key()),
            "scope": options.map_or(scope, |o| o.scope()).as_str(),
        });
        out(&value.to_string())?;
    } else {
        out(&digest)?;
    }
    Ok(0)
}

fn parse_digest(text: &str) -> Result<Digest, Failure> {
    // The parse error shows the text as every message shows caller text (`shown`).
    text.parse::<Digest>().map_err(|err| format!("bad digest: {err}").into())
}

/// The digests to look up: the arguments, else stdin's non-empty lines.
fn digests(args: &LookupArgs) -> Result<Vec<Digest>, Failure> {
    if !args.digests.is_empty() {
        return args.digests.iter().map(|d| parse_digest(d.trim())).collect();
    }
    let mut digests = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let line = line.trim();
        if !line.is_empty() {
            digests.push(parse_digest(line)?);
        }
    }
    Ok(digests)
}

/// What `lookup` found for one digest.
struct Found {
    digest: Digest,
    key: Option<String>,
    scope: Option<Scope>,
    /// Remaining TTL of the catalog entry, in milliseconds (`None`: no entry, or none).
    ttl_ms: Option<i64>,
    holder: Option<RunRecord>,
}

impl Found {
    fn known(&self, with_task: bool) -> bool {
        self.key.is_some() || (with_task && self.holder.is_some())
    }

    fn to_json(&self, with_task: bool) -> Value {
        let mut value = json!({
            "digest": self.digest.to_string(),
            "found": self.key.is_some(),
            "key": self.key,
            "scope": self.scope.map(Scope::as_str),
            "ttl_ms": self.ttl_ms,
        });
        if with_task && let Value::Object(map) = &mut value {
            let holder = self.holder.as_ref().map(|run| {
                json!({
                    "id": run.id.to_string(),
                    "status": run.status.as_str(),
                    "key": run.idempotency_key,
                    "scope": run.idempotency_key_scope.map(Scope::as_str),
                })
            });
            map.insert("run".to_owned(), holder.unwrap_or(Value::Null));
        }
        value
    }
}

fn lookup(args: &LookupArgs, json: bool) -> Result<u8, Failure> {
    let digests = digests(args)?;
    let redis = args.redis.connect()?;
    let catalog = CatalogBuilder::new().capacity(CHUNK).redis(redis.clone()).build_redis()?;
    let engine = match &args.task {
        Some(_) => Some(Engine::on_redis(&redis)?),
        None => None,
    };
    let mut found = Vec::with_capacity(digests.len());
    for chunk in digests.chunks(CHUNK) {
        found.extend(lookup_chunk(&catalog, &redis, chunk)?);
    }
    if let (Some(task), Some(engine)) = (&args.task, &engine) {
        for entry in &mut found {
            entry.holder = engine.holder(task, KeyTarget::Digest(entry.digest))?;
        }
    }
    let with_task = args.task.is_some();
    if json {
        let rows: Vec<Value> = found.iter().map(|f| f.to_json(with_task)).collect();
        out(&Value::Array(rows).to_string())?;
    } else {
        print_lookup(&found, with_task)?;
    }
    let all_known = found.iter().all(|f| f.known(with_task));
    Ok(if all_known { 0 } else { NOT_FOUND })
}

/// One round trip for the entries of `digests`, one for their TTLs (and one per
/// digest the catalog does not hold, which `get` asks for again).
fn lookup_chunk(
    catalog: &RedisCatalog,
    redis: &idempotency_sdk::catalog::Redis,
    digests: &[Digest],
) -> Result<Vec<Found>, Failure> {
    catalog.prefetch(digests)?;
    let pttls: Vec<redis::Cmd> = digests
        .iter()
        .map(|digest| {
            let mut cmd = redis::cmd("PTTL");
            cmd.arg(catalog.entry_key(digest));
            cmd
        })
        .collect();
    let answers = redis.connection().send("read catalog entry TTLs", pttls)?;
    let mut found = Vec::with_capacity(digests.len());
    for (digest, answer) in digests.iter().zip(answers) {
        let options = catalog.get(digest);
        let ttl = answer?;
        let ttl_ms = redis::from_redis_value::<i64>(ttl).ok().filter(|&ms| ms >= 0);
        found.push(Found {
            digest: *digest,
            key: options.as_ref().map(|o| o.key().to_owned()),
            scope: options.as_ref().map(|o| o.scope()),
            ttl_ms: ttl_ms.filter(|_| options.is_some()),
            holder: None,
        });
    }
    Ok(found)
}

/// `rows` as columns padded to their widest cell, under `header`.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, &width)| format!("{cell:<width$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut lines = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    lines.extend(rows.iter().map(|row| line(row.clone())));
    lines.join("\n")
}

fn print_lookup(found: &[Found], with_task: bool) -> Result<(), Failure> {
    out(&lookup_table(found, with_task))
}

/// The table `lookup` prints: a key is the caller's text, quoted, escaped and cut by
/// `shown` as in every message, so that it can neither break a row nor write to the
/// terminal (`--json` has it whole, JSON-escaped).
fn lookup_table(found: &[Found], with_task: bool) -> String {
    let unknown = || "unknown".to_owned();
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|f| {
            let mut row = vec![
                f.digest.to_string(),
                f.key.as_deref().map_or_else(unknown, shown),
                f.scope.map_or_else(unknown, |s| s.as_str().to_owned()),
                f.ttl_ms.map_or_else(unknown, |ms| ms.to_string()),
            ];
            if with_task {
                row.push(f.holder.as_ref().map_or_else(|| "-".to_owned(), |r| r.id.to_string()));
                row.push(f.holder.as_ref().map_or_else(|| "-".to_owned(), |r| r.status.as_str().to_owned()));
            }
            row
        })
        .collect();
    let mut header = vec!["DIGEST", "KEY", "SCOPE", "TTL_MS"];
    if with_task {
        header.extend(["RUN", "STATUS"]);
    }
    table(&header, &rows)
}

fn reset(args: &ResetArgs, json: bool) -> Result<u8, Failure> {
    let digest = args.digest.as_deref().map(parse_digest).transpose()?;
    let scope = args.scope.map(Scope::from);
    let run = args.run.context(scope.unwrap_or(Scope::Global))?;
    let parts: Vec<&str> = args.key.as_deref().into_iter().collect();
    let target = match (digest, scope) {
        (Some(digest), _) => KeyTarget::Digest(digest),
        (None, Some(scope)) => KeyTarget::Raw { parts: &parts, scope, run: run.as_ref() },
        (None, None) => return Err("name the key with --digest D, or --key K --scope S".into()),
    };
    let held_by: Option<RunId> = args.held_by.as_deref().map(str::parse).transpose()?;
    let redis = args.redis.connect()?;
    let engine = Engine::on_redis(&redis)?;
    let holder = engine.holder(&args.task, target.clone())?;
    let held = match held_by {
        Some(run) => engine.reset_key_held_by(&args.task, target, run)?,
        None => engine.reset_key(&args.task, target)?,
    };
    if json {
        let value = json!({
            "task": args.task,
            "held": held,
            "run": holder.as_ref().filter(|_| held).map(|r| r.id.to_string()),
            "held_by": held_by.map(|run| run.to_string()),
        });
        out(&value.to_string())?;
    } else if held {
        let by = holder.map(|r| format!(" (by {} {})", r.id, r.status)).unwrap_or_default();
        out(&format!("reset: the key was held{by}; the next trigger makes a new run"))?;
    } else if let Some(run) = held_by {
        let now =
            holder.map_or_else(|| "no run holds it".to_owned(), |r| format!("it is held by {} {}", r.id, r.status));
        out(&format!("reset: run {run} does not hold the key ({now}); nothing was reset"))?;
    } else {
        out("reset: no key was held")?;
    }
    Ok(if held { 0 } else { NOT_FOUND })
}

/// What `stats` counts, by where a key's name starts after the prefix.
const KINDS: [(&str, &str); 3] =
    [("catalog_entries", layout::ENTRY), ("claims", layout::CLAIM), ("run_records", layout::RUN)];

/// `text` as a `SCAN MATCH` pattern that matches it literally.
fn glob_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// One kind's count and its sample of key names.
#[derive(Default)]
struct Kind {
    count: u64,
    sample: Vec<Vec<u8>>,
}

fn stats(args: &StatsArgs, json: bool) -> Result<u8, Failure> {
    let redis = args.redis.connect()?;
    if redis.is_cluster() {
        return Err(
            format!("redis at {}: stats does not support a Redis Cluster yet (SCAN is per node)", redis.url()).into()
        );
    }
    let conn = redis.connection();
    let prefix = redis.prefix().as_bytes().to_vec();
    let mut kinds: [Kind; 3] = Default::default();
    let mut cursor = "0".to_owned();
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(&cursor).arg("MATCH").arg(format!("{}*", glob_escaped(redis.prefix()))).arg("COUNT").arg(SCAN_COUNT);
        let (next, keys): (String, Vec<Vec<u8>>) = conn.query("scan keys", &cmd)?;
        for key in keys {
            let Some(rest) = key.strip_prefix(prefix.as_slice()) else { continue };
            let kind = KINDS.iter().zip(kinds.iter_mut()).find(|((_, start), _)| rest.starts_with(start.as_bytes()));
            if let Some((_, kind)) = kind {
                kind.count += 1;
                if kind.sample.len() < SAMPLE {
                    kind.sample.push(key);
                }
            }
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    let mut rows = Vec::with_capacity(KINDS.len());
    let mut object = serde_json::Map::new();
    object.insert("url".to_owned(), Value::from(redis.url()));
    object.insert("prefix".to_owned(), Value::from(redis.prefix()));
    for ((name, start), kind) in KINDS.iter().zip(&kinds) {
        let cmds: Vec<redis::Cmd> = kind
            .sample
            .iter()
            .map(|key| {
                let mut cmd = redis::cmd("MEMORY");
                cmd.arg("USAGE").arg(key.as_slice()).arg("SAMPLES").arg(0);
                cmd
            })
            .collect();
        let answers = conn.send("sample memory usage", cmds)?;
        // A key that expired since the scan answers nil: not part of the sample.
        let sizes: Vec<u64> =
            answers.into_iter().filter_map(|a| a.ok().and_then(|v| redis::from_redis_value(v).ok())).collect();
        let sampled = sizes.len() as u64;
        let total: u64 = sizes.iter().sum();
        let estimated = total.saturating_mul(kind.count).checked_div(sampled).unwrap_or(0);
        object.insert(
            (*name).to_owned(),
            json!({ "pattern": format!("{}{start}*", redis.prefix()), "count": kind.count, "sampled": sampled, "estimated_bytes": estimated }),
        );
        rows.push(vec![
            (*name).to_owned(),
            format!("{}{start}*", redis.prefix()),
            kind.count.to_string(),
            sampled.to_string(),
            estimated.to_string(),
        ]);
    }
    if json {
        out(&Value::Object(object).to_string())?;
    } else {
        out(&format!("redis at {}", redis.url()))?;
        out(&table(&["KIND", "PATTERN", "COUNT", "SAMPLED", "EST_BYTES"], &rows))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escaped("app:*?[x]\\"), "app:\\*\\?\\[x\\]\\\\");
        assert_eq!(glob_escaped("idempotency:"), "idempotency:");
    }

    #[test]
    fn tables_pad_to_the_widest_cell() {
        let rows = vec![vec!["a".to_owned(), "long cell".to_owned()], vec!["bbb".to_owned(), "c".to_owned()]];
        assert_eq!(table(&["H1", "H2"], &rows), "H1   H2\na    long cell\nbbb  c");
    }

    #[test]
    fn keys_in_the_lookup_table_are_escaped_and_cut() {
        let found = |key: &str| Found {
            digest: Digest::from_bytes([7; 32]),
            key: Some(key.to_owned()),
            scope: Some(Scope::Global),
            ttl_ms: Some(1_000),
            holder: None,
        };
        let hostile = ["a\nforged row", "b\r\0", "\u{1b}[31mred\u{1b}[0m", &"😀".repeat(2_048)];
        let rows: Vec<Found> = hostile.iter().map(|key| found(key)).collect();
        let text = lookup_table(&rows, false);
        assert_eq!(text.lines().count(), 1 + hostile.len(), "one row a key: {text}");
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.contains(r#""a\nforged row""#) && text.contains(r#""\u{1b}[31mred\u{1b}[0m""#), "{text}");
        assert!(text.contains("… (2048 characters)") && text.len() < 1_500, "{text}");
        // An ordinary key reads as itself, quoted.
        assert!(lookup_table(&[found("item-1")], false).contains(r#""item-1"  global"#));
        // A bad digest is named the same way.
        let err = parse_digest("x\ny").unwrap_err().to_string();
        assert!(err.starts_with(r#"bad digest: invalid digest "x\ny""#), "{err}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
