//! Compaction: reclaims segments whose records are mostly dead by copying the live ones to the
//! head and marking the segment free. Also empties a device that is being removed.
//!
//! Steps: read the whole segment, in chunks of [`COMPACTION_READ_CHUNK_BYTES`] with few in
//! flight, so client I/O queued behind it waits for a chunk, not for the segment (one 64 MiB
//! read held 1 MiB PUTs for 80-90 ms); walk it; copy each live record through the normal append
//! path (so copies are group-committed and acknowledged like client writes); a live record
//! whose data fails its checksum is replaced by a DAMAGED marker at its version, so no older
//! version can win later; once every copy is durable, write a FREE marker into the segment
//! header and flush. Only then do index entries go that point into the segment (tombstones
//! nothing older can resurrect, entries to unreadable records), and only then is the segment
//! reused. A compaction that fails leaves its segment out of later picks until compaction is
//! asked for again.
//!
//! A segment no index entry points into is not read at all: it goes straight to the FREE
//! marker, with up to [`UNREAD_FREES_MAX`] - 1 other such segments under one flush (an unread
//! free costs a marker write and a flush; one at a time they freed ~18 segments/s under 1 MiB
//! PUTs, barely what the PUTs filled).

use ds_nvme::{Completion, IoRequest};

use crate::engine::{CoreStore, OpKind, ReadIo, Stage};
use crate::limits::{
    COMPACTION_DEAD_PERCENT_MIN, COMPACTION_READS_INFLIGHT_MAX, COMPACTION_READ_CHUNK_BYTES,
    OPS_INFLIGHT_MAX, UNREAD_FREES_MAX,
};
use crate::loc::Loc;
use crate::member::{token, Purpose};
use crate::scan::{scan, ScanItem};
use crate::segment::{SegmentMark, SegmentState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Reading,
    /// Walking records from `cursor`, copying live ones.
    Copying,
    Marking,
    Flushing,
    /// Freed on disk; waiting for reads still in flight into it.
    Releasing,
}

pub(crate) struct Compaction {
    slot: u8,
    segment: u32,
    seq: u64,
    /// The segment's bytes: filled chunk by chunk while reading, walked and copied from after.
    image: Option<ds_nvme::DmaBuf>,
    /// While reading: the next chunk's offset in the segment, and chunks in flight.
    read_next: usize,
    reads_pending: usize,
    /// A chunk read failed: the compaction is given up once the others are back.
    read_failed: Option<String>,
    /// Other segments of the same device nothing live points into, freed with this one:
    /// (segment, seq).
    also: Vec<(u32, u64)>,
    /// FREE marker writes in flight, and the first that failed.
    marks_pending: usize,
    mark_failed: Option<String>,
    /// Freed without reading it: nothing live pointed into it.
    unread: bool,
    step: Step,
    /// Live records found by the walk, as (offset in image, loc, data intact), not yet copied.
    todo: Vec<(usize, Loc, bool)>,
    /// Index entries to remove once the segment is free on disk: (key, fingerprint, loc).
    drops: Vec<(crate::key::ShardKey, u64, Loc)>,
    copies_pending: usize,
    failed: bool,
    /// The segment was read a second time because the first read showed damaged records.
    reread: bool,
}

impl Compaction {
    pub(crate) fn source(&self) -> &ds_nvme::DmaBuf {
        self.image.as_ref().expect("compaction image")
    }
}

impl CoreStore {
    /// Asks for compaction of every segment that has dead bytes now, whatever the free space.
    /// Segments whose compaction failed are tried again.
    pub fn request_compaction(&mut self) {
        self.compact_eagerly = Some(self.seq_next);
        for member in self.members.iter_mut().flatten() {
            for info in member.segments.iter_mut() {
                info.compaction_failed = false;
            }
        }
    }

    /// Compaction has copied everything off `segment` of device `slot` and is freeing it (or
    /// frees it unread with its own).
    pub(crate) fn compaction_vacating(&self, slot: u8, segment: u32) -> bool {
        self.compaction.as_ref().is_some_and(|c| {
            c.slot == slot
                && (c.segment == segment || c.also.iter().any(|&(other, _)| other == segment))
                && matches!(c.step, Step::Marking | Step::Flushing | Step::Releasing)
        })
    }

