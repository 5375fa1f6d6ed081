//! Striping: where an object's bytes live among stripes, and inside a stripe among data shards.
//!
//! The layout is fixed per object at CREATE by its scheme (K data shards) and `shard_bytes`:
//!
//! - Stripe `i` holds object bytes `[i·S, (i+1)·S)`, with `S = K · shard_bytes` (`stripe_bytes`).
//! - Inside a stripe, data shard `j` holds stripe bytes `[j·shard_bytes, (j+1)·shard_bytes)`.
//! - A stripe's **length** `L` (1 ≤ L ≤ S) is how many of its bytes lay below the object's size
//!   when the stripe was written (`stripe_len`). Its bytes at and past `L` are zeros.
//! - Stored sizes: data shard `j` stores only its bytes below `L` (possibly none); all shards are
//!   coded at `coded_bytes(L)`, the longest data shard rounded up to `SHARD_ALIGN_BYTES`, so each
//!   parity shard stores that many. A full stripe stores N shards of `shard_bytes`; a 4 KiB
//!   object in 4+2 with 256 KiB shards stores 4 KiB in data shard 0, nothing in data shards 1 to
//!   3 and 4 KiB in each parity shard (the shortest stripe costs what 1+M replication costs).
//!
//! The byte-to-shard mapping never depends on a stripe's history, so a write knows up front which
//! shards it touches and which old shards it must read (`write_plan`).
//!
//! What it does not do: move bytes between buffers beyond `WritePlan::assemble`, or code them.

use std::ops::Range;

use crate::limits::{
    OBJECT_BYTES_MAX, SHARD_ALIGN_BYTES, SHARD_BYTES_MAX, SHARD_BYTES_MIN, STRIPE_BYTES_TARGET,
};
use crate::scheme::Scheme;
use crate::shard_set::ShardSet;

/// How an object is cut into stripes and shards. Valid by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StripeLayout {
    scheme: Scheme,
    shard_bytes: u32,
}

/// Why a shard size is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Not a multiple of `SHARD_ALIGN_BYTES`.
    #[error("shard size {shard_bytes} is not a multiple of {SHARD_ALIGN_BYTES} bytes")]
    Unaligned { shard_bytes: u32 },
    /// Outside `SHARD_BYTES_MIN..=SHARD_BYTES_MAX`.
    #[error("shard size {shard_bytes} is outside {SHARD_BYTES_MIN}..={SHARD_BYTES_MAX} bytes")]
    OutOfRange { shard_bytes: u32 },
}

/// Why a byte range of an object cannot be striped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// `offset + len` does not fit in 64 bits.
    #[error("range of {len} bytes at offset {offset} overflows")]
    Overflow { offset: u64, len: u64 },
    /// The range ends past the largest object.
    #[error("range ends at byte {end}, past the object size limit of {OBJECT_BYTES_MAX} bytes")]
    TooLarge { end: u64 },
}

/// The part of an object range that falls into one stripe. Never empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripeRange {
    pub stripe: u32,
    /// First byte of the part, stripe-relative.
    pub start: u32,
    pub len: u32,
    /// Where the part sits in the caller's buffer: bytes from the start of the whole range.
    pub buffer_offset: u64,
}

impl StripeRange {
    /// One past the last byte, stripe-relative.
    pub fn end(&self) -> u32 {
        self.start + self.len
    }
}

/// The part of a stripe range that falls into one data shard. Never empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardPiece {
    pub shard: u8,
    /// First byte of the piece, shard-relative.
    pub shard_start: u32,
    /// First byte of the piece, stripe-relative.
    pub stripe_start: u32,
    pub len: u32,
}

/// What a write into one stripe needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WritePlan {
    pub range: StripeRange,
    /// The stripe's length after the write: what it is coded at and what its shards record.
    pub stripe_len: u32,
    /// The stripe's length before the write, from the object's size. Old bytes below it that the
    /// write does not cover survive; bytes at or past it are zeros in the new stripe, whatever
    /// an old shard holds there (leftovers of a write whose size update never happened).
    pub old_len: u32,
    /// Data shards holding old bytes that survive: read them first (read-modify-write). Empty
    /// when the write alone makes the whole new stripe.
    pub read: ShardSet,
}

