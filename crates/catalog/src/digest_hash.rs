//! How a map keyed by [`Digest`](crate::Digest) hashes it: by its own bytes, already
//! uniform when they are SHA-256 output, folded with the map's random seed in a few
//! multiplications, where the standard hashers walk them as a byte string (that walk
//! was a fifth of a catalog registration's instructions). The seed keeps a caller who
//! picks digests ([`Catalog::register`](crate::Catalog::register) takes any; a wire
//! item carries any 64 hex characters) from aiming them at one bucket. The catalog's
//! maps and the SDK's digest tables use it.
//!
//! # Examples
//!
//! ```
//! use std::collections::HashMap;
//! use std::hash::BuildHasher;
//! use idempotency_catalog::Digest;
//! use idempotency_catalog::hash::DigestState;
//!
//! let mut runs: HashMap<Digest, u64, DigestState> = HashMap::default();
//! runs.insert(Digest::from_bytes([7; 32]), 1);
//! assert_eq!(runs.get(&Digest::from_bytes([7; 32])), Some(&1));
//!
//! // A pair with the digest hashes too, each part folded in.
//! let state = DigestState::default();
//! assert_ne!(state.hash_one((1u32, Digest::from_bytes([7; 32]))), state.hash_one((2u32, Digest::from_bytes([7; 32]))));
//! ```

use std::hash::{BuildHasher, Hasher};

/// A map's seed: builds a [`DigestHasher`] for each hash.
#[derive(Clone, Copy, Debug)]
pub struct DigestState([u64; 4]);

impl Default for DigestState {
    /// A seed drawn from the process's random source (through `RandomState`).
    fn default() -> Self {
        let random = std::hash::RandomState::new();
        DigestState([0u64, 1, 2, 3].map(|i| random.hash_one(i)))
    }
}

impl BuildHasher for DigestState {
    type Hasher = DigestHasher;

    #[inline]
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher { seed: self.0, hash: 0, words: 0 }
    }
}

/// The hash of one digest: each 8 bytes folded in with a word of the seed. `Digest`
/// hashes as its 32 bytes (after their length, which is ignored: it never varies).
#[derive(Clone, Copy, Debug)]
pub struct DigestHasher {
    seed: [u64; 4],
    hash: u64,
    /// Words folded so far, which picks the seed's word for the next.
    words: usize,
}

impl Hasher for DigestHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let (words, rest) = bytes.as_chunks::<8>();
        for word in words {
            self.fold(u64::from_le_bytes(*word));
        }
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            if let Some(to) = last.get_mut(..rest.len()) {
                to.copy_from_slice(rest);
            }
            self.fold(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_usize(&mut self, _length: usize) {}

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

impl DigestHasher {
    #[inline]
    fn fold(&mut self, word: u64) {
        let seed = self.seed.get(self.words % 4).copied().unwrap_or(0);
        let product = u128::from(word ^ seed) * u128::from(self.hash ^ 0x9e37_79b9_7f4a_7c15 ^ seed.rotate_left(29));
        self.hash = (product as u64) ^ ((product >> 64) as u64);
        self.words += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher as _;

    use super::*;
    use crate::Digest;

    #[test]
    fn every_byte_of_a_digest_counts_and_maps_hash_apart() {
        let map = DigestState::default();
        let digest = Digest::from_bytes([7; 32]);
        let base = map.hash_one(digest);
        for at in 0..32 {
            let mut bytes = [7; 32];
            bytes[at] ^= 1;
            assert_ne!(map.hash_one(Digest::from_bytes(bytes)), base, "byte {at}");
        }
        assert_eq!(map.hash_one(digest), base, "the same digest, the same hash");
        assert_ne!(DigestState::default().hash_one(digest), base, "another map, another seed");
    }

    #[test]
    fn digests_spread_over_the_low_bits_a_table_indexes_by() {
        // 4,096 digests that differ in one byte only, as a caller who picks them might
        // send: their hashes fill the low 12 bits about as evenly as random ones.
        let map = DigestState::default();
        let mut buckets = [0u32; 4_096];
        for i in 0..4_096u32 {
            let mut bytes = [0; 32];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            let at = (map.hash_one(Digest::from_bytes(bytes)) & 4_095) as usize;
            buckets[at] += 1;
        }
        let most = buckets.iter().max().copied().unwrap_or(0);
        assert!(most <= 12, "a bucket got {most} of 4,096 (random: about 7 at most)");
    }
}
