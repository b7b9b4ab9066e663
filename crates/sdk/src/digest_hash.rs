//! The hash of a digest in the SDK's digest-keyed tables (a batch's repeats, the
//! in-memory engine's claims): the digest's own 32 bytes, already uniform when they are
//! SHA-256 output, folded with the table's random seed in two multiplications, where a
//! general hasher would walk them as a byte string. The seed keeps a caller who picks
//! digests (a wire item carries any 64 hex characters) from aiming them at one bucket.

use std::hash::BuildHasher;

use idempotency_catalog::Digest;

/// A table's seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DigestHash([u64; 4]);

impl Default for DigestHash {
    /// A seed drawn from the process's random source (through `RandomState`).
    fn default() -> Self {
        let random = std::hash::RandomState::new();
        DigestHash([0u64, 1, 2, 3].map(|i| random.hash_one(i)))
    }
}

impl DigestHash {
    /// The hash of `digest` in the table of `task`.
    #[inline]
    pub(crate) fn hash(&self, task: u32, digest: &Digest) -> u64 {
        let [a, b, c, d] = words(digest);
        let [s0, s1, s2, s3] = self.0;
        fold(a ^ s0, b ^ s1 ^ u64::from(task)) ^ fold(c ^ s2, d ^ s3)
    }
}

/// The digest as four words.
#[inline]
fn words(digest: &Digest) -> [u64; 4] {
    let (chunks, _) = digest.as_bytes().as_chunks::<8>();
    let mut words = [0; 4];
    for (word, chunk) in words.iter_mut().zip(chunks) {
        *word = u64::from_le_bytes(*chunk);
    }
    words
}

/// The full product of `a` and `b`, its halves folded together.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_and_the_task_count_and_tables_hash_apart() {
        let table = DigestHash::default();
        let digest = Digest::from_bytes([7; 32]);
        let base = table.hash(0, &digest);
        for at in 0..32 {
            let mut bytes = [7; 32];
            bytes[at] ^= 1;
            assert_ne!(table.hash(0, &Digest::from_bytes(bytes)), base, "byte {at}");
        }
        assert_ne!(table.hash(1, &digest), base);
        assert_ne!(DigestHash::default().hash(0, &digest), base, "another table, another seed");
    }
}
