//! `ds::service::meta::ObjectMeta::decode` (an object's metadata record, stored on disk and
//! carried by META_READ / META_MERGE) on arbitrary bytes: never panics; a record it accepts
//! encodes back to bytes that decode to the same record, and merging it with itself changes
//! nothing. Each input is also tried with magic, format and crc made right, so the fuzzer
//! reaches the field checks behind them.
#![no_main]

use ds::service::meta::ObjectMeta;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 52 {
        let mut forged = data.to_vec();
        forged[..4].copy_from_slice(b"DSOM");
        forged[4..6].copy_from_slice(&2u16.to_le_bytes());
        let end = forged.len() - 4;
        let crc = crc32c::crc32c(&forged[..end]);
        forged[end..].copy_from_slice(&crc.to_le_bytes());
        check(&forged);
    }
});

fn check(bytes: &[u8]) {
    if let Ok(meta) = ObjectMeta::decode(bytes, 7) {
        let again = ObjectMeta::decode(&meta.encode(), 7).expect("an accepted record re-encodes");
        assert_eq!(again, meta);
        let mut merged = meta.clone();
        assert!(!merged.merge(&meta), "merging a record with itself changed it");
        assert_eq!(merged, meta);
    }
}
