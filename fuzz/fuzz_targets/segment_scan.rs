//! `scan::scan` over arbitrary segment images (block 512, from offset 512, the segment sequence
//! taken from the image's first 8 bytes and the device tag from the next 8): never panics, and everything it reports is where it
//! may be: block-aligned, inside the image, in order, records not overlapping, each record
//! carrying the segment's sequence and device tag, and a `data_ok` that matches its data.
//!
//! Each input is tried twice: as it is, and with the header checksum of every block that starts
//! with the record magic forged, so the fuzzer gets past the crc to the record logic.
#![no_main]

use ds_store::limits::RECORD_HEADER_BYTES;
use ds_store::record::RECORD_MAGIC;
use ds_store::scan::{scan, ScanItem};
use libfuzzer_sys::fuzz_target;

const BLOCK: usize = 512;
const START: usize = 512;
const CRC_OFFSET: usize = RECORD_HEADER_BYTES - 4;

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut forged = data.to_vec();
    let mut offset = START;
    let mut any = false;
    while offset + BLOCK <= forged.len() {
        if forged[offset..offset + 4] == RECORD_MAGIC.to_le_bytes() {
            let header = &mut forged[offset..offset + RECORD_HEADER_BYTES];
            let crc = crc32c::crc32c(&header[..CRC_OFFSET]);
            header[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
            any = true;
        }
        offset += BLOCK;
    }
    if any {
        check(&forged);
    }
});

fn check(image: &[u8]) {
    // `scan` asserts that it starts inside the image (its callers read whole segments); a
    // shorter input is not a segment.
    if image.len() < START {
        return;
    }
    let mut prefix = [0u8; 16];
    let n = image.len().min(16);
    prefix[..n].copy_from_slice(&image[..n]);
    let segment_seq = u64::from_le_bytes(prefix[..8].try_into().unwrap());
    let device_tag = u64::from_le_bytes(prefix[8..].try_into().unwrap());

    // Offsets must strictly increase; a record's bytes end before the next item starts.
    let mut next_min = START;
    let mut items = 0usize;
    scan(image, segment_seq, device_tag, BLOCK, START, |item| {
        items += 1;
        match item {
            ScanItem::Record {
                offset,
                header,
                disk_bytes,
                data_ok,
            } => {
                assert!(offset >= next_min, "record at {offset} before {next_min}");
                assert_eq!(offset % BLOCK, 0);
                assert_eq!(header.segment_seq, segment_seq);
                assert_eq!(header.device_tag, device_tag);
                assert_eq!(disk_bytes as u64, header.disk_bytes(BLOCK as u32));
                assert_eq!(disk_bytes % BLOCK, 0);
                assert!(disk_bytes >= RECORD_HEADER_BYTES + header.data_bytes as usize);
                let end = offset.checked_add(disk_bytes).expect("end overflows");
                assert!(
                    end <= image.len(),
                    "record {offset}..{end} past image of {}",
                    image.len()
                );
                let data = &image[offset + RECORD_HEADER_BYTES..][..header.data_bytes as usize];
                assert_eq!(data_ok, crc32c::crc32c(data) == header.data_crc);
                next_min = end;
            }
            ScanItem::Damaged { offset, .. } => {
                assert!(offset >= next_min, "damage at {offset} before {next_min}");
                assert_eq!(offset % BLOCK, 0);
                assert!(offset + BLOCK <= image.len());
                next_min = offset + BLOCK;
            }
        }
    });
    assert!(items <= image.len().saturating_sub(START) / BLOCK);
}
