//! Fleet mode against real `redis-server`s (feature `redis`): what `RedisBuilder::build`
//! refuses, warns about and how fast, that no password ever shows, and what the
//! shared catalog does with values it did not write.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotency_catalog::{
    Catalog, CatalogBuilder, Digest, Error, Fault, FaultKind, KeyOptions, Listener, Redis, RedisBuilder, RemovalCause,
    Scope,
};
use proptest::prelude::*;
use support::{Faults, entries, entry_key};
use testkit::RedisServer;

mod support;

/// Where nothing listens: every connect is refused at once.
const REFUSED: &str = "127.0.0.1:1";

/// The password as the URL grammar lets it stand in userinfo (RFC 3986): raw where a
/// character may be, percent-encoded where it must be, or where `encode` says so.
fn in_userinfo(password: &str, encode: &[bool]) -> String {
    encoded(password, encode, |c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:".contains(c))
}

/// The same for a query parameter's value (form encoding: `&`, `=`, `+`, `#`, `%` must
/// be encoded).
fn in_query(password: &str, encode: &[bool]) -> String {
    encoded(password, encode, |c| c.is_ascii_alphanumeric() || "-._~!$'()*,;:@/?".contains(c))
}

fn encoded(password: &str, encode: &[bool], may_be_raw: impl Fn(char) -> bool) -> String {
    let force = encode.iter().chain(std::iter::repeat(&false));
    password
        .chars()
        .zip(force)
        .map(|(c, &force)| if may_be_raw(c) && !force { c.to_string() } else { format!("%{:02X}", c as u32) })
        .collect()
}

/// Every way a password can be given, for a server at `host`.
fn urls(host: &str, written: &str, in_query: &str) -> [String; 4] {
    [
        format!("redis://app:{written}@{host}/0"),
        format!("redis://:{written}@{host}/"),
        format!("redis://{host}/0?password={in_query}"),
        format!("redis+unix:///nonexistent/redis.sock?pass={in_query}"),
    ]
}

/// Everything `build` lets a user see of `url`: the builder's `Debug`, the error's
/// `Display` and `Debug`, or the handle's `Debug`.
fn everything_shown(url: &str) -> String {
    let builder = RedisBuilder::new(url).connect_timeout(Duration::from_millis(500));
    let mut shown = format!("{builder:?}\n");
    match builder.build() {
        Ok(redis) => shown.push_str(&format!("{redis:?}\n{}\n", redis.url())),
        Err(err) => shown.push_str(&format!("{err}\n{err:?}\n")),
    }
    shown
}

fn assert_hidden(shown: &str, password: &str, written: &str) {
    assert!(!shown.contains(password), "password {password:?} shown in:\n{shown}");
    assert!(!shown.contains(written), "password as written, {written:?}, shown in:\n{shown}");
}

/// A server whose `admin` user can set the others' passwords, and whose default user
/// has none.
fn server_with_admin() -> (RedisServer, redis::Connection) {
    let server = RedisServer::start(&[]);
    let mut admin = server.client();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("admin")
        .arg("on")
        .arg(">admin-pw")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query::<()>(&mut admin)
        .unwrap();
    redis::cmd("AUTH").arg("admin").arg("admin-pw").query::<()>(&mut admin).unwrap();
    (server, admin)
}

fn set_password(admin: &mut redis::Connection, user: &str, password: Option<&str>) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(user).arg("on").arg("resetpass").arg("~*").arg("&*").arg("+@all");
    match password {
        Some(password) => cmd.arg(format!(">{password}")),
        None => cmd.arg("nopass"),
    };
    cmd.query::<()>(admin).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any printable password, however written, never shows: not in the builder's
    /// `Debug`, not in errors (a refused connect, a URL that does not parse), not in the
    /// handle, not in anything logged at any level.
    #[test]
    fn no_password_shows_anywhere(
        password in proptest::collection::vec(0x20u8..0x7f, 8..24).prop_map(|b| String::from_utf8(b).unwrap()),
        encode in proptest::collection::vec(any::<bool>(), 24),
    ) {
        let (server, mut admin) = SERVER.with(|s| s.take()).unwrap_or_else(server_with_admin);
        let host = format!("127.0.0.1:{}", server.port());
        let (user_form, query_form) = (in_userinfo(&password, &encode), in_query(&password, &encode));
        let (_, logged) = testkit::captured(|| {
            for (i, url) in urls(REFUSED, &user_form, &query_form).iter().enumerate() {
                assert_hidden(&everything_shown(url), &password, if i < 2 { &user_form } else { &query_form });
            }
            // Raw, whatever the grammar says: mostly URLs that do not parse.
            for url in urls(REFUSED, &password, &password) {
                assert_hidden(&everything_shown(&url), &password, &password);
            }
            // Against a server that knows the password: built, or refused for a wrong one.
            set_password(&mut admin, "app", Some(&password));
            set_password(&mut admin, "default", Some(&password));
            for url in &urls(&host, &user_form, &query_form)[..2] {
                let shown = everything_shown(url);
                assert!(shown.contains("Redis {"), "{url} did not build:\n{shown}");
                assert_hidden(&shown, &password, &user_form);
            }
            let wrong = format!("redis://app:{user_form}x@{host}/0");
            assert_hidden(&everything_shown(&wrong), &password, &user_form);
            set_password(&mut admin, "default", None);
            let shown = everything_shown(&urls(&host, &user_form, &query_form)[2]);
            assert!(shown.contains("Redis {"), "{shown}");
            assert_hidden(&shown, &password, &query_form);
        });
        assert_hidden(&logged, &password, &user_form);
        assert_hidden(&logged, &password, &query_form);
        SERVER.with(|s| s.set(Some((server, admin))));
    }
}

