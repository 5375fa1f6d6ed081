//! The metadata record of an object: what CREATE writes and PUT grows. It is stored as the data
//! of shard record (object, [`META_STRIPE`], 0) on the core that owns that key; the record
//! header carries its version. Layout (little-endian, 40 bytes, `docs/disk-format.md` §9):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `DSOM` |
//! | 4..6 | format version (1) |
//! | 6 | K (data shards) |
//! | 7 | M (parity shards) |
//! | 8..12 | stripe bytes (object bytes per stripe) |
//! | 12..16 | reserved, zero |
//! | 16..24 | object size in bytes |
//! | 24..32 | creation time, ns since the Unix epoch |
//! | 32..36 | crc32c of bytes 0..32 |
//! | 36..40 | reserved, zero |

use thiserror::Error;

/// The stripe number that holds an object's metadata record instead of data.
pub const META_STRIPE: u32 = u32::MAX;
pub const META_BYTES: usize = 40;
const MAGIC: [u8; 4] = *b"DSOM";
const FORMAT: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub scheme_k: u8,
    pub scheme_m: u8,
    pub stripe_bytes: u32,
    pub size: u64,
    pub created_ns: u64,
    /// Version of the record this was read from or written as (from the record header).
    pub version: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MetaError {
    #[error("object metadata is {0} bytes, not {META_BYTES}")]
    Length(usize),
    #[error("object metadata has a bad magic")]
    Magic,
    #[error("object metadata format {0} is not supported (this build reads format {FORMAT})")]
    Format(u16),
    #[error("object metadata fails its checksum")]
    Checksum,
    #[error("object metadata has a stripe size of 0")]
    StripeBytes,
}

impl ObjectMeta {
    pub fn encode(&self) -> [u8; META_BYTES] {
        let mut b = [0u8; META_BYTES];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&FORMAT.to_le_bytes());
        b[6] = self.scheme_k;
        b[7] = self.scheme_m;
        b[8..12].copy_from_slice(&self.stripe_bytes.to_le_bytes());
        b[16..24].copy_from_slice(&self.size.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_ns.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a record's data; `version` comes from the record header.
    pub fn decode(b: &[u8], version: u64) -> Result<Self, MetaError> {
        if b.len() != META_BYTES {
            return Err(MetaError::Length(b.len()));
        }
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if b[0..4] != MAGIC {
            return Err(MetaError::Magic);
        }
        if u16_at(4) != FORMAT {
            return Err(MetaError::Format(u16_at(4)));
        }
        if crc32c::crc32c(&b[0..32]) != u32_at(32) {
            return Err(MetaError::Checksum);
        }
        let meta = Self {
            scheme_k: b[6],
            scheme_m: b[7],
            stripe_bytes: u32_at(8),
            size: u64_at(16),
            created_ns: u64_at(24),
            version,
        };
        if meta.stripe_bytes == 0 {
            return Err(MetaError::StripeBytes);
        }
        Ok(meta)
    }

    /// Stripes that hold bytes of the object.
    pub fn stripes(&self) -> u64 {
        self.size.div_ceil(u64::from(self.stripe_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(k in 1u8..=64, m in 0u8..64, stripe in 1u32.., size: u64, created: u64, version: u64) {
            let meta = ObjectMeta { scheme_k: k, scheme_m: m, stripe_bytes: stripe, size, created_ns: created, version };
            prop_assert_eq!(ObjectMeta::decode(&meta.encode(), version), Ok(meta));
        }

        #[test]
        fn any_flipped_bit_is_caught(bit in 0usize..(32 * 8)) {
            let meta = ObjectMeta { scheme_k: 1, scheme_m: 0, stripe_bytes: 1 << 20, size: 5, created_ns: 6, version: 7 };
            let mut b = meta.encode();
            b[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(ObjectMeta::decode(&b, 7).is_err());
        }
    }

    #[test]
    fn bad_lengths_are_named() {
        assert_eq!(ObjectMeta::decode(&[0; 3], 1), Err(MetaError::Length(3)));
    }
}
