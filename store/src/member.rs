//! One device of a core's pool: the core's partition on it, its segments, the head segment being
//! appended to, and the group-commit batches on their way to durability.
//!
//! Group commit: records are copied into the filling batch (one contiguous stretch of the head
//! segment). A batch is written with one request; a flush is issued when none is in flight and
//! covers every batch whose write had completed. Batches are acknowledged strictly in order, so
//! everything before an acknowledged record is durable, which is what recovery relies on.

use std::collections::VecDeque;
use std::sync::Arc;

use ds_nvme::{Device, DmaBuf, IoRequest, Queue, RejectReason};

use crate::bufs::BufCache;
use crate::error::PutError;
use crate::limits::{BATCHES_INFLIGHT_MAX, BATCH_BYTES_MAX, SEGMENTS_RESERVED};
use crate::segment::{SegmentHeader, SegmentInfo, SegmentMark, SegmentState};
use crate::superblock::Superblock;

/// What a device request was for, packed in the top byte of its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Purpose {
    BatchWrite = 1,
    Flush = 2,
    Read = 3,
}

pub(crate) fn token(purpose: Purpose, slot: u8, id: u64) -> u64 {
    assert!(id < 1 << 48);
    (purpose as u64) << 56 | u64::from(slot) << 48 | id
}

pub(crate) fn untoken(token: u64) -> (Option<Purpose>, u8, u64) {
    let purpose = match token >> 56 {
        1 => Some(Purpose::BatchWrite),
        2 => Some(Purpose::Flush),
        3 => Some(Purpose::Read),
        _ => None,
    };
    (purpose, (token >> 48) as u8, token & ((1 << 48) - 1))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchState {
    Filling,
    /// Closed, waiting for its segment's header to be durable before it may be written.
    Held,
    Submitted,
    Written,
    /// Covered by the flush in flight.
    Flushing,
    Durable,
}

pub(crate) struct Batch {
    pub id: u64,
    pub segment: u32,
    /// Device byte offset of the first byte of `buf`.
    pub offset: u64,
    pub buf: DmaBuf,
    pub len: usize,
    /// Operations whose records are in this batch, in order.
    pub ops: Vec<usize>,
    pub state: BatchState,
    /// The buffer is a zero-copy put's own, handed back to it when acknowledged.
    pub owned: bool,
    /// Holds only the header of a newly opened segment.
    pub header: bool,
}

/// Where a record was placed by [`Member::place`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement {
    pub offset: u64,
    pub segment_seq: u64,
}

pub(crate) struct Member {
    pub slot: u8,
    pub device: Arc<dyn Device>,
    pub queue: Box<dyn Queue>,
    pub sb: Superblock,
    pub partition: usize,
    pub segments: Vec<SegmentInfo>,
    pub head: Option<u32>,
    pub filling: Option<Batch>,
    /// Submitted batches, oldest first.
    pub batches: VecDeque<Batch>,
    pub flush_inflight: bool,
    pub batch_next: u64,
    /// Requests refused with QueueFull, resubmitted first on the next poll.
    pub backlog: VecDeque<(IoRequest, u64)>,
    /// Being removed: takes no new records.
    pub draining: bool,
    /// A write or flush failed: takes no new records until re-added.
    pub failed: bool,
    /// Reads of this device that failed (gets, walks, compaction).
    pub read_errors: u64,
    pub bytes_written: u64,
    pub bytes_since_checkpoint: u64,
    pub checkpoint_generation: u64,
    /// Number of segments in state Free.
    pub free_count: usize,
    /// Batches are written FUA (durable on completion) instead of write + flush.
    pub fua: bool,
}

impl Member {
    pub fn block_bytes(&self) -> u32 {
        self.sb.block_bytes
    }

    pub fn segment_bytes(&self) -> u64 {
        self.sb.segment_bytes
    }

    pub fn segment_of(&self, offset: u64) -> u32 {
        let first = self.sb.segment_offset(self.partition, 0);
        assert!(
            offset >= first,
            "offset {offset} is before the first segment"
        );
        let segment = ((offset - first) / self.sb.segment_bytes) as u32;
        assert!((segment as usize) < self.segments.len());
        segment
    }

