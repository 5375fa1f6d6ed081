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
    visit: impl FnMut(ScanItem),
) {
    assert!(start <= image.len());
    let end = scan_window(
        &image[start..],
        start,
        image.len(),
        segment_seq,
        device_tag,
        block,
        visit,
    );
    debug_assert!(matches!(end, WindowEnd::End(_)));
}

/// Where [`scan_window`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WindowEnd {
    /// Everything up to this segment-relative offset was visited.
    End(usize),
    /// A record of this incarnation starts at `offset` and ends inside the region but past the
    /// window: read it whole and scan on from `offset`.
    Partial { offset: usize, disk_bytes: usize },
}

/// [`scan`] over a window of a segment: `window` holds the segment-relative bytes
/// `[window_start, window_start + window.len())`, and records must end by `region_end`
/// (segment-relative; the end of what may hold records, e.g. the segment's size). Offsets given
/// to `visit` are segment-relative. Scanning a region window by window, each window starting
/// where the last one stopped, visits exactly what one scan of the whole region visits.
pub(crate) fn scan_window(
    window: &[u8],
    window_start: usize,
    region_end: usize,
    segment_seq: u64,
    device_tag: u64,
    block: usize,
    mut visit: impl FnMut(ScanItem),
) -> WindowEnd {
    assert!(block.is_power_of_two());
    assert!(window_start.is_multiple_of(block));
    let window_end = (window_start + window.len()).min(region_end);
    let mut offset = window_start;
    while offset + block <= window_end {
        let at = &window[offset - window_start..];
        match RecordHeader::decode(at) {
            Ok(header) if header.segment_seq == segment_seq && header.device_tag == device_tag => {
                let disk_bytes = header.disk_bytes(block as u32) as usize;
                if offset + disk_bytes > region_end {
                    visit(ScanItem::Damaged {
                        offset,
                        error: HeaderError::Field {
                            field: "data_bytes",
                        },
                    });
                    offset += block;
                    continue;
                }
                if offset + disk_bytes > window_end {
                    return WindowEnd::Partial { offset, disk_bytes };
                }
                let data = &at[crate::limits::RECORD_HEADER_BYTES..][..header.data_bytes as usize];
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
    WindowEnd::End(offset.max(window_start))
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

    #[test]
    fn scanning_window_by_window_meets_what_one_scan_meets() {
        use crate::record::record_disk_bytes;
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut met = 0;
        let mut partial_cuts = 0;
        for seed in 0..300 {
            let mut rng = StdRng::seed_from_u64(seed);
            let block = [512usize, 4096][rng.gen_range(0..2)];
            let mut image = vec![0u8; block * rng.gen_range(4..160)];
            let mut at = block;
            while at + block <= image.len() {
                match rng.gen_range(0..10) {
                    0 => at += block,
                    1 => {
                        // Another incarnation's record: skipped block by block.
                        header(4, 9).encode(&mut image[at..]);
                        at += block;
                    }
                    _ => {
                        let data_bytes = rng.gen_range(0..block * 6);
                        let disk = record_disk_bytes(data_bytes, block as u32) as usize;
                        if at + disk > image.len() {
                            break;
                        }
                        let data_at = at + RECORD_HEADER_BYTES;
                        rng.fill(&mut image[data_at..data_at + data_bytes]);
                        let mut h = header(5, 9);
                        h.data_bytes = data_bytes as u32;
                        h.data_crc = crc32c::crc32c(&image[data_at..data_at + data_bytes]);
                        h.encode(&mut image[at..]);
                        if rng.gen_bool(0.1) {
                            image[at + rng.gen_range(0..RECORD_HEADER_BYTES)] ^= 1;
                        }
                        if data_bytes > 0 && rng.gen_bool(0.1) {
                            image[data_at + rng.gen_range(0..data_bytes)] ^= 1;
                        }
                        at += disk;
                    }
                }
            }
            let mut whole = Vec::new();
            scan(&image, 5, 9, block, block, |item| {
                whole.push(format!("{item:?}"))
            });
            let mut windows = Vec::new();
            let mut start = block;
            while start + block <= image.len() {
                let end = (start + block * rng.gen_range(1..8)).min(image.len());
                let found = scan_window(&image[start..end], start, image.len(), 5, 9, block, |i| {
                    windows.push(format!("{i:?}"))
                });
                start = match found {
                    WindowEnd::End(offset) => offset,
                    WindowEnd::Partial { offset, disk_bytes } => {
                        partial_cuts += 1;
                        // Read the cut record whole, as the walk does.
                        let record = &image[offset..offset + disk_bytes];
                        let found = scan_window(record, offset, image.len(), 5, 9, block, |i| {
                            windows.push(format!("{i:?}"))
                        });
                        assert_eq!(found, WindowEnd::End(offset + disk_bytes));
                        offset + disk_bytes
                    }
                };
            }
            assert_eq!(whole, windows, "seed {seed}");
            met += whole.len();
        }
        assert!(met > 3_000, "{met} items");
        assert!(partial_cuts > 300, "{partial_cuts} records cut by a window");
    }
}
