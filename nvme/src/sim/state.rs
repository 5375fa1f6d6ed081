//! The simulator's whole state and its rules: one value behind one mutex, shared by the device
//! and its queues, so that a crash can reach the requests in flight on every queue.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::image::Image;
use super::{SimFaults, SimStats};
use crate::{Completion, IoError, IoKind, IoRequest};

/// The error of every request submitted to a queue that a crash killed: the device is gone.
pub const DEAD_QUEUE_ERROR: IoError = IoError::Os(libc::ENODEV);

/// A write that completed and is not yet durable.
struct PendingWrite {
    /// Completion order; a flush covers the writes numbered below its `cover`.
    seq: u64,
    offset: u64,
    data: Vec<u8>,
}

/// A request in a queue's in-flight table.
struct InFlight {
    token: u64,
    request: IoRequest,
    /// For a flush: the `seq` of the first write it does not cover (those that completed before
    /// it was submitted are below).
    cover: u64,
}

impl InFlight {
    fn complete(self, result: Result<(), IoError>) -> Completion {
        let IoRequest {
            kind,
            offset,
            len,
            buf,
        } = self.request;
        Completion {
            token: self.token,
            kind,
            offset,
            len,
            buf,
            result,
        }
    }
}

struct QueueState {
    /// Its own random stream, so one queue's completion order does not depend on how calls on
    /// other queues interleave with it.
    rng: ChaCha8Rng,
    slots: Vec<Option<InFlight>>,
    /// Killed by a crash: nothing submitted to it reaches the device any more.
    dead: bool,
}

impl QueueState {
    fn occupied(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .collect()
    }
}

pub(super) struct State {
    seed: u64,
    /// Unit of tearing: a sector either reaches the media whole or not at all.
    sector_bytes: usize,
    /// The device's own stream (crashes, corruption); queues have theirs.
    rng: ChaCha8Rng,
    pub(super) durable: Image,
    /// What reads see: `durable` with every pending write applied in order.
    pub(super) volatile: Image,
    pending: VecDeque<PendingWrite>,
    next_write_seq: u64,
    pub(super) epoch: u64,
    next_queue_id: u64,
    queues: BTreeMap<u64, QueueState>,
    pub(super) faults: SimFaults,
    failing_reads: Vec<Range<u64>>,
    failing_writes: Vec<Range<u64>>,
    pub(super) stats: SimStats,
}

/// `p` is a probability in [0, 1]; draws nothing when it is 0, so fault-free runs are not
/// perturbed by fault checks.
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && rng.gen_bool(p)
}

fn overlaps(ranges: &[Range<u64>], offset: u64, len: usize) -> bool {
    let end = offset + len as u64;
    ranges.iter().any(|r| r.start < end && offset < r.end)
}

impl State {
    pub(super) fn new(seed: u64, sector_bytes: usize, faults: SimFaults) -> Self {
        Self {
            seed,
            sector_bytes,
            rng: ChaCha8Rng::seed_from_u64(seed),
            durable: Image::default(),
            volatile: Image::default(),
            pending: VecDeque::new(),
            next_write_seq: 0,
            epoch: 0,
            next_queue_id: 0,
            queues: BTreeMap::new(),
            faults,
            failing_reads: Vec::new(),
            failing_writes: Vec::new(),
            stats: SimStats::default(),
        }
    }

    pub(super) fn open_queue(&mut self, depth: usize) -> u64 {
        let id = self.next_queue_id;
        self.next_queue_id += 1;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        // Stream 0 is the device's.
        rng.set_stream(id + 1);
        let slots = (0..depth).map(|_| None).collect();
        self.queues.insert(
            id,
            QueueState {
                rng,
                slots,
                dead: false,
            },
        );
        id
    }

    /// A dropped live queue lets the device finish its requests; their completions are lost.
    pub(super) fn close_queue(&mut self, id: u64) {
        let mut discarded = Vec::new();
        while self.inflight(id) > 0 {
            self.reap(id, &mut discarded);
            discarded.clear();
        }
        self.queues.remove(&id);
    }