impl StripeLayout {
    pub fn new(scheme: Scheme, shard_bytes: u32) -> Result<Self, LayoutError> {
        if !(SHARD_BYTES_MIN..=SHARD_BYTES_MAX).contains(&shard_bytes) {
            return Err(LayoutError::OutOfRange { shard_bytes });
        }
        if !shard_bytes.is_multiple_of(SHARD_ALIGN_BYTES) {
            return Err(LayoutError::Unaligned { shard_bytes });
        }
        Ok(Self {
            scheme,
            shard_bytes,
        })
    }

    /// The layout CREATE picks: stripes of about `STRIPE_BYTES_TARGET`, cut into K aligned shards.
    pub fn for_scheme(scheme: Scheme) -> Self {
        let shard_bytes = STRIPE_BYTES_TARGET
            .div_ceil(u32::from(scheme.k()))
            .next_multiple_of(SHARD_ALIGN_BYTES)
            .max(SHARD_BYTES_MIN);
        Self::new(scheme, shard_bytes).expect("the target stripe gives a valid shard size")
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Bytes of one full shard.
    pub fn shard_bytes(&self) -> u32 {
        self.shard_bytes
    }

    /// Object bytes per stripe (K full data shards).
    pub fn stripe_bytes(&self) -> u32 {
        // Fits: SHARDS_MAX · SHARD_BYTES_MAX ≤ u32::MAX is checked in `limits`.
        u32::from(self.scheme.k()) * self.shard_bytes
    }

    /// The stripe holding object byte `offset`.
    pub fn stripe_of(&self, offset: u64) -> u32 {
        assert!(offset < OBJECT_BYTES_MAX);
        (offset / u64::from(self.stripe_bytes())) as u32
    }

    /// Object offset of the first byte of `stripe`.
    pub fn stripe_start(&self, stripe: u32) -> u64 {
        u64::from(stripe) * u64::from(self.stripe_bytes())
    }

    /// Stripes an object of `object_bytes` spans (its last one may be short).
    pub fn stripe_count(&self, object_bytes: u64) -> u64 {
        object_bytes.div_ceil(u64::from(self.stripe_bytes()))
    }

    /// How many bytes of `stripe` lie below `object_bytes`: the stripe's length for an object of
    /// that size (0 if the stripe starts at or past the end).
    pub fn stripe_len(&self, stripe: u32, object_bytes: u64) -> u32 {
        let past = object_bytes.saturating_sub(self.stripe_start(stripe));
        past.min(u64::from(self.stripe_bytes())) as u32
    }

    /// Splits object bytes `[offset, offset + len)` into per-stripe parts, in order.
    pub fn ranges(&self, offset: u64, len: u64) -> Result<StripeRanges, RangeError> {
        let end = offset
            .checked_add(len)
            .ok_or(RangeError::Overflow { offset, len })?;
        if end > OBJECT_BYTES_MAX {
            return Err(RangeError::TooLarge { end });
        }
        Ok(StripeRanges {
            stripe_bytes: u64::from(self.stripe_bytes()),
            origin: offset,
            at: offset,
            end,
        })
    }

    /// Stripe-relative bytes of data shard `shard` in a stripe of length `stripe_len`: what the
    /// shard stores (empty when the stripe ends before it).
    pub fn data_range(&self, stripe_len: u32, shard: u8) -> Range<u32> {
        assert!(shard < self.scheme.k());
        assert!(stripe_len <= self.stripe_bytes());
        let start = u32::from(shard) * self.shard_bytes;
        start.min(stripe_len)..(start + self.shard_bytes).min(stripe_len)
    }

    /// The bytes of data shard `shard` inside `stripe`, the content of a stripe (its length is
    /// the stripe's length).
    pub fn data_shard<'a>(&self, stripe: &'a [u8], shard: u8) -> &'a [u8] {
        let stripe_len = u32::try_from(stripe.len()).expect("a stripe fits a u32");
        let range = self.data_range(stripe_len, shard);
        &stripe[range.start as usize..range.end as usize]
    }

    /// Bytes every shard of a stripe of length `stripe_len` is coded at: its longest data shard,
    /// rounded up to the codec's alignment. Parity shards store this many.
    pub fn coded_bytes(&self, stripe_len: u32) -> u32 {
        assert!(stripe_len >= 1);
        assert!(stripe_len <= self.stripe_bytes());
        stripe_len
            .min(self.shard_bytes)
            .next_multiple_of(SHARD_ALIGN_BYTES)
    }

    /// Bytes shard `shard` (data or parity) stores for a stripe of length `stripe_len`. A node
    /// checks a fetched shard against it before handing it on.
    pub fn stored_bytes(&self, stripe_len: u32, shard: u8) -> u32 {
        assert!(shard < self.scheme.n());
        if self.scheme.is_data(shard) {
            self.data_range(stripe_len, shard).len() as u32
        } else {
            self.coded_bytes(stripe_len)
        }
    }

    /// Data shards a stripe range reads or writes.
    pub fn shards_touched(&self, range: &StripeRange) -> ShardSet {
        assert!(range.len >= 1);
        assert!(range.end() <= self.stripe_bytes());
        let first = range.start / self.shard_bytes;
        let last = (range.end() - 1) / self.shard_bytes;
        (first..=last).map(|shard| shard as u8).collect()
    }

    /// Splits a stripe range into per-data-shard pieces, in order.
    pub fn pieces(&self, range: &StripeRange) -> ShardPieces {
        assert!(range.end() <= self.stripe_bytes());
        ShardPieces {
            shard_bytes: self.shard_bytes,
            at: range.start,
            end: range.end(),
        }
    }

    /// Plans a write of `range` into its stripe of an object that is `object_bytes` long before
    /// the write: the stripe's new length and which old data shards must be read first.
    pub fn write_plan(&self, range: &StripeRange, object_bytes: u64) -> WritePlan {
        assert!(range.len >= 1);
        assert!(range.end() <= self.stripe_bytes());
        let old_len = self.stripe_len(range.stripe, object_bytes);
        let mut read = ShardSet::EMPTY;
        for shard in 0..self.scheme.k() {
            let old = self.data_range(old_len, shard);
            let before = old.start < old.end.min(range.start);
            let after = old.start.max(range.end()) < old.end;
            if before || after {
                read.insert(shard);
            }
        }
        WritePlan {
            range: *range,
            stripe_len: old_len.max(range.end()),
            old_len,
            read,
        }
    }
}

