//! The record: the unit appended to a segment. A 96-byte header, then the data, padded to the
//! device block. Specified byte by byte in `docs/disk-format.md`.
//!
//! A header is valid only if its magic, version and crc32c match; the data is valid only if its
//! own crc32c matches. Both checks run on every read: a record that fails them is never returned.

use crate::key::ShardKey;
use crate::limits::{RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES};

/// "DSRC" read as little-endian u32.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"DSRC");
pub const RECORD_FORMAT_VERSION: u8 = 1;

const HEADER_CRC_OFFSET: usize = RECORD_HEADER_BYTES - 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A shard's bytes.
    Shard = 1,
    /// The shard was deleted at this version; no data.
    Tombstone = 2,
    /// The shard at this version was found corrupt; no data. Reads say corrupt, older versions
    /// stay shadowed; a repair may rewrite it at its own version, any write at a newer one.
    Damaged = 3,
}

/// What the erasure code needs to rebuild a stripe from its shards alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ShardMeta {
    /// Version of the write (a hybrid logical clock in the cluster); higher wins.
    pub version: u64,
    /// Data shards of the scheme (K).
    pub scheme_k: u8,
    /// Parity shards of the scheme (M).
    pub scheme_m: u8,
    /// Size of the whole object when this shard was written.
    pub object_bytes: u64,
}

/// The decoded header of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordKind,
    pub key: ShardKey,
    pub meta: ShardMeta,
    pub data_bytes: u32,
    pub data_crc: u32,
    /// Sequence number of the segment incarnation the record was written into. A record left
    /// over from an earlier use of the same segment carries an older number and is ignored.
    pub segment_seq: u64,
    /// Log sequence number, unique and increasing per core across all its devices.
    pub lsn: u64,
    /// For a tombstone, the lsn of the original delete (kept when compaction copies it).
    pub born_lsn: u64,
    /// The low 64 bits of the device uuid: a record written before the device was formatted
    /// again carries another tag and is never taken for a live one.
    pub device_tag: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no record here (magic {found:#010x})")]
    Magic { found: u32 },
    #[error(
        "record format version {found} is not supported (this build reads {RECORD_FORMAT_VERSION})"
    )]
    Version { found: u8 },
    #[error("record header checksum mismatch")]
    Checksum,
    #[error("record header field {field} is invalid")]
    Field { field: &'static str },
}

impl RecordHeader {
    /// Bytes the record occupies on disk: header plus data, rounded up to the block.
    pub fn disk_bytes(&self, block_bytes: u32) -> u64 {
        record_disk_bytes(self.data_bytes as usize, block_bytes)
    }

