//! `RecordHeader::decode` on arbitrary bytes: never panics, and a header it accepts re-encodes
//! to bytes that decode to the same header.
//!
//! Each input is tried twice: as it is, and with the magic and header checksum forged, so the
//! fuzzer reaches the field checks behind the crc instead of stopping at it.
#![no_main]

use ds_store::limits::{BLOCK_BYTES_MAX, RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES};
use ds_store::record::{RecordHeader, RecordKind, RECORD_MAGIC};
use libfuzzer_sys::fuzz_target;

const CRC_OFFSET: usize = RECORD_HEADER_BYTES - 4;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= RECORD_HEADER_BYTES {
        let mut forged = data[..RECORD_HEADER_BYTES].to_vec();
        forged[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        let crc = crc32c::crc32c(&forged[..CRC_OFFSET]);
        forged[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        check(&forged);
    }
});

fn check(bytes: &[u8]) {
    let decoded = RecordHeader::decode(bytes);
    // Only the first RECORD_HEADER_BYTES count.
    if bytes.len() > RECORD_HEADER_BYTES {
        assert_eq!(decoded, RecordHeader::decode(&bytes[..RECORD_HEADER_BYTES]));
    }
    let Ok(header) = decoded else {
        return;
    };
    assert!(header.data_bytes as usize <= RECORD_DATA_BYTES_MAX);
    assert!(header.kind == RecordKind::Shard || header.data_bytes == 0);
    let mut block = 512u32;
    while block <= BLOCK_BYTES_MAX {
        let disk = header.disk_bytes(block);
        assert_eq!(disk % u64::from(block), 0);
        assert!(disk >= (RECORD_HEADER_BYTES + header.data_bytes as usize) as u64);
        block *= 2;
    }

    let mut out = [0u8; RECORD_HEADER_BYTES];
    header.encode(&mut out);
    assert_eq!(RecordHeader::decode(&out), Ok(header), "round trip");
}