impl WritePlan {
    /// Whether the write needs no old bytes (no read-modify-write).
    pub fn is_whole(&self) -> bool {
        self.read.is_empty()
    }

    /// Builds the new stripe content in `out` (`stripe_len` bytes): `data` over the range, old
    /// bytes below `old_len` elsewhere, zeros for the rest. `old` is the old stripe's content as
    /// read (any length; ignored when `is_whole`).
    pub fn assemble(&self, old: &[u8], data: &[u8], out: &mut [u8]) {
        assert_eq!(out.len(), self.stripe_len as usize);
        assert_eq!(data.len(), self.range.len as usize);
        let kept = if self.is_whole() {
            0
        } else {
            old.len().min(self.old_len as usize)
        };
        out[..kept].copy_from_slice(&old[..kept]);
        out[kept..].fill(0);
        out[self.range.start as usize..self.range.end() as usize].copy_from_slice(data);
    }
}

/// Iterator over the per-stripe parts of an object range (`StripeLayout::ranges`).
#[derive(Clone, Debug)]
pub struct StripeRanges {
    stripe_bytes: u64,
    origin: u64,
    at: u64,
    end: u64,
}

impl Iterator for StripeRanges {
    type Item = StripeRange;

    fn next(&mut self) -> Option<StripeRange> {
        if self.at >= self.end {
            return None;
        }
        let stripe = self.at / self.stripe_bytes;
        let start = self.at % self.stripe_bytes;
        let len = (self.stripe_bytes - start).min(self.end - self.at);
        let range = StripeRange {
            stripe: stripe as u32,
            start: start as u32,
            len: len as u32,
            buffer_offset: self.at - self.origin,
        };
        self.at += len;
        Some(range)
    }
}

/// Iterator over the per-shard pieces of a stripe range (`StripeLayout::pieces`).
#[derive(Clone, Debug)]
pub struct ShardPieces {
    shard_bytes: u32,
    at: u32,
    end: u32,
}