    /// Gives up the compaction in progress; its segment is not picked again until asked.
    fn abandon_compaction(&mut self, why: &str) {
        let compaction = self.compaction.take().expect("compaction");
        tracing::error!(
            slot = compaction.slot,
            segment = compaction.segment,
            why,
            "compaction abandoned"
        );
        if let Some(image) = compaction.image {
            self.bufs.give(image);
        }
        if let Some(member) = self.members[usize::from(compaction.slot)].as_mut() {
            member.segments[compaction.segment as usize].compaction_failed = true;
            for &(segment, _) in &compaction.also {
                member.segments[segment as usize].compaction_failed = true;
            }
        }
    }

    /// Moves compaction on; called from every poll.
    pub(crate) fn step_compaction(&mut self) {
        let Some(compaction) = self.compaction.as_mut() else {
            self.start_compaction();
            return;
        };
        match compaction.step {
            Step::Reading | Step::Marking | Step::Flushing => {}
            Step::Copying => self.issue_copies(),
            Step::Releasing => self.release_segment(),
        }
    }

    fn start_compaction(&mut self) {
        let wanted = self.compact_eagerly.is_some()
            || self
                .members
                .iter()
                .flatten()
                .any(|m| m.draining || m.low_on_space());
        if !wanted {
            return;
        }
        let Some((slot, segment)) = self.pick_compaction() else {
            self.compact_eagerly = None;
            return;
        };
        let member = self.members[slot].as_mut().expect("member");
        let bytes = member.segment_bytes() as usize;
        let seq = member.segments[segment as usize].seq;
        let mut compaction = Compaction {
            slot: slot as u8,
            segment,
            seq,
            image: None,
            read_next: 0,
            reads_pending: 0,
            read_failed: None,
            also: Vec::new(),
            marks_pending: 0,
            mark_failed: None,
            unread: false,
            step: Step::Reading,
            todo: Vec::new(),
            drops: Vec::new(),
            copies_pending: 0,
            failed: false,
            reread: false,
        };
        if member.segments[segment as usize].live_bytes == 0 {
            // No index entry points into it (overwritten records, dropped tombstones): nothing
            // to copy or drop, so the segment is not read; it is marked free at once.
            compaction.also = member
                .segments
                .iter()
                .enumerate()
                .filter(|&(other, info)| {
                    other as u32 != segment
                        && info.state == SegmentState::Sealed
                        && !info.compaction_failed
                        && info.live_bytes == 0
                        && info.dead_bytes > 0
                        && !member.holds_batches_in(other as u32)
                })
                .map(|(other, info)| (other as u32, info.seq))
                .take(UNREAD_FREES_MAX - 1)
                .collect();
            compaction.unread = true;
            compaction.step = Step::Copying;
            self.compaction = Some(compaction);
            self.mark_free();
            return;
        }
        compaction.image = Some(self.bufs.take(bytes));
        self.compaction = Some(compaction);
        self.issue_chunk_reads();
    }

    /// Keeps up to [`COMPACTION_READS_INFLIGHT_MAX`] chunk reads of the segment in flight.
    fn issue_chunk_reads(&mut self) {
        loop {
            let compaction = self.compaction.as_mut().expect("compaction");
            let slot = compaction.slot;
            let member = self.members[usize::from(slot)].as_ref().expect("member");
            let bytes = member.segment_bytes() as usize;
            let base = member.segment_offset(compaction.segment);
            if compaction.read_failed.is_some()
                || compaction.reads_pending >= COMPACTION_READS_INFLIGHT_MAX
                || compaction.read_next >= bytes
            {
                return;
            }
            let at = compaction.read_next;
            let len = COMPACTION_READ_CHUNK_BYTES.min(bytes - at);
            compaction.read_next += len;
            compaction.reads_pending += 1;
            let buf = self.bufs.take(len);
            let id = self.new_read(ReadIo::CompactionChunk { at });
            let member = self.members[usize::from(slot)].as_mut().expect("member");
            member.submit(
                IoRequest::read(buf, base + at as u64, len),
                token(Purpose::Read, slot, id),
            );
        }
    }

