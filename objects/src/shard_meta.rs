//! The shard header: what every stored shard carries so that it can be checked, placed and
//! rebuilt from the shards of its stripe alone, with no object metadata at hand (repair walks
//! what a node stores and needs nothing else). The node puts these bytes in front of the shard
//! data, or in the record's metadata.
//!
//! Encoding, format version 1: 64 bytes, every integer little-endian, `u128` as its 16-byte
//! little-endian encoding; crc32c is CRC-32C (Castagnoli) as in `docs/disk-format.md` §1.
//!
//! | offset | size | type | name | meaning, valid values |
//! |---|---|---|---|---|
//! | 0 | 4 | bytes | magic | `"DSSH"` = `44 53 53 48` |
//! | 4 | 1 | u8 | format_version | 1 |
//! | 5 | 1 | u8 | scheme_k | data shards K, ≥ 1 |
//! | 6 | 1 | u8 | scheme_m | parity shards M, K + M ≤ 64 |
//! | 7 | 1 | u8 | shard | index of this shard in its stripe, < K + M (below K: data) |
//! | 8 | 4 | u32 | shard_bytes | the object's full shard size: multiple of 64, 512 ≤ x ≤ 4 MiB |
//! | 12 | 4 | u32 | stripe | stripe index, ≠ `0xFFFF_FFFF` (the metadata record's) |
//! | 16 | 16 | u128 | object | object id |
//! | 32 | 8 | u64 | version | version of the write (`hlc::Version`), ≥ 1 |
//! | 40 | 8 | u64 | object_bytes | object size when the stripe was written; `stripe · K · shard_bytes < object_bytes ≤ 2^40` (the stripe holds at least one byte) |
//! | 48 | 12 | — | reserved | zero |
//! | 60 | 4 | u32 | crc | crc32c over `[0, 60)` |
//!
//! Reserved bytes are written as zero, not checked on read, and covered by the crc.
//!
//! Decode order: length ≥ 64, magic, crc, format_version, then the fields in offset order
//! (scheme, shard, shard_bytes, stripe, version, object_bytes). The first check that fails
//! names the error; decoding never panics, whatever the bytes.
//!
//! Derived from the header alone: the stripe's length `L = min(K · shard_bytes, object_bytes −
//! stripe · K · shard_bytes)`, and the shard's stored length (`StripeLayout::stored_bytes`):
//! a data shard's bytes below `L`, a parity shard `coded_bytes(L)`. Every shard of one stripe
//! version carries the same header but for `shard`.
//!
//! Example: object 0x0123456789ABCDEFFEDCBA9876543210, stripe 7, shard 5 of 4+2 with 256 KiB
//! shards, version 42, object_bytes 7 340 033 (stripe 7 is 1 byte long):
//!
//! ```text
//! 0000: 44 53 53 48 01 04 02 05 00 00 04 00 07 00 00 00
//! 0010: 10 32 54 76 98 ba dc fe ef cd ab 89 67 45 23 01
//! 0020: 2a 00 00 00 00 00 00 00 01 00 70 00 00 00 00 00
//! 0030: 00 00 00 00 00 00 00 00 00 00 00 00 e4 7e ab b5
//! ```

use crate::hlc::Version;
use crate::limits::{OBJECT_BYTES_MAX, SHARD_META_BYTES, STRIPE_RESERVED};
use crate::scheme::{Scheme, SchemeError};
use crate::stripe::{LayoutError, StripeLayout};

/// "DSSH" read as little-endian u32.
pub const SHARD_META_MAGIC: u32 = u32::from_le_bytes(*b"DSSH");
pub const SHARD_META_FORMAT_VERSION: u8 = 1;

const CRC_OFFSET: usize = SHARD_META_BYTES - 4;
const _: () = assert!(SHARD_META_BYTES == 64);

/// The header of one stored shard. `encode` requires it to be valid (`validate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShardMeta {
    pub object: u128,
    pub stripe: u32,
    /// Index in the stripe: `0..K` data, `K..K+M` parity.
    pub shard: u8,
    /// Scheme and full shard size of the object.
    pub layout: StripeLayout,
    pub version: Version,
    /// Size of the object when this stripe was written.
    pub object_bytes: u64,
}

