//! The superblock: what a device is and how it is cut into partitions, in redundant copies.
//!
//! Copies sit at offsets 0 and 4096. Format writes both; mount accepts the valid copy with the
//! highest generation, so a torn rewrite of one copy never loses the device.

use crate::limits::{
    BLOCK_BYTES_MAX, CHECKPOINT_BYTES_PER_ENTRY_SLOT, CHECKPOINT_ENTRY_BYTES, DATA_START_BYTES,
    PARTITIONS_MAX, SEGMENT_BYTES_MIN, SUPERBLOCK_BYTES, SUPERBLOCK_COPIES,
};
use crate::loc::LOC_DEVICE_BYTES_MAX;
use crate::record::{u32_at, u64_at};

pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"DSSUPER\0";
pub const SUPERBLOCK_FORMAT_VERSION: u32 = 1;
const CRC_OFFSET: usize = SUPERBLOCK_BYTES as usize - 4;
const PARTITIONS_OFFSET: usize = 96;

const _: () = assert!(PARTITIONS_OFFSET + PARTITIONS_MAX * 16 <= CRC_OFFSET);

/// One partition: the slice of a device that one data core owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionExtent {
    /// Byte offset from the device start.
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub block_bytes: u32,
    pub device_uuid: u128,
    pub node_id: u128,
    pub generation: u64,
    pub device_bytes: u64,
    pub segment_bytes: u64,
    /// Size of each of the two checkpoint slots at the start of every partition.
    pub checkpoint_slot_bytes: u64,
    pub partitions: Vec<PartitionExtent>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    #[error("no ds superblock (magic is {found:02x?})")]
    Magic { found: [u8; 8] },
    #[error("superblock checksum mismatch")]
    Checksum,
    #[error("superblock format version {found} is not supported (this build reads {SUPERBLOCK_FORMAT_VERSION})")]
    Version { found: u32 },
    #[error("superblock field {field} is invalid")]
    Field { field: &'static str },
}

/// Why a device cannot be laid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("device of {device_bytes} bytes is too small for {partitions} partitions of at least {needed} bytes each")]
    TooSmall {
        device_bytes: u64,
        partitions: usize,
        needed: u64,
    },
    #[error("device of {device_bytes} bytes is larger than the {LOC_DEVICE_BYTES_MAX} bytes a record location can address")]
    TooLarge { device_bytes: u64 },
    #[error("{partitions} partitions requested; between 1 and {PARTITIONS_MAX} are supported")]
    Partitions { partitions: usize },
    #[error("segment size {segment_bytes} must be a multiple of {SEGMENT_BYTES_MIN} bytes")]
    SegmentBytes { segment_bytes: u64 },
    #[error(
        "block size {block_bytes} is not supported (512 to {BLOCK_BYTES_MAX}, a power of two)"
    )]
    BlockBytes { block_bytes: u32 },
}