    /// A chunk of the segment arrived: into the image; the walk starts once all have.
    pub(crate) fn handle_compaction_chunk(&mut self, at: usize, completion: Completion) {
        let chunk = completion.buf.expect("compaction chunk buffer");
        let compaction = self.compaction.as_mut().expect("compaction");
        assert_eq!(compaction.step, Step::Reading);
        compaction.reads_pending -= 1;
        match completion.result {
            Err(error) => {
                self.stats.read_errors += 1;
                compaction.read_failed = Some(format!(
                    "reading the segment failed at byte {at} of it: {error}"
                ));
            }
            Ok(_) => {
                let member = self.members[usize::from(compaction.slot)]
                    .as_ref()
                    .expect("member");
                let len = COMPACTION_READ_CHUNK_BYTES.min(member.segment_bytes() as usize - at);
                let image = compaction.image.as_mut().expect("image").as_mut_slice();
                image[at..at + len].copy_from_slice(&chunk.as_slice()[..len]);
            }
        }
        self.bufs.give(chunk);
        let compaction = self.compaction.as_mut().expect("compaction");
        if compaction.reads_pending > 0 {
            if compaction.read_failed.is_none() {
                self.issue_chunk_reads();
            }
            return;
        }
        if let Some(why) = compaction.read_failed.take() {
            if let Some(image) = compaction.image.take() {
                self.bufs.give(image);
            }
            self.abandon_compaction(&why);
            return;
        }
        let member = self.members[usize::from(compaction.slot)]
            .as_ref()
            .expect("member");
        if compaction.read_next < member.segment_bytes() as usize {
            self.issue_chunk_reads();
            return;
        }
        let image = compaction.image.take().expect("image");
        self.walk_image(image);
    }

    /// A draining device's segments first; then, when space runs low (or compaction was asked
    /// for), the sealed segment with the most dead bytes.
    fn pick_compaction(&self) -> Option<(usize, u32)> {
        let mut best: Option<(u64, usize, u32)> = None;
        for (slot, member) in self.members.iter().enumerate() {
            let Some(member) = member else { continue };
            let low = member.low_on_space();
            for (segment, info) in member.segments.iter().enumerate() {
                if info.state != SegmentState::Sealed || info.compaction_failed {
                    continue;
                }
                if member.holds_batches_in(segment as u32) {
                    continue;
                }
                let dead = info.dead_bytes;
                let worth = dead * 100 >= member.segment_bytes() * COMPACTION_DEAD_PERCENT_MIN;
                let asked = self.compact_eagerly.is_some_and(|bound| info.seq < bound) && dead > 0;
                let wanted = member.draining || asked || (low && worth);
                if !wanted {
                    continue;
                }
                let score = if member.draining { u64::MAX } else { dead };
                if best.is_none_or(|(best_score, ..)| score > best_score) {
                    best = Some((score, slot, segment as u32));
                }
            }
        }
        best.map(|(_, slot, segment)| (slot, segment))
    }