/// Why bytes are not a valid shard header (or a header is not valid to encode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardMetaError {
    /// Fewer than 64 bytes.
    #[error("shard header needs {SHARD_META_BYTES} bytes, got {len}")]
    Truncated { len: usize },
    /// Not a shard header at all.
    #[error("no shard header here (magic {found:#010x})")]
    Magic { found: u32 },
    /// Damaged: the crc does not match.
    #[error("shard header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    /// Written by another format version.
    #[error("shard header format version {found} is not supported (this build reads {SHARD_META_FORMAT_VERSION})")]
    FormatVersion { found: u8 },
    /// K and M are not a valid scheme.
    #[error("shard header scheme: {0}")]
    Scheme(SchemeError),
    /// The shard index is not below K + M.
    #[error("shard index {shard} is not below the scheme's {shards} shards")]
    ShardIndex { shard: u8, shards: u8 },
    /// The shard size is not a valid one.
    #[error("shard header shard size: {0}")]
    Layout(LayoutError),
    /// The stripe index is the one reserved for object metadata.
    #[error("stripe index {STRIPE_RESERVED:#x} is reserved for object metadata")]
    ReservedStripe,
    /// Version 0 is below every version a clock hands out.
    #[error("shard version 0 is never written")]
    ZeroVersion,
    /// The object size leaves the stripe empty, or is past the object size limit.
    #[error("object size {object_bytes} does not reach into stripe {stripe} or exceeds {OBJECT_BYTES_MAX}")]
    ObjectBytes { object_bytes: u64, stripe: u32 },
}

impl ShardMeta {
    /// Checks the fields a caller may have set freely (the layout is valid by construction).
    pub fn validate(&self) -> Result<(), ShardMetaError> {
        let shards = self.layout.scheme().n();
        if self.shard >= shards {
            return Err(ShardMetaError::ShardIndex {
                shard: self.shard,
                shards,
            });
        }
        if self.stripe == STRIPE_RESERVED {
            return Err(ShardMetaError::ReservedStripe);
        }
        if self.version == Version::ZERO {
            return Err(ShardMetaError::ZeroVersion);
        }
        let stripe_start = self.layout.stripe_start(self.stripe);
        if self.object_bytes <= stripe_start || self.object_bytes > OBJECT_BYTES_MAX {
            return Err(ShardMetaError::ObjectBytes {
                object_bytes: self.object_bytes,
                stripe: self.stripe,
            });
        }
        Ok(())
    }

    /// The stripe's length when this shard was written (≥ 1).
    pub fn stripe_len(&self) -> u32 {
        self.layout.stripe_len(self.stripe, self.object_bytes)
    }

    /// How many shard bytes should follow this header.
    pub fn stored_bytes(&self) -> u32 {
        self.layout.stored_bytes(self.stripe_len(), self.shard)
    }

    /// Whether `other` is another shard of the same stripe version (same header but the index):
    /// only such shards may be decoded together.
    pub fn same_stripe_version(&self, other: &ShardMeta) -> bool {
        ShardMeta {
            shard: self.shard,
            ..*other
        } == *self
    }

    pub fn encode(&self) -> [u8; SHARD_META_BYTES] {
        self.validate()
            .expect("only valid shard headers are encoded");
        let scheme = self.layout.scheme();
        let mut bytes = [0u8; SHARD_META_BYTES];
        bytes[0..4].copy_from_slice(&SHARD_META_MAGIC.to_le_bytes());
        bytes[4] = SHARD_META_FORMAT_VERSION;
        bytes[5] = scheme.k();
        bytes[6] = scheme.m();
        bytes[7] = self.shard;
        bytes[8..12].copy_from_slice(&self.layout.shard_bytes().to_le_bytes());
        bytes[12..16].copy_from_slice(&self.stripe.to_le_bytes());
        bytes[16..32].copy_from_slice(&self.object.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.version.as_u64().to_le_bytes());
        bytes[40..48].copy_from_slice(&self.object_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..CRC_OFFSET]);
        bytes[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(Self::decode(&bytes), Ok(*self));
        bytes
    }

