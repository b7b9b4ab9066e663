//! A vector kept in blocks, for a batch's items: moving a batch into the engine frees
//! each block as soon as its items are read, so that a million-item batch is not held
//! whole beside the records made from it.
//!
//! A block is at least [`BLOCK_BYTES`], more than the largest allocation glibc's
//! `malloc` serves from its heap (its mmap threshold rises to at most 32 MiB on 64-bit
//! systems): each is mapped on its own, and freeing it returns its memory to the system
//! at once, where memory freed inside the heap would stay with the process. A batch
//! smaller than that is one block sized to it, as a `Vec` would be.

use std::mem::size_of;

/// The smallest block worth splitting a batch at: past the allocator's mmap threshold.
const BLOCK_BYTES: usize = (32 << 20) + 4096;

pub(crate) struct Blocks<T> {
    blocks: Vec<Vec<T>>,
    /// Items per full block.
    block: usize,
    len: usize,
}

impl<T> Blocks<T> {
    /// Room for `expected` items in the first block, up to one block's worth.
    pub(crate) fn with_capacity(expected: usize) -> Self {
        let block = BLOCK_BYTES.div_ceil(size_of::<T>().max(1));
        Blocks { blocks: vec![Vec::with_capacity(expected.min(block))], block, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, item: T) {
        match self.blocks.last_mut() {
            Some(last) if last.len() < self.block => last.push(item),
            _ => {
                let mut next = Vec::with_capacity(self.block);
                next.push(item);
                self.blocks.push(next);
            }
        }
        self.len += 1;
    }

    /// Item `index`, if there is one.
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        self.blocks.get(index / self.block)?.get(index % self.block)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.blocks.iter().flatten()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.blocks.iter_mut().flatten()
    }
}

impl<T> IntoIterator for Blocks<T> {
    type Item = T;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<T>>>;

    /// The items in order, each block freed once its last item is read.
    fn into_iter(self) -> Self::IntoIter {
        self.blocks.into_iter().flatten()
    }
}

impl<T: Clone> Clone for Blocks<T> {
    fn clone(&self) -> Self {
        Blocks { blocks: self.blocks.clone(), block: self.block, len: self.len }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Blocks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: PartialEq> PartialEq for Blocks<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_keep_their_order_and_index_across_blocks_and_each_block_is_past_the_threshold() {
        let mut blocks = Blocks::<[u8; 4096]>::with_capacity(10);
        assert_eq!(blocks.blocks[0].capacity(), 10, "the first block is sized to what was expected");
        assert_eq!(blocks.block, 8_193, "{} bytes", blocks.block * 4096);
        assert!(blocks.block * 4096 > 32 << 20);
        for i in 0..20_000u16 {
            let mut item = [0; 4096];
            item[..2].copy_from_slice(&i.to_le_bytes());
            blocks.push(item);
        }
        assert_eq!((blocks.len(), blocks.blocks.len()), (20_000, 3));
        let at = |item: &[u8; 4096]| u16::from_le_bytes([item[0], item[1]]);
        assert_eq!(blocks.get(8_193).map(at), Some(8_193));
        assert_eq!(blocks.get(19_999).map(at), Some(19_999));
        assert!(blocks.get(20_000).is_none());
        assert!(blocks.iter().map(at).eq(0..20_000));
        assert!(blocks.into_iter().map(|item| at(&item)).eq(0..20_000));
    }
}