    pub fn segment_offset(&self, segment: u32) -> u64 {
        self.sb.segment_offset(self.partition, segment)
    }

    /// Segments in state Free (kept current by [`Member::recount_free`]).
    pub fn free_segments(&self) -> usize {
        debug_assert_eq!(
            self.free_count,
            self.segments
                .iter()
                .filter(|s| s.state == SegmentState::Free)
                .count()
        );
        self.free_count
    }

    /// Recounts free segments; called after any segment changes state.
    pub fn recount_free(&mut self) {
        self.free_count = self
            .segments
            .iter()
            .filter(|s| s.state == SegmentState::Free)
            .count();
    }

    /// Free segments are scarce: compaction should run.
    pub fn low_on_space(&self) -> bool {
        self.free_count * 8 < self.segments.len() || self.free_count < 4
    }

    /// Bytes that new records could still use.
    pub fn free_bytes(&self) -> u64 {
        let head_room = self.head.map_or(0, |head| {
            self.segment_bytes() - self.segments[head as usize].written_bytes
        });
        self.free_segments() as u64 * self.segment_bytes() + head_room
    }

    /// Segment-relative end of what may be read of `segment` now: nothing below it is being
    /// written, and every record below it was acknowledged (or found by recovery). In the head
    /// segment, the start of the oldest batch not yet acknowledged.
    pub fn readable_end(&self, segment: u32) -> u64 {
        let base = self.segment_offset(segment);
        let mut end = self.segments[segment as usize].written_bytes;
        for batch in self.batches.iter().chain(self.filling.iter()) {
            if batch.segment == segment {
                end = end.min(batch.offset - base);
            }
        }
        end
    }

    /// Bytes of the partition's segments, free or not.
    pub fn capacity_bytes(&self) -> u64 {
        self.segments.len() as u64 * self.segment_bytes()
    }

    pub fn accepts_writes(&self) -> bool {
        !self.draining && !self.failed
    }

    /// Finds room for a record of `disk_bytes` in the filling batch, opening a new segment or
    /// batch as needed; closed batches are submitted. `use_reserve` lets deletes and compaction
    /// use the segments held back from client writes.
    /// With `direct`, the record does not go into the filling batch (which is submitted) but
    /// becomes a batch of its own, submitted with [`Member::submit_direct`].
    pub fn place(
        &mut self,
        disk_bytes: u64,
        use_reserve: bool,
        direct: bool,
        seq_next: &mut u64,
        bufs: &mut BufCache,
    ) -> Result<Placement, PutError> {
        assert!(disk_bytes.is_multiple_of(u64::from(self.block_bytes())));
        assert!(disk_bytes + u64::from(self.block_bytes()) <= self.segment_bytes());
        let head_fits = self.head.is_some_and(|head| {
            self.segments[head as usize].written_bytes + disk_bytes <= self.segment_bytes()
        });
        if !head_fits {
            let reserve = if use_reserve { 0 } else { SEGMENTS_RESERVED };
            let Some(free) = self.pick_free_segment() else {
                return Err(PutError::NoSpace);
            };
            if self.free_segments() <= reserve {
                return Err(PutError::NoSpace);
            }
            self.close_filling(bufs);
            if let Some(head) = self.head {
                self.segments[head as usize].state = SegmentState::Sealed;
            }
            self.open_segment(free, seq_next, bufs);
        }
        let head = self.head.expect("head segment");
        if direct {
            // Records stay contiguous: whatever is filling goes out first.
            self.close_filling(bufs);
            let info = &mut self.segments[head as usize];
            let offset = self.sb.segment_offset(self.partition, head) + info.written_bytes;
            info.written_bytes += disk_bytes;
            return Ok(Placement {
                offset,
                segment_seq: info.seq,
            });
        }
        let fits_batch = self.filling.as_ref().is_some_and(|batch| {
            batch.len == 0 || batch.len + disk_bytes as usize <= batch.buf.capacity()
        });
        if !fits_batch {
            self.close_filling(bufs);
        }
        if self.filling.is_none() {
            let info = self.segments[head as usize];
            let offset = self.segment_offset(head) + info.written_bytes;
            self.filling = Some(self.new_batch(head, offset, disk_bytes as usize, bufs));
        }
        let batch = self.filling.as_mut().expect("filling batch");
        if batch.len + disk_bytes as usize > batch.buf.capacity() {
            // Only an empty batch gets here: a record larger than a batch goes alone.
            assert_eq!(batch.len, 0);
            let mut bigger = bufs.take(disk_bytes as usize);
            bigger.as_mut_slice()[..batch.len].copy_from_slice(&batch.buf.as_slice()[..batch.len]);
            bufs.give(std::mem::replace(&mut batch.buf, bigger));
        }
        let offset = batch.offset + batch.len as u64;
        let info = &mut self.segments[head as usize];
        info.written_bytes += disk_bytes;
        Ok(Placement {
            offset,
            segment_seq: info.seq,
        })
    }