    pub fn encode(&self, out: &mut [u8]) {
        assert!(out.len() >= RECORD_HEADER_BYTES);
        assert!(self.data_bytes as usize <= RECORD_DATA_BYTES_MAX);
        assert!(self.kind == RecordKind::Shard || self.data_bytes == 0);
        let out = &mut out[..RECORD_HEADER_BYTES];
        out.fill(0);
        out[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        out[4] = RECORD_FORMAT_VERSION;
        out[5] = self.kind as u8;
        out[6] = self.key.shard;
        out[7] = self.meta.scheme_k;
        out[8] = self.meta.scheme_m;
        out[12..16].copy_from_slice(&self.data_bytes.to_le_bytes());
        out[16..32].copy_from_slice(&self.key.object.to_le_bytes());
        out[32..36].copy_from_slice(&self.key.stripe.to_le_bytes());
        out[36..40].copy_from_slice(&self.data_crc.to_le_bytes());
        out[40..48].copy_from_slice(&self.meta.version.to_le_bytes());
        out[48..56].copy_from_slice(&self.meta.object_bytes.to_le_bytes());
        out[56..64].copy_from_slice(&self.segment_seq.to_le_bytes());
        out[64..72].copy_from_slice(&self.lsn.to_le_bytes());
        out[72..80].copy_from_slice(&self.born_lsn.to_le_bytes());
        out[80..88].copy_from_slice(&self.device_tag.to_le_bytes());
        let crc = crc32c::crc32c(&out[..HEADER_CRC_OFFSET]);
        out[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        if bytes.len() < RECORD_HEADER_BYTES {
            return Err(HeaderError::Field { field: "length" });
        }
        let bytes = &bytes[..RECORD_HEADER_BYTES];
        let magic = u32_at(bytes, 0);
        if magic != RECORD_MAGIC {
            return Err(HeaderError::Magic { found: magic });
        }
        let crc = u32_at(bytes, HEADER_CRC_OFFSET);
        if crc32c::crc32c(&bytes[..HEADER_CRC_OFFSET]) != crc {
            return Err(HeaderError::Checksum);
        }
        if bytes[4] != RECORD_FORMAT_VERSION {
            return Err(HeaderError::Version { found: bytes[4] });
        }
        let kind = match bytes[5] {
            1 => RecordKind::Shard,
            2 => RecordKind::Tombstone,
            3 => RecordKind::Damaged,
            _ => return Err(HeaderError::Field { field: "kind" }),
        };
        let data_bytes = u32_at(bytes, 12);
        if data_bytes as usize > RECORD_DATA_BYTES_MAX {
            return Err(HeaderError::Field {
                field: "data_bytes",
            });
        }
        if kind != RecordKind::Shard && data_bytes != 0 {
            return Err(HeaderError::Field {
                field: "data_bytes",
            });
        }
        Ok(Self {
            kind,
            key: ShardKey {
                object: u128::from_le_bytes(bytes[16..32].try_into().expect("16 bytes")),
                stripe: u32_at(bytes, 32),
                shard: bytes[6],
            },
            meta: ShardMeta {
                version: u64_at(bytes, 40),
                scheme_k: bytes[7],
                scheme_m: bytes[8],
                object_bytes: u64_at(bytes, 48),
            },
            data_bytes,
            data_crc: u32_at(bytes, 36),
            segment_seq: u64_at(bytes, 56),
            lsn: u64_at(bytes, 64),
            born_lsn: u64_at(bytes, 72),
            device_tag: u64_at(bytes, 80),
        })
    }
}

/// Bytes a record of `data_bytes` occupies on disk.
pub fn record_disk_bytes(data_bytes: usize, block_bytes: u32) -> u64 {
    ((RECORD_HEADER_BYTES + data_bytes) as u64).next_multiple_of(u64::from(block_bytes))
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header_strategy() -> impl Strategy<Value = RecordHeader> {
        (
            any::<u128>(),
            any::<u32>(),
            any::<u8>(),
            any::<[u64; 5]>(),
            0..=RECORD_DATA_BYTES_MAX as u32,
            any::<bool>(),
        )
            .prop_map(
                |(object, stripe, shard, n, data_bytes, tomb)| RecordHeader {
                    kind: if tomb {
                        RecordKind::Tombstone
                    } else {
                        RecordKind::Shard
                    },
                    key: ShardKey::new(object, stripe, shard),
                    meta: ShardMeta {
                        version: n[0],
                        scheme_k: shard,
                        scheme_m: shard / 2,
                        object_bytes: n[1],
                    },
                    data_bytes: if tomb { 0 } else { data_bytes },
                    data_crc: n[2] as u32,
                    segment_seq: n[2],
                    lsn: n[3],
                    born_lsn: n[4],
                    device_tag: n[1] ^ n[4],
                },
            )
    }

    proptest! {
        #[test]
        fn header_round_trips(header in header_strategy()) {
            let mut bytes = [0u8; RECORD_HEADER_BYTES];
            header.encode(&mut bytes);
            prop_assert_eq!(RecordHeader::decode(&bytes), Ok(header));
        }

        #[test]
        fn any_flipped_bit_is_detected(header in header_strategy(), bit in 0..RECORD_HEADER_BYTES * 8) {
            let mut bytes = [0u8; RECORD_HEADER_BYTES];
            header.encode(&mut bytes);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(RecordHeader::decode(&bytes).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = RecordHeader::decode(&bytes);
        }
    }
}
