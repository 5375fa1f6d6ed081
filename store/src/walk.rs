//! The walk: reads every record a core holds, a bounded step at a time, through the device
//! queues like any other request, so a reactor can scrub or audit its store in the background
//! while it serves (see `docs/disk-format.md` §5.8).
//!
//! A [`WalkCursor`] names a place in the core's log: device slot, segment, and an offset inside
//! one incarnation of that segment. [`CoreStore::submit_walk`] reads the next part of the
//! partition from a cursor (one read of at most `max_bytes` inside one segment, or a second
//! read of exactly one record when the first ends inside the only record it met), scans it as
//! recovery does, and answers with an [`Outcome::Walk`] event: every record met, whether the
//! index points at it (`live`), whether its data checksum holds, damaged headers, and the cursor
//! to go on from. Free segments, segments whose compaction is freeing them and segments whose
//! header is damaged are passed without I/O; a pass ends (`wrapped`) after the last segment of
//! the last device.
//!
//! Safety with everything else the core does:
//! - A walk read holds its segment like a get does (`readers`): compaction does not free the
//!   segment, and a removed device is not detached, while the read is in flight. So when the
//!   read completes, the segment still holds the incarnation that was read, and `live` (the
//!   index holds exactly this record's location) is decided then, against the index of that
//!   moment: a record the index has left (overwritten, deleted, moved by compaction) is never
//!   live.
//! - Only bytes below every batch still being written are read: in the head segment the walk
//!   stops at the first record not yet acknowledged.
//! - A cursor inside a segment that has since been freed and reused (another sequence number)
//!   starts that segment again from its first record.
//! - The walk takes no key lock and changes neither the index nor any segment: gets, puts,
//!   deletes and compaction behave as if it did not run.
//!
//! What a pass is, with writes and compaction running: every record that stays where it is for
//! the whole pass is met exactly once; a record written or moved (by compaction) behind the
//! cursor during the pass is met in the next pass; one moved from behind the cursor to ahead of
//! it is met twice (the second time at its new place; live at most once, at the place the index
//! names when it is met). With the store quiet, a pass meets every record on the log once, in
//! (slot, segment, offset) order.

use ds_nvme::{Completion, IoError, IoRequest};

use crate::engine::{CoreStore, Outcome, ReadIo};
use crate::key::ShardKey;
use crate::limits::WALKS_INFLIGHT_MAX;
use crate::loc::Loc;
use crate::member::{token, Purpose};
use crate::record::{HeaderError, RecordKind, ShardMeta};
use crate::scan::{scan_window, ScanItem, WindowEnd};
use crate::segment::SegmentState;

/// A place in a core's log to walk on from. `WalkCursor::default()` is the start of a pass:
/// the first segment of the lowest device slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WalkCursor {
    slot: u8,
    segment: u32,
    /// Segment-relative offset of the next record to read; 0 = from the segment's first record.
    offset: u64,
    /// The incarnation `offset` belongs to, and its device's tag (meaningful only when
    /// `offset > 0`).
    seq: u64,
    tag: u64,
}

impl WalkCursor {
    /// The start of a pass (the same as `WalkCursor::default()`).
    pub const START: WalkCursor = WalkCursor {
        slot: 0,
        segment: 0,
        offset: 0,
        seq: 0,
        tag: 0,
    };

    /// Device slot the walk is on.
    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// Segment (index in the core's partition of that device) the walk is on.
    pub fn segment(&self) -> u32 {
        self.segment
    }

    /// Segment-relative offset the walk goes on from (0: the segment's first record).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn is_start(&self) -> bool {
        *self == Self::START
    }

    /// The first record of `segment` of device `slot`, whatever its incarnation.
    fn segment_start(slot: u8, segment: u32) -> Self {
        Self {
            slot,
            segment,
            ..Self::START
        }
    }

    /// `offset` inside incarnation `seq` of `segment` of the device with `tag`.
    fn inside(slot: u8, segment: u32, offset: u64, seq: u64, tag: u64) -> Self {
        Self {
            slot,
            segment,
            offset,
            seq,
            tag,
        }
    }
}

