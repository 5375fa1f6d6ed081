//! The metadata record of an object: scheme, stripe size, size, where its shards live, and
//! whether it is deleted. Every node of the object's metadata set keeps a copy as the data of
//! shard record (object, [`META_STRIPE`], 0). Copies are merged, never overwritten: the size
//! only grows, a deletion is never undone, so copies that missed updates converge whatever
//! order the updates reach them in (`merge`). Layout (little-endian, `docs/disk-format.md` §9):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `DSOM` |
//! | 4..6 | format version (2; format 1 is still read) |
//! | 6 | K (data shards) |
//! | 7 | M (parity shards) |
//! | 8..12 | stripe bytes (object bytes per stripe, K × shard bytes) |
//! | 12 | flags: bit 0 deleted |
//! | 13 | placement count P (0 or K + M) |
//! | 14..16 | reserved, zero |
//! | 16..24 | object size in bytes |
//! | 24..32 | creation time, ns since the Unix epoch |
//! | 32..40 | generation: the version CREATE gave the object |
//! | 40..48 | placement version: bumped by every move of shards (repair, join, drain) |
//! | 48..48+16P | node id holding shard i, for i in 0..P |
//! | 48+16P..52+16P | crc32c of every byte before |

use ds_proto::{Scheme, SchemeError};
use thiserror::Error;

/// The stripe number that holds an object's metadata record instead of data.
pub const META_STRIPE: u32 = u32::MAX;
/// Bytes of a format 1 record (single node, before the cluster).
const V1_BYTES: usize = 40;
const FIXED_BYTES: usize = 48;
const MAGIC: [u8; 4] = *b"DSOM";
const FORMAT: u16 = 2;
const FLAG_DELETED: u8 = 1;
/// Most shards a scheme has, so most entries in a placement.
pub const PLACEMENT_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub scheme_k: u8,
    pub scheme_m: u8,
    pub stripe_bytes: u32,
    pub size: u64,
    pub created_ns: u64,
    pub generation: u64,
    pub deleted: bool,
    /// Which placement this is: a move of shards writes a higher one, and the higher wins.
    pub placement_version: u64,
    /// The node holding shard i of every stripe. Empty in format 1 records: all on this node.
    pub placement: Vec<u128>,
    /// Version of the local record this was read from or written as (from the record header).
    pub version: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MetaError {
    #[error("object metadata is {0} bytes, which no format has")]
    Length(usize),
    #[error("object metadata has a bad magic")]
    Magic,
    #[error(
        "object metadata format {0} is not supported (this build reads formats 1 and {FORMAT})"
    )]
    Format(u16),
    #[error("object metadata fails its checksum")]
    Checksum,
    #[error("object metadata has a stripe size of 0")]
    StripeBytes,
    #[error("object metadata has an invalid scheme: {0}")]
    Scheme(SchemeError),
    #[error("object metadata places {placed} shards, but its scheme {k}+{m} has {}", *k as usize + *m as usize)]
    Placement { placed: usize, k: u8, m: u8 },
}