    /// The whole segment is read: finds its live records (and tombstones that may go).
    fn walk_image(&mut self, buf: ds_nvme::DmaBuf) {
        let compaction = self.compaction.as_mut().expect("compaction");
        let slot = compaction.slot;
        let segment = compaction.segment;
        let seq = compaction.seq;
        let member = self.members[usize::from(slot)].as_ref().expect("member");
        let base = member.segment_offset(segment);
        let block = member.block_bytes() as usize;
        // Tombstones older than every record outside this segment have nothing left to hide.
        let oldest_elsewhere = self
            .members
            .iter()
            .flatten()
            .flat_map(|m| {
                m.segments.iter().enumerate().filter_map(move |(i, info)| {
                    let other = m.slot != slot || i as u32 != segment;
                    (other && info.state != SegmentState::Free).then_some(info.lsn_min)
                })
            })
            .min()
            .unwrap_or(u64::MAX);
        let mut todo = Vec::new();
        let mut candidates = Vec::new();
        let mut drops = Vec::new();
        let mut corrupt = 0u64;
        let tag = member.sb.device_uuid as u64;
        scan(buf.as_slice(), seq, tag, block, block, |item| {
            let ScanItem::Record {
                offset,
                header,
                disk_bytes,
                data_ok,
            } = item
            else {
                return;
            };
            let loc = Loc::of_record(slot, base + offset as u64, disk_bytes, header.kind);
            let fp = header.key.fingerprint();
            candidates.clear();
            self.index.candidates(fp, &mut candidates);
            if !candidates.contains(&loc.bits()) {
                return;
            }
            if !data_ok {
                corrupt += 1;
                todo.push((offset, loc, false));
            } else if loc.is_tombstone() && header.born_lsn < oldest_elsewhere {
                drops.push((header.key, fp, loc));
            } else {
                todo.push((offset, loc, true));
            }
        });
        if corrupt > 0 && !self.compaction.as_ref().expect("compaction").reread {
            // A flip on the way is not damage on the media: read the segment once more before
            // turning anything into a DAMAGED marker.
            let compaction = self.compaction.as_mut().expect("compaction");
            compaction.reread = true;
            compaction.read_next = 0;
            compaction.image = Some(buf);
            self.issue_chunk_reads();
            return;
        }
        if corrupt > 0 {
            tracing::error!(
                slot,
                segment,
                corrupt,
                "compaction found corrupt live records; marked damaged"
            );
            self.stats.compaction_corrupt += corrupt;
        }
        let compaction = self.compaction.as_mut().expect("compaction");
        todo.reverse();
        compaction.todo = todo;
        compaction.drops = drops;
        compaction.image = Some(buf);
        compaction.step = Step::Copying;
        self.issue_copies();
    }

    /// Turns walked live records into copy ops while op slots are plentiful.
    fn issue_copies(&mut self) {
        loop {
            let inflight = self.inflight();
            let compaction = self.compaction.as_mut().expect("compaction");
            if compaction.todo.is_empty() {
                if compaction.copies_pending == 0 {
                    self.mark_free();
                }
                return;
            }
            if inflight >= OPS_INFLIGHT_MAX / 2 {
                return;
            }
            let (offset, loc, intact) = compaction.todo.pop().expect("todo");
            compaction.copies_pending += 1;
            let image = compaction.image.as_ref().expect("image").as_slice();
            let header = crate::record::RecordHeader::decode(&image[offset..]).expect("walked");
            let kind = OpKind::Copy {
                old: loc,
                header,
                source: offset,
                damaged: !intact,
            };
            let op = self.new_copy_op(header.key, kind);
            // A damaged record moves as a marker without data: its bytes are not worth keeping.
            self.op_mut(op).data_bytes = if intact {
                header.data_bytes as usize
            } else {
                0
            };
            if self.busy.contains(&header.key) {
                self.op_mut(op).stage = Stage::Deferred;
                self.deferred.push_back(op);
            } else {
                self.busy.insert(header.key);
                self.append(op, None);
            }
        }
    }

    pub(crate) fn copy_done(&mut self) {
        let compaction = self.compaction.as_mut().expect("compaction");
        compaction.copies_pending -= 1;
    }

    pub(crate) fn copy_failed(&mut self) {
        let compaction = self.compaction.as_mut().expect("compaction");
        compaction.copies_pending -= 1;
        compaction.failed = true;
    }

    /// Every copy is durable: write the FREE marker.
    fn mark_free(&mut self) {
        let compaction = self.compaction.as_mut().expect("compaction");
        if compaction.step != Step::Copying {
            return;
        }
        if let Some(image) = compaction.image.take() {
            self.bufs.give(image);
        }
        let compaction = self.compaction.as_mut().expect("compaction");
        if compaction.failed {
            self.abandon_compaction("a copy failed");
            return;
        }
        let slot = compaction.slot;
        compaction.step = Step::Marking;
        let marks: Vec<(u32, u64)> = std::iter::once((compaction.segment, compaction.seq))
            .chain(compaction.also.iter().copied())
            .collect();
        compaction.marks_pending = marks.len();
        for (segment, seq) in marks {
            let member = self.members[usize::from(slot)].as_mut().expect("member");
            let block = member.block_bytes() as usize;
            let mut buf = self.bufs.take(block);
            buf.as_mut_slice()[..block].fill(0);
            let header = member.segment_header(segment, seq, SegmentMark::Free);
            header.encode(buf.as_mut_slice());
            let offset = member.segment_offset(segment);
            let id = self.new_read(ReadIo::CompactionMark);
            let member = self.members[usize::from(slot)].as_mut().expect("member");
            member.submit(
                IoRequest::write(buf, offset, block),
                token(Purpose::Read, slot, id),
            );
        }
    }