    /// Decodes the header at the start of `bytes` (shard data may follow it).
    pub fn decode(bytes: &[u8]) -> Result<Self, ShardMetaError> {
        let Some(bytes) = bytes.first_chunk::<SHARD_META_BYTES>() else {
            return Err(ShardMetaError::Truncated { len: bytes.len() });
        };
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let magic = u32_at(0);
        if magic != SHARD_META_MAGIC {
            return Err(ShardMetaError::Magic { found: magic });
        }
        let stored = u32_at(CRC_OFFSET);
        let computed = crc32c::crc32c(&bytes[..CRC_OFFSET]);
        if stored != computed {
            return Err(ShardMetaError::Checksum { stored, computed });
        }
        if bytes[4] != SHARD_META_FORMAT_VERSION {
            return Err(ShardMetaError::FormatVersion { found: bytes[4] });
        }
        let scheme = Scheme::new(bytes[5], bytes[6]).map_err(ShardMetaError::Scheme)?;
        let shard = bytes[7];
        if shard >= scheme.n() {
            return Err(ShardMetaError::ShardIndex {
                shard,
                shards: scheme.n(),
            });
        }
        let layout = StripeLayout::new(scheme, u32_at(8)).map_err(ShardMetaError::Layout)?;
        let meta = ShardMeta {
            object: u128::from_le_bytes(bytes[16..32].try_into().expect("16")),
            stripe: u32_at(12),
            shard,
            layout,
            version: Version::from_u64(u64_at(32)),
            object_bytes: u64_at(40),
        };
        meta.validate()?;
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{SHARDS_MAX, SHARD_ALIGN_BYTES, SHARD_BYTES_MAX, SHARD_BYTES_MIN};
    use proptest::prelude::*;

    fn example() -> ShardMeta {
        let layout = StripeLayout::new(Scheme::new(4, 2).unwrap(), 256 << 10).unwrap();
        ShardMeta {
            object: 0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210,
            stripe: 7,
            shard: 5,
            layout,
            version: Version::from_u64(42),
            object_bytes: 7 * (1 << 20) + 1,
        }
    }

    fn hex_dump(bytes: &[u8]) -> String {
        let mut out = String::new();
        for (row, chunk) in bytes.chunks(16).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            out.push_str(&format!("{:04x}: {}\n", row * 16, hex.join(" ")));
        }
        out
    }

    #[test]
    fn example_encoding() {
        let meta = example();
        let bytes = meta.encode();
        let expected = "\
            0000: 44 53 53 48 01 04 02 05 00 00 04 00 07 00 00 00\n\
            0010: 10 32 54 76 98 ba dc fe ef cd ab 89 67 45 23 01\n\
            0020: 2a 00 00 00 00 00 00 00 01 00 70 00 00 00 00 00\n\
            0030: 00 00 00 00 00 00 00 00 00 00 00 00 e4 7e ab b5\n";
        assert_eq!(hex_dump(&bytes), expected);
        assert_eq!(meta.stripe_len(), 1);
        assert_eq!(meta.stored_bytes(), 64);
        assert_eq!(ShardMeta::decode(&bytes), Ok(meta));
        // Shard data may follow the header.
        let mut with_data = bytes.to_vec();
        with_data.extend_from_slice(&[0xAB; 64]);
        assert_eq!(ShardMeta::decode(&with_data), Ok(meta));
    }