/// A record met by the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkedRecord {
    pub key: ShardKey,
    /// Shard, tombstone, or DAMAGED marker (the shard at `meta.version` is lost, needs repair).
    pub kind: RecordKind,
    pub meta: ShardMeta,
    pub data_bytes: u32,
    /// Bytes the record occupies on the device (header, data, padding).
    pub disk_bytes: u32,
    pub lsn: u64,
    /// The data checksum holds (always true for a tombstone or marker). A record that is not
    /// live may fail it legitimately (a torn write that was never acknowledged); a live one
    /// that fails it is a damaged current shard: rebuild it and [`CoreStore::submit_repair`]
    /// it at `meta.version`.
    pub data_ok: bool,
    /// The index points at exactly this record (its device, offset and length) when the walk
    /// met it: the key's current version on this core. A live `Damaged` marker or a live shard
    /// with `data_ok == false` needs repair.
    pub live: bool,
    /// Device slot and device byte offset of the record's header.
    pub slot: u8,
    pub offset: u64,
}

/// What is damaged at a place the walk passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkDamageKind {
    /// Something that starts like a record header of this segment but fails its checks (its
    /// key cannot be known; a get of the key whose index entry points here says corrupt).
    Header(HeaderError),
    /// The segment's header is damaged: the segment is quarantined, its records are neither
    /// served nor read by the walk (`offset` is the segment's first byte).
    SegmentHeader,
}

/// A damaged header the walk met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkDamage {
    pub slot: u8,
    /// Device byte offset.
    pub offset: u64,
    pub kind: WalkDamageKind,
}

/// One step of a walk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalkStep {
    /// Records met, in log order.
    pub records: Vec<WalkedRecord>,
    /// Damaged record headers met, and damaged segment headers passed.
    pub damaged: Vec<WalkDamage>,
    /// Where to walk on from.
    pub next: WalkCursor,
    /// The pass is over: nothing is left after this step; `next` is the start again.
    pub wrapped: bool,
    /// Device bytes this step read (0 when it passed only segments that need no read).
    pub bytes_read: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    /// [`WALKS_INFLIGHT_MAX`] walk steps are in flight already.
    #[error("too many walk steps in flight")]
    Busy,
    /// Reading the device failed. Walk on from `skip` to leave the range out, or submit the
    /// same cursor again to retry.
    #[error("walk read of {bytes} bytes at offset {offset} of device {slot} failed: {error}")]
    Io {
        slot: u8,
        offset: u64,
        bytes: u64,
        error: IoError,
        skip: WalkCursor,
    },
}

/// A walk step whose read is in flight.
pub(crate) struct WalkRead {
    token: u64,
    slot: u8,
    segment: u32,
    seq: u64,
    /// Segment-relative offset and length of the read in flight.
    start: u64,
    len: u64,
    /// Segment-relative end of what may be read of the segment (fixed when the step began).
    region_end: u64,
    /// Where the step began (segment-relative).
    began: u64,
    /// The read in flight is the second of the step: the one record the first one cut.
    followed: bool,
    records: Vec<WalkedRecord>,
    damaged: Vec<WalkDamage>,
    bytes_read: u64,
}

/// The next part of the log that needs a read.
struct Target {
    slot: u8,
    segment: u32,
    seq: u64,
    start: u64,
    region_end: u64,
}

impl CoreStore {
    /// Reads the next part of this core's log from `cursor`: at most `max_bytes` (rounded up to
    /// the device block; at least one block, at most one segment) of one segment, except that a
    /// record that begins in that range and is the first one met is read whole by a second
    /// read. Answers with an event `Outcome::Walk` for `token`. Never blocks; takes no lock.
    pub fn submit_walk(&mut self, cursor: WalkCursor, max_bytes: usize, token: u64) {
        if self.walks_inflight >= WALKS_INFLIGHT_MAX {
            self.emit(token, Outcome::Walk(Err(WalkError::Busy)));
            return;
        }
        self.stats.walk_steps += 1;
        let mut damaged = Vec::new();
        let Some(target) = self.walk_seek(cursor, &mut damaged) else {
            let step = WalkStep {
                damaged,
                wrapped: true,
                ..WalkStep::default()
            };
            self.emit(token, Outcome::Walk(Ok(step)));
            return;
        };
        let member = self.members[usize::from(target.slot)]
            .as_ref()
            .expect("member");
        let block = u64::from(member.block_bytes());
        let want = (max_bytes as u64)
            .clamp(block, member.segment_bytes())
            .next_multiple_of(block);
        let walk = WalkRead {
            token,
            slot: target.slot,
            segment: target.segment,
            seq: target.seq,
            start: target.start,
            len: want.min(target.region_end - target.start),
            region_end: target.region_end,
            began: target.start,
            followed: false,
            records: Vec::new(),
            damaged,
            bytes_read: 0,
        };
        self.walks_inflight += 1;
        self.submit_walk_read(Box::new(walk));
    }

