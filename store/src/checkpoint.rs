//! Checkpoints: a snapshot of the part of the index that points into one partition, so start-up
//! replays only the log written since, not the whole partition.
//!
//! Two slots per partition are written in turn; the valid one with the highest generation wins.
//! A torn checkpoint write therefore falls back to the previous one (more replay, no loss).

use crate::record::{u32_at, u64_at};

pub const CHECKPOINT_MAGIC: [u8; 8] = *b"DSCKPT\0\0";
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
pub const CHECKPOINT_HEADER_BYTES: usize = 96;
const CRC_OFFSET: usize = CHECKPOINT_HEADER_BYTES - 4;
/// Marks "no head segment" in [`CheckpointHeader::head_segment`].
pub const NO_SEGMENT: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointHeader {
    pub partition: u32,
    pub generation: u64,
    pub device_uuid: u128,
    /// Segment sequence counter when taken: segments with a sequence at or above it are replayed.
    pub seq_next: u64,
    /// Core lsn counter when taken.
    pub lsn_next: u64,
    /// The head segment when taken, replayed from `head_bytes` on.
    pub head_segment: u32,
    pub head_seq: u64,
    pub head_bytes: u64,
    pub entry_count: u64,
    /// crc32c of the entry bytes.
    pub entries_crc: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("no checkpoint")]
    Missing,
    #[error("checkpoint header checksum mismatch")]
    Checksum,
    #[error("checkpoint format version {found} is not supported")]
    Version { found: u32 },
    #[error("checkpoint entries checksum mismatch")]
    EntriesChecksum,
    #[error("checkpoint field {field} is invalid")]
    Field { field: &'static str },
}

impl CheckpointHeader {
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..CHECKPOINT_HEADER_BYTES];
        out.fill(0);
        out[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
        out[8..12].copy_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.partition.to_le_bytes());
        out[16..24].copy_from_slice(&self.generation.to_le_bytes());
        out[24..32].copy_from_slice(&self.seq_next.to_le_bytes());
        out[32..40].copy_from_slice(&self.lsn_next.to_le_bytes());
        out[40..44].copy_from_slice(&self.head_segment.to_le_bytes());
        out[48..56].copy_from_slice(&self.head_seq.to_le_bytes());
        out[56..64].copy_from_slice(&self.head_bytes.to_le_bytes());
        out[64..72].copy_from_slice(&self.entry_count.to_le_bytes());
        out[72..76].copy_from_slice(&self.entries_crc.to_le_bytes());
        out[76..92].copy_from_slice(&self.device_uuid.to_le_bytes());
        let crc = crc32c::crc32c(&out[..CRC_OFFSET]);
        out[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        if bytes.len() < CHECKPOINT_HEADER_BYTES || bytes[0..8] != CHECKPOINT_MAGIC {
            return Err(CheckpointError::Missing);
        }
        if crc32c::crc32c(&bytes[..CRC_OFFSET]) != u32_at(bytes, CRC_OFFSET) {
            return Err(CheckpointError::Checksum);
        }
        let version = u32_at(bytes, 8);
        if version != CHECKPOINT_FORMAT_VERSION {
            return Err(CheckpointError::Version { found: version });
        }
        Ok(Self {
            partition: u32_at(bytes, 12),
            generation: u64_at(bytes, 16),
            seq_next: u64_at(bytes, 24),
            lsn_next: u64_at(bytes, 32),
            head_segment: u32_at(bytes, 40),
            head_seq: u64_at(bytes, 48),
            head_bytes: u64_at(bytes, 56),
            entry_count: u64_at(bytes, 64),
            entries_crc: u32_at(bytes, 72),
            device_uuid: u128::from_le_bytes(bytes[76..92].try_into().expect("16 bytes")),
        })
    }
}

/// Writes (fingerprint, location) pairs as the entry bytes of a checkpoint.
pub fn encode_entries(entries: impl Iterator<Item = (u64, u64)>, out: &mut Vec<u8>) {
    for (fp, loc) in entries {
        out.extend_from_slice(&fp.to_le_bytes());
        out.extend_from_slice(&loc.to_le_bytes());
    }
}

/// Reads entry bytes back, checking their crc against the header.
pub fn decode_entries(
    header: &CheckpointHeader,
    bytes: &[u8],
) -> Result<Vec<(u64, u64)>, CheckpointError> {
    let len = usize::try_from(header.entry_count)
        .ok()
        .and_then(|count| count.checked_mul(16))
        .ok_or(CheckpointError::Field {
            field: "entry_count",
        })?;
    if bytes.len() < len {
        return Err(CheckpointError::Field {
            field: "entry_count",
        });
    }
    let bytes = &bytes[..len];
    if crc32c::crc32c(bytes) != header.entries_crc {
        return Err(CheckpointError::EntriesChecksum);
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|chunk| (u64_at(chunk, 0), u64_at(chunk, 8)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_entries_round_trip() {
        let entries = vec![(1u64, 2u64), (u64::MAX, 7), (3, 3)];
        let mut bytes = Vec::new();
        encode_entries(entries.iter().copied(), &mut bytes);
        let header = CheckpointHeader {
            partition: 1,
            generation: 5,
            device_uuid: 99,
            seq_next: 10,
            lsn_next: 1000,
            head_segment: 3,
            head_seq: 9,
            head_bytes: 4096,
            entry_count: 3,
            entries_crc: crc32c::crc32c(&bytes),
        };
        let mut block = [0u8; CHECKPOINT_HEADER_BYTES];
        header.encode(&mut block);
        let decoded = CheckpointHeader::decode(&block).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(decode_entries(&decoded, &bytes).unwrap(), entries);
        bytes[5] ^= 1;
        assert_eq!(
            decode_entries(&decoded, &bytes),
            Err(CheckpointError::EntriesChecksum)
        );
    }
}
