//! Showing a Redis URL without its password, whatever characters the password holds.
//!
//! A URL the `redis` crate accepts is parsed as that crate parses it (with the `url`
//! crate), so the password it would send is exactly the one hidden. Anything else is
//! cut by a rule that cannot show a password even when the URL is malformed.

use ::redis::IntoConnectionInfo;
use ::url::Url;
use ::url::form_urlencoded;

/// What replaces every password.
const HIDDEN: &str = "***";

/// Query parameters a Redis URL may carry that hold no secret: shown as they are. Any
/// other is dropped, since a password with an unencoded `&` spills into one.
const SHOWN_PARAMS: [&str; 3] = ["db", "protocol", "user"];

fn is_password_param(name: &str) -> bool {
    name == "pass" || name == "password"
}

/// `url` with its password (`redis://user:secret@host`) and any `pass` or `password`
/// query parameter replaced by `***`, fragments other than `#insecure` and unknown query
/// parameters dropped.
pub(super) fn redacted(url: &str) -> String {
    accepted(url).and_then(redacted_parsed).unwrap_or_else(|| redacted_raw(url))
}

/// The URL as the `redis` crate reads it, if it accepts it.
fn accepted(url: &str) -> Option<Url> {
    url.into_connection_info().ok()?;
    Url::parse(url).ok()
}

fn redacted_parsed(mut url: Url) -> Option<String> {
    if url.password().is_some() {
        url.set_password(Some(HIDDEN)).ok()?;
    }
    let query = url.query().map(|query| {
        let mut shown = form_urlencoded::Serializer::new(String::new());
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if is_password_param(&name) {
                shown.append_pair(&name, HIDDEN);
            } else if SHOWN_PARAMS.contains(&&*name) {
                shown.append_pair(&name, &value);
            }
        }
        shown.finish()
    });
    url.set_query(query.as_deref().filter(|query| !query.is_empty()));
    if url.fragment().is_some_and(|fragment| fragment != "insecure") {
        url.set_fragment(None);
    }
    Some(url.into())
}

/// A URL the `redis` crate refuses, shown so that no password can be in it: the scheme,
/// `***` for everything up to the last `@`, then the host and path, without query or
/// fragment.
fn redacted_raw(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
        _ => (None, url),
    };
    let scheme = scheme.map(|scheme| format!("{scheme}://")).unwrap_or_default();
    let (userinfo, tail) = match rest.rsplit_once('@') {
        // The last `@` may then sit in a query or a fragment, and what follows it in a
        // password.
        Some((before, _)) if before.contains(['?', '#']) => return format!("{scheme}{HIDDEN}"),
        Some((_, tail)) => (format!("{HIDDEN}@"), tail),
        None => (String::new(), rest),
    };
    let tail = tail.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = tail.split_at(tail.find('/').unwrap_or(tail.len()));
    let authority = if is_host_and_port(authority) { authority } else { HIDDEN };
    format!("{scheme}{userinfo}{authority}{path}")
}