    /// Where a pass walking from `cursor` stands, as (segments behind it, segments in the pool),
    /// counting every segment of every device now in the pool (for progress reports).
    pub fn walk_progress(&self, cursor: WalkCursor) -> (u64, u64) {
        let mut behind = 0u64;
        let mut total = 0u64;
        for member in self.members.iter().flatten() {
            let count = member.segments.len() as u64;
            total += count;
            if member.slot < cursor.slot {
                behind += count;
            } else if member.slot == cursor.slot {
                behind += u64::from(cursor.segment).min(count);
            }
        }
        (behind, total)
    }

    fn submit_walk_read(&mut self, walk: Box<WalkRead>) {
        let (slot, segment, start, len) = (walk.slot, walk.segment, walk.start, walk.len);
        let buf = self.bufs.take(len as usize);
        let id = self.new_read(ReadIo::Walk(walk));
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        // Held like a get's read: the segment is not freed, nor the device detached, meanwhile.
        member.segments[segment as usize].readers += 1;
        let offset = member.segment_offset(segment) + start;
        member.submit(
            IoRequest::read(buf, offset, len as usize),
            token(Purpose::Read, slot, id),
        );
    }

    /// The first part of the log at or after `cursor` that holds bytes to read. Passes free
    /// segments, segments with nothing readable, segments compaction is freeing, and damaged
    /// ones (added to `damaged`). `None` when the pool has nothing more: the pass is over.
    fn walk_seek(&self, cursor: WalkCursor, damaged: &mut Vec<WalkDamage>) -> Option<Target> {
        let mut slot = usize::from(cursor.slot);
        let mut segment = cursor.segment;
        let mut resume = (cursor.offset > 0).then_some((cursor.offset, cursor.seq, cursor.tag));
        while slot < self.members.len() {
            let Some(member) = self.members[slot].as_ref() else {
                slot += 1;
                segment = 0;
                resume = None;
                continue;
            };
            let Some(info) = member.segments.get(segment as usize) else {
                slot += 1;
                segment = 0;
                resume = None;
                continue;
            };
            let block = u64::from(member.block_bytes());
            match info.state {
                SegmentState::Free => {}
                SegmentState::Damaged => damaged.push(WalkDamage {
                    slot: slot as u8,
                    offset: member.segment_offset(segment),
                    kind: WalkDamageKind::SegmentHeader,
                }),
                SegmentState::Open | SegmentState::Sealed => {
                    // A segment whose FREE marker is going out holds nothing live but
                    // tombstones about to be dropped (and entries to unreadable records).
                    if !self.compaction_vacating(slot as u8, segment) {
                        let region_end = member.readable_end(segment);
                        let start = match resume {
                            // Inside the same incarnation: go on where the last step stopped.
                            Some((offset, seq, tag))
                                if seq == info.seq
                                    && tag == member.sb.device_uuid as u64
                                    && offset >= block
                                    && offset.is_multiple_of(block) =>
                            {
                                offset
                            }
                            _ => block,
                        };
                        if start + block <= region_end {
                            return Some(Target {
                                slot: slot as u8,
                                segment,
                                seq: info.seq,
                                start,
                                region_end,
                            });
                        }
                    }
                }
            }
            segment += 1;
            resume = None;
        }
        None
    }