impl Superblock {
    /// Lays out a fresh device: partitions of equal size, each holding two checkpoint slots and
    /// at least four segments.
    pub fn layout(
        device_bytes: u64,
        block_bytes: u32,
        partitions: usize,
        segment_bytes: u64,
        device_uuid: u128,
        node_id: u128,
    ) -> Result<Self, LayoutError> {
        if !(512..=BLOCK_BYTES_MAX).contains(&block_bytes) || !block_bytes.is_power_of_two() {
            return Err(LayoutError::BlockBytes { block_bytes });
        }
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(LayoutError::Partitions { partitions });
        }
        if device_bytes > LOC_DEVICE_BYTES_MAX {
            return Err(LayoutError::TooLarge { device_bytes });
        }
        if segment_bytes == 0 || !segment_bytes.is_multiple_of(SEGMENT_BYTES_MIN) {
            return Err(LayoutError::SegmentBytes { segment_bytes });
        }
        let usable = device_bytes.saturating_sub(DATA_START_BYTES);
        let partition_bytes = (usable / partitions as u64) / SEGMENT_BYTES_MIN * SEGMENT_BYTES_MIN;
        let checkpoint_slot_bytes = checkpoint_slot_bytes(partition_bytes, block_bytes);
        let needed = 2 * checkpoint_slot_bytes + 4 * segment_bytes;
        if partition_bytes < needed || partition_bytes == 0 {
            return Err(LayoutError::TooSmall {
                device_bytes,
                partitions,
                needed: needed.max(2 * SEGMENT_BYTES_MIN + 4 * segment_bytes),
            });
        }
        let partitions = (0..partitions as u64)
            .map(|index| PartitionExtent {
                offset: DATA_START_BYTES + index * partition_bytes,
                bytes: partition_bytes,
            })
            .collect();
        Ok(Self {
            block_bytes,
            device_uuid,
            node_id,
            generation: 1,
            device_bytes,
            segment_bytes,
            checkpoint_slot_bytes,
            partitions,
        })
    }

    /// Offset of superblock copy `copy`.
    pub fn copy_offset(copy: u64) -> u64 {
        assert!(copy < SUPERBLOCK_COPIES);
        copy * SUPERBLOCK_BYTES
    }

    pub fn encode(&self) -> Vec<u8> {
        assert!(self.partitions.len() <= PARTITIONS_MAX);
        let mut out = vec![0u8; SUPERBLOCK_BYTES as usize];
        out[0..8].copy_from_slice(&SUPERBLOCK_MAGIC);
        out[8..12].copy_from_slice(&SUPERBLOCK_FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.block_bytes.to_le_bytes());
        out[16..32].copy_from_slice(&self.device_uuid.to_le_bytes());
        out[32..48].copy_from_slice(&self.node_id.to_le_bytes());
        out[48..56].copy_from_slice(&self.generation.to_le_bytes());
        out[56..64].copy_from_slice(&self.device_bytes.to_le_bytes());
        out[64..72].copy_from_slice(&self.segment_bytes.to_le_bytes());
        out[72..80].copy_from_slice(&self.checkpoint_slot_bytes.to_le_bytes());
        out[80..84].copy_from_slice(&(self.partitions.len() as u32).to_le_bytes());
        for (index, extent) in self.partitions.iter().enumerate() {
            let at = PARTITIONS_OFFSET + index * 16;
            out[at..at + 8].copy_from_slice(&extent.offset.to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&extent.bytes.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out[..CRC_OFFSET]);
        out[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SuperblockError> {
        if bytes.len() < SUPERBLOCK_BYTES as usize {
            return Err(SuperblockError::Field { field: "length" });
        }
        let magic: [u8; 8] = bytes[0..8].try_into().expect("8 bytes");
        if magic != SUPERBLOCK_MAGIC {
            return Err(SuperblockError::Magic { found: magic });
        }
        if crc32c::crc32c(&bytes[..CRC_OFFSET]) != u32_at(bytes, CRC_OFFSET) {
            return Err(SuperblockError::Checksum);
        }
        let version = u32_at(bytes, 8);
        if version != SUPERBLOCK_FORMAT_VERSION {
            return Err(SuperblockError::Version { found: version });
        }
        let block_bytes = u32_at(bytes, 12);
        if !(512..=BLOCK_BYTES_MAX).contains(&block_bytes) || !block_bytes.is_power_of_two() {
            return Err(SuperblockError::Field {
                field: "block_bytes",
            });
        }
        let segment_bytes = u64_at(bytes, 64);
        if segment_bytes == 0 || !segment_bytes.is_multiple_of(SEGMENT_BYTES_MIN) {
            return Err(SuperblockError::Field {
                field: "segment_bytes",
            });
        }
        let count = u32_at(bytes, 80) as usize;
        if count == 0 || count > PARTITIONS_MAX {
            return Err(SuperblockError::Field {
                field: "partition_count",
            });
        }
        let device_bytes = u64_at(bytes, 56);
        let checkpoint_slot_bytes = u64_at(bytes, 72);
        let slot_ok = checkpoint_slot_bytes > 0
            && checkpoint_slot_bytes.is_multiple_of(u64::from(block_bytes))
            && checkpoint_slot_bytes <= device_bytes;
        if !slot_ok {
            return Err(SuperblockError::Field {
                field: "checkpoint_slot_bytes",
            });
        }
        if device_bytes > LOC_DEVICE_BYTES_MAX {
            return Err(SuperblockError::Field {
                field: "device_bytes",
            });
        }
        let partition_min = (2 * checkpoint_slot_bytes).saturating_add(segment_bytes);
        let mut partitions = Vec::with_capacity(count);
        for index in 0..count {
            let at = PARTITIONS_OFFSET + index * 16;
            let extent = PartitionExtent {
                offset: u64_at(bytes, at),
                bytes: u64_at(bytes, at + 8),
            };
            let end = extent.offset.checked_add(extent.bytes);
            if extent.offset < DATA_START_BYTES
                || end.is_none_or(|end| end > device_bytes)
                || extent.bytes < partition_min
                || !extent.offset.is_multiple_of(SEGMENT_BYTES_MIN)
                || !extent.bytes.is_multiple_of(SEGMENT_BYTES_MIN)
            {
                return Err(SuperblockError::Field { field: "partition" });
            }
            partitions.push(extent);
        }
        for pair in partitions.windows(2) {
            if pair[0].offset + pair[0].bytes > pair[1].offset {
                return Err(SuperblockError::Field { field: "partition" });
            }
        }
        if device_bytes > LOC_DEVICE_BYTES_MAX {
            return Err(SuperblockError::Field {
                field: "device_bytes",
            });
        }
        if checkpoint_slot_bytes == 0
            || !checkpoint_slot_bytes.is_multiple_of(u64::from(block_bytes))
        {
            return Err(SuperblockError::Field {
                field: "checkpoint_slot_bytes",
            });
        }
        Ok(Self {
            block_bytes,
            device_uuid: u128::from_le_bytes(bytes[16..32].try_into().expect("16 bytes")),
            node_id: u128::from_le_bytes(bytes[32..48].try_into().expect("16 bytes")),
            generation: u64_at(bytes, 48),
            device_bytes,
            segment_bytes,
            checkpoint_slot_bytes,
            partitions,
        })
    }

    /// Segments in a partition of this device (after its checkpoint slots).
    pub fn segments_per_partition(&self, partition: usize) -> u32 {
        let extent = self.partitions[partition];
        ((extent.bytes - 2 * self.checkpoint_slot_bytes) / self.segment_bytes) as u32
    }

    /// Byte offset of segment `segment` of `partition` from the device start.
    pub fn segment_offset(&self, partition: usize, segment: u32) -> u64 {
        assert!(segment < self.segments_per_partition(partition));
        let extent = self.partitions[partition];
        extent.offset + 2 * self.checkpoint_slot_bytes + u64::from(segment) * self.segment_bytes
    }

    /// Byte offset of checkpoint slot `slot` (0 or 1) of `partition`.
    pub fn checkpoint_offset(&self, partition: usize, slot: u64) -> u64 {
        assert!(slot < 2);
        self.partitions[partition].offset + slot * self.checkpoint_slot_bytes
    }
}

/// Room for one entry per [`CHECKPOINT_BYTES_PER_ENTRY_SLOT`] bytes, plus a header block,
/// rounded to a whole segment-size unit so segments stay aligned.
fn checkpoint_slot_bytes(partition_bytes: u64, block_bytes: u32) -> u64 {
    let entries = partition_bytes / CHECKPOINT_BYTES_PER_ENTRY_SLOT;
    let bytes = u64::from(block_bytes) + entries * CHECKPOINT_ENTRY_BYTES;
    bytes.next_multiple_of(SEGMENT_BYTES_MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_round_trips_and_segments_fit() {
        let sb = Superblock::layout(10 << 30, 512, 2, 64 << 20, 7, 9).unwrap();
        assert_eq!(Superblock::decode(&sb.encode()), Ok(sb.clone()));
        for partition in 0..2 {
            let last = sb.segments_per_partition(partition) - 1;
            let end = sb.segment_offset(partition, last) + sb.segment_bytes;
            let extent = sb.partitions[partition];
            assert!(end <= extent.offset + extent.bytes);
            assert!(
                sb.checkpoint_offset(partition, 1) + sb.checkpoint_slot_bytes
                    <= sb.segment_offset(partition, 0)
            );
        }
    }

    #[test]
    fn tiny_device_is_refused() {
        let error = Superblock::layout(8 << 20, 512, 2, 1 << 20, 1, 1).unwrap_err();
        assert!(matches!(error, LayoutError::TooSmall { .. }));
    }

    #[test]
    fn a_huge_checkpoint_slot_is_refused_without_overflow() {
        // Regression: the partition size check computed 2 * slot + segment before the slot was
        // validated; a crafted superblock overflowed (a panic in debug, a wrap in release).
        let sb = Superblock::layout(1 << 30, 4096, 1, 4 << 20, 1, 2).unwrap();
        let mut bytes = sb.encode();
        bytes[72..80].copy_from_slice(&(1u64 << 63).to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..CRC_OFFSET]);
        bytes[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        assert!(Superblock::decode(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn garbage_is_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 4096)) {
            prop_assert!(Superblock::decode(&bytes).is_err());
        }

        #[test]
        fn a_flipped_bit_is_detected(bit in 0..4096usize * 8) {
            let sb = Superblock::layout(1 << 30, 4096, 3, 4 << 20, 1, 2).unwrap();
            let mut bytes = sb.encode();
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Superblock::decode(&bytes).is_err());
        }
    }
}
