/// Everything that can go wrong in this crate: bad input to a parser, a bad
/// configuration value, or a process-global default set too late.
///
/// Messages are lowercase, name the offending value and say what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A string that should hold a digest does not.
    #[error("invalid digest {value}: {reason}")]
    InvalidDigest {
        /// The input, quoted, and cut to 64 characters when longer.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A string that should name a scope does not.
    #[error("invalid scope {value}: expected one of `run`, `attempt`, `global`")]
    InvalidScope {
        /// The input, quoted, and cut to 64 characters when longer.
        value: String,
    },
    /// A TTL that is not a whole number of seconds, minutes, hours or days.
    #[error(
        "invalid ttl {value}: expected a whole number from 1 followed by `s`, `m`, `h` or `d`, such as `60s`, `5m`, `2h`, `7d`"
    )]
    InvalidTtl {
        /// The TTL, quoted and cut to 64 characters.
        value: String,
    },
    /// A string that should name a catalog kind does not.
    #[error("invalid catalog kind {value}: expected one of `lru`, `unbounded`, `batch-scaled`")]
    InvalidKind {
        /// The input, quoted, and cut to 64 characters when longer.
        value: String,
    },
    /// A configuration value, from a builder call or an environment variable, is out of range.
    #[error("invalid {source_name} {value}: {reason}")]
    InvalidConfig {
        /// Where the value came from: an environment variable or a builder method.
        source_name: &'static str,
        /// The value as given, quoted, and cut to 64 characters when longer.
        value: String,
        /// What is accepted.
        reason: String,
    },
    /// An operation on Redis failed (feature `redis`): it could not be reached within
    /// the connect timeout, did not answer in time, refused the command or the
    /// credentials, or answered with a value this crate did not write; or, at startup,
    /// its configuration was refused (an evicting `maxmemory-policy`).
    #[error("redis at {url}: cannot {operation}: {message}")]
    Redis {
        /// The server's URL, any password replaced by `***`.
        url: String,
        /// What was being done: `connect`, `create runs`, …
        operation: &'static str,
        /// The server's or the connection's message.
        message: String,
    },
    /// The process-global default catalog was set after it had been used.
    #[error("the default catalog is already in use ({kind}); call `set_default_catalog` before the first use")]
    DefaultCatalogInUse {
        /// The kind of the catalog that is already in place.
        kind: String,
    },
}

impl Error {
    pub(crate) fn config(source_name: &'static str, value: impl AsRef<str>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig { source_name, value: shown(value.as_ref()), reason: reason.into() }
    }
}

/// How every message of this crate, the SDK and the `idempotency` command shows text a
/// caller chose (key material, a value that did not parse): quoted, with control
/// characters escaped as Rust escapes them (`\n`, `\r`, `\0`, `\u{1b}`, and any other
/// character that is not printable), and cut to its first 64 characters with the
/// length shown, so that a key can neither split a log line, write to the terminal, nor
/// flood it.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::shown;
///
/// assert_eq!(shown("order-7"), r#""order-7""#);
/// assert_eq!(shown("a\nb\r\0\u{1b}[31m"), r#""a\nb\r\0\u{1b}[31m""#);
/// let long = shown(&"😀".repeat(2_048));
/// assert!(long.ends_with("… (2048 characters)"));
/// assert_eq!(long.matches('😀').count(), 64);
/// ```
pub fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => {
            let total = value.chars().count();
            format!("{:?}… ({total} characters)", &value[..cut])
        }
    }
}

const SHOWN_CHARS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small_and_thread_safe() {
        testkit::assert_small_and_thread_safe::<Error>(80);
    }

    #[test]
    fn shown_quotes_short_values_whole() {
        assert_eq!(shown("abc"), "\"abc\"");
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
    }

    #[test]
    fn shown_leaves_no_control_character_raw() {
        for hostile in
            ["a\nWARN forged line", "a\rb", "a\0b", "\u{1b}[31mred\u{1b}[0m", "\u{202e}evil", "\u{7f}\u{85}\t"]
        {
            let out = shown(hostile);
            assert!(!out.chars().any(|c| c.is_control() || c == '\u{202e}'), "{out:?}");
            assert!(out.starts_with('"') && out.ends_with('"'), "{out}");
        }
        assert_eq!(shown("a\nb"), r#""a\nb""#);
        assert_eq!(shown("\u{1b}[31m"), r#""\u{1b}[31m""#);
    }

    #[test]
    fn shown_cuts_2048_emoji_to_64_and_counts_them() {
        let out = shown(&"😀".repeat(2_048));
        assert_eq!(out.matches('😀').count(), SHOWN_CHARS);
        assert!(out.ends_with("… (2048 characters)"), "{out}");
        assert!(out.len() < 300, "{} bytes", out.len());
    }

    #[test]
    fn shown_cuts_long_values_and_counts_them() {
        let long = "é".repeat(1_000);
        let out = shown(&long);
        assert!(out.ends_with("… (1000 characters)"), "{out}");
        assert_eq!(out.matches('é').count(), SHOWN_CHARS);
    }
}