    pub(crate) fn handle_walk_read(&mut self, mut walk: Box<WalkRead>, completion: Completion) {
        let buf = completion.buf.expect("walk buffer");
        let slot = walk.slot;
        let segment = walk.segment;
        let member = self.members[usize::from(slot)]
            .as_mut()
            .expect("a device is not detached while a walk reads it");
        let info = &mut member.segments[segment as usize];
        info.readers -= 1;
        // Always so (the read held the segment); checked so that nothing else can be live.
        let intact = info.seq == walk.seq && info.state != SegmentState::Free;
        let base = member.segment_offset(segment);
        let block = u64::from(member.block_bytes());
        let tag = member.sb.device_uuid as u64;
        if let Err(error) = completion.result {
            self.stats.read_errors += 1;
            member.read_errors += 1;
            self.bufs.give(buf);
            self.walks_inflight -= 1;
            let end = walk.start + walk.len;
            let skip = if end + block <= walk.region_end {
                WalkCursor::inside(slot, segment, end, walk.seq, tag)
            } else {
                WalkCursor::segment_start(slot, segment.saturating_add(1))
            };
            let error = WalkError::Io {
                slot,
                offset: base + walk.start,
                bytes: walk.len,
                error,
                skip,
            };
            self.emit(walk.token, Outcome::Walk(Err(error)));
            return;
        }
        walk.bytes_read += walk.len;
        self.stats.walk_bytes_read += walk.len;
        let index = &self.index;
        let mut candidates = Vec::new();
        let WalkRead {
            records,
            damaged,
            start,
            len,
            region_end,
            seq,
            ..
        } = &mut *walk;
        let end = scan_window(
            &buf.as_slice()[..*len as usize],
            *start as usize,
            *region_end as usize,
            *seq,
            tag,
            block as usize,
            |item| match item {
                ScanItem::Record {
                    offset,
                    header,
                    disk_bytes,
                    data_ok,
                } => {
                    let at = base + offset as u64;
                    let loc = Loc::of_record(slot, at, disk_bytes, header.kind);
                    candidates.clear();
                    index.candidates(header.key.fingerprint(), &mut candidates);
                    records.push(WalkedRecord {
                        key: header.key,
                        kind: header.kind,
                        meta: header.meta,
                        data_bytes: header.data_bytes,
                        disk_bytes: disk_bytes as u32,
                        lsn: header.lsn,
                        data_ok,
                        live: intact && candidates.contains(&loc.bits()),
                        slot,
                        offset: at,
                    });
                }
                ScanItem::Damaged { offset, error } => damaged.push(WalkDamage {
                    slot,
                    offset: base + offset as u64,
                    kind: WalkDamageKind::Header(error),
                }),
            },
        );
        self.bufs.give(buf);
        let resume = match end {
            // The first record met did not fit: read it whole, then the step is done.
            WindowEnd::Partial { offset, disk_bytes }
                if walk.records.is_empty() && !walk.followed =>
            {
                walk.followed = true;
                walk.start = offset as u64;
                walk.len = disk_bytes as u64;
                self.submit_walk_read(walk);
                return;
            }
            WindowEnd::Partial { offset, .. } | WindowEnd::End(offset) => offset as u64,
        };
        // Every step moves on, whatever the bytes said.
        let resume = resume.max(walk.began + block);
        self.walks_inflight -= 1;
        let mut step = WalkStep {
            records: std::mem::take(&mut walk.records),
            damaged: std::mem::take(&mut walk.damaged),
            next: WalkCursor::START,
            wrapped: false,
            bytes_read: walk.bytes_read,
        };
        if resume + block <= walk.region_end {
            step.next = WalkCursor::inside(slot, segment, resume, walk.seq, tag);
        } else {
            // This segment is done. Look past what needs no read, so that the step that
            // reads the last bytes of a pass says the pass is over.
            let after = WalkCursor::segment_start(slot, segment.saturating_add(1));
            match self.walk_seek(after, &mut step.damaged) {
                Some(target) => {
                    step.next = WalkCursor::segment_start(target.slot, target.segment);
                }
                None => step.wrapped = true,
            }
        }
        self.emit(walk.token, Outcome::Walk(Ok(step)));
    }
}
