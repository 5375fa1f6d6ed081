//! Writes a seed corpus of valid encodings for every fuzz target into DIR/<target>/.
//! `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus -- fuzz/corpus`
//! Existing files are overwritten, other files (what the fuzzer found) are left alone.

use std::path::Path;

use ds_store::checkpoint::{encode_entries, CheckpointHeader, CHECKPOINT_HEADER_BYTES, NO_SEGMENT};
use ds_store::key::ShardKey;
use ds_store::limits::RECORD_HEADER_BYTES;
use ds_store::record::{RecordHeader, RecordKind, ShardMeta};
use ds_store::segment::{SegmentHeader, SegmentMark, SEGMENT_HEADER_BYTES};
use ds_store::superblock::Superblock;

/// The device tag of every seed record (the low 64 bits of a device uuid).
const TAG: u64 = 0x5eed_0000_00ab_cdef;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: gen_corpus DIR");
    let dir = Path::new(&dir);
    let mut written = 0;
    let mut put = |target: &str, name: &str, bytes: &[u8]| {
        let target = dir.join(target);
        std::fs::create_dir_all(&target).expect("create corpus dir");
        std::fs::write(target.join(format!("seed-{name}")), bytes).expect("write seed");
        written += 1;
    };

    // record_header
    let shard = record(RecordKind::Shard, 7, 1000, 300);
    let tomb = record(RecordKind::Tombstone, 7, 1001, 0);
    assert_eq!(RecordHeader::decode(&encode_record(&shard)), Ok(shard));
    put("record_header", "shard", &encode_record(&shard));
    put("record_header", "tombstone", &encode_record(&tomb));

    // superblock
    for (name, sb) in [
        ("small", Superblock::layout(1 << 30, 4096, 3, 4 << 20, 1, 2)),
        (
            "large",
            Superblock::layout(10 << 30, 512, 2, 64 << 20, 7, 9),
        ),
    ] {
        put("superblock", name, &sb.expect("layout").encode());
    }

    // Regression: a checkpoint_slot_bytes of 2^63 with a valid crc overflowed
    // `2 * checkpoint_slot_bytes + segment_bytes` in decode (a panic with overflow checks, a
    // wrongly accepted superblock without them). Decode must refuse it.
    let mut bytes = Superblock::layout(1 << 30, 4096, 3, 4 << 20, 1, 2)
        .expect("layout")
        .encode();
    bytes[72..80].copy_from_slice(&(1u64 << 63).to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..bytes.len() - 4]);
    let at = bytes.len() - 4;
    bytes[at..].copy_from_slice(&crc.to_le_bytes());
    assert!(
        Superblock::decode(&bytes).is_err(),
        "huge checkpoint slot accepted"
    );
    put("superblock", "slot-overflow", &bytes);

    // segment_header
    for (name, mark) in [("used", SegmentMark::Used), ("free", SegmentMark::Free)] {
        let header = SegmentHeader {
            mark,
            seq: 7,
            partition: 1,
            segment: 9,
            device_uuid: 0xabcdef,
        };
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
        header.encode(&mut bytes);
        put("segment_header", name, &bytes);
    }

    // checkpoint: a header followed by its entries.
    for (name, entries) in [
        ("empty", vec![]),
        ("three", vec![(1u64, 2u64), (u64::MAX, 7), (3, 3)]),
    ] {
        let mut entry_bytes = Vec::new();
        encode_entries(entries.iter().copied(), &mut entry_bytes);
        let header = CheckpointHeader {
            partition: 1,
            generation: 5,
            device_uuid: 99,
            seq_next: 10,
            lsn_next: 1000,
            head_segment: if entries.is_empty() { NO_SEGMENT } else { 3 },
            head_seq: 9,
            head_bytes: 4096,
            entry_count: entries.len() as u64,
            entries_crc: crc32c::crc32c(&entry_bytes),
        };
        let mut bytes = vec![0u8; CHECKPOINT_HEADER_BYTES];
        header.encode(&mut bytes);
        bytes.extend_from_slice(&entry_bytes);
        put("checkpoint", name, &bytes);
    }

    // segment_scan: an 8 KiB image whose first 8 bytes are the segment sequence (7) and next 8
    // the device tag (TAG), records
    // from 512 on: a shard, a larger shard, a tombstone, one of an older sequence, one of another
    // device tag, a damaged one.
    let mut image = vec![0u8; 8192];
    image[..8].copy_from_slice(&7u64.to_le_bytes());
    image[8..16].copy_from_slice(&TAG.to_le_bytes());
    let mut offset = 512;
    for (i, (kind, seq, tag, data_len, damaged)) in [
        (RecordKind::Shard, 7, TAG, 300usize, false),
        (RecordKind::Shard, 7, TAG, 1000, false),
        (RecordKind::Tombstone, 7, TAG, 0, false),
        (RecordKind::Shard, 6, TAG, 100, false),
        (RecordKind::Shard, 7, TAG ^ 1, 100, false),
        (RecordKind::Shard, 7, TAG, 100, true),
    ]
    .into_iter()
    .enumerate()
    {
        let data: Vec<u8> = (0..data_len).map(|b| (b * 31 + i) as u8).collect();
        let mut header = record(kind, seq, 2000 + i as u64, data_len as u32);
        header.device_tag = tag;
        header.data_crc = crc32c::crc32c(&data);
        let mut bytes = encode_record(&header);
        if damaged {
            bytes[20] ^= 1;
        }
        image[offset..offset + RECORD_HEADER_BYTES].copy_from_slice(&bytes);
        image[offset + RECORD_HEADER_BYTES..][..data_len].copy_from_slice(&data);
        offset += header.disk_bytes(512) as usize;
    }
    let (mut records, mut damaged) = (0, 0);
    ds_store::scan::scan(&image, 7, TAG, 512, 512, |item| match item {
        ds_store::scan::ScanItem::Record { data_ok, .. } => {
            assert!(data_ok);
            records += 1;
        }
        ds_store::scan::ScanItem::Damaged { .. } => damaged += 1,
    });
    assert_eq!((records, damaged), (3, 1), "scan seed");
    put("segment_scan", "records", &image);
    put("segment_scan", "short", &image[..2048]);

    println!("gen_corpus: wrote {written} seeds under {}", dir.display());
}

fn record(kind: RecordKind, segment_seq: u64, lsn: u64, data_bytes: u32) -> RecordHeader {
    RecordHeader {
        kind,
        key: ShardKey::new(0x1234_5678_9abc_def0, 3, 1),
        meta: ShardMeta {
            version: 42,
            scheme_k: 4,
            scheme_m: 2,
            object_bytes: 1 << 20,
        },
        data_bytes,
        data_crc: 0,
        segment_seq,
        lsn,
        born_lsn: lsn,
        device_tag: TAG,
    }
}

fn encode_record(header: &RecordHeader) -> Vec<u8> {
    let mut bytes = vec![0u8; RECORD_HEADER_BYTES];
    header.encode(&mut bytes);
    bytes
}
