//! `ds_objects::ShardMeta::decode` (the header every stored shard carries) on arbitrary bytes:
//! never panics, and a header it accepts is valid, and its encoding decodes to the same header
//! and matches the input in every field byte (the reserved bytes 48..60 are not checked on
//! read, for later formats, so they and the crc over them may differ). Each
//! input is also tried with magic, version and crc made right, so the fuzzer reaches the field
//! checks behind them.
#![no_main]

use ds_objects::limits::SHARD_META_BYTES;
use ds_objects::ShardMeta;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= SHARD_META_BYTES {
        let mut forged = data[..SHARD_META_BYTES].to_vec();
        forged[..4].copy_from_slice(b"DSSH");
        forged[4] = 1;
        let crc = crc32c::crc32c(&forged[..SHARD_META_BYTES - 4]);
        forged[SHARD_META_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
        check(&forged);
    }
});

fn check(bytes: &[u8]) {
    if let Ok(meta) = ShardMeta::decode(bytes) {
        assert!(meta.validate().is_ok(), "decode accepted an invalid header");
        let encoded = meta.encode();
        assert_eq!(ShardMeta::decode(&encoded).ok(), Some(meta));
        assert_eq!(encoded[..48], bytes[..48]);
    }
}
