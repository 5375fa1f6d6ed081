//! Segment headers and the in-memory state of every segment of a partition.
//!
//! A segment is a fixed-size stretch of a partition written front to back, never in place. Its
//! first block is a header naming the incarnation (a sequence number unique per core); records
//! inside carry the same number. Freeing a segment overwrites its header with a FREE marker, made
//! durable before the segment is reused, so recovery never replays a freed segment.

use crate::record::{u32_at, u64_at};

pub const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"DSSG");
pub const SEGMENT_FORMAT_VERSION: u8 = 1;
pub const SEGMENT_HEADER_BYTES: usize = 64;
const CRC_OFFSET: usize = SEGMENT_HEADER_BYTES - 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SegmentMark {
    /// Holds records of incarnation `seq`.
    Used = 1,
    /// Reclaimed; its records are dead.
    Free = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub mark: SegmentMark,
    pub seq: u64,
    pub partition: u32,
    pub segment: u32,
    pub device_uuid: u128,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentHeaderError {
    #[error("no segment header")]
    Missing,
    #[error("segment header checksum mismatch")]
    Checksum,
    #[error("segment header format version {found} is not supported")]
    Version { found: u8 },
    #[error("segment header field {field} is invalid")]
    Field { field: &'static str },
}

impl SegmentHeader {
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..SEGMENT_HEADER_BYTES];
        out.fill(0);
        out[0..4].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        out[4] = SEGMENT_FORMAT_VERSION;
        out[5] = self.mark as u8;
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..20].copy_from_slice(&self.partition.to_le_bytes());
        out[20..24].copy_from_slice(&self.segment.to_le_bytes());
        out[24..40].copy_from_slice(&self.device_uuid.to_le_bytes());
        let crc = crc32c::crc32c(&out[..CRC_OFFSET]);
        out[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SegmentHeaderError> {
        if bytes.len() < SEGMENT_HEADER_BYTES || u32_at(bytes, 0) != SEGMENT_MAGIC {
            return Err(SegmentHeaderError::Missing);
        }
        if crc32c::crc32c(&bytes[..CRC_OFFSET]) != u32_at(bytes, CRC_OFFSET) {
            return Err(SegmentHeaderError::Checksum);
        }
        if bytes[4] != SEGMENT_FORMAT_VERSION {
            return Err(SegmentHeaderError::Version { found: bytes[4] });
        }
        let mark = match bytes[5] {
            1 => SegmentMark::Used,
            2 => SegmentMark::Free,
            _ => return Err(SegmentHeaderError::Field { field: "mark" }),
        };
        Ok(Self {
            mark,
            seq: u64_at(bytes, 8),
            partition: u32_at(bytes, 16),
            segment: u32_at(bytes, 20),
            device_uuid: u128::from_le_bytes(bytes[24..40].try_into().expect("16 bytes")),
        })
    }
}

/// What a segment is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentState {
    /// Holds no live records and may be reused.
    Free,
    /// The head: records are being appended.
    Open,
    /// Full (or closed by recovery); only compaction changes it.
    Sealed,
    /// Its header is damaged: whether it held live records cannot be known, so it is neither
    /// replayed nor reused, and scrub reports it.
    Damaged,
}

/// In-memory bookkeeping of one segment.
#[derive(Clone, Copy, Debug)]
pub struct SegmentInfo {
    pub state: SegmentState,
    pub seq: u64,
    /// Bytes written (header included); the append point of an open segment.
    pub written_bytes: u64,
    /// Bytes of records the index still points at.
    pub live_bytes: u64,
    /// Lowest lsn of any record in it (u64::MAX when none, 0 when not known).
    pub lsn_min: u64,
    /// Reads in flight into it: it is not freed while any are.
    pub readers: u32,
    /// Its header is on disk for good, so its records may be written.
    pub header_durable: bool,
    /// Bytes of records that were live here and no longer are (what compaction would reclaim).
    pub dead_bytes: u64,
    /// Its last compaction failed: not picked again until compaction is asked for.
    pub compaction_failed: bool,
}

impl SegmentInfo {
    pub fn free() -> Self {
        Self {
            state: SegmentState::Free,
            seq: 0,
            written_bytes: 0,
            live_bytes: 0,
            lsn_min: u64::MAX,
            readers: 0,
            header_durable: false,
            dead_bytes: 0,
            compaction_failed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_flips() {
        let header = SegmentHeader {
            mark: SegmentMark::Used,
            seq: 42,
            partition: 1,
            segment: 9,
            device_uuid: 0xabcdef,
        };
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
        header.encode(&mut bytes);
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for bit in 0..SEGMENT_HEADER_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&flipped).is_err(), "bit {bit}");
        }
    }
}
