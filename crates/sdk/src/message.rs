//! The string a key's digest is computed from, and its SHA-256.

use idempotency_catalog::Digest;
use sha2::{Digest as _, Sha256};

/// SHA-256's block size.
const BLOCK: usize = 64;
/// The most message bytes one block holds beside the padding: a `0x80` byte and the
/// 64-bit length.
const ONE_BLOCK: usize = BLOCK - 9;

/// SHA-256's initial hash value (FIPS 180-4, section 5.3.3).
const H0: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// Parts joined with `-`, being written for hashing.
///
/// Almost every key fits one SHA-256 block, so the message is written straight into
/// that block on the stack, padded there and compressed once by `sha2`. For such a
/// short message the streaming hasher's buffering and padding cost about a sixth of
/// the digest, and an allocation would cost half of it; longer messages spill to the
/// heap and go through the streaming hasher.
pub(crate) struct Message {
    block: [u8; BLOCK],
    len: usize,
    parts: usize,
    spilled: Option<Vec<u8>>,
}

impl Message {
    pub(crate) fn new() -> Self {
        Message { block: [0; BLOCK], len: 0, parts: 0, spilled: None }
    }

    /// Appends a part, after a `-` unless it is the first.
    #[inline]
    pub(crate) fn push(&mut self, part: &str) {
        let sep = self.parts > 0;
        self.parts += 1;
        if let Some(heap) = &mut self.spilled {
            if sep {
                heap.push(b'-');
            }
            heap.extend_from_slice(part.as_bytes());
            return;
        }
        // Lengths of strings in memory are at most `isize::MAX`: no overflow.
        let start = self.len + usize::from(sep);
        let end = start + part.len();
        match self.block.get_mut(start..end).filter(|_| end <= ONE_BLOCK) {
            Some(dst) => {
                dst.copy_from_slice(part.as_bytes());
                if let Some(dash) = self.block.get_mut(self.len).filter(|_| sep) {
                    *dash = b'-';
                }
                self.len = end;
            }
            None => self.spill(sep, part),
        }
    }

    #[cold]
    fn spill(&mut self, sep: bool, part: &str) {
        let mut heap = Vec::with_capacity(2 * (self.len + 1 + part.len()));
        #[expect(clippy::expect_used, reason = "an invariant of the type, not input")]
        heap.extend_from_slice(self.block.get(..self.len).expect("the length never passes the block"));
        if sep {
            heap.push(b'-');
        }
        heap.extend_from_slice(part.as_bytes());
        self.spilled = Some(heap);
    }

    /// SHA-256 of the message, which it pads in place: push nothing after this.
    //
    // `&mut self`, not `self`: moving the block just after its bytes were written
    // stalls on store forwarding (about 6 ns, a twelfth of the hash, measured).
    pub(crate) fn digest(&mut self) -> Digest {
        if let Some(heap) = &self.spilled {
            return Digest::from_bytes(Sha256::digest(heap).into());
        }
        // Padding (FIPS 180-4, 5.1.1): a 1 bit, zeros (the block is zeroed), and the
        // message length in bits, big-endian, in the last 8 bytes.
        if let Some(marker) = self.block.get_mut(self.len) {
            *marker = 0x80;
        }
        if let Some(length) = self.block.last_chunk_mut::<8>() {
            *length = ((self.len as u64) * 8).to_be_bytes();
        }
        let mut state = H0;
        sha2::block_api::compress256(&mut state, std::slice::from_ref(&self.block));
        let mut out = [0u8; 32];
        for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        Digest::from_bytes(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(parts: &[&str]) -> Digest {
        let mut message = Message::new();
        for part in parts {
            message.push(part);
        }
        message.digest()
    }

    #[test]
    fn matches_the_streaming_hasher_across_the_one_block_boundary() {
        // 0..=200 bytes covers the empty message, the last one-block length (55), the
        // first two-block one (56), a full block (64) and several blocks.
        for len in 0..=200 {
            let text = "é".repeat(len / 2) + &"k".repeat(len % 2);
            let expected = Digest::from_bytes(Sha256::digest(text.as_bytes()).into());
            assert_eq!(digest_of(&[&text]), expected, "{len} bytes");
        }
    }

    #[test]
    fn joins_with_dashes_and_spills_mid_part() {
        let long = "x".repeat(50);
        let cases: [&[&str]; 5] = [&[], &[""], &["", ""], &["a", "b", "c"], &["item", &long, "run_abc123", "7"]];
        for parts in cases {
            let joined = parts.join("-");
            assert_eq!(digest_of(parts), Digest::from_bytes(Sha256::digest(joined.as_bytes()).into()), "{joined:?}");
        }
    }
}
