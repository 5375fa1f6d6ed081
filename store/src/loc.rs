//! Where a record lives, packed in 64 bits so the index stays small.
//!
//! Layout (least significant first): 40 bits offset in 512-byte sectors from the device start,
//! 15 bits length in sectors, 8 bits device slot, 1 bit tombstone.

/// Unit of offsets and lengths in a [`Loc`]; every supported block size is a multiple of it.
pub const SECTOR_BYTES: u64 = 512;
const OFFSET_BITS: u32 = 40;
const LENGTH_BITS: u32 = 15;
const DEVICE_BITS: u32 = 8;
/// Largest device a location can address.
pub const LOC_DEVICE_BYTES_MAX: u64 = (1 << OFFSET_BITS) * SECTOR_BYTES;
/// Largest record a location can describe.
pub const LOC_RECORD_BYTES_MAX: u64 = ((1 << LENGTH_BITS) - 1) * SECTOR_BYTES;

const _: () = assert!(OFFSET_BITS + LENGTH_BITS + DEVICE_BITS + 1 == 64);
const _: () = assert!(
    (crate::limits::RECORD_DATA_BYTES_MAX + crate::limits::RECORD_HEADER_BYTES) as u64
        + crate::limits::BLOCK_BYTES_MAX as u64
        <= LOC_RECORD_BYTES_MAX
);
const _: () = assert!(crate::limits::DEVICES_MAX == 1 << DEVICE_BITS);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Loc(u64);

impl Loc {
    /// Where a record read off the device lies: a tombstone's location is marked as one.
    pub fn of_record(
        device: u8,
        offset: u64,
        disk_bytes: usize,
        kind: crate::record::RecordKind,
    ) -> Self {
        let tombstone = kind == crate::record::RecordKind::Tombstone;
        Self::new(device, offset, disk_bytes as u64, tombstone)
    }

    /// `offset` and `len` in bytes, multiples of [`SECTOR_BYTES`].
    pub fn new(device: u8, offset: u64, len: u64, tombstone: bool) -> Self {
        assert!(offset.is_multiple_of(SECTOR_BYTES));
        assert!(len.is_multiple_of(SECTOR_BYTES));
        assert!(len > 0 && len <= LOC_RECORD_BYTES_MAX);
        let sectors = offset / SECTOR_BYTES;
        assert!(
            sectors < 1 << OFFSET_BITS,
            "offset {offset} beyond the location format"
        );
        let packed = sectors
            | ((len / SECTOR_BYTES) << OFFSET_BITS)
            | (u64::from(device) << (OFFSET_BITS + LENGTH_BITS))
            | (u64::from(tombstone) << 63);
        Self(packed)
    }

    pub fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn offset(self) -> u64 {
        (self.0 & ((1 << OFFSET_BITS) - 1)) * SECTOR_BYTES
    }

    #[allow(clippy::len_without_is_empty)] // a record is never empty: `new` asserts it
    pub fn len(self) -> u64 {
        ((self.0 >> OFFSET_BITS) & ((1 << LENGTH_BITS) - 1)) * SECTOR_BYTES
    }

    pub fn device(self) -> u8 {
        (self.0 >> (OFFSET_BITS + LENGTH_BITS)) as u8
    }

    pub fn is_tombstone(self) -> bool {
        self.0 >> 63 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fields_round_trip(
            device: u8,
            sectors in 0u64..(1 << OFFSET_BITS),
            len in 1u64..(1 << LENGTH_BITS),
            tombstone: bool,
        ) {
            let loc = Loc::new(device, sectors * SECTOR_BYTES, len * SECTOR_BYTES, tombstone);
            prop_assert_eq!(loc.device(), device);
            prop_assert_eq!(loc.offset(), sectors * SECTOR_BYTES);
            prop_assert_eq!(loc.len(), len * SECTOR_BYTES);
            prop_assert_eq!(loc.is_tombstone(), tombstone);
            prop_assert_eq!(Loc::from_bits(loc.bits()), loc);
        }
    }
}