impl Iterator for ShardPieces {
    type Item = ShardPiece;

    fn next(&mut self) -> Option<ShardPiece> {
        if self.at >= self.end {
            return None;
        }
        let shard = self.at / self.shard_bytes;
        let shard_start = self.at % self.shard_bytes;
        let len = (self.shard_bytes - shard_start).min(self.end - self.at);
        let piece = ShardPiece {
            shard: shard as u8,
            shard_start,
            stripe_start: self.at,
            len,
        };
        self.at += len;
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{SHARDS_MAX, STRIPE_RESERVED};
    use proptest::prelude::*;

    fn layout(k: u8, m: u8, shard_bytes: u32) -> StripeLayout {
        StripeLayout::new(Scheme::new(k, m).unwrap(), shard_bytes).unwrap()
    }

    fn any_layout() -> impl Strategy<Value = StripeLayout> {
        (1..=SHARDS_MAX as u8)
            .prop_flat_map(|k| (Just(k), 0..=SHARDS_MAX as u8 - k, 8u32..=64))
            .prop_map(|(k, m, units)| layout(k, m, units * SHARD_ALIGN_BYTES))
    }

    #[test]
    fn shard_size_limits() {
        let scheme = Scheme::new(4, 2).unwrap();
        assert_eq!(
            StripeLayout::new(scheme, 1000),
            Err(LayoutError::Unaligned { shard_bytes: 1000 })
        );
        assert_eq!(
            StripeLayout::new(scheme, 64),
            Err(LayoutError::OutOfRange { shard_bytes: 64 })
        );
        assert_eq!(
            StripeLayout::new(scheme, SHARD_BYTES_MAX + 64),
            Err(LayoutError::OutOfRange {
                shard_bytes: SHARD_BYTES_MAX + 64
            })
        );
        assert_eq!(StripeLayout::for_scheme(scheme).shard_bytes(), 256 << 10);
        assert_eq!(StripeLayout::for_scheme(scheme).stripe_bytes(), 1 << 20);
        // 1 MiB / 3 rounded up to 64: stripes slightly over 1 MiB.
        let three = StripeLayout::for_scheme(Scheme::new(3, 1).unwrap());
        assert_eq!(three.shard_bytes(), 349_568);
        assert_eq!(
            StripeLayout::for_scheme(Scheme::new(64, 0).unwrap()).shard_bytes(),
            16 << 10
        );
        assert_eq!(
            StripeLayout::for_scheme(Scheme::PLAIN).shard_bytes(),
            1 << 20
        );
    }

    #[test]
    fn range_errors() {
        let layout = layout(4, 2, 1024);
        assert_eq!(
            layout.ranges(u64::MAX, 2).unwrap_err(),
            RangeError::Overflow {
                offset: u64::MAX,
                len: 2
            }
        );
        assert_eq!(
            layout.ranges(OBJECT_BYTES_MAX, 1).unwrap_err(),
            RangeError::TooLarge {
                end: OBJECT_BYTES_MAX + 1
            }
        );
        assert_eq!(layout.ranges(OBJECT_BYTES_MAX, 0).unwrap().count(), 0);
        let last = layout
            .ranges(OBJECT_BYTES_MAX - 1, 1)
            .unwrap()
            .next()
            .unwrap();
        assert!(last.stripe < STRIPE_RESERVED);
    }

    #[test]
    fn small_object_stores_little() {
        // 4 KiB object, 4+2, 256 KiB shards.
        let layout = StripeLayout::for_scheme(Scheme::new(4, 2).unwrap());
        let stripe_len = layout.stripe_len(0, 4096);
        assert_eq!(stripe_len, 4096);
        let stored: Vec<u32> = (0..6).map(|s| layout.stored_bytes(stripe_len, s)).collect();
        assert_eq!(stored, vec![4096, 0, 0, 0, 4096, 4096]);
        // 100 bytes: coded at 128 (the alignment), data shard 0 keeps its 100.
        let stored: Vec<u32> = (0..6).map(|s| layout.stored_bytes(100, s)).collect();
        assert_eq!(stored, vec![100, 0, 0, 0, 128, 128]);
        assert_eq!(layout.stripe_len(1, 4096), 0);
        assert_eq!(layout.stripe_len(0, 5 << 20), 1 << 20);
        assert_eq!(layout.stripe_len(4, (4 << 20) + 7), 7);
        assert_eq!(layout.stripe_count(0), 0);
        assert_eq!(layout.stripe_count((1 << 20) + 1), 2);
    }

    #[test]
    fn write_plans() {
        let layout = layout(4, 2, 1024);
        let one = |offset: u64, len: u64| {
            let mut ranges = layout.ranges(offset, len).unwrap();
            let range = ranges.next().unwrap();
            assert!(ranges.next().is_none());
            range
        };
        let set = |shards: &[u8]| shards.iter().copied().collect::<ShardSet>();
        // A new object's first 4 KiB: nothing old.
        let plan = layout.write_plan(&one(0, 4096), 0);
        assert!(plan.is_whole());
        assert_eq!((plan.stripe_len, plan.old_len), (4096, 0));
        // Appending inside shard 1 of a 1500-byte object: every shard is rewritten at the new version,
        // so shard 0 and the old part of shard 1 are read.
        let plan = layout.write_plan(&one(1500, 100), 1500);
        assert_eq!(plan.read, set(&[0, 1]));
        assert_eq!((plan.stripe_len, plan.old_len), (1600, 1500));
        // Overwriting the middle of a full stripe: everything but the covered shard 1.
        let plan = layout.write_plan(&one(1024, 1024), 1 << 20);
        assert_eq!(plan.read, set(&[0, 2, 3]));
        assert_eq!(plan.stripe_len, 4096);
        // Partial cover of shards 1 and 2.
        let plan = layout.write_plan(&one(1100, 1500), 1 << 20);
        assert_eq!(plan.read, set(&[0, 1, 2, 3]));
        // Covering everything old: a write past the old end of the stripe needs nothing.
        let plan = layout.write_plan(&one(0, 2000), 1000);
        assert!(plan.is_whole());
        // A sparse write at 3000 into an empty stripe: zeros before it, nothing to read.
        let plan = layout.write_plan(&one(3000, 10), 0);
        assert!(plan.is_whole());
        assert_eq!(plan.stripe_len, 3010);
        // A later stripe of a big object: whole only if it covers the stripe.
        let plan = layout.write_plan(&one(4096, 4096), 1 << 20);
        assert!(plan.is_whole());
        assert_eq!(plan.range.stripe, 1);
    }

    #[test]
    fn assemble_zeroes_past_the_old_length() {
        let layout = layout(2, 1, 512);
        let range = layout.ranges(600, 10).unwrap().next().unwrap();
        let plan = layout.write_plan(&range, 100);
        assert_eq!(plan.read, [0].into_iter().collect());
        // The old stripe as read holds junk past the recorded size (an unfinished write).
        let old = vec![7u8; 300];
        let mut out = vec![1u8; plan.stripe_len as usize];
        plan.assemble(&old, &[9; 10], &mut out);
        assert!(out[..100].iter().all(|&b| b == 7));
        assert!(out[100..600].iter().all(|&b| b == 0));
        assert!(out[600..].iter().all(|&b| b == 9));
    }

    proptest! {
        #[test]
        fn ranges_partition_exactly(
            layout in any_layout(),
            offset in 0..OBJECT_BYTES_MAX,
            stripes in 0u64..5,
            extra in 0u64..1 << 16,
        ) {
            let len = (stripes * u64::from(layout.stripe_bytes()) + extra)
                .min(OBJECT_BYTES_MAX - offset);
            let mut at = offset;
            for range in layout.ranges(offset, len).unwrap() {
                prop_assert!(range.len >= 1);
                prop_assert!(range.end() <= layout.stripe_bytes());
                prop_assert!(range.stripe < STRIPE_RESERVED);
                prop_assert_eq!(layout.stripe_start(range.stripe) + u64::from(range.start), at);
                prop_assert_eq!(range.buffer_offset, at - offset);
                prop_assert_eq!(layout.stripe_of(at), range.stripe);
                // Pieces partition the stripe range across the touched shards.
                let mut piece_at = range.start;
                let mut shards = ShardSet::EMPTY;
                for piece in layout.pieces(&range) {
                    prop_assert!(piece.len >= 1);
                    prop_assert_eq!(piece.stripe_start, piece_at);
                    prop_assert_eq!(
                        u32::from(piece.shard) * layout.shard_bytes() + piece.shard_start,
                        piece.stripe_start
                    );
                    prop_assert!(piece.shard_start + piece.len <= layout.shard_bytes());
                    prop_assert!(piece.shard < layout.scheme().k());
                    prop_assert!(!shards.contains(piece.shard));
                    shards.insert(piece.shard);
                    piece_at += piece.len;
                }
                prop_assert_eq!(piece_at, range.end());
                prop_assert_eq!(shards, layout.shards_touched(&range));
                at += u64::from(range.len);
            }
            prop_assert_eq!(at, offset + len);
        }

        #[test]
        fn data_shards_partition_a_stripe(layout in any_layout(), fraction in 0.0f64..=1.0) {
            let stripe_bytes = layout.stripe_bytes();
            let stripe_len = ((f64::from(stripe_bytes) * fraction) as u32).clamp(1, stripe_bytes);
            let coded = layout.coded_bytes(stripe_len);
            prop_assert!(coded.is_multiple_of(SHARD_ALIGN_BYTES));
            prop_assert!(coded <= layout.shard_bytes());
            let mut at = 0;
            for shard in 0..layout.scheme().k() {
                let range = layout.data_range(stripe_len, shard);
                let start = u32::from(shard) * layout.shard_bytes();
                prop_assert_eq!(range.start, start.min(stripe_len));
                prop_assert_eq!(range.end, (start + layout.shard_bytes()).min(stripe_len));
                prop_assert_eq!(range.start, at);
                prop_assert!(range.len() as u32 <= coded);
                prop_assert_eq!(layout.stored_bytes(stripe_len, shard), range.len() as u32);
                at = range.end;
            }
            prop_assert_eq!(at, stripe_len);
            for shard in layout.scheme().k()..layout.scheme().n() {
                prop_assert_eq!(layout.stored_bytes(stripe_len, shard), coded);
            }
        }

        #[test]
        fn write_plan_matches_a_byte_model(
            k in 1u8..=6,
            units in 8u32..=12,
            start_fraction in 0.0f64..1.0,
            len_fraction in 0.0f64..=1.0,
            old_fraction in 0.0f64..=1.5,
            old_read_fraction in 0.0f64..=1.5,
        ) {
            let layout = layout(k, 1, units * SHARD_ALIGN_BYTES);
            let stripe_bytes = layout.stripe_bytes();
            let start = (f64::from(stripe_bytes) * start_fraction) as u32;
            let len = ((f64::from(stripe_bytes - start) * len_fraction) as u32).max(1);
            let len = len.min(stripe_bytes - start);
            let object_bytes = (f64::from(stripe_bytes) * old_fraction) as u64;
            let range = layout.ranges(u64::from(start), u64::from(len)).unwrap().next().unwrap();
            prop_assert_eq!(range.len, len);
            let plan = layout.write_plan(&range, object_bytes);
            // The old stripe as read: bytes numbered from 1, any length (shorter when written
            // at a smaller size, longer after an unfinished grow).
            let old_read = (f64::from(stripe_bytes) * old_read_fraction.min(1.0)) as usize;
            let old: Vec<u8> = (0..old_read).map(|i| (i % 251 + 1) as u8).collect();
            let data = vec![0xEEu8; len as usize];
            let mut out = vec![0x55u8; plan.stripe_len as usize];
            plan.assemble(&old, &data, &mut out);
            let mut needed = ShardSet::EMPTY;
            for (x, &byte) in out.iter().enumerate() {
                let x32 = x as u32;
                let expected = if (start..start + len).contains(&x32) {
                    0xEE
                } else if x32 < plan.old_len {
                    needed.insert((x32 / layout.shard_bytes()) as u8);
                    old.get(x).copied().unwrap_or(0)
                } else {
                    0
                };
                prop_assert_eq!(byte, expected, "byte {}", x);
            }
            prop_assert_eq!(needed, plan.read);
            prop_assert_eq!(plan.stripe_len, plan.old_len.max(range.end()));
        }
    }
}