impl ObjectMeta {
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.placement.len() <= PLACEMENT_MAX);
        let mut b = vec![0u8; FIXED_BYTES + 16 * self.placement.len() + 4];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&FORMAT.to_le_bytes());
        b[6] = self.scheme_k;
        b[7] = self.scheme_m;
        b[8..12].copy_from_slice(&self.stripe_bytes.to_le_bytes());
        b[12] = if self.deleted { FLAG_DELETED } else { 0 };
        b[13] = self.placement.len() as u8;
        b[16..24].copy_from_slice(&self.size.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_ns.to_le_bytes());
        b[32..40].copy_from_slice(&self.generation.to_le_bytes());
        b[40..48].copy_from_slice(&self.placement_version.to_le_bytes());
        for (i, node) in self.placement.iter().enumerate() {
            b[FIXED_BYTES + 16 * i..FIXED_BYTES + 16 * (i + 1)]
                .copy_from_slice(&node.to_le_bytes());
        }
        let end = b.len() - 4;
        let crc = crc32c::crc32c(&b[..end]);
        b[end..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a record's data; `version` comes from the record header.
    pub fn decode(b: &[u8], version: u64) -> Result<Self, MetaError> {
        if b.len() < V1_BYTES {
            return Err(MetaError::Length(b.len()));
        }
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if b[0..4] != MAGIC {
            return Err(MetaError::Magic);
        }
        let meta = match u16_at(4) {
            1 => {
                if b.len() != V1_BYTES {
                    return Err(MetaError::Length(b.len()));
                }
                if crc32c::crc32c(&b[0..32]) != u32_at(32) {
                    return Err(MetaError::Checksum);
                }
                Self {
                    scheme_k: b[6],
                    scheme_m: b[7],
                    stripe_bytes: u32_at(8),
                    size: u64_at(16),
                    created_ns: u64_at(24),
                    generation: version,
                    deleted: false,
                    placement_version: 0,
                    placement: Vec::new(),
                    version,
                }
            }
            FORMAT => {
                let placed = usize::from(b[13]);
                if b.len() != FIXED_BYTES + 16 * placed + 4 {
                    return Err(MetaError::Length(b.len()));
                }
                let end = b.len() - 4;
                if crc32c::crc32c(&b[..end]) != u32_at(end) {
                    return Err(MetaError::Checksum);
                }
                let placement = (0..placed)
                    .map(|i| {
                        let at = FIXED_BYTES + 16 * i;
                        u128::from_le_bytes(b[at..at + 16].try_into().expect("16 bytes"))
                    })
                    .collect();
                Self {
                    scheme_k: b[6],
                    scheme_m: b[7],
                    stripe_bytes: u32_at(8),
                    size: u64_at(16),
                    created_ns: u64_at(24),
                    generation: u64_at(32),
                    deleted: b[12] & FLAG_DELETED != 0,
                    placement_version: u64_at(40),
                    placement,
                    version,
                }
            }
            other => return Err(MetaError::Format(other)),
        };
        if meta.stripe_bytes == 0 {
            return Err(MetaError::StripeBytes);
        }
        // A valid scheme also bounds the placement (K + M entries) to what `encode` writes.
        Scheme::new(meta.scheme_k, meta.scheme_m).map_err(MetaError::Scheme)?;
        let shards = usize::from(meta.scheme_k) + usize::from(meta.scheme_m);
        if !meta.placement.is_empty() && meta.placement.len() != shards {
            return Err(MetaError::Placement {
                placed: meta.placement.len(),
                k: meta.scheme_k,
                m: meta.scheme_m,
            });
        }
        Ok(meta)
    }

    /// Stripes that hold bytes of the object.
    pub fn stripes(&self) -> u64 {
        self.size.div_ceil(u64::from(self.stripe_bytes))
    }

    /// Folds another copy of this object's record into this one: the later generation wins
    /// whole; within one, the size is the largest and a deletion sticks. Commutative,
    /// associative and idempotent, so copies converge in any order. Returns whether `self`
    /// changed. The local `version` is left alone.
    pub fn merge(&mut self, other: &ObjectMeta) -> bool {
        if other.generation > self.generation {
            let version = self.version;
            *self = other.clone();
            self.version = version;
            return true;
        }
        if other.generation < self.generation {
            return false;
        }
        let before = (
            self.size,
            self.deleted,
            self.placement_version,
            self.placement.clone(),
        );
        self.size = self.size.max(other.size);
        self.deleted |= other.deleted;
        // The higher placement version wins; at equal versions the larger ids decide, so two
        // moves that raced still converge to one placement.
        if (other.placement_version, &other.placement) > (self.placement_version, &self.placement) {
            self.placement_version = other.placement_version;
            self.placement.clone_from(&other.placement);
        }
        before
            != (
                self.size,
                self.deleted,
                self.placement_version,
                self.placement.clone(),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(size: u64, deleted: bool, generation: u64) -> ObjectMeta {
        ObjectMeta {
            scheme_k: 4,
            scheme_m: 2,
            stripe_bytes: 1 << 20,
            size,
            created_ns: 6,
            generation,
            deleted,
            placement_version: 0,
            placement: (1..=6).collect(),
            version: 7,
        }
    }

    proptest! {
        #[test]
        fn roundtrip(k in 1u8..=32, m in 0u8..32, stripe in 1u32.., size: u64, created: u64,
                     generation: u64, deleted: bool, version: u64, placed: bool) {
            let placement = if placed { (0..u128::from(k + m)).map(|i| i * 977).collect() } else { Vec::new() };
            let meta = ObjectMeta { scheme_k: k, scheme_m: m, stripe_bytes: stripe, size, created_ns: created,
                                    generation, deleted, placement_version: generation ^ size, placement, version };
            prop_assert_eq!(ObjectMeta::decode(&meta.encode(), version), Ok(meta));
        }

        #[test]
        fn any_flipped_bit_is_caught(bit in 0usize..((FIXED_BYTES + 6 * 16 + 4) * 8)) {
            let mut b = sample(5, false, 9).encode();
            b[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(ObjectMeta::decode(&b, 7).is_err());
        }

        #[test]
        fn merging_converges_in_any_order(updates in proptest::collection::vec((0u64..100, any::<bool>(), 1u64..3), 1..8),
                                          seed: u64) {
            let copies: Vec<ObjectMeta> = updates.iter().map(|&(s, d, g)| sample(s, d, g)).collect();
            let mut forward = copies[0].clone();
            for copy in &copies { forward.merge(copy); }
            let mut shuffled = copies.clone();
            let len = shuffled.len();
            shuffled.rotate_left(seed as usize % len);
            shuffled.reverse();
            let mut backward = shuffled[0].clone();
            for copy in &shuffled { backward.merge(copy); backward.merge(copy); }
            prop_assert_eq!(forward, backward);
        }
    }

    #[test]
    fn format_1_records_still_read() {
        let mut b = [0u8; V1_BYTES];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&1u16.to_le_bytes());
        b[6] = 1;
        b[8..12].copy_from_slice(&(1u32 << 20).to_le_bytes());
        b[16..24].copy_from_slice(&77u64.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        let meta = ObjectMeta::decode(&b, 5).unwrap();
        assert_eq!(
            (meta.size, meta.generation, meta.placement.len()),
            (77, 5, 0)
        );
    }

    #[test]
    fn a_deletion_is_never_undone_by_a_growth() {
        let mut copy = sample(10, true, 1);
        assert!(!copy.merge(&sample(5, false, 1)));
        assert!(copy.merge(&sample(50, false, 1)));
        assert!(copy.deleted);
        assert_eq!(copy.size, 50);
    }

    /// Found by the `meta_record` fuzz target: a record whose crc holds but whose scheme has
    /// more shards than any scheme may (here 60+5, with 65 placement entries) was accepted, and
    /// encoding it again (a merge writes it back) hit `encode`'s placement limit.
    #[test]
    fn records_with_an_invalid_scheme_are_refused() {
        for (k, m) in [(60u8, 5u8), (0, 3)] {
            let placed = usize::from(k) + usize::from(m);
            let mut b = vec![0u8; FIXED_BYTES + 16 * placed + 4];
            b[0..4].copy_from_slice(&MAGIC);
            b[4..6].copy_from_slice(&FORMAT.to_le_bytes());
            b[6] = k;
            b[7] = m;
            b[8..12].copy_from_slice(&(1u32 << 20).to_le_bytes());
            b[13] = placed as u8;
            let end = b.len() - 4;
            let crc = crc32c::crc32c(&b[..end]);
            b[end..].copy_from_slice(&crc.to_le_bytes());
            let error = ObjectMeta::decode(&b, 1).unwrap_err();
            assert!(matches!(error, MetaError::Scheme(_)), "{k}+{m}: {error:?}");
        }
    }

    #[test]
    fn bad_lengths_are_named() {
        assert_eq!(ObjectMeta::decode(&[0; 3], 1), Err(MetaError::Length(3)));
    }
}