thread_local! {
    /// One server for every case of the property, on the thread that runs them.
    static SERVER: std::cell::Cell<Option<(RedisServer, redis::Connection)>> = const { std::cell::Cell::new(None) };
}

#[test]
fn a_base64_password_with_a_slash_never_shows() {
    // The old redaction cut the URL at the first `/` and printed this one whole.
    let url = "redis://:Zm9v/YmFy+cXV4@127.0.0.1:7006";
    let shown = everything_shown(url);
    assert!(shown.contains(r#"invalid RedisBuilder::url "redis://***@127.0.0.1:7006""#), "{shown}");
    assert_hidden(&shown, "Zm9v/YmFy+cXV4", "Zm9v");
    // Percent-encoded, the URL is good: the connect fails, naming it without the password.
    let shown = everything_shown("redis://:Zm9v%2FYmFy+cXV4@127.0.0.1:1");
    assert!(shown.contains("redis at redis://:***@127.0.0.1:1: cannot connect: "), "{shown}");
    assert_hidden(&shown, "Zm9v/YmFy+cXV4", "Zm9v");
}

#[test]
fn reserved_characters_in_a_password_never_show() {
    for password in ["p@ss-word1", "pass?word1", "pass#word1", "pass%word1", "pass:word1", "pass word1"] {
        let written = in_userinfo(password, &[]);
        for url in urls(REFUSED, &written, &in_query(password, &[])).iter().chain(&urls(REFUSED, password, password)) {
            assert_hidden(&everything_shown(url), password, &written);
        }
    }
}

/// A server that accepts connections (the kernel does, from the backlog) and never
/// answers.
fn silent() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

#[test]
fn a_silent_server_fails_the_build_within_the_connect_timeout() {
    let listener = silent();
    let addr = listener.local_addr().unwrap();
    // Each form adds a command to redis-rs's handshake: AUTH, SELECT, CLIENT SETINFO.
    for url in [format!("redis://{addr}/"), format!("redis://:pw@{addr}/"), format!("redis://app:pw@{addr}/3")] {
        let started = Instant::now();
        let err = RedisBuilder::new(&url).connect_timeout(Duration::from_millis(500)).build().unwrap_err();
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(700), "{url}: {elapsed:?}");
        let err = err.to_string();
        assert!(err.ends_with(": cannot connect: no answer within 500ms"), "{err}");
    }
}

#[test]
fn a_database_number_in_the_url_is_selected() {
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(format!("{}3", server.url())).build().unwrap();
    let catalog = CatalogBuilder::new().redis(redis).build().unwrap();
    catalog.register(Digest::from_bytes([3; 32]), KeyOptions::new("in-db-3", Scope::Global));
    catalog.flush().unwrap();
    let mut conn = server.client();
    redis::cmd("SELECT").arg(3).query::<()>(&mut conn).unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(entries()).query(&mut conn).unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(server.count(&entries()), 0, "nothing in db 0");
}

/// Builds a handle on `url`, with the `WARN` lines the build printed.
fn build_warned(builder: RedisBuilder) -> (Result<Redis, Error>, Vec<String>) {
    testkit::warnings(|| builder.build())
}

/// Persistence that loses nothing a claim was answered with.
const DURABLE: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];