    pub(super) fn inflight(&self, id: u64) -> usize {
        self.queues[&id]
            .slots
            .iter()
            .filter(|s| s.is_some())
            .count()
    }

    /// Puts a validated request into a free slot, or hands it back when the table is full.
    pub(super) fn submit(
        &mut self,
        id: u64,
        request: IoRequest,
        token: u64,
    ) -> Result<(), IoRequest> {
        let cover = self.next_write_seq;
        let queue = self.queues.get_mut(&id).expect("queue state");
        match queue.slots.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(InFlight {
                    token,
                    request,
                    cover,
                });
                Ok(())
            }
            None => Err(request),
        }
    }

    /// Completes a random non-empty subset of the queue's requests, in random order, and
    /// appends them to `out` in the order the device performed them.
    pub(super) fn reap(&mut self, id: u64, out: &mut Vec<Completion>) -> usize {
        let mut queue = self.queues.remove(&id).expect("queue state");
        let occupied = queue.occupied();
        let chosen = if queue.dead {
            occupied
        } else {
            let mut chosen: Vec<usize> = occupied
                .iter()
                .copied()
                .filter(|_| queue.rng.gen_bool(0.5))
                .collect();
            if chosen.is_empty() && !occupied.is_empty() {
                // Progress: something in flight means something completes.
                chosen.push(occupied[queue.rng.gen_range(0..occupied.len())]);
            }
            chosen.shuffle(&mut queue.rng);
            chosen
        };
        for &slot in &chosen {
            let request = queue.slots[slot].take().expect("occupied slot");
            let completion = if queue.dead {
                request.complete(Err(DEAD_QUEUE_ERROR))
            } else {
                self.perform(&mut queue.rng, request)
            };
            out.push(completion);
        }
        self.queues.insert(id, queue);
        chosen.len()
    }

    /// Carries out one request against the images, with the configured faults.
    fn perform(&mut self, rng: &mut ChaCha8Rng, mut request: InFlight) -> Completion {
        let (offset, len) = (request.request.offset, request.request.len);
        match request.request.kind {
            IoKind::Read => {
                if overlaps(&self.failing_reads, offset, len)
                    || chance(rng, self.faults.read_error_probability)
                {
                    return request.complete(Err(IoError::Injected));
                }
                let buf = request
                    .request
                    .buf
                    .as_mut()
                    .expect("validated read has a buffer");
                let data = &mut buf.as_mut_slice()[..len];
                self.volatile.read(offset, data);
                if chance(rng, self.faults.bit_flip_probability) {
                    let bit = rng.gen_range(0..len * 8);
                    data[bit / 8] ^= 1 << (bit % 8);
                }
                self.stats.reads += 1;
                self.stats.bytes_read += len as u64;
                request.complete(Ok(()))
            }
            IoKind::Write | IoKind::WriteFua => {
                if overlaps(&self.failing_writes, offset, len)
                    || chance(rng, self.faults.write_error_probability)
                {
                    return request.complete(Err(IoError::Injected));
                }
                let buf = request
                    .request
                    .buf
                    .as_ref()
                    .expect("validated write has a buffer");
                let data = buf.as_slice()[..len].to_vec();
                self.volatile.write(offset, &data);
                if request.request.kind == IoKind::WriteFua {
                    // Durable now. Older unflushed writes over the same bytes must not land
                    // over it later, so they take its bytes where they overlap.
                    self.durable.write(offset, &data);
                    for pending in self.pending.iter_mut() {
                        let start = pending.offset.max(offset);
                        let end =
                            (pending.offset + pending.data.len() as u64).min(offset + len as u64);
                        if start < end {
                            let target =
                                (start - pending.offset) as usize..(end - pending.offset) as usize;
                            let source = (start - offset) as usize..(end - offset) as usize;
                            pending.data[target].copy_from_slice(&data[source]);
                        }
                    }
                    self.stats.writes += 1;
                    self.stats.bytes_written += len as u64;
                    return request.complete(Ok(()));
                }
                self.pending.push_back(PendingWrite {
                    seq: self.next_write_seq,
                    offset,
                    data,
                });
                self.next_write_seq += 1;
                self.stats.writes += 1;
                self.stats.bytes_written += len as u64;
                request.complete(Ok(()))
            }
            IoKind::Flush => {
                // Pending writes are in completion order, so the covered ones are a prefix, and
                // applying them in order keeps `volatile == durable + pending`.
                while self.pending.front().is_some_and(|w| w.seq < request.cover) {
                    let write = self.pending.pop_front().expect("front exists");
                    self.durable.write(write.offset, &write.data);
                }
                self.stats.flushes += 1;
                request.complete(Ok(()))
            }
        }
    }

    /// Power loss; see the module documentation for the rules.
    pub(super) fn crash(&mut self) {
        let mut fates: Vec<(u64, Vec<u8>)> =
            self.pending.drain(..).map(|w| (w.offset, w.data)).collect();
        for queue in self.queues.values_mut() {
            if !queue.dead {
                for request in queue.slots.iter_mut().filter_map(Option::take) {
                    let IoRequest {
                        kind,
                        offset,
                        len,
                        buf,
                    } = request.request;
                    // A write the media refuses cannot land half-way through a power loss.
                    let write = matches!(kind, IoKind::Write | IoKind::WriteFua);
                    if write && !overlaps(&self.failing_writes, offset, len) {
                        let buf = buf.expect("validated write has a buffer");
                        fates.push((offset, buf.as_slice()[..len].to_vec()));
                    }
                    // The buffer is freed here: nobody will reap it.
                }
            }
            queue.dead = true;
        }
        let candidates = fates.len();
        let mut landing = Vec::new();
        for (offset, data) in fates {
            match self.rng.gen_range(0..3) {
                0 => landing.push((offset, data, None)),
                1 => {} // dropped
                _ => {
                    let sectors = data.len().div_ceil(self.sector_bytes);
                    let mask: Vec<bool> = (0..sectors).map(|_| self.rng.gen_bool(0.5)).collect();
                    landing.push((offset, data, Some(mask)));
                }
            }
        }
        // The device may have reordered its cache write-back: an older write can land last.
        landing.shuffle(&mut self.rng);
        let landed = landing.len();
        for (offset, data, mask) in landing {
            match mask {
                None => self.durable.write(offset, &data),
                Some(mask) => {
                    for (i, sector) in data.chunks(self.sector_bytes).enumerate() {
                        if mask[i] {
                            let at = offset + (i * self.sector_bytes) as u64;
                            self.durable.write(at, sector);
                        }
                    }
                }
            }
        }
        self.volatile = self.durable.clone();
        self.epoch += 1;
        self.stats.crashes += 1;
        tracing::debug!(epoch = self.epoch, candidates, landed, "sim: power loss");
    }

    /// Flips one random bit in every sector that `offset..offset + len` touches, within that
    /// range, in both images and in the pending writes over it (which keeps
    /// `volatile == durable + pending`: a later flush does not heal the corruption).
    pub(super) fn corrupt(&mut self, offset: u64, len: usize) {
        let end = offset + len as u64;
        let sector = self.sector_bytes as u64;
        let mut start = offset;
        while start < end {
            let stop = ((start / sector + 1) * sector).min(end);
            let at = self.rng.gen_range(start..stop);
            let bit = self.rng.gen_range(0..8u8);
            self.durable.flip_bit(at, bit);
            self.volatile.flip_bit(at, bit);
            for write in &mut self.pending {
                if (write.offset..write.offset + write.data.len() as u64).contains(&at) {
                    write.data[(at - write.offset) as usize] ^= 1 << bit;
                }
            }
            start = stop;
        }
    }

    pub(super) fn fail_reads(&mut self, range: Range<u64>) {
        self.failing_reads.push(range);
    }

    pub(super) fn fail_writes(&mut self, range: Range<u64>) {
        self.failing_writes.push(range);
    }

    pub(super) fn clear_faults(&mut self) {
        self.failing_reads.clear();
        self.failing_writes.clear();
        self.faults = SimFaults::default();
    }

    pub(super) fn pending_writes(&self) -> Vec<(u64, usize)> {
        self.pending
            .iter()
            .map(|w| (w.offset, w.data.len()))
            .collect()
    }
}