    fn new_batch(&mut self, segment: u32, offset: u64, first: usize, bufs: &mut BufCache) -> Batch {
        let id = self.batch_next;
        self.batch_next += 1;
        Batch {
            id,
            segment,
            offset,
            buf: bufs.take(BATCH_BYTES_MAX.max(first)),
            len: 0,
            ops: Vec::new(),
            state: BatchState::Filling,
            owned: false,
            header: false,
        }
    }

    fn pick_free_segment(&self) -> Option<u32> {
        self.segments
            .iter()
            .position(|s| s.state == SegmentState::Free)
            .map(|i| i as u32)
    }

    /// The header of `segment` of this partition in its incarnation `seq`.
    pub fn segment_header(&self, segment: u32, seq: u64, mark: SegmentMark) -> SegmentHeader {
        SegmentHeader {
            mark,
            seq,
            partition: self.partition as u32,
            segment,
            device_uuid: self.sb.device_uuid,
        }
    }

    /// Makes `segment` the head. Its header goes out as the first block of its first batch.
    fn open_segment(&mut self, segment: u32, seq_next: &mut u64, bufs: &mut BufCache) {
        let seq = *seq_next;
        *seq_next += 1;
        let block = self.block_bytes() as usize;
        let offset = self.segment_offset(segment);
        let mut batch = self.new_batch(segment, offset, block, bufs);
        let header = self.segment_header(segment, seq, SegmentMark::Used);
        batch.buf.as_mut_slice()[..block].fill(0);
        header.encode(batch.buf.as_mut_slice());
        batch.len = block;
        batch.header = true;
        self.segments[segment as usize] = SegmentInfo {
            state: SegmentState::Open,
            seq,
            written_bytes: block as u64,
            ..SegmentInfo::free()
        };
        self.free_count -= 1;
        self.head = Some(segment);
        // The header goes alone and first: no record of the segment is written before the
        // header is durable, so records never sit on disk under a lost header whose sequence
        // number a later incarnation of the segment could reuse.
        self.dispatch(batch);
    }

    /// Submits a zero-copy record placed with `direct` as a batch of its own.
    pub fn submit_direct(&mut self, buf: DmaBuf, offset: u64, len: usize, op: usize) {
        assert!(
            self.filling.is_none(),
            "direct records follow a closed batch"
        );
        let id = self.batch_next;
        self.batch_next += 1;
        let batch = Batch {
            id,
            segment: self.segment_of(offset),
            offset,
            buf,
            len,
            ops: vec![op],
            state: BatchState::Filling,
            owned: true,
            header: false,
        };
        self.dispatch(batch);
    }

    /// Submits the filling batch, if it holds anything.
    pub fn close_filling(&mut self, bufs: &mut BufCache) {
        let Some(batch) = self.filling.take() else {
            return;
        };
        if batch.len == 0 {
            bufs.give(batch.buf);
            return;
        }
        self.dispatch(batch);
    }

