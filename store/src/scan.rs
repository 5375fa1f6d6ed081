//! Walks the records of a segment image in order: recovery, compaction and scrub share it.
//!
//! A record counts only if its header is valid and carries the segment's sequence number; a
//! record from an earlier use of the segment, or unwritten space, is skipped. After a damaged
//! header the walk steps block by block until the next valid header, so one bad record never
//! hides the ones after it.

use crate::record::{u64_at, HeaderError, RecordHeader};

#[derive(Debug)]
pub enum ScanItem {
    /// A header with this segment's sequence; `data_ok` tells whether the data checksum holds.
    Record {
        offset: usize,
        header: RecordHeader,
        disk_bytes: usize,
        data_ok: bool,
    },
    /// Something that starts like a record header of this format but fails its checks.
    Damaged { offset: usize, error: HeaderError },
}

/// Visits every record of `image` (a segment read from its start) from `start` on.
/// Only records carrying `segment_seq` and `device_tag` count.
pub fn scan(
    image: &[u8],
    segment_seq: u64,
    device_tag: u64,
    block: usize,
    start: usize,
    mut visit: impl FnMut(ScanItem),
) {
    assert!(block.is_power_of_two());
    assert!(start.is_multiple_of(block));
    let mut offset = start;
    while offset + block <= image.len() {
        match RecordHeader::decode(&image[offset..]) {
            Ok(header) if header.segment_seq == segment_seq && header.device_tag == device_tag => {
                let disk_bytes = header.disk_bytes(block as u32) as usize;
                if offset + disk_bytes > image.len() {
                    visit(ScanItem::Damaged {
                        offset,
                        error: HeaderError::Field {
                            field: "data_bytes",
                        },
                    });
                    offset += block;
                    continue;
                }
                let data = &image[offset + crate::limits::RECORD_HEADER_BYTES..]
                    [..header.data_bytes as usize];
                let data_ok = crc32c::crc32c(data) == header.data_crc;
                visit(ScanItem::Record {
                    offset,
                    header,
                    disk_bytes,
                    data_ok,
                });
                offset += disk_bytes;
            }
            // Left over from an earlier use of this segment, or never written.
            // (Or from an earlier format of the device: another device tag.)
            Ok(_) | Err(HeaderError::Magic { .. }) => offset += block,
            // A header of another format version stops recovery only if it names this segment
            // incarnation and device; otherwise it is payload or leftover, like any other bytes.
            Err(error @ HeaderError::Version { .. }) => {
                let at = &image[offset..];
                if u64_at(at, 56) == segment_seq && u64_at(at, 80) == device_tag {
                    visit(ScanItem::Damaged { offset, error });
                }
                offset += block;
            }
            Err(error) => {
                visit(ScanItem::Damaged { offset, error });
                offset += block;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ShardKey;
    use crate::limits::RECORD_HEADER_BYTES;
    use crate::record::{RecordKind, ShardMeta};

    fn header(seq: u64, tag: u64) -> RecordHeader {
        RecordHeader {
            kind: RecordKind::Shard,
            key: ShardKey::new(1, 2, 3),
            meta: ShardMeta::default(),
            data_bytes: 10,
            data_crc: crc32c::crc32c(&[7u8; 10]),
            segment_seq: seq,
            lsn: 1,
            born_lsn: 1,
            device_tag: tag,
        }
    }

    /// Writes a header whose version byte is 2, with a valid crc.
    fn future_header(seq: u64, tag: u64, out: &mut [u8]) {
        header(seq, tag).encode(out);
        out[4] = 2;
        let crc = crc32c::crc32c(&out[..RECORD_HEADER_BYTES - 4]);
        out[RECORD_HEADER_BYTES - 4..RECORD_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn finds_records_and_skips_other_incarnations_and_devices() {
        let mut image = vec![0u8; 8 * 512];
        for (block, seq, tag) in [(1, 5, 9), (2, 4, 9), (3, 5, 8), (4, 5, 9)] {
            let at = block * 512;
            header(seq, tag).encode(&mut image[at..]);
            image[at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + 10].fill(7);
        }
        let mut found = Vec::new();
        scan(&image, 5, 9, 512, 512, |item| found.push(item));
        let offsets: Vec<usize> = found
            .iter()
            .map(|item| match item {
                ScanItem::Record {
                    offset,
                    data_ok: true,
                    ..
                } => *offset,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(offsets, vec![512, 2048]);
    }

    #[test]
    fn a_future_version_stops_only_when_it_names_this_segment() {
        // Regression: a header of another version inside shard payload (or leftovers) was
        // reported as damage before its segment and device were checked, so one crafted shard
        // could make every later start-up fail.
        let mut image = vec![0u8; 4 * 512];
        future_header(5, 8, &mut image[512..]);
        future_header(4, 9, &mut image[1024..]);
        let mut found = Vec::new();
        scan(&image, 5, 9, 512, 512, |item| found.push(item));
        assert!(found.is_empty(), "{found:?}");
        future_header(5, 9, &mut image[1536..]);
        scan(&image, 5, 9, 512, 512, |item| found.push(item));
        assert!(matches!(
            found.as_slice(),
            [ScanItem::Damaged {
                offset: 1536,
                error: HeaderError::Version { found: 2 }
            }]
        ));
    }
}