#[test]
fn an_evicting_policy_is_refused_naming_the_policy_and_the_fix() {
    let server = RedisServer::start(&["--maxmemory-policy", "allkeys-lru"]);
    let faults = Faults::default();
    let (built, lines) = build_warned(RedisBuilder::new(server.url()).listener(faults.clone()));
    let err = built.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("redis at {}: cannot accept the server's configuration: ", server.url())),
        "{err}"
    );
    assert!(err.contains("maxmemory-policy is allkeys-lru"), "{err}");
    assert!(err.contains("CONFIG SET maxmemory-policy noeviction"), "{err}");
    assert!(err.contains("RedisBuilder::allow_evicting_policy"), "{err}");
    assert!(faults.kinds().is_empty(), "a refusal is not a fault");
    assert!(lines.iter().all(|l| !l.contains("maxmemory")), "{lines:?}");
}

#[test]
fn an_evicting_policy_explicitly_accepted_builds_with_one_warning() {
    let server = RedisServer::start(&[&DURABLE[..], &["--maxmemory-policy", "volatile-lru"]].concat());
    let (built, lines) = build_warned(RedisBuilder::new(server.url()).allow_evicting_policy());
    built.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("evicting maxmemory-policy accepted"), "{lines:?}");
    assert!(lines[0].contains("maxmemory_policy=volatile-lru"), "{lines:?}");
    assert!(lines[0].contains(&format!("store={}", server.url())), "{lines:?}");
}

#[test]
fn persistence_off_is_one_warning_saying_a_restart_forgets_every_claim() {
    let server = RedisServer::start(&[]);
    let (built, lines) = build_warned(RedisBuilder::new(server.url()));
    built.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.contains("a restart forgets every claim"), "{line}");
    assert!(line.contains(&format!("store={} appendonly=no appendfsync=everysec save=\"\"", server.url())), "{line}");
}

#[test]
fn snapshots_alone_are_one_warning_naming_the_last_snapshot() {
    let server = RedisServer::start(&["--save", "3600 1"]);
    let (built, lines) = build_warned(RedisBuilder::new(server.url()));
    built.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("since the last snapshot"), "{lines:?}");
    assert!(lines[0].contains(r#"save="3600 1""#), "{lines:?}");
}

#[test]
fn appendfsync_everysec_is_one_warning_naming_the_second() {
    let server = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let (built, lines) = build_warned(RedisBuilder::new(server.url()));
    built.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("a crash may lose up to a second of claims"), "{lines:?}");
    assert!(lines[0].contains("appendonly=yes appendfsync=everysec"), "{lines:?}");
}

#[test]
fn appendfsync_always_is_nothing_to_say() {
    let server = RedisServer::start(&DURABLE);
    let (built, lines) = build_warned(RedisBuilder::new(server.url()));
    built.unwrap();
    assert_eq!(lines, Vec::<String>::new());
}

