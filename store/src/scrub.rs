//! Scrub: reads every record a core holds and reports each one that fails its checks, plus
//! index entries that point at nothing readable. It only reports; repair (rebuilding a shard
//! from the others of its stripe) belongs to the cluster layer.

use std::collections::HashMap;

use crate::engine::CoreStore;
use crate::key::ShardKey;
use crate::loc::Loc;
use crate::record::RecordKind;
use crate::recovery::{read_blocking, OpenError};
use crate::scan::{scan, ScanItem};
use crate::segment::SegmentState;

/// One record that failed a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    pub device: String,
    pub slot: u8,
    pub offset: u64,
    /// Known when the header is intact.
    pub key: Option<ShardKey>,
    /// Whether the index points at it (a shard that is now unreadable).
    pub live: bool,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct ScrubReport {
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    pub bad: Vec<BadRecord>,
}

impl CoreStore {
    /// Walks every segment of every device of this core. Needs the store idle; blocks.
    pub fn scrub(&mut self) -> Result<ScrubReport, OpenError> {
        if !self.is_idle() {
            return Err(OpenError::NotIdle { what: "scrub" });
        }
        let mut report = ScrubReport::default();
        // Index entries by device and offset, to tell live records and find unreadable ones.
        let mut entries: HashMap<(u8, u64), u64> = HashMap::new();
        for (_, bits) in self.index.iter() {
            let loc = Loc::from_bits(bits);
            entries.insert((loc.device(), loc.offset()), bits);
        }
        for slot in 0..self.members.len() {
            let Some(member) = self.members[slot].as_mut() else {
                continue;
            };
            let name = member.device.info().name.clone();
            let block = member.block_bytes() as usize;
            for segment in 0..member.segments.len() {
                let info = member.segments[segment];
                if info.state == SegmentState::Free {
                    continue;
                }
                if info.state == SegmentState::Damaged {
                    report.bad.push(BadRecord {
                        device: name.clone(),
                        slot: slot as u8,
                        offset: member.segment_offset(segment as u32),
                        key: None,
                        live: false,
                        reason:
                            "segment header damaged: segment quarantined, its records not served"
                                .to_string(),
                    });
                    continue;
                }
                let base = member.segment_offset(segment as u32);
                let len = (info.written_bytes as usize).next_multiple_of(block);
                let image = read_blocking(member, base, len)?;
                report.segments += 1;
                let tag = member.sb.device_uuid as u64;
                scan(image.as_slice(), info.seq, tag, block, block, |item| {
                    let (offset, key, reason) = match item {
                        ScanItem::Record {
                            offset,
                            header,
                            disk_bytes,
                            data_ok,
                        } => {
                            report.records += 1;
                            report.bytes += disk_bytes as u64;
                            let at = base + offset as u64;
                            let loc = Loc::of_record(slot as u8, at, disk_bytes, header.kind);
                            let matches = entries.get(&(slot as u8, at)) == Some(&loc.bits());
                            let marked = header.kind == RecordKind::Damaged;
                            if matches && data_ok && !marked {
                                entries.remove(&(slot as u8, at));
                            }
                            if data_ok && header.kind == RecordKind::Damaged && matches {
                                (
                                    at,
                                    Some(header.key),
                                    "marked damaged, needs repair".to_string(),
                                )
                            } else if data_ok {
                                return;
                            } else {
                                (at, Some(header.key), "data checksum mismatch".to_string())
                            }
                        }
                        ScanItem::Damaged { offset, error } => {
                            (base + offset as u64, None, format!("header: {error}"))
                        }
                    };
                    let live = entries.remove(&(slot as u8, offset)).is_some();
                    report.bad.push(BadRecord {
                        device: name.clone(),
                        slot: slot as u8,
                        offset,
                        key,
                        live,
                        reason,
                    });
                });
                self.bufs.give(image);
            }
        }
        // Whatever the walk did not meet is an index entry without a readable record.
        for ((slot, offset), _) in entries {
            let device = self.members[usize::from(slot)]
                .as_ref()
                .map_or_else(String::new, |m| m.device.info().name.clone());
            report.bad.push(BadRecord {
                device,
                slot,
                offset,
                key: None,
                live: true,
                reason: "index points at a record that cannot be read".to_string(),
            });
        }
        report.bad.sort_by_key(|bad| (bad.slot, bad.offset));
        Ok(report)
    }
}