    /// The segment is free on disk: once no read is in flight into it and no write holds a key
    /// whose entry goes, remove the entries that point into it and let it be reused.
    fn release_segment(&mut self) {
        let compaction = self.compaction.as_ref().expect("compaction");
        let (slot, segment) = (compaction.slot, compaction.segment);
        let member = self.members[usize::from(slot)].as_ref().expect("member");
        let waiting = member.segments[segment as usize].readers > 0
            || compaction
                .also
                .iter()
                .any(|&(other, _)| member.segments[other as usize].readers > 0)
            || compaction
                .drops
                .iter()
                .any(|(key, ..)| self.busy.contains(key));
        if waiting {
            return;
        }
        let drops = std::mem::take(&mut self.compaction.as_mut().expect("compaction").drops);
        for (_, fp, loc) in drops {
            if self.index.remove(fp, loc.bits()) {
                self.add_live(loc, -1);
                self.stats.tombstones_dropped += 1;
            }
        }
        let member = self.members[usize::from(slot)].as_ref().expect("member");
        if member.segments[segment as usize].live_bytes != 0 {
            // Entries the walk could not find (a damaged header): they point at bytes about to
            // be reused, so they go, and the loss is counted.
            self.drop_entries_into(slot, segment);
        }
        let compaction = self.compaction.take().expect("compaction");
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        member.segments[segment as usize] = crate::segment::SegmentInfo::free();
        for &(other, _) in &compaction.also {
            assert_eq!(member.segments[other as usize].live_bytes, 0);
            member.segments[other as usize] = crate::segment::SegmentInfo::free();
        }
        member.recount_free();
        let freed = 1 + compaction.also.len() as u64;
        self.stats.compactions += freed;
        self.stats.compactions_unread += freed - 1 + u64::from(compaction.unread);
    }

    fn drop_entries_into(&mut self, slot: u8, segment: u32) {
        let member = self.members[usize::from(slot)].as_ref().expect("member");
        let start = member.segment_offset(segment);
        let end = start + member.segment_bytes();
        let doomed: Vec<(u64, u64)> = self
            .index
            .iter()
            .filter(|&(_, bits)| {
                let loc = Loc::from_bits(bits);
                loc.device() == slot && (start..end).contains(&loc.offset())
            })
            .collect();
        for (fp, bits) in doomed {
            tracing::error!(
                slot,
                segment,
                "dropping an index entry to an unreadable record"
            );
            self.stats.compaction_corrupt += 1;
            self.index.remove(fp, bits);
            self.add_live(Loc::from_bits(bits), -1);
        }
    }

    pub(crate) fn handle_compaction_marked(&mut self, completion: Completion) {
        if let Some(buf) = completion.buf {
            self.bufs.give(buf);
        }
        let compaction = self.compaction.as_mut().expect("compaction");
        compaction.marks_pending -= 1;
        if let Err(error) = completion.result {
            compaction
                .mark_failed
                .get_or_insert(format!("writing the FREE marker failed: {error}"));
        }
        if compaction.marks_pending > 0 {
            return;
        }
        if let Some(why) = compaction.mark_failed.take() {
            self.abandon_compaction(&why);
            return;
        }
        compaction.step = Step::Flushing;
        let slot = compaction.slot;
        let id = self.new_read(ReadIo::CompactionFlush);
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        member.submit(IoRequest::flush(), token(Purpose::Read, slot, id));
    }

    pub(crate) fn handle_compaction_flushed(&mut self, completion: Completion) {
        if let Err(error) = completion.result {
            self.abandon_compaction(&format!("flushing the FREE marker failed: {error}"));
            return;
        }
        self.compaction.as_mut().expect("compaction").step = Step::Releasing;
    }
}