/// `server` with a user `app`, password `pw`, allowed everything but `denied`.
fn acl_user(server: &RedisServer, denied: &[&str]) -> String {
    let mut conn = server.client();
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("app").arg("on").arg(">pw").arg("~*").arg("&*").arg("+@all");
    for command in denied {
        cmd.arg(format!("-{command}"));
    }
    cmd.query::<()>(&mut conn).unwrap();
    server.url().replace("redis://", "redis://app:pw@")
}

#[test]
fn a_user_without_config_builds_with_one_warning_naming_what_was_not_checked() {
    let server = RedisServer::start(&DURABLE);
    let (built, lines) = build_warned(RedisBuilder::new(acl_user(&server, &["config"])));
    built.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("redis configuration not checked"), "{lines:?}");
    assert!(lines[0].contains("unchecked=appendfsync error="), "{lines:?}");
    assert!(lines[0].contains("NOPERM"), "{lines:?}");

    // Without AOF the verdict does not depend on what CONFIG would say: one warning.
    let server = RedisServer::start(&[]);
    let (built, lines) = build_warned(RedisBuilder::new(acl_user(&server, &["config"])));
    built.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("no append-only file"), "{lines:?}");
}

#[test]
fn a_user_without_config_or_info_builds_with_one_warning_naming_both_settings() {
    let server = RedisServer::start(&DURABLE);
    let (built, lines) = build_warned(RedisBuilder::new(acl_user(&server, &["config", "info"])));
    built.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("unchecked=maxmemory-policy, appendonly error="), "{lines:?}");
    assert!(!lines[0].contains(":pw@"), "{lines:?}");
}

#[test]
fn a_server_that_refuses_the_credentials_fails_the_build_at_once_naming_the_url() {
    let server = RedisServer::start(&[]);
    // Set once started: the harness's readiness probe sends PING without AUTH.
    redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("right-password").query::<()>(&mut server.client()).unwrap();
    for (url, says) in [
        (server.url().replace("redis://", "redis://:wrong-password@"), "the server refused the user and password"),
        (server.url().replace("redis://", "redis://app:wrong-password@"), "the server refused the user and password"),
        (server.url(), "NOAUTH"),
    ] {
        let faults = Faults::default();
        let started = Instant::now();
        let err = RedisBuilder::new(&url).listener(faults.clone()).build().unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        assert!(err.contains("cannot connect: ") && err.contains(says), "{err}");
        assert!(
            err.starts_with(&format!(
                "redis at {}",
                if url.contains('@') { url.replace("wrong-password", "***") } else { server.url() }
            )),
            "{err}"
        );
        assert!(!err.contains("wrong-password"), "{err}");
        assert_eq!(faults.kinds(), [FaultKind::Rejected], "one attempt, not a retry loop");
    }
}

#[test]
fn a_server_that_stalls_after_the_handshake_fails_the_build_within_the_connect_timeout() {
    // Answers the first command (PING) and nothing after: the checks share the deadline.
    let listener = silent();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0; 512];
        let _ = stream.read(&mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        stream.write_all(b"+PONG\r\n").unwrap();
        let _ = stream.read(&mut buf);
        std::thread::sleep(Duration::from_millis(800));
    });
    let faults = Faults::default();
    let started = Instant::now();
    let built = RedisBuilder::new(&url).connect_timeout(Duration::from_millis(500)).listener(faults.clone()).build();
    let elapsed = started.elapsed();
    let err = built.unwrap_err().to_string();
    assert!(elapsed < Duration::from_millis(700), "{elapsed:?}");
    assert!(err.ends_with("cannot check the server's configuration: no answer within 500ms"), "{err}");
    assert_eq!(faults.kinds(), [FaultKind::Timeout]);
    server.join().unwrap();
}

