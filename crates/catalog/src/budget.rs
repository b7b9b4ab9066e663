//! How a byte budget counts memory, and reads and writes byte counts: what a
//! catalog's budget ([`CatalogBuilder::max_bytes`](crate::CatalogBuilder::max_bytes))
//! and the SDK's engine budget share.
//!
//! An entry's cost is counted from what it holds, not measured: the `lru` crate's node
//! (digest, options and two links) as the allocator hands it out ([`chunk`]), its slot
//! in the hash table at the table's lowest load (just after it doubled), and the key's
//! heap string when it is too long to be stored inline ([`heap_bytes`]). Counting the
//! table at its lowest load keeps the count an upper bound whatever the table's size;
//! the `memory` example checks it against resident memory.
//!
//! # Examples
//!
//! ```
//! use idempotency_catalog::budget::{MIN_MAX_BYTES, parse_bytes, show_bytes};
//!
//! let budget = parse_bytes("64MiB").unwrap();
//! assert!(budget >= MIN_MAX_BYTES);
//! assert_eq!(show_bytes(budget), "64MiB");
//! ```

use std::mem::size_of;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use crate::defaults;
use crate::digest::Digest;
use crate::key_options::KeyOptions;

/// The smallest byte budget accepted: 64 KiB, some thirty of the longest keys the SDK
/// makes. A smaller one is a unit mistake (`64` for `64MiB`), not a budget.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::CatalogBuilder;
/// use idempotency_catalog::budget::MIN_MAX_BYTES;
///
/// assert!(CatalogBuilder::new().max_bytes(MIN_MAX_BYTES).build().is_ok());
/// assert!(CatalogBuilder::new().max_bytes(MIN_MAX_BYTES - 1).build().is_err());
/// ```
pub const MIN_MAX_BYTES: usize = 64 << 10;

/// What a catalog is bounded by besides its entry count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The most bytes its entries may take; `None`: no byte bound.
    pub(crate) max_bytes: Option<NonZeroUsize>,
    /// How long a free entry pushed out of the base is kept (batch-scaled catalogs);
    /// `None`: it is evicted at once, as from an LRU.
    pub(crate) retain: Option<Duration>,
}

impl Limits {
    /// A batch-scaled catalog's limits under the default configuration.
    pub(crate) const DEFAULT: Limits =
        Limits { max_bytes: NonZeroUsize::new(defaults::MAX_BYTES), retain: Some(defaults::RETAIN) };
}

/// The size of an allocation of `n` bytes as glibc's allocator hands it out (its
/// "chunk"): a header of 8 bytes, rounded up to 16, at least 32.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::budget::chunk;
///
/// assert_eq!((chunk(0), chunk(24), chunk(25), chunk(100)), (32, 32, 48, 112));
/// ```
pub const fn chunk(n: usize) -> usize {
    let size = (n + 8).div_ceil(16) * 16;
    if size < 32 { 32 } else { size }
}

/// A slot of the `lru` crate's table (a pointer to the key and one to the node, and a
/// control byte) at a load of 7/16, the lowest a hashbrown table has after doubling.
const SLOT: usize = ((2 * size_of::<usize>() + 1) * 16).div_ceil(7);

/// A node of a map of free or held entries, with its slot.
const ENTRY: usize = chunk(size_of::<Digest>() + size_of::<KeyOptions>() + 2 * size_of::<usize>()) + SLOT;

/// A node of the map of retained entries (each carries the time it left the base).
const RETAINED_ENTRY: usize =
    chunk(size_of::<Digest>() + size_of::<(KeyOptions, Instant)>() + 2 * size_of::<usize>()) + SLOT;

/// The bytes an entry holding `options` takes in a map of free or held entries.
#[inline]
pub(crate) fn entry_bytes(options: &KeyOptions) -> usize {
    ENTRY + heap_bytes(options)
}

/// The bytes an entry holding `options` takes among the retained entries.
#[inline]
pub(crate) fn retained_bytes(options: &KeyOptions) -> usize {
    RETAINED_ENTRY + heap_bytes(options)
}

/// The bytes a long key's shared string takes on the heap (0 for a key stored inline,
/// up to 22 bytes).
///
/// # Examples
///
/// ```
/// use idempotency_catalog::budget::heap_bytes;
/// use idempotency_catalog::{KeyOptions, Scope};
///
/// assert_eq!(heap_bytes(&KeyOptions::new("item-42", Scope::Global)), 0);
/// assert_eq!(heap_bytes(&KeyOptions::new(&"k".repeat(2_048), Scope::Global)), 2_080);
/// ```
#[inline]
pub fn heap_bytes(options: &KeyOptions) -> usize {
    // A long key is one shared `Arc<str>`: two counters and the tagged text.
    match options.heap_len() {
        0 => 0,
        len => chunk(2 * size_of::<usize>() + len),
    }
}

/// Parses a byte count: digits, optionally followed by `KiB`, `MiB` or `GiB`; `None`
/// for anything else (no spaces, decimals or other units) and on overflow.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::budget::parse_bytes;
///
/// assert_eq!(parse_bytes("65536"), Some(65_536));
/// assert_eq!(parse_bytes("64KiB"), Some(65_536));
/// assert_eq!(parse_bytes("64MB"), None);
/// ```
pub fn parse_bytes(text: &str) -> Option<usize> {
    let (digits, shift) = [("GiB", 30), ("MiB", 20), ("KiB", 10), ("", 0)]
        .into_iter()
        .find_map(|(suffix, shift)| Some((text.strip_suffix(suffix)?, shift)))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(1 << shift)
}

/// A byte count as [`parse_bytes`] reads it: `16MiB` when it is a whole number of
/// them, else the number of bytes. For messages that name a budget.
///
/// # Examples
///
/// ```
/// use idempotency_catalog::budget::show_bytes;
///
/// assert_eq!(show_bytes(16 << 20), "16MiB");
/// assert_eq!(show_bytes(100_000), "100000");
/// ```
pub fn show_bytes(n: usize) -> String {
    for (suffix, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    #[test]
    fn an_entry_costs_its_node_its_slot_and_its_long_key() {
        // 72 bytes of node in an 80-byte chunk, and 17 bytes of slot at 7/16 load.
        assert_eq!(ENTRY, 80 + 39);
        assert_eq!(RETAINED_ENTRY, 96 + 39);
        assert_eq!(entry_bytes(&KeyOptions::new(&"k".repeat(22), Scope::Run)), ENTRY);
        // 23 bytes of key and its tag, after two counters: 40 bytes, a 48-byte chunk.
        assert_eq!(entry_bytes(&KeyOptions::new(&"k".repeat(23), Scope::Run)), ENTRY + 48);
        assert_eq!(entry_bytes(&KeyOptions::new(&"k".repeat(2_048), Scope::Run)), ENTRY + 2_080);
        assert_eq!(retained_bytes(&KeyOptions::new(&"k".repeat(2_048), Scope::Run)), RETAINED_ENTRY + 2_080);
    }

    #[test]
    fn allocations_round_as_the_allocator_does() {
        assert_eq!((chunk(0), chunk(24), chunk(25), chunk(40), chunk(41)), (32, 32, 48, 48, 64));
    }

    #[test]
    fn byte_counts_take_binary_suffixes_and_nothing_else() {
        assert_eq!(parse_bytes("65536"), Some(65_536));
        assert_eq!(parse_bytes("64KiB"), Some(65_536));
        assert_eq!(parse_bytes("64MiB"), Some(64 << 20));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        for bad in ["", "MiB", "64MB", "64 MiB", "64mib", "-1", "1.5GiB", "64M", "99999999999999999999GiB"] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
    }
}
