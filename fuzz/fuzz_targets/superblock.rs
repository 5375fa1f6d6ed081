//! `Superblock::decode` on arbitrary bytes: never panics, a superblock it accepts re-encodes to
//! bytes that decode to the same superblock, and the geometry helpers work on what it accepted
//! (the decoder's checks are what keeps them from overflowing).
//!
//! Each input is tried twice: as it is, and padded to a full copy with the magic and checksum
//! forged, so the fuzzer reaches the field checks behind the crc.
#![no_main]

use ds_store::limits::SUPERBLOCK_BYTES;
use ds_store::superblock::{Superblock, SUPERBLOCK_MAGIC};
use libfuzzer_sys::fuzz_target;

const BYTES: usize = SUPERBLOCK_BYTES as usize;
const CRC_OFFSET: usize = BYTES - 4;

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut forged = vec![0u8; BYTES];
    let n = data.len().min(BYTES);
    forged[..n].copy_from_slice(&data[..n]);
    forged[0..8].copy_from_slice(&SUPERBLOCK_MAGIC);
    let crc = crc32c::crc32c(&forged[..CRC_OFFSET]);
    forged[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    check(&forged);
});

fn check(bytes: &[u8]) {
    let decoded = Superblock::decode(bytes);
    if bytes.len() > BYTES {
        assert_eq!(decoded, Superblock::decode(&bytes[..BYTES]));
    }
    let Ok(sb) = decoded else {
        return;
    };
    let encoded = sb.encode();
    assert_eq!(encoded.len(), BYTES);
    assert_eq!(Superblock::decode(&encoded), Ok(sb.clone()), "round trip");

    for partition in 0..sb.partitions.len() {
        let extent = sb.partitions[partition];
        let segments = sb.segments_per_partition(partition);
        assert!(segments >= 1, "partition {partition} holds no segment");
        let last_end = sb.segment_offset(partition, segments - 1) + sb.segment_bytes;
        assert!(last_end <= extent.offset + extent.bytes);
        assert!(
            sb.checkpoint_offset(partition, 1) + sb.checkpoint_slot_bytes
                <= sb.segment_offset(partition, 0)
        );
    }
}
