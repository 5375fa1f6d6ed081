//! `SegmentHeader::decode` on arbitrary bytes: never panics, and a header it accepts re-encodes
//! to bytes that decode to the same header.
//!
//! Each input is tried twice: as it is, and with the magic and checksum forged.
#![no_main]

use ds_store::segment::{SegmentHeader, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC};
use libfuzzer_sys::fuzz_target;

const CRC_OFFSET: usize = SEGMENT_HEADER_BYTES - 4;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= SEGMENT_HEADER_BYTES {
        let mut forged = data[..SEGMENT_HEADER_BYTES].to_vec();
        forged[0..4].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        let crc = crc32c::crc32c(&forged[..CRC_OFFSET]);
        forged[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        check(&forged);
    }
});

fn check(bytes: &[u8]) {
    let decoded = SegmentHeader::decode(bytes);
    if bytes.len() > SEGMENT_HEADER_BYTES {
        assert_eq!(
            decoded,
            SegmentHeader::decode(&bytes[..SEGMENT_HEADER_BYTES])
        );
    }
    let Ok(header) = decoded else {
        return;
    };
    let mut out = [0u8; SEGMENT_HEADER_BYTES];
    header.encode(&mut out);
    assert_eq!(SegmentHeader::decode(&out), Ok(header), "round trip");
}