    /// Re-encodes `bytes` with a fresh crc, so a field check is reached.
    fn resealed(mut bytes: [u8; 64]) -> [u8; 64] {
        let crc = crc32c::crc32c(&bytes[..60]);
        bytes[60..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn every_check_has_its_error() {
        let good = example().encode();
        assert_eq!(
            ShardMeta::decode(&good[..63]),
            Err(ShardMetaError::Truncated { len: 63 })
        );
        let mut bytes = good;
        bytes[0] = b'X';
        assert!(matches!(
            ShardMeta::decode(&bytes),
            Err(ShardMetaError::Magic { .. })
        ));
        let mut bytes = good;
        bytes[40] ^= 1;
        assert!(matches!(
            ShardMeta::decode(&bytes),
            Err(ShardMetaError::Checksum { .. })
        ));
        let mut bytes = good;
        bytes[4] = 2;
        assert_eq!(
            ShardMeta::decode(&resealed(bytes)),
            Err(ShardMetaError::FormatVersion { found: 2 })
        );
        let mut bytes = good;
        bytes[5] = 0;
        assert_eq!(
            ShardMeta::decode(&resealed(bytes)),
            Err(ShardMetaError::Scheme(SchemeError::NoDataShards {
                k: 0,
                m: 2
            }))
        );
        let mut bytes = good;
        bytes[6] = 61;
        assert_eq!(
            ShardMeta::decode(&resealed(bytes)),
            Err(ShardMetaError::Scheme(SchemeError::TooManyShards {
                k: 4,
                m: 61
            }))
        );
        let mut bytes = good;
        bytes[7] = 6;
        assert_eq!(
            ShardMeta::decode(&resealed(bytes)),
            Err(ShardMetaError::ShardIndex {
                shard: 6,
                shards: 6
            })
        );
        let mut bytes = good;
        bytes[8] = 1;
        assert!(matches!(
            ShardMeta::decode(&resealed(bytes)),
            Err(ShardMetaError::Layout(LayoutError::Unaligned { .. }))
        ));
        let mut bytes = good;
        bytes[12..16].copy_from_slice(&STRIPE_RESERVED.to_le_bytes());
        assert_eq!(
            ShardMeta::decode(&resealed(bytes)),
            Err(ShardMetaError::ReservedStripe)
        );
        let mut bytes = good;
        bytes[32..40].fill(0);
        assert_eq!(
            ShardMeta::decode(&resealed(bytes)),
            Err(ShardMetaError::ZeroVersion)
        );
        let mut bytes = good;
        bytes[40..48].copy_from_slice(&(7u64 << 20).to_le_bytes());
        assert_eq!(
            ShardMeta::decode(&resealed(bytes)),
            Err(ShardMetaError::ObjectBytes {
                object_bytes: 7 << 20,
                stripe: 7
            })
        );
        // Reserved bytes are not checked (but are covered by the crc).
        let mut bytes = good;
        bytes[50] = 1;
        assert_eq!(ShardMeta::decode(&resealed(bytes)), Ok(example()));
    }

    #[test]
    fn same_stripe_version() {
        let meta = example();
        let sibling = ShardMeta { shard: 0, ..meta };
        assert!(meta.same_stripe_version(&sibling));
        let newer = ShardMeta {
            version: Version::from_u64(43),
            ..sibling
        };
        assert!(!meta.same_stripe_version(&newer));
    }

    fn any_meta() -> impl Strategy<Value = ShardMeta> {
        let min = SHARD_BYTES_MIN / SHARD_ALIGN_BYTES;
        let max = SHARD_BYTES_MAX / SHARD_ALIGN_BYTES;
        (1..=SHARDS_MAX as u8)
            .prop_flat_map(move |k| (Just(k), 0..=SHARDS_MAX as u8 - k, min..=max))
            .prop_flat_map(|(k, m, units)| {
                let layout =
                    StripeLayout::new(Scheme::new(k, m).unwrap(), units * SHARD_ALIGN_BYTES)
                        .unwrap();
                let stripes = layout.stripe_count(OBJECT_BYTES_MAX);
                (
                    Just(layout),
                    0..k + m,
                    0..stripes,
                    any::<u128>(),
                    1..=u64::MAX,
                    any::<u64>(),
                )
            })
            .prop_map(|(layout, shard, stripe, object, version, size_seed)| {
                let start = layout.stripe_start(stripe as u32);
                let object_bytes = start + 1 + size_seed % (OBJECT_BYTES_MAX - start);
                ShardMeta {
                    object,
                    stripe: stripe as u32,
                    shard,
                    layout,
                    version: Version::from_u64(version),
                    object_bytes,
                }
            })
    }

    proptest! {
        #[test]
        fn roundtrip(meta in any_meta()) {
            prop_assert_eq!(meta.validate(), Ok(()));
            let bytes = meta.encode();
            prop_assert_eq!(ShardMeta::decode(&bytes), Ok(meta));
            prop_assert!(meta.stripe_len() >= 1);
            prop_assert!(meta.stored_bytes() <= meta.layout.shard_bytes());
        }

        #[test]
        fn any_bit_flip_is_caught(meta in any_meta(), bit in 0usize..64 * 8) {
            let mut bytes = meta.encode();
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(ShardMeta::decode(&bytes).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = ShardMeta::decode(&bytes);
        }

        #[test]
        fn sealed_arbitrary_fields_never_panic(mut bytes in proptest::array::uniform32(any::<u8>())) {
            // Past magic and crc, so every field check sees garbage.
            let mut header = [0u8; 64];
            header[..32].copy_from_slice(&bytes);
            bytes.reverse();
            header[32..64].copy_from_slice(&bytes);
            header[0..4].copy_from_slice(&SHARD_META_MAGIC.to_le_bytes());
            header[4] = SHARD_META_FORMAT_VERSION;
            if let Ok(meta) = ShardMeta::decode(&resealed(header)) {
                prop_assert_eq!(meta.validate(), Ok(()));
            }
        }
    }
}
