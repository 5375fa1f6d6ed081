//! A sparse byte image: bytes never written read as zero and cost no memory, so a test can
//! simulate a large device of which it touches only a little.

use std::collections::BTreeMap;

/// Granularity of allocation. Large enough that sequential logs touch few chunks.
const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Clone, Default)]
pub(super) struct Image {
    /// Chunk index -> contents. A `BTreeMap` keeps iteration (and so everything) deterministic.
    chunks: BTreeMap<u64, Box<[u8]>>,
}

impl Image {
    /// Copies `out.len()` bytes starting at `offset` into `out`.
    pub(super) fn read(&self, offset: u64, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let (index, start, n) = Self::span(offset + done as u64, out.len() - done);
            let dst = &mut out[done..done + n];
            match self.chunks.get(&index) {
                Some(chunk) => dst.copy_from_slice(&chunk[start..start + n]),
                None => dst.fill(0),
            }
            done += n;
        }
    }

    /// Copies `data` into the image at `offset`.
    pub(super) fn write(&mut self, offset: u64, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let (index, start, n) = Self::span(offset + done as u64, data.len() - done);
            let chunk = self
                .chunks
                .entry(index)
                .or_insert_with(|| vec![0; CHUNK_BYTES].into_boxed_slice());
            chunk[start..start + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// Inverts bit `bit` (0 = least significant) of the byte at `offset`.
    pub(super) fn flip_bit(&mut self, offset: u64, bit: u8) {
        let mut byte = [0u8];
        self.read(offset, &mut byte);
        byte[0] ^= 1 << bit;
        self.write(offset, &byte);
    }

    /// (chunk index, offset in chunk, bytes up to the chunk's end or `len`) for `offset`.
    fn span(offset: u64, len: usize) -> (u64, usize, usize) {
        let index = offset / CHUNK_BYTES as u64;
        let start = (offset % CHUNK_BYTES as u64) as usize;
        (index, start, len.min(CHUNK_BYTES - start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_bytes_read_as_zero() {
        let image = Image::default();
        let mut out = vec![7u8; 100];
        image.read(1 << 40, &mut out);
        assert!(out.iter().all(|&b| b == 0));
    }

    #[test]
    fn writes_across_chunk_boundaries_read_back() {
        let mut image = Image::default();
        let data: Vec<u8> = (0..3 * CHUNK_BYTES + 17)
            .map(|i| (i * 7 + 3) as u8)
            .collect();
        let offset = CHUNK_BYTES as u64 - 5;
        image.write(offset, &data);
        let mut out = vec![0u8; data.len() + 10];
        image.read(offset - 5, &mut out);
        assert_eq!(&out[..5], &[0; 5]);
        assert_eq!(&out[5..5 + data.len()], &data[..]);
        assert_eq!(&out[5 + data.len()..], &[0; 5]);
    }

    #[test]
    fn flip_bit_flips_one_bit() {
        let mut image = Image::default();
        image.write(10, &[0b1010_0000]);
        image.flip_bit(10, 0);
        image.flip_bit(11, 7);
        let mut out = [0u8; 2];
        image.read(10, &mut out);
        assert_eq!(out, [0b1010_0001, 0b1000_0000]);
    }
}
