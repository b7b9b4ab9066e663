//! Fleet mode against real `redis-server`s (feature `redis`): what `RedisBuilder::build`
//! refuses, warns about and how fast, that no password ever shows, and what the
//! shared catalog does with values it did not write.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::time::{Duration, Instant};

use idempotency_catalog::{CatalogBuilder, Digest, KeyOptions, RedisBuilder, Scope};
use proptest::prelude::*;
use testkit::RedisServer;

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
    let keys: Vec<String> = redis::cmd("KEYS").arg("idempotency:key:*").query(&mut conn).unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(server.count("idempotency:key:*"), 0, "nothing in db 0");
}