    /// Queues a closed batch: written at once if its segment header is durable (or it is the
    /// header), held until then otherwise.
    fn dispatch(&mut self, mut batch: Batch) {
        let ready = batch.header || self.segments[batch.segment as usize].header_durable;
        if ready {
            self.write_batch(&mut batch);
        } else {
            batch.state = BatchState::Held;
        }
        self.batches.push_back(batch);
    }

    fn write_batch(&mut self, batch: &mut Batch) {
        let len = batch.len;
        let buf = std::mem::replace(&mut batch.buf, DmaBuf::new(0));
        batch.state = BatchState::Submitted;
        let request = if self.fua {
            IoRequest::write_fua(buf, batch.offset, len)
        } else {
            IoRequest::write(buf, batch.offset, len)
        };
        self.bytes_written += len as u64;
        self.bytes_since_checkpoint += len as u64;
        self.submit(request, token(Purpose::BatchWrite, self.slot, batch.id));
    }

    /// A segment header became durable: write the batches that waited for it, in order.
    pub fn header_durable(&mut self, segment: u32) {
        self.segments[segment as usize].header_durable = true;
        let mut batches = std::mem::take(&mut self.batches);
        for batch in batches.iter_mut() {
            if batch.state == BatchState::Held
                && self.segments[batch.segment as usize].header_durable
            {
                self.write_batch(batch);
            }
        }
        self.batches = batches;
    }

    /// Group commit: the filling batch goes out when fewer than the limit are in flight.
    pub fn submit_ready(&mut self, bufs: &mut BufCache) {
        let unwritten = self
            .batches
            .iter()
            .filter(|b| b.state == BatchState::Submitted)
            .count();
        if unwritten < BATCHES_INFLIGHT_MAX {
            self.close_filling(bufs);
        }
        self.maybe_flush();
    }

    /// Issues a flush covering every written batch, when none is in flight.
    pub fn maybe_flush(&mut self) {
        if self.flush_inflight {
            return;
        }
        let mut any = false;
        for batch in self
            .batches
            .iter_mut()
            .filter(|b| b.state == BatchState::Written)
        {
            batch.state = BatchState::Flushing;
            any = true;
        }
        if any {
            self.flush_inflight = true;
            self.submit(IoRequest::flush(), token(Purpose::Flush, self.slot, 0));
        }
    }

    /// Submits now or keeps the request for the next poll when the queue is full.
    pub fn submit(&mut self, request: IoRequest, token: u64) {
        if !self.backlog.is_empty() {
            self.backlog.push_back((request, token));
            return;
        }
        match self.queue.submit(request, token) {
            Ok(()) => {}
            Err(rejected) => match rejected.reason {
                RejectReason::QueueFull => self.backlog.push_back((rejected.request, token)),
                RejectReason::Invalid(invalid) => {
                    panic!("store built an invalid request ({invalid}) for token {token:#x}")
                }
            },
        }
    }

    /// Retries requests refused earlier with QueueFull, in order.
    pub fn drain_backlog(&mut self) {
        while let Some((request, token)) = self.backlog.pop_front() {
            match self.queue.submit(request, token) {
                Ok(()) => {}
                Err(rejected) => {
                    assert!(matches!(rejected.reason, RejectReason::QueueFull));
                    self.backlog.push_front((rejected.request, token));
                    return;
                }
            }
        }
    }

    /// A batch (written or filling) lies in `segment`: compaction leaves it alone.
    pub fn holds_batches_in(&self, segment: u32) -> bool {
        self.batches.iter().any(|b| b.segment == segment)
            || self.filling.as_ref().is_some_and(|b| b.segment == segment)
    }

    /// Nothing of this member is on its way to the device.
    pub fn is_idle(&self) -> bool {
        self.filling.as_ref().is_none_or(|b| b.len == 0)
            && self.batches.is_empty()
            && !self.flush_inflight
            && self.backlog.is_empty()
            && self.queue.inflight() == 0
    }
}
