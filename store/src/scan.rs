//! Walks the records of a segment image in order: recovery, compaction and scrub share it.
//!
//! A record counts only if its header is valid and carries the segment's sequence number; a
//! record from an earlier use of the segment, or unwritten space, is skipped. After a damaged
//! header the walk steps block by block until the next valid header, so one bad record never
//! hides the ones after it.

use crate::record::{HeaderError, RecordHeader};

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
            Err(error) => {
                visit(ScanItem::Damaged { offset, error });
                offset += block;
            }
        }
    }
}