#[test]
fn the_run_ttl_comes_from_the_builder_call_then_the_variable_then_the_default() {
    let server = RedisServer::start(&DURABLE);
    let env = |name: &str| (name == idempotency_catalog::env::REDIS_RUN_TTL).then(|| "2h".to_owned());
    let hour = Duration::from_secs(3_600);
    let redis = RedisBuilder::from_env_with(env).url(server.url()).build().unwrap();
    assert_eq!(redis.run_ttl(), 2 * hour);
    let redis = RedisBuilder::from_env_with(env).url(server.url()).run_ttl(hour).build().unwrap();
    assert_eq!(redis.run_ttl(), hour);
    assert!(format!("{redis:?}").contains("run_ttl: 3600s"), "{redis:?}");
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    assert_eq!(redis.run_ttl(), idempotency_catalog::defaults::REDIS_RUN_TTL);
    assert_eq!(idempotency_catalog::defaults::REDIS_RUN_TTL, Duration::from_secs(86_400));
    let err = RedisBuilder::new(server.url()).run_ttl(Duration::ZERO).build().unwrap_err().to_string();
    assert_eq!(err, r#"invalid RedisBuilder::run_ttl "0ns": expected at least 1 ms"#);
}

#[test]
fn a_fault_reported_by_a_store_on_the_handle_counts_reports_and_warns_like_a_failed_operation() {
    let server = RedisServer::start(&DURABLE);
    let url = acl_user(&server, &[]);
    let faults = Faults::default();
    let redis = RedisBuilder::new(&url).listener(faults.clone()).build().unwrap();
    let conn = redis.connection();
    let (err, lines) = testkit::warnings(|| {
        let message = "foreign value under myapp:count: \"pw\"".to_owned();
        conn.fault("read a count", FaultKind::Foreign, message)
    });
    let Error::Redis { url: shown, operation, message } = &err else { panic!("{err:?}") };
    assert_eq!((shown.as_str(), *operation), (redis.url(), "read a count"));
    assert_eq!(message, "foreign value under myapp:count: \"***\"", "scrubbed of the password");
    assert_eq!(redis.faults(), 1);
    assert_eq!(faults.kinds(), [FaultKind::Foreign]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("operation=read a count fault=foreign"), "{lines:?}");
    // The connection is kept, and works.
    conn.query::<()>("ping", &redis::cmd("PING")).unwrap();
}

/// A catalog on `server` that has seen nothing yet: every `get` asks Redis.
fn fresh_catalog(server: &RedisServer) -> Arc<dyn Catalog> {
    CatalogBuilder::new().redis(RedisBuilder::new(server.url()).build().unwrap()).build().unwrap()
}

/// What a fresh catalog makes of the value under `digest`'s key: its answer, its
/// faults, and its warnings.
fn read_back(server: &RedisServer, digest: &Digest) -> (Option<KeyOptions>, u64, Vec<String>) {
    let catalog = fresh_catalog(server);
    let (found, lines) = testkit::warnings(|| catalog.get(digest));
    (found, catalog.stats().faults, lines)
}

#[test]
fn entries_written_by_one_catalog_are_read_by_another() {
    let server = RedisServer::start(&DURABLE);
    let digest = Digest::from_bytes([42; 32]);
    let writer = fresh_catalog(&server);
    writer.register(digest, KeyOptions::new("item-42", Scope::Global));
    writer.flush().unwrap();
    let raw: String = redis::cmd("GET").arg(entry_key(&digest)).query(&mut server.client()).unwrap();
    let (check, rest) = raw.split_once(':').unwrap();
    assert_eq!((check.len(), rest), (8, "global:item-42"), "readable with redis-cli: {raw}");
    let (found, faults, lines) = read_back(&server, &digest);
    assert_eq!(found, Some(KeyOptions::new("item-42", Scope::Global)));
    assert_eq!((faults, lines.len()), (0, 0), "{lines:?}");

    // Longer than the wire's idempotency key, and than one first read takes: shared
    // all the same, and read back whole.
    let long = Digest::from_bytes([43; 32]);
    let options = KeyOptions::new(&"k".repeat(100_000), Scope::Global);
    writer.register(long, options.clone());
    writer.flush().unwrap();
    assert_eq!(server.count(&entries()), 2);
    let (found, faults, lines) = read_back(&server, &long);
    assert_eq!(found, Some(options));
    assert_eq!((faults, lines.len(), writer.stats().unshared), (0, 0, 0), "{lines:?}");
}

#[test]
fn entries_around_the_length_of_a_first_read_are_read_back_whole() {
    // `docs/fleet.md`: a first read takes at most 8,210 bytes of a value; one that fills
    // it is read again whole. Keys from 8,185 to 8,204 bytes in every scope put a value
    // at that length exactly, and on each side of it.
    let server = RedisServer::start(&DURABLE);
    let writer = fresh_catalog(&server);
    let mut written = Vec::new();
    for len in 8_185..8_205 {
        for scope in Scope::ALL {
            let digest = support::digest(u32::try_from(written.len()).unwrap());
            let options = KeyOptions::new(&"k".repeat(len), scope);
            writer.register(digest, options.clone());
            written.push((digest, options));
        }
    }
    writer.flush().unwrap();
    for (digest, options) in &written {
        let (found, faults, lines) = read_back(&server, digest);
        assert!(found.as_ref() == Some(options), "get, a key of {} bytes, {}", options.key().len(), options.scope());
        assert_eq!((faults, lines.len()), (0, 0), "{lines:?}");
    }
    let prefetching =
        CatalogBuilder::new().redis(RedisBuilder::new(server.url()).build().unwrap()).build_redis().unwrap();
    let digests: Vec<Digest> = written.iter().map(|(digest, _)| *digest).collect();
    assert_eq!(prefetching.prefetch(&digests).unwrap(), written.len(), "prefetch");
}

#[test]
fn foreign_values_are_misses_counted_and_warned_naming_the_key() {
    let server = RedisServer::start(&DURABLE);
    let mut raw = server.client();
    let (written, elsewhere) = (Digest::from_bytes([1; 32]), Digest::from_bytes([2; 32]));
    let writer = fresh_catalog(&server);
    writer.register(written, KeyOptions::new("item-1", Scope::Global));
    writer.flush().unwrap();
    let copied: String = redis::cmd("GET").arg(entry_key(&written)).query(&mut raw).unwrap();

    type Put = Box<dyn Fn(&mut redis::Connection, &str)>;
    let cases: [(&str, Put, &str); 4] = [
        (
            "the old format",
            Box::new(|c, k| redis::cmd("SET").arg(k).arg("global:item-999").query(c).unwrap()),
            "not <check>:<scope>:<key>",
        ),
        (
            "another digest's value",
            Box::new(move |c, k| redis::cmd("SET").arg(k).arg(&copied).query(c).unwrap()),
            "written for another digest",
        ),
        (
            "5 MB",
            Box::new(|c, k| redis::cmd("SET").arg(k).arg(vec![b'x'; 5 << 20]).query(c).unwrap()),
            "more than 8209 bytes",
        ),
        (
            "a hash",
            Box::new(|c, k| redis::cmd("HSET").arg(k).arg("scope").arg("global").query(c).unwrap()),
            "WRONGTYPE",
        ),
    ];
    for (case, put, why) in cases {
        let key = entry_key(&elsewhere);
        redis::cmd("DEL").arg(&key).query::<()>(&mut raw).unwrap();
        put(&mut raw, &key);
        let (found, faults, lines) = read_back(&server, &elsewhere);
        assert_eq!(found, None, "{case}");
        assert_eq!(faults, 1, "{case}");
        assert_eq!(lines.len(), 1, "{case}: {lines:?}");
        let line = &lines[0];
        assert!(
            line.contains("fault=foreign") && line.contains(&format!("foreign value under {key}")),
            "{case}: {line}"
        );
        assert!(line.contains(why), "{case}: {line}");
        assert!(line.len() < 1_000, "{case}: a hostile value does not flood the line: {} bytes", line.len());
    }
}

/// A listener whose `on_fault` always panics.
struct Panicking;

impl Listener for Panicking {
    fn on_evict(&self, _: &Digest, _: &KeyOptions, _: RemovalCause) {}
    fn on_fault(&self, _: &Fault) {
        panic!("listener bug");
    }
}

#[test]
fn a_fault_listener_that_panics_is_counted_once_in_the_catalog_stats() {
    let mut server = RedisServer::start(&DURABLE);
    let redis = RedisBuilder::new(server.url()).listener(Panicking).build().unwrap();
    let catalog = CatalogBuilder::new().redis(redis).build().unwrap();
    server.kill();
    let ((), lines) = testkit::warnings(|| {
        for i in 0..3 {
            assert_eq!(catalog.get(&Digest::from_bytes([i; 32])), None);
        }
    });
    let stats = catalog.stats();
    assert_eq!((stats.faults, stats.listener_panics), (3, 1));
    assert_eq!(lines.iter().filter(|l| l.contains(" ERROR ")).count(), 1, "{lines:?}");
}

#[test]
fn a_connection_the_server_closed_is_opened_again_and_the_call_goes_through() {
    let mut server = RedisServer::start(&DURABLE);
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let catalog = CatalogBuilder::new().redis(redis.clone()).build().unwrap();
    let digest = Digest::from_bytes([9; 32]);
    catalog.register(digest, KeyOptions::new("before", Scope::Global));
    catalog.flush().unwrap(); // the catalog's connection is open now

    // Closed by the server: every client killed, then the server restarted.
    let killed: u64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query(&mut server.client()).unwrap();
    assert!(killed >= 1);
    catalog.register(Digest::from_bytes([10; 32]), KeyOptions::new("after a kill", Scope::Global));
    catalog.flush().unwrap();
    server.restart();
    catalog.register(Digest::from_bytes([11; 32]), KeyOptions::new("after a restart", Scope::Global));
    catalog.flush().unwrap();
    assert_eq!(redis.faults(), 0, "a closed connection opened again is not a fault");
    assert_eq!(server.count(&entries()), 3, "every write arrived");

    // A server that is gone stays a fault: the second attempt fails too.
    server.kill();
    catalog.register(Digest::from_bytes([12; 32]), KeyOptions::new("lost", Scope::Global));
    assert!(catalog.flush().is_err());
    assert_eq!(redis.faults(), 1);
}

#[test]
fn registrations_a_dropped_catalog_could_not_send_are_counted_and_warned_about() {
    let server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).io_timeout(Duration::from_millis(200)).build().unwrap();
    let catalog = CatalogBuilder::new().redis(redis).build().unwrap();
    server.pause();
    let (_, lines) = testkit::warnings(|| {
        for i in 0..10u8 {
            catalog.register(Digest::from_bytes([i; 32]), KeyOptions::new("left", Scope::Run));
        }
        // Its last send times out: those ten are lost with it, and said to be.
        drop(catalog);
    });
    server.resume();
    let lost: Vec<&String> = lines.iter().filter(|l| l.contains("dropped from the write queue")).collect();
    assert_eq!(lost.len(), 1, "{lines:#?}");
    assert!(lost[0].contains("unshared=10"), "{}", lost[0]);
}

#[test]
fn registrations_queued_through_an_outage_go_out_in_several_pipelines_when_it_ends() {
    let mut server = RedisServer::start(&[]);
    let redis = RedisBuilder::new(server.url()).build().unwrap();
    let catalog = CatalogBuilder::new().redis(redis.clone()).build().unwrap();
    server.kill();
    // More than two pipelines' worth: every send while it is down fails and keeps them.
    for i in 0..25_000u32 {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        catalog.register(Digest::from_bytes(bytes), KeyOptions::new(&format!("queued-{i}"), Scope::Global));
    }
    assert!(catalog.flush().is_err());
    assert_eq!(catalog.stats().unshared, 0, "queued, not dropped");

    server.restart();
    std::thread::sleep(Duration::from_millis(300)); // past the reconnect pause
    catalog.flush().unwrap();
    assert_eq!(server.count(&entries()), 25_000, "every queued registration arrived");
    catalog.flush().unwrap();
    assert_eq!(catalog.stats().unshared, 0);
}
