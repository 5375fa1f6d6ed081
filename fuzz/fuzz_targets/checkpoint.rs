//! `CheckpointHeader::decode` and `decode_entries` on arbitrary bytes: the input is a header
//! followed by entry bytes. Neither may panic; a header that decodes re-encodes to bytes that
//! decode to the same header; entries that decode are exactly `entry_count` pairs that
//! `encode_entries` writes back to the same bytes.
//!
//! Each input is tried twice: as it is, and with the magic, the entries checksum (when
//! `entry_count` fits the bytes given) and the header checksum forged.
#![no_main]

use ds_store::checkpoint::{
    decode_entries, encode_entries, CheckpointHeader, CHECKPOINT_HEADER_BYTES, CHECKPOINT_MAGIC,
};
use libfuzzer_sys::fuzz_target;

const CRC_OFFSET: usize = CHECKPOINT_HEADER_BYTES - 4;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= CHECKPOINT_HEADER_BYTES {
        let mut forged = data.to_vec();
        forged[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
        let entry_count = u64::from_le_bytes(forged[64..72].try_into().unwrap());
        let rest = forged.len() - CHECKPOINT_HEADER_BYTES;
        if let Some(len) = entry_count
            .checked_mul(16)
            .filter(|&len| len <= rest as u64)
        {
            let len = len as usize;
            let entries_crc = crc32c::crc32c(&forged[CHECKPOINT_HEADER_BYTES..][..len]);
            forged[72..76].copy_from_slice(&entries_crc.to_le_bytes());
        }
        let crc = crc32c::crc32c(&forged[..CRC_OFFSET]);
        forged[CRC_OFFSET..CHECKPOINT_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        check(&forged);
    }
});

fn check(bytes: &[u8]) {
    let Ok(header) = CheckpointHeader::decode(bytes) else {
        return;
    };
    assert_eq!(
        CheckpointHeader::decode(&bytes[..CHECKPOINT_HEADER_BYTES]),
        Ok(header)
    );
    let mut out = [0u8; CHECKPOINT_HEADER_BYTES];
    header.encode(&mut out);
    assert_eq!(CheckpointHeader::decode(&out), Ok(header), "round trip");

    let entry_bytes = &bytes[CHECKPOINT_HEADER_BYTES..];
    let Ok(entries) = decode_entries(&header, entry_bytes) else {
        return;
    };
    assert_eq!(entries.len() as u64, header.entry_count);
    let mut written = Vec::new();
    encode_entries(entries.iter().copied(), &mut written);
    assert_eq!(written, entry_bytes[..written.len()], "entries round trip");
    assert_eq!(decode_entries(&header, &written), Ok(entries));
}
