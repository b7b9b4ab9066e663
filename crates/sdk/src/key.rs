use std::fmt;
use std::io::{self, Write};

use idempotency_catalog::{Digest, KeyOptions, Scope};
use sha2::{Digest as _, Sha256};

use crate::context::RunContext;

/// Key material: one string, or a list of strings joined with `-` in order.
///
/// Implemented for `str`, `String`, slices, arrays and `Vec`s of string-likes. One
/// string and a list of that one string give the same key, as in the reference SDK.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{IdempotencyKey, Scope};
///
/// let a = IdempotencyKey::derive("a-b", Scope::Global, None);
/// let b = IdempotencyKey::derive(["a", "b"], Scope::Global, None);
/// let c = IdempotencyKey::derive(&vec!["a-b".to_owned()], Scope::Global, None);
/// assert_eq!(a, b);
/// assert_eq!(b, c);
/// ```
pub trait KeyParts {
    /// The parts, in order.
    fn parts(&self) -> impl Iterator<Item = &str>;
}

impl KeyParts for str {
    fn parts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self)
    }
}

impl KeyParts for String {
    fn parts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.as_str())
    }
}

impl<S: AsRef<str>> KeyParts for [S] {
    fn parts(&self) -> impl Iterator<Item = &str> {
        self.iter().map(AsRef::as_ref)
    }
}

impl<S: AsRef<str>, const N: usize> KeyParts for [S; N] {
    fn parts(&self) -> impl Iterator<Item = &str> {
        self.iter().map(AsRef::as_ref)
    }
}

impl<S: AsRef<str>> KeyParts for Vec<S> {
    fn parts(&self) -> impl Iterator<Item = &str> {
        self.iter().map(AsRef::as_ref)
    }
}

impl<T: KeyParts + ?Sized> KeyParts for &T {
    fn parts(&self) -> impl Iterator<Item = &str> {
        (**self).parts()
    }
}

/// An idempotency key: the digest that deduplicates, and the options (original key and
/// scope) that travel beside it.
///
/// A key made from key material carries its own options, so a batch never needs the
/// catalog to find them. A key resolved from a bare digest string has options only if
/// the catalog still knew them.
///
/// # Examples
///
/// ```
/// use idempotency_sdk::{IdempotencyKey, RunContext, Scope};
///
/// let run = RunContext::new("run_abc123", 1);
/// let key = IdempotencyKey::derive(["a", "b"], Scope::Run, Some(&run));
/// // SHA-256 of "a-b-run_abc123", as the reference SDK computes it.
/// assert!(key.digest().to_string().starts_with("db6543a7"));
/// assert_eq!(key.options().map(|o| (o.key(), o.scope())), Some(("a-b", Scope::Run)));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    digest: Digest,
    options: Option<KeyOptions>,
}

impl IdempotencyKey {
    /// Derives the key for `parts` in `scope`, without registering it anywhere; see
    /// [`Sdk::create_key`](crate::Sdk::create_key) for the registering form.
    ///
    /// The digest is SHA-256 of `(parts ++ suffix).join("-")`, where the suffix is
    /// nothing for `global`, `[run_id]` for `run` and `[run_id, attempt]` for
    /// `attempt`; outside a run (`run` is `None`) every scope adds nothing.
    pub fn derive(parts: impl KeyParts, scope: Scope, run: Option<&RunContext>) -> Self {
        // One contiguous string, hashed in one call, joined on the stack when it fits:
        // for short keys, feeding the hasher piece by piece or allocating costs about
        // as much as the hash itself.
        let mut stack = [0u8; 64];
        let mut cursor = io::Cursor::new(&mut stack[..]);
        if let Ok(key_len) = write_joined(&mut cursor, &parts, scope, run) {
            let len = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
            return Self::from_joined(stack.get(..len).unwrap_or_default(), key_len, scope);
        }
        let mut heap = Vec::new();
        let key_len = write_joined(&mut heap, &parts, scope, run).unwrap_or_default();
        Self::from_joined(&heap, key_len, scope)
    }

    /// `joined` is the hashed string; its first `key_len` bytes are the original key.
    fn from_joined(joined: &[u8], key_len: usize, scope: Scope) -> Self {
        let digest = Digest::from_bytes(Sha256::digest(joined).into());
        // Parts are `&str` and separators ASCII, so this is valid UTF-8.
        let key = joined.get(..key_len).and_then(|key| std::str::from_utf8(key).ok()).unwrap_or_default();
        IdempotencyKey { digest, options: Some(KeyOptions::new(key, scope)) }
    }

    /// A key known only by its digest, with whatever options are known for it.
    pub fn from_digest(digest: Digest, options: Option<KeyOptions>) -> Self {
        IdempotencyKey { digest, options }
    }

    /// The digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The original key and scope, when known.
    pub fn options(&self) -> Option<&KeyOptions> {
        self.options.as_ref()
    }
}

/// Writes `(parts ++ suffix).join("-")` and returns the length of `parts.join("-")`.
fn write_joined(
    out: &mut impl Write,
    parts: &impl KeyParts,
    scope: Scope,
    run: Option<&RunContext>,
) -> io::Result<usize> {
    let suffix: &[&str] = match (run, scope) {
        (None, _) | (_, Scope::Global) => &[],
        (Some(run), Scope::Run) => &[run.run_id()],
        (Some(run), Scope::Attempt) => &[run.run_id(), run.attempt_text()],
    };
    let mut joined = Joined { out, count: 0, written: 0 };
    for part in parts.parts() {
        joined.push(part)?;
    }
    let key_len = joined.written;
    for part in suffix {
        joined.push(part)?;
    }
    Ok(key_len)
}

/// A `-`-joined string being written: a separator goes before every part but the first.
struct Joined<'a, W> {
    out: &'a mut W,
    count: usize,
    written: usize,
}

impl<W: Write> Joined<'_, W> {
    fn push(&mut self, part: &str) -> io::Result<()> {
        if self.count > 0 {
            self.out.write_all(b"-")?;
            self.written += 1;
        }
        self.out.write_all(part.as_bytes())?;
        self.written += part.len();
        self.count += 1;
        Ok(())
    }
}

impl fmt::Display for IdempotencyKey {
    /// The digest as 64 lowercase hex characters: what travels as `idempotencyKey`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.digest, f)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyKey").field("digest", &self.digest).field("options", &self.options).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(s: &str) -> String {
        Digest::from_bytes(Sha256::digest(s.as_bytes()).into()).to_string()
    }

    #[test]
    fn the_digest_is_sha256_of_the_joined_parts_and_suffix() {
        let run = RunContext::new("r", 7);
        let cases: [(&[&str], Scope, Option<&RunContext>, &str); 6] = [
            (&["a", "b"], Scope::Global, Some(&run), "a-b"),
            (&["a", "b"], Scope::Run, Some(&run), "a-b-r"),
            (&["a", "b"], Scope::Attempt, Some(&run), "a-b-r-7"),
            (&["a", "b"], Scope::Attempt, None, "a-b"),
            (&[], Scope::Run, Some(&run), "r"),
            (&[""], Scope::Run, Some(&run), "-r"),
        ];
        for (parts, scope, ctx, joined) in cases {
            let key = IdempotencyKey::derive(parts, scope, ctx);
            assert_eq!(key.digest().to_string(), sha256_hex(joined), "{joined}");
            assert_eq!(key.options().map(|o| o.key()), Some(parts.join("-").as_str()));
        }
    }
}
