//! What a catalog remembers of the digests it dropped without being asked to (an
//! eviction at a limit, or the end of a free key's retention): enough for the SDK to
//! say why a batch item found no options (dropped before its batch opened, dropped
//! while it was built, or never registered here) without keeping the dropped entries.
//!
//! A set-associative table of 16,384 buckets of 4 slots, 8 bytes a slot (512 KiB),
//! allocated at the first drop. A slot holds 23 bits of the digest (beside the 14 that
//! chose its bucket), the limit that dropped it, and the eviction count at the time;
//! a full bucket forgets its oldest drop. Digests are SHA-256, so they spread evenly:
//! all but about one in a thousand of the last 10,000 drops are remembered (a bucket
//! forgets one of them only when five land in it), about 88% of the last 50,000, and a digest never
//! dropped matches a slot about once in two million lookups.

use crate::digest::Digest;
use crate::telemetry::{Forgotten, Limit};

const BUCKET_BITS: u32 = 14;
const BUCKETS: usize = 1 << BUCKET_BITS;
const WAYS: usize = 4;
/// The eviction count is kept in the low bits of a slot.
const COUNT_BITS: u32 = 38;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const LIMIT_SHIFT: u32 = COUNT_BITS;
/// A slot's tag sits above its limit; its top bit is always set, so that 0 is empty.
const TAG_SHIFT: u32 = COUNT_BITS + 2;
const TAG_SET: u64 = 1 << 63;

/// The table's size in bytes, once allocated.
#[cfg(test)]
pub(crate) const LEDGER_BYTES: usize = BUCKETS * WAYS * 8;

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    buckets: Vec<[u64; WAYS]>,
}

impl Ledger {
    /// Remembers that `digest` was dropped by `limit` when the eviction count was
    /// `evicted`.
    pub(crate) fn record(&mut self, digest: &Digest, limit: Limit, evicted: u64) {
        if self.buckets.is_empty() {
            self.buckets = vec![[0; WAYS]; BUCKETS];
        }
        let (at, tag) = place(digest);
        let Some(bucket) = self.buckets.get_mut(at) else { return };
        let value = tag | (limit_bits(limit) << LIMIT_SHIFT) | (evicted & COUNT_MASK);
        // The same digest again, else an empty slot, else the oldest drop.
        let slot = bucket
            .iter()
            .position(|&slot| slot & !((1 << TAG_SHIFT) - 1) == tag)
            .or_else(|| bucket.iter().position(|&slot| slot == 0))
            .or_else(|| (0..WAYS).min_by_key(|&i| bucket.get(i).map_or(0, |slot| slot & COUNT_MASK)));
        if let Some(slot) = slot.and_then(|i| bucket.get_mut(i)) {
            *slot = value;
        }
    }

    /// What is remembered of `digest`, if it was dropped.
    pub(crate) fn get(&self, digest: &Digest) -> Option<Forgotten> {
        let (at, tag) = place(digest);
        let slot = self.buckets.get(at)?.iter().find(|&&slot| slot & !((1 << TAG_SHIFT) - 1) == tag)?;
        let limit = match (slot >> LIMIT_SHIFT) & 0b11 {
            0 => Limit::Entries,
            1 => Limit::Ceiling,
            2 => Limit::Bytes,
            _ => Limit::Retention,
        };
        Some(Forgotten { evicted: slot & COUNT_MASK, limit })
    }

    /// Forgets every drop (`Catalog::clear`).
    pub(crate) fn clear(&mut self) {
        self.buckets = Vec::new();
    }

    /// The bytes the table takes.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.buckets.capacity() * WAYS * 8
    }
}

fn limit_bits(limit: Limit) -> u64 {
    match limit {
        Limit::Entries => 0,
        Limit::Ceiling => 1,
        Limit::Bytes => 2,
        Limit::Retention => 3,
    }
}

/// The bucket of `digest` and its tag (shifted into place, top bit set).
fn place(digest: &Digest) -> (usize, u64) {
    let bytes = digest.as_bytes();
    let word = u64::from_le_bytes(*bytes.first_chunk::<8>().unwrap_or(&[0; 8]));
    let at = (word & (BUCKETS as u64 - 1)) as usize;
    let tag = ((word >> BUCKET_BITS) << TAG_SHIFT) | TAG_SET;
    (at, tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digests spread as SHA-256's do (a splitmix64 of `i`).
    fn digest(i: u32) -> Digest {
        let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        Digest::from_bytes(out)
    }

    #[test]
    fn a_drop_is_remembered_with_its_limit_and_count_and_nothing_else_is() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.get(&digest(1)), None);
        assert_eq!(ledger.bytes(), 0, "nothing allocated before the first drop");
        ledger.record(&digest(1), Limit::Bytes, 7);
        ledger.record(&digest(2), Limit::Retention, 9);
        assert_eq!(ledger.get(&digest(1)), Some(Forgotten { evicted: 7, limit: Limit::Bytes }));
        assert_eq!(ledger.get(&digest(2)), Some(Forgotten { evicted: 9, limit: Limit::Retention }));
        assert_eq!(ledger.get(&digest(3)), None);
        ledger.record(&digest(1), Limit::Ceiling, 11);
        assert_eq!(ledger.get(&digest(1)), Some(Forgotten { evicted: 11, limit: Limit::Ceiling }));
        assert_eq!(ledger.bytes(), LEDGER_BYTES);
        ledger.clear();
        assert_eq!(ledger.get(&digest(1)), None);
    }

    #[test]
    fn the_last_ten_thousand_drops_are_remembered_and_strangers_are_not() {
        let mut ledger = Ledger::default();
        for i in 0..200_000u32 {
            ledger.record(&digest(i), Limit::Entries, u64::from(i) + 1);
        }
        let recent = (190_000..200_000).filter(|&i| ledger.get(&digest(i)).is_some()).count();
        assert!(recent >= 9_970, "{recent} of the last 10,000");
        let fifty = (150_000..200_000).filter(|&i| ledger.get(&digest(i)).is_some()).count();
        assert!(fifty >= 43_000, "{fifty} of the last 50,000");
        let strangers = (1_000_000..1_100_000).filter(|&i| ledger.get(&digest(i)).is_some()).count();
        assert!(strangers <= 2, "{strangers} of 100,000 never dropped");
    }
}