fn is_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`: nothing else shows.
fn is_host_and_port(authority: &str) -> bool {
    let hostlike =
        authority.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'));
    let port = match authority.rsplit_once(':') {
        Some((_, port)) if !authority.ends_with(']') => port,
        _ => "0",
    };
    hostlike && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// Every form in which a URL's password could appear in a message from the `redis`
/// crate: as written, percent-decoded, and what a lenient reading of a malformed URL
/// would take for one. [`scrub`](Self::scrub) hides them.
#[derive(Clone, Default)]
pub(super) struct Secrets(Vec<String>);

impl Secrets {
    pub(super) fn of(url: &str) -> Self {
        let mut found = Vec::new();
        if let Ok(info) = url.into_connection_info() {
            found.extend(info.redis_settings().password().map(str::to_owned));
        }
        if let Ok(parsed) = Url::parse(url) {
            found.extend(parsed.password().map(str::to_owned));
            let params = parsed.query().unwrap_or_default().split('&');
            for (name, raw) in params.filter_map(|param| param.split_once('=')) {
                let decoded: Vec<(String, String)> =
                    form_urlencoded::parse(format!("{name}={raw}").as_bytes()).into_owned().collect();
                if let Some((name, value)) = decoded.into_iter().next()
                    && is_password_param(&name)
                {
                    found.extend([raw.to_owned(), value]);
                }
            }
        }
        // As `redacted_raw` reads a URL the `redis` crate refuses.
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        if let Some((userinfo, _)) = rest.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            found.push(password.to_owned());
        }
        for name in ["pass=", "password="] {
            for (at, _) in url.match_indices(name) {
                let value = url.get(at + name.len()..).unwrap_or_default();
                found.extend(value.split(['&', '#']).next().map(str::to_owned));
            }
        }
        found.retain(|secret| !secret.is_empty());
        // Longest first, so that a secret that contains another is hidden whole.
        found.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        found.dedup();
        Secrets(found)
    }

    /// `text` with every form of the password replaced by `***`.
    pub(super) fn scrub(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), HIDDEN))
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Secrets").field(&self.0.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_wherever_they_are() {
        assert_eq!(redacted("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redacted("redis://:hunter2@host:6379"), "redis://:***@host:6379");
        assert_eq!(redacted("redis://app@host"), "redis://app@host");
        assert_eq!(redacted("redis://app:secret@host/2?protocol=resp3"), "redis://app:***@host/2?protocol=resp3");
        assert_eq!(redacted("redis+unix:///run/redis.sock?db=1&pass=x"), "redis+unix:///run/redis.sock?db=1&pass=***");
        assert_eq!(redacted("redis://host/0?password=x&other=y#frag"), "redis://host/0?password=***");
    }

    #[test]
    fn a_password_with_a_slash_is_hidden_whole() {
        // Base64: the old redaction cut the URL at the first `/` and showed it all. The
        // redis crate refuses it (an unencoded `/` ends the authority).
        let url = "redis://:Zm9v/YmFy+cXV4@127.0.0.1:7006";
        assert_eq!(redacted(url), "redis://***@127.0.0.1:7006");
        let url = "redis://app:Zm9v/YmFy+cXV4@127.0.0.1:7006/3";
        assert_eq!(redacted(url), "redis://***@127.0.0.1:7006/3");
        // Percent-encoded, it is accepted, and shown as parsed.
        let url = "redis://:Zm9v%2FYmFy+cXV4@127.0.0.1:7006";
        assert_eq!(redacted(url), "redis://:***@127.0.0.1:7006");
    }

    #[test]
    fn reserved_characters_in_a_password_never_show() {
        for password in ["p@ss@word", "pass?word", "pass#word", "pa%ss", "100%", "pass:word", "pass word", "a/b?c#d@e"]
        {
            for url in [format!("redis://user:{password}@127.0.0.1:1/0"), format!("redis://:{password}@127.0.0.1:1")] {
                let shown = redacted(&url);
                assert!(!shown.contains(password), "{url} shown as {shown}");
                assert!(shown.starts_with("redis://"), "{url} shown as {shown}");
            }
            let url = format!("redis://127.0.0.1:1/0?password={password}");
            assert!(!redacted(&url).contains(password), "{url} shown as {}", redacted(&url));
        }
        // Accepted, and shown as parsed: an `@` belongs to the password up to the last one.
        assert_eq!(redacted("redis://user:p@ss@127.0.0.1:1/0"), "redis://user:***@127.0.0.1:1/0");
        assert_eq!(redacted("redis://user:pass:word@127.0.0.1:1/0"), "redis://user:***@127.0.0.1:1/0");
        assert_eq!(redacted("redis://:pass word@127.0.0.1:1"), "redis://:***@127.0.0.1:1");
        assert_eq!(redacted("redis://host?password=a@b"), "redis://host?password=***");
        // Refused by the redis crate: everything up to the last `@` is hidden.
        assert_eq!(redacted("redis://user:pa/ss@127.0.0.1:1/0"), "redis://***@127.0.0.1:1/0");
        assert_eq!(redacted("redis://user:pass?word@127.0.0.1:1/0"), "redis://***");
        assert_eq!(redacted("redis://user:pass#word@127.0.0.1:1/0"), "redis://***");
        // Without TLS the redis crate refuses the URL; with it, the URL parses as any other.
        let tls = if cfg!(feature = "tls") { "rediss://app:***@host/2" } else { "rediss://***@host/2" };
        assert_eq!(redacted("rediss://app:secret@host/2"), tls);
    }

    #[test]
    fn urls_that_do_not_parse_keep_what_cannot_be_a_password() {
        assert_eq!(redacted("http://:secret@host"), "http://***@host");
        assert_eq!(redacted("127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(redacted("redis://:secret/host"), "redis://***/host");
        assert_eq!(redacted("not a url"), "***");
        assert_eq!(redacted("redis://:1/x?password=a@b"), "redis://***");
    }

    #[test]
    fn scrubbing_hides_the_password_as_written_and_as_sent() {
        let secrets = Secrets::of("redis://app:p%40ss%2Fw0rd@127.0.0.1:1/0");
        assert_eq!(secrets.scrub("auth p@ss/w0rd failed for p%40ss%2Fw0rd"), "auth *** failed for ***");
        let secrets = Secrets::of("redis+unix:///run/redis.sock?pass=a%26b");
        assert_eq!(secrets.scrub("a&b and a%26b"), "*** and ***");
        let secrets = Secrets::of("redis://:pa/ss@host");
        assert_eq!(secrets.scrub("pa/ss"), "***");
        assert_eq!(format!("{secrets:?}"), "Secrets(1)");
    }
}
