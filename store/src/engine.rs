//! The shard store of one core: put, get and delete of shard records across the core's
//! partitions of every device in the pool, as a state machine driven by [`CoreStore::poll`].
//!
//! Requests go in with `submit_*` and come out as [`Event`]s; device I/O happens only through
//! the members' queues, so a reactor can drive many requests without blocking. Start-up
//! (recovery), checkpoints and scrub are in their own modules and may block.
//!
//! Writes to one key are serialised (a second waits for the first). Before a put or delete is
//! appended, the headers behind the key's fingerprint are read, both to tell a true overwrite
//! from a fingerprint collision and to refuse versions that are not newer.

use std::collections::{HashSet, VecDeque};

use ds_nvme::{Completion, DmaBuf, IoRequest};

use crate::bufs::BufCache;
use crate::error::{CorruptReason, GetError, PutError};
use crate::index::Index;
use crate::key::ShardKey;
use crate::limits::{OPS_INFLIGHT_MAX, RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES};
use crate::loc::Loc;
use crate::member::{token, untoken, BatchState, Member, Purpose};
use crate::record::{record_disk_bytes, RecordHeader, RecordKind, ShardMeta};
use crate::segment::SegmentState;
use crate::stats::StoreStats;

/// Re-reads of a candidate whose header fails its checks, before it counts as corrupt.
const READ_RETRIES_MAX: u8 = 1;

/// Where the data goes in a [`CoreStore::submit_put_buf`] buffer: after the record header.
pub const PUT_DATA_OFFSET: usize = RECORD_HEADER_BYTES;

/// Capacity a zero-copy put buffer needs for `data_bytes` of data on any supported device.
pub fn put_buffer_bytes(data_bytes: usize) -> usize {
    record_disk_bytes(data_bytes, crate::limits::BLOCK_BYTES_MAX) as usize
}

/// The crc32c of a record's data: the caller's when it gave one (checked in debug builds),
/// else computed.
fn data_crc_of(given: Option<u32>, data: &[u8]) -> u32 {
    match given {
        Some(crc) => {
            debug_assert_eq!(crc, crc32c::crc32c(data), "caller's data crc");
            crc
        }
        None => crc32c::crc32c(data),
    }
}

/// How a batch of records becomes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// FUA on block devices (one round trip); write + flush on files, where a FUA write into
    /// not-yet-written extents costs a filesystem journal commit each, and one flush covers
    /// many batches.
    #[default]
    Auto,
    /// Every batch is a FUA write (RWF_DSYNC), durable when it completes.
    Fua,
    /// Batches are plain writes; a flush covers all written ones.
    Flush,
}

impl Durability {
    pub(crate) fn fua_for(self, kind: ds_nvme::DeviceKind) -> bool {
        match self {
            Durability::Fua => true,
            Durability::Flush => false,
            Durability::Auto => kind != ds_nvme::DeviceKind::File,
        }
    }
}

/// A finished request.
#[derive(Debug)]
pub struct Event {
    pub token: u64,
    pub outcome: Outcome,
    /// The caller's buffer of a [`CoreStore::submit_put_buf`], handed back when the put is done
    /// (absent only if a device failed while writing it).
    pub buf: Option<DmaBuf>,
}

#[derive(Debug)]
pub enum Outcome {
    Put(Result<(), PutError>),
    /// `true` when a live shard was deleted.
    Delete(Result<bool, PutError>),
    Get(Result<GetDone, GetError>),
    /// One step of a walk ([`CoreStore::submit_walk`]).
    Walk(Result<crate::walk::WalkStep, crate::walk::WalkError>),
}

/// A shard read back and verified. Give `buf` back with [`CoreStore::recycle`] when done.
#[derive(Debug)]
pub struct GetDone {
    pub header: RecordHeader,
    pub buf: DmaBuf,
}

impl GetDone {
    pub fn data(&self) -> &[u8] {
        &self.buf.as_slice()
            [RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + self.header.data_bytes as usize]
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum OpKind {
    /// `repair`: may replace a record of the key whose header cannot be read.
    Put {
        meta: ShardMeta,
        repair: bool,
    },
    Delete {
        version: u64,
    },
    Get,
    /// Compaction moving a live record: `source` is its offset in the compaction buffer;
    /// `damaged`: its data failed the checksum, so a DAMAGED marker moves instead.
    Copy {
        old: Loc,
        header: RecordHeader,
        source: usize,
        damaged: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Deferred,
    Resolving,
    Placed,
}

/// A put's bytes as handed in: borrowed for the call, or owned by the store from then on.
enum PutData<'a> {
    Borrowed(&'a [u8]),
    /// The bytes and, when the caller knew it, their crc32c.
    Owned(Box<dyn AsRef<[u8]> + Send>, Option<u32>),
}

impl PutData<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            PutData::Borrowed(data) => data,
            PutData::Owned(data, _) => (**data).as_ref(),
        }
    }
}

/// Bytes a put keeps until it is appended: a copy in a store buffer, or the caller's own
/// buffer, handed over with the put so it need not be copied.
pub(crate) enum Staged {
    Copy(DmaBuf),
    Owned(Box<dyn AsRef<[u8]> + Send>),
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Staged::Copy(_) => write!(f, "Copy({} bytes)", self.bytes().len()),
            Staged::Owned(_) => write!(f, "Owned({} bytes)", self.bytes().len()),
        }
    }
}

impl Staged {
    fn bytes(&self) -> &[u8] {
        match self {
            Staged::Copy(buf) => buf.as_slice(),
            Staged::Owned(data) => (**data).as_ref(),
        }
    }

    /// Gives a store buffer back; the caller's buffer is dropped.
    fn release(self, bufs: &mut BufCache) {
        if let Staged::Copy(buf) = self {
            bufs.give(buf);
        }
    }
}

#[derive(Debug)]
pub(crate) struct Op {
    pub token: u64,
    pub key: ShardKey,
    pub fp: u64,
    pub kind: OpKind,
    pub stage: Stage,
    pub reads_pending: u32,
    /// The record of this key found behind the fingerprint.
    pub matched: Option<(Loc, RecordHeader)>,
    /// The matched record's data fails its checksum (seen only by ops that read data: gets
    /// and repairs).
    pub matched_data_bad: bool,
    pub corrupt: Option<(Loc, CorruptReason)>,
    pub read_error: Option<ds_nvme::IoError>,
    /// The buffer of a get whose record matched.
    pub got: Option<DmaBuf>,
    /// Put data kept while the op waits or resolves.
    pub staged: Option<Staged>,
    /// The caller's record buffer of a zero-copy put: data at [`PUT_DATA_OFFSET`].
    pub owned: Option<DmaBuf>,
    pub data_bytes: usize,
    /// The data's crc32c when the caller knew it (derived from a checksum it verified).
    pub data_crc: Option<u32>,
    pub placed: Option<Loc>,
    /// The index entry the write replaces, decided when its candidates are resolved.
    pub replaces: Option<Loc>,
    /// Re-reads after an unreadable header.
    pub retries: u8,
}

impl Op {
    /// Reads its candidates whole (header and data), not just their headers.
    pub(crate) fn reads_data(&self) -> bool {
        matches!(self.kind, OpKind::Get | OpKind::Put { repair: true, .. })
    }
}

/// What an outstanding read is for.
pub(crate) enum ReadIo {
    /// A candidate record for an op.
    Candidate {
        op: usize,
        loc: Loc,
    },
    /// Compaction reading the chunk of its source segment at byte `at` of it.
    CompactionChunk {
        at: usize,
    },
    /// Compaction's FREE marker write, then its flush.
    CompactionMark,
    CompactionFlush,
    /// A step of a walk ([`CoreStore::submit_walk`]).
    Walk(Box<crate::walk::WalkRead>),
}

pub struct CoreStore {
    pub(crate) core: usize,
    pub(crate) node_id: u128,
    pub(crate) members: Vec<Option<Member>>,
    pub(crate) index: Index,
    pub(crate) lsn_next: u64,
    pub(crate) seq_next: u64,
    pub(crate) ops: Vec<Option<Op>>,
    free_ops: Vec<usize>,
    pub(crate) reads: Vec<Option<ReadIo>>,
    free_reads: Vec<usize>,
    pub(crate) busy: HashSet<ShardKey>,
    pub(crate) deferred: VecDeque<usize>,
    pub(crate) events: VecDeque<Event>,
    scratch: Vec<Completion>,
    candidates: Vec<u64>,
    pub(crate) bufs: BufCache,
    pub(crate) stats: StoreStats,
    pub(crate) compaction: Option<crate::compaction::Compaction>,
    /// Compaction was asked for: segments with a sequence below this one are due.
    pub(crate) compact_eagerly: Option<u64>,
    next_token: u64,
    /// Devices whose records recovery is merging now (their live bytes are counted at the end).
    pub(crate) recovering: Vec<u8>,
    /// How batches become durable (see [`CoreStore::set_durability`]).
    pub(crate) durability: Durability,
    /// Walk steps whose reads are in flight.
    pub(crate) walks_inflight: usize,
}

impl CoreStore {
    pub(crate) fn assemble(core: usize, node_id: u128) -> Self {
        Self {
            core,
            node_id,
            members: Vec::new(),
            index: Index::new(),
            lsn_next: 1,
            seq_next: 1,
            ops: Vec::new(),
            free_ops: Vec::new(),
            reads: Vec::new(),
            free_reads: Vec::new(),
            busy: HashSet::new(),
            deferred: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            candidates: Vec::new(),
            bufs: BufCache::new(),
            stats: StoreStats::default(),
            compaction: None,
            compact_eagerly: None,
            next_token: 1 << 63,
            durability: Durability::Auto,
            recovering: Vec::new(),
            walks_inflight: 0,
        }
    }

    pub fn core(&self) -> usize {
        self.core
    }

    pub fn node_id(&self) -> u128 {
        self.node_id
    }

    /// Chooses how batches become durable; applies to devices added later too.
    pub fn set_durability(&mut self, durability: Durability) {
        assert!(self.is_idle(), "durability mode changes only when idle");
        self.durability = durability;
        for member in self.members.iter_mut().flatten() {
            member.fua = durability.fua_for(member.device.info().kind);
        }
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Shards (and tombstones) the index knows.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn index_heap_bytes(&self) -> usize {
        self.index.heap_bytes()
    }

    /// Requests accepted and not yet completed.
    pub fn inflight(&self) -> usize {
        self.ops.len() - self.free_ops.len()
    }

    pub fn recycle(&mut self, buf: DmaBuf) {
        self.bufs.give(buf);
    }

    /// Stores `data` as shard `key` at `meta.version`, which must be newer than what is stored.
    pub fn submit_put(&mut self, key: ShardKey, meta: ShardMeta, data: &[u8], token: u64) {
        self.submit_shard(key, meta, false, data, token);
    }

    /// A put that may replace a record of `key` whose header cannot be read (the cluster's
    /// repair, after rebuilding the shard from the others of its stripe).
    pub fn submit_repair(&mut self, key: ShardKey, meta: ShardMeta, data: &[u8], token: u64) {
        self.submit_shard(key, meta, true, data, token);
    }

    /// [`CoreStore::submit_put`] of bytes the caller hands over: a put that must wait, or first
    /// read the record it replaces, keeps them instead of copying them. `data_crc`, when given,
    /// must be the crc32c of the bytes (a caller that verified a checksum covering them can
    /// derive it) and saves computing it again.
    pub fn submit_put_owned(
        &mut self,
        key: ShardKey,
        meta: ShardMeta,
        data: Box<dyn AsRef<[u8]> + Send>,
        data_crc: Option<u32>,
        token: u64,
    ) {
        let bytes = (*data).as_ref().len();
        if bytes > RECORD_DATA_BYTES_MAX {
            let error = PutError::TooLarge {
                bytes,
                max: RECORD_DATA_BYTES_MAX,
            };
            self.emit(token, Outcome::Put(Err(error)));
            return;
        }
        let kind = OpKind::Put {
            meta,
            repair: false,
        };
        self.submit_write(key, kind, PutData::Owned(data, data_crc), token);
    }

    fn submit_shard(
        &mut self,
        key: ShardKey,
        meta: ShardMeta,
        repair: bool,
        data: &[u8],
        token: u64,
    ) {
        if data.len() > RECORD_DATA_BYTES_MAX {
            let error = PutError::TooLarge {
                bytes: data.len(),
                max: RECORD_DATA_BYTES_MAX,
            };
            self.emit(token, Outcome::Put(Err(error)));
            return;
        }
        let kind = OpKind::Put { meta, repair };
        self.submit_write(key, kind, PutData::Borrowed(data), token);
    }

    /// A buffer for [`CoreStore::submit_put_buf`] with room for `data_bytes` of data at
    /// [`PUT_DATA_OFFSET`].
    pub fn put_buffer(&mut self, data_bytes: usize) -> DmaBuf {
        self.bufs.take(put_buffer_bytes(data_bytes))
    }

    /// Zero-copy put: `buf` holds the data at [`PUT_DATA_OFFSET`] (a network layer receives
    /// straight into it) and becomes the record itself: the header is written in front, and the
    /// buffer goes to the device as it is. It comes back in the event.
    /// `data_crc`, when given, is the data's crc32c (as for [`CoreStore::submit_put_owned`]).
    pub fn submit_put_buf(
        &mut self,
        key: ShardKey,
        meta: ShardMeta,
        buf: DmaBuf,
        data_bytes: usize,
        data_crc: Option<u32>,
        token: u64,
    ) {
        let error = if data_bytes > RECORD_DATA_BYTES_MAX {
            Some(PutError::TooLarge {
                bytes: data_bytes,
                max: RECORD_DATA_BYTES_MAX,
            })
        } else if buf.capacity() < put_buffer_bytes(data_bytes) {
            Some(PutError::BufferTooSmall {
                capacity: buf.capacity(),
                needed: put_buffer_bytes(data_bytes),
            })
        } else {
            None
        };
        if let Some(error) = error {
            self.events.push_back(Event {
                token,
                outcome: Outcome::Put(Err(error)),
                buf: Some(buf),
            });
            return;
        }
        let Some(op) = self.new_op(
            token,
            key,
            OpKind::Put {
                meta,
                repair: false,
            },
        ) else {
            let outcome = Outcome::Put(Err(PutError::Busy));
            self.events.push_back(Event {
                token,
                outcome,
                buf: Some(buf),
            });
            return;
        };
        let entry = self.op_mut(op);
        entry.owned = Some(buf);
        entry.data_bytes = data_bytes;
        entry.data_crc = data_crc;
        if self.busy.contains(&key) {
            self.op_mut(op).stage = Stage::Deferred;
            self.deferred.push_back(op);
            return;
        }
        self.start(op, None);
    }

    /// Records that `key` is deleted as of `version`.
    pub fn submit_delete(&mut self, key: ShardKey, version: u64, token: u64) {
        let kind = OpKind::Delete { version };
        self.submit_write(key, kind, PutData::Borrowed(&[]), token);
    }

    fn submit_write(&mut self, key: ShardKey, kind: OpKind, data: PutData<'_>, token: u64) {
        let Some(op) = self.new_op(token, key, kind) else {
            let outcome = match kind {
                OpKind::Delete { .. } => Outcome::Delete(Err(PutError::Busy)),
                _ => Outcome::Put(Err(PutError::Busy)),
            };
            self.emit(token, outcome);
            return;
        };
        let must_wait = self.busy.contains(&key);
        let has_candidates = !must_wait && {
            self.index
                .candidates(key.fingerprint(), &mut self.candidates);
            let any = !self.candidates.is_empty();
            self.candidates.clear();
            any
        };
        let data_bytes = data.bytes().len();
        self.op_mut(op).data_bytes = data_bytes;
        if let PutData::Owned(_, crc) = &data {
            self.op_mut(op).data_crc = *crc;
        }
        if must_wait || has_candidates {
            // Keep the data until the op can be appended.
            let staged = match data {
                PutData::Owned(data, _) => Staged::Owned(data),
                PutData::Borrowed(data) => {
                    let mut staged = self.bufs.take(data.len().max(1));
                    staged.as_mut_slice()[..data.len()].copy_from_slice(data);
                    Staged::Copy(staged)
                }
            };
            self.op_mut(op).staged = Some(staged);
            if must_wait {
                self.op_mut(op).stage = Stage::Deferred;
                self.deferred.push_back(op);
                return;
            }
            self.start(op, None);
            return;
        }
        self.start(op, Some(data.bytes()));
    }

    /// Device slots of the live records the index holds behind `key`'s fingerprint, from RAM
    /// only. A fingerprint may be shared by another key, so this is for reporting where parts
    /// live (STAT); a get verifies.
    pub fn locate(&mut self, key: ShardKey) -> Vec<u8> {
        self.index
            .candidates(key.fingerprint(), &mut self.candidates);
        let mut slots: Vec<u8> = self
            .candidates
            .drain(..)
            .map(Loc::from_bits)
            .filter(|loc| !loc.is_tombstone())
            .map(|loc| loc.device())
            .collect();
        slots.dedup();
        slots
    }

    /// Descriptors that become readable when a device queue of this core has completions, for
    /// a reactor that blocks on several sources at once (empty for backends without one).
    pub fn wake_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.members
            .iter()
            .flatten()
            .filter_map(|m| m.queue.wake_fd())
            .collect()
    }

    /// Reads shard `key`; verified data or a distinct error comes back in an event.
    pub fn submit_get(&mut self, key: ShardKey, token: u64) {
        let Some(op) = self.new_op(token, key, OpKind::Get) else {
            self.emit(token, Outcome::Get(Err(GetError::Busy)));
            return;
        };
        self.resolve(op);
        if self.op(op).reads_pending == 0 {
            self.finish_get(op);
        }
    }

    fn new_op(&mut self, token: u64, key: ShardKey, kind: OpKind) -> Option<usize> {
        if self.inflight() >= OPS_INFLIGHT_MAX {
            return None;
        }
        let op = Op {
            token,
            key,
            fp: key.fingerprint(),
            kind,
            stage: Stage::Resolving,
            reads_pending: 0,
            matched: None,
            matched_data_bad: false,
            corrupt: None,
            read_error: None,
            got: None,
            staged: None,
            owned: None,
            data_bytes: 0,
            data_crc: None,
            placed: None,
            replaces: None,
            retries: 0,
        };
        Some(match self.free_ops.pop() {
            Some(slot) => {
                self.ops[slot] = Some(op);
                slot
            }
            None => {
                self.ops.push(Some(op));
                self.ops.len() - 1
            }
        })
    }

    /// An op for compaction; the caller has checked there is room.
    pub(crate) fn new_copy_op(&mut self, key: ShardKey, kind: OpKind) -> usize {
        self.new_op(0, key, kind)
            .expect("room for a compaction copy")
    }

    /// A token no caller uses (callers' tokens stay below 2^63), for the blocking helpers.
    pub(crate) fn private_token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    pub(crate) fn op(&self, op: usize) -> &Op {
        self.ops[op].as_ref().expect("live op")
    }

    pub(crate) fn op_mut(&mut self, op: usize) -> &mut Op {
        self.ops[op].as_mut().expect("live op")
    }

    fn free_op(&mut self, op: usize) -> Op {
        let taken = self.ops[op].take().expect("live op");
        self.free_ops.push(op);
        taken
    }

    pub(crate) fn emit(&mut self, token: u64, outcome: Outcome) {
        self.events.push_back(Event {
            token,
            outcome,
            buf: None,
        });
    }

    /// Starts a write whose key is free: lock it, then resolve or append at once.
    fn start(&mut self, op: usize, data: Option<&[u8]>) {
        let key = self.op(op).key;
        let inserted = self.busy.insert(key);
        assert!(inserted, "key {key} already has a write in progress");
        self.resolve(op);
        if self.op(op).reads_pending == 0 {
            self.append(op, data);
        }
    }

    /// Submits a read for every index entry behind the op's fingerprint.
    fn resolve(&mut self, op: usize) {
        let fp = self.op(op).fp;
        // A get reads its record whole; so does a repair, which may replace a record at its own
        // version only if that record's data is bad. Other writes need the header only.
        let header_only = !self.op(op).reads_data();
        self.index.candidates(fp, &mut self.candidates);
        let candidates = std::mem::take(&mut self.candidates);
        for &bits in &candidates {
            let loc = Loc::from_bits(bits);
            let Some(member) = self
                .members
                .get(usize::from(loc.device()))
                .and_then(Option::as_ref)
            else {
                continue;
            };
            let block = u64::from(member.block_bytes());
            let len = if header_only || loc.is_tombstone() {
                block
            } else {
                loc.len()
            };
            self.submit_read(op, loc, len);
        }
        self.candidates = candidates;
        self.candidates.clear();
        self.op_mut(op).stage = Stage::Resolving;
    }

    fn submit_read(&mut self, op: usize, loc: Loc, len: u64) {
        let buf = self.bufs.take(len as usize);
        let id = self.new_read(ReadIo::Candidate { op, loc });
        let member = self.members[usize::from(loc.device())]
            .as_mut()
            .expect("member");
        let segment = member.segment_of(loc.offset());
        member.segments[segment as usize].readers += 1;
        let slot = member.slot;
        member.submit(
            IoRequest::read(buf, loc.offset(), len as usize),
            token(Purpose::Read, slot, id),
        );
        self.op_mut(op).reads_pending += 1;
    }

    pub(crate) fn new_read(&mut self, read: ReadIo) -> u64 {
        let id = match self.free_reads.pop() {
            Some(id) => {
                self.reads[id] = Some(read);
                id
            }
            None => {
                self.reads.push(Some(read));
                self.reads.len() - 1
            }
        };
        id as u64
    }

    /// Drives everything: resubmits refused requests, reaps completions, finishes ops, starts
    /// group-commit writes and flushes, and moves compaction on. Returns events ready so far.
    pub fn poll(&mut self, out: &mut Vec<Event>) -> usize {
        for member in self.members.iter_mut().flatten() {
            member.drain_backlog();
        }
        let mut progress = true;
        while progress {
            progress = false;
            for slot in 0..self.members.len() {
                let Some(member) = self.members[slot].as_mut() else {
                    continue;
                };
                let mut done = std::mem::take(&mut self.scratch);
                member.queue.reap(&mut done);
                progress |= !done.is_empty();
                for completion in done.drain(..) {
                    self.handle_completion(completion);
                }
                self.scratch = done;
            }
            progress |= self.run_deferred();
            self.step_compaction();
            for member in self.members.iter_mut().flatten() {
                member.submit_ready(&mut self.bufs);
                member.drain_backlog();
            }
        }
        // The last pass may have queued requests (a batch closed, a flush) that no reap
        // handed over; the core may block right after this, so they go to the device now.
        for member in self.members.iter_mut().flatten() {
            member.queue.submit_queued();
        }
        let before = out.len();
        out.extend(self.events.drain(..));
        out.len() - before
    }

    /// Blocks until some device completes a request, or `timeout` passes.
    pub fn wait(&mut self, timeout: std::time::Duration) {
        for member in self.members.iter_mut().flatten() {
            if member.queue.inflight() > 0 {
                let _ = member.queue.wait(Some(timeout));
                return;
            }
        }
    }

    /// Nothing accepted is still in progress.
    pub fn is_idle(&self) -> bool {
        self.inflight() == 0
            && self.walks_inflight == 0
            && self.compaction.is_none()
            && self.compact_eagerly.is_none()
            && self.members.iter().flatten().all(Member::is_idle)
    }

    fn handle_completion(&mut self, completion: Completion) {
        let (purpose, slot, id) = untoken(completion.token);
        match purpose {
            Some(Purpose::BatchWrite) => self.handle_batch_written(slot, id, completion),
            Some(Purpose::Flush) => self.handle_flushed(slot, completion),
            Some(Purpose::Read) => self.handle_read(slot, id as usize, completion),
            None => panic!("completion with unknown token {:#x}", completion.token),
        }
    }

    fn handle_batch_written(&mut self, slot: u8, id: u64, completion: Completion) {
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        let Some(batch) = member.batches.iter_mut().find(|b| b.id == id) else {
            // Failed together with an earlier batch; its ops are already told.
            if let Some(buf) = completion.buf {
                self.bufs.give(buf);
            }
            return;
        };
        if let Some(buf) = completion.buf {
            if batch.owned {
                batch.buf = buf;
            } else {
                self.bufs.give(buf);
            }
        }
        assert_eq!(batch.state, BatchState::Submitted);
        match completion.result {
            Ok(()) if completion.kind == ds_nvme::IoKind::WriteFua => {
                batch.state = BatchState::Durable;
                self.ack_durable(slot);
            }
            Ok(()) => batch.state = BatchState::Written,
            Err(error) => self.fail_member(slot, error),
        }
    }

    fn handle_flushed(&mut self, slot: u8, completion: Completion) {
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        assert!(member.flush_inflight);
        member.flush_inflight = false;
        if let Err(error) = completion.result {
            self.fail_member(slot, error);
            return;
        }
        for batch in member
            .batches
            .iter_mut()
            .filter(|b| b.state == BatchState::Flushing)
        {
            batch.state = BatchState::Durable;
        }
        self.ack_durable(slot);
    }

    /// Acknowledges in order: a batch is done only when every earlier one is durable.
    fn ack_durable(&mut self, slot: u8) {
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        let mut acked = Vec::new();
        while member
            .batches
            .front()
            .is_some_and(|b| b.state == BatchState::Durable)
        {
            let batch = member.batches.pop_front().expect("front batch");
            if batch.header {
                member.header_durable(batch.segment);
            }
            if batch.owned {
                let op = batch.ops[0];
                self.ops[op].as_mut().expect("live op").owned = Some(batch.buf);
            }
            acked.extend(batch.ops);
        }
        for op in acked {
            self.finish_write(op);
        }
    }

    /// A write or flush failed: nothing after the last acknowledged batch can be trusted, so
    /// every pending op on this member fails and its head segment is closed for good.
    fn fail_member(&mut self, slot: u8, error: ds_nvme::IoError) {
        tracing::error!(slot, %error, "device write failed; pending writes on it are failed");
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        member.failed = true;
        let mut ops = Vec::new();
        if let Some(batch) = member.filling.take() {
            ops.extend(batch.ops);
            self.bufs.give(batch.buf);
        }
        for batch in member.batches.drain(..) {
            ops.extend(batch.ops);
        }
        if let Some(head) = member.head.take() {
            member.segments[head as usize].state = SegmentState::Sealed;
        }
        self.stats.write_errors += 1;
        for op in ops {
            self.fail_write(op, PutError::Io(error.clone()));
        }
    }

    fn handle_read(&mut self, slot: u8, id: usize, completion: Completion) {
        let read = self.reads[id].take().expect("read in flight");
        self.free_reads.push(id);
        match read {
            ReadIo::Candidate { op, loc } => self.handle_candidate(slot, op, loc, completion),
            ReadIo::CompactionChunk { at } => self.handle_compaction_chunk(at, completion),
            ReadIo::CompactionMark => self.handle_compaction_marked(completion),
            ReadIo::CompactionFlush => self.handle_compaction_flushed(completion),
            ReadIo::Walk(walk) => self.handle_walk_read(walk, completion),
        }
    }

    fn handle_candidate(&mut self, slot: u8, op: usize, loc: Loc, completion: Completion) {
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        let segment = member.segment_of(loc.offset());
        member.segments[segment as usize].readers -= 1;
        let buf = completion.buf.expect("read buffer");
        let key = self.op(op).key;
        let is_get = matches!(self.op(op).kind, OpKind::Get);
        let full = self.op(op).reads_data();
        match completion.result {
            Err(error) => {
                self.stats.read_errors += 1;
                if let Some(member) = self.members[usize::from(slot)].as_mut() {
                    member.read_errors += 1;
                }
                self.op_mut(op).read_error = Some(error);
                self.bufs.give(buf);
            }
            Ok(()) => match RecordHeader::decode(buf.as_slice()) {
                Err(_) if self.op(op).retries < READ_RETRIES_MAX => {
                    // A flipped bit on the way may be transient: read once more before deciding.
                    self.bufs.give(buf);
                    self.op_mut(op).retries += 1;
                    self.op_mut(op).reads_pending -= 1;
                    let len = if full && !loc.is_tombstone() {
                        loc.len()
                    } else {
                        u64::from(
                            self.members[usize::from(slot)]
                                .as_ref()
                                .expect("member")
                                .block_bytes(),
                        )
                    };
                    self.submit_read(op, loc, len);
                    return;
                }
                Err(error) => {
                    self.stats.corrupt_reads += 1;
                    self.op_mut(op).corrupt = Some((loc, CorruptReason::Header(error)));
                    self.bufs.give(buf);
                }
                Ok(header) if header.key != key => self.bufs.give(buf),
                Ok(header) => {
                    let data_ok = !full
                        || header.kind == RecordKind::Tombstone
                        || crc32c::crc32c(
                            &buf.as_slice()[RECORD_HEADER_BYTES
                                ..RECORD_HEADER_BYTES + header.data_bytes as usize],
                        ) == header.data_crc;
                    if !data_ok && is_get {
                        self.stats.corrupt_reads += 1;
                        self.op_mut(op).corrupt = Some((loc, CorruptReason::DataChecksum));
                        self.bufs.give(buf);
                    } else {
                        let entry = self.op_mut(op);
                        let newer = entry.matched.is_none_or(|(_, seen)| {
                            (header.meta.version, header.lsn) > (seen.meta.version, seen.lsn)
                        });
                        if entry.matched.is_some() {
                            tracing::error!(%key, "two index entries for one key; the newer wins");
                        }
                        if !newer {
                            self.bufs.give(buf);
                            return self.candidate_done(op, is_get);
                        }
                        if let Some(old) = entry.got.take() {
                            self.bufs.give(old);
                        }
                        let entry = self.op_mut(op);
                        entry.matched = Some((loc, header));
                        // A repair learns that the record it would replace is damaged.
                        entry.matched_data_bad = !data_ok;
                        if is_get {
                            entry.got = Some(buf);
                        } else {
                            self.bufs.give(buf);
                        }
                    }
                }
            },
        }
        self.candidate_done(op, is_get);
    }

    fn candidate_done(&mut self, op: usize, is_get: bool) {
        let entry = self.op_mut(op);
        entry.reads_pending -= 1;
        if entry.reads_pending > 0 {
            return;
        }
        if is_get {
            self.finish_get(op);
        } else {
            self.resolved(op);
        }
    }

    fn finish_get(&mut self, op: usize) {
        let mut done = self.free_op(op);
        let outcome = match (done.matched, done.got.take()) {
            (Some((_, header)), Some(buf)) if header.kind == RecordKind::Shard => {
                self.stats.gets += 1;
                self.stats.get_bytes += u64::from(header.data_bytes);
                Ok(GetDone { header, buf })
            }
            (Some((loc, header)), buf) => {
                if let Some(buf) = buf {
                    self.bufs.give(buf);
                }
                if header.kind == RecordKind::Damaged {
                    Err(GetError::Corrupt {
                        device: loc.device(),
                        offset: loc.offset(),
                        reason: CorruptReason::Marked,
                    })
                } else {
                    Err(GetError::NotFound)
                }
            }
            (None, _) => match (done.corrupt, done.read_error) {
                (Some((loc, reason)), _) => Err(GetError::Corrupt {
                    device: loc.device(),
                    offset: loc.offset(),
                    reason,
                }),
                (None, Some(error)) => Err(GetError::Io(error)),
                (None, None) => Err(GetError::NotFound),
            },
        };
        self.emit(done.token, Outcome::Get(outcome));
    }

    /// All candidate headers of a write are in: refuse it if not newer, else append it.
    fn resolved(&mut self, op: usize) {
        let entry = self.op(op);
        if let Some(error) = entry.read_error.clone() {
            self.fail_write(op, PutError::Io(error));
            return;
        }
        let offered = match entry.kind {
            OpKind::Put { meta, .. } => meta.version,
            OpKind::Delete { version } => version,
            OpKind::Get | OpKind::Copy { .. } => unreachable!("only puts and deletes resolve"),
        };
        // A candidate whose header stays unreadable may be this key's record, at a version
        // nobody can know: only a repair (which rebuilt the shard elsewhere) may replace it.
        if let (None, Some((loc, _))) = (entry.matched, entry.corrupt) {
            if !matches!(entry.kind, OpKind::Put { repair: true, .. }) {
                let error = PutError::Unreadable {
                    device: loc.device(),
                    offset: loc.offset(),
                };
                self.fail_write(op, error);
                return;
            }
        }
        let replaces = entry
            .matched
            .map(|(loc, _)| loc)
            .or(entry.corrupt.map(|(loc, _)| loc));
        self.op_mut(op).replaces = replaces;
        let entry = self.op(op);
        if let Some((_, header)) = entry.matched {
            // A repair may rewrite, at its own version, a DAMAGED marker or a shard whose data
            // fails its checksum (the cluster rebuilt it from the others of its stripe).
            let repairs_marker = (header.kind == RecordKind::Damaged || entry.matched_data_bad)
                && matches!(entry.kind, OpKind::Put { repair: true, .. });
            let stale = if repairs_marker {
                header.meta.version > offered
            } else {
                header.meta.version >= offered
            };
            if stale {
                let error = PutError::Stale {
                    key: entry.key,
                    current: header.meta.version,
                    offered,
                };
                self.fail_write(op, error);
                return;
            }
        }
        self.append(op, None);
    }

    /// Copies the op's record into a batch of the device with the most free space.
    pub(crate) fn append(&mut self, op: usize, data: Option<&[u8]>) {
        if let OpKind::Copy { old, .. } = self.op(op).kind {
            // Rewritten or deleted since compaction walked it: a copy now would put an old
            // version with a new lsn on disk, which tombstone dropping must never meet.
            let fp = self.op(op).fp;
            self.index.candidates(fp, &mut self.candidates);
            let live = self.candidates.contains(&old.bits());
            self.candidates.clear();
            if !live {
                let done = self.free_op(op);
                self.release(done.key);
                self.copy_done();
                return;
            }
        }
        let entry = self.op(op);
        let (kind, meta, born) = match entry.kind {
            OpKind::Put { meta, .. } => (RecordKind::Shard, meta, None),
            OpKind::Delete { version } => (
                RecordKind::Tombstone,
                ShardMeta {
                    version,
                    ..ShardMeta::default()
                },
                None,
            ),
            OpKind::Copy {
                damaged: true,
                header,
                ..
            } => (RecordKind::Damaged, header.meta, None),
            OpKind::Copy { header, .. } => (header.kind, header.meta, Some(header.born_lsn)),
            OpKind::Get => unreachable!("gets are not appended"),
        };
        let data_bytes = entry.data_bytes;
        let use_reserve = !matches!(entry.kind, OpKind::Put { .. });
        let avoid = match entry.kind {
            OpKind::Copy { old, .. } => Some(old.device()),
            _ => None,
        };
        let Some(slot) = self.pick_member(data_bytes, avoid) else {
            self.fail_write(op, PutError::NoDevice);
            return;
        };
        let member = self.members[slot].as_mut().expect("member");
        let member_tag = member.sb.device_uuid as u64;
        let block = member.block_bytes();
        let disk_bytes = record_disk_bytes(data_bytes, block);
        if disk_bytes + u64::from(block) > member.segment_bytes() {
            let max = (member.segment_bytes() - u64::from(block)) as usize - RECORD_HEADER_BYTES;
            self.fail_write(
                op,
                PutError::TooLarge {
                    bytes: data_bytes,
                    max,
                },
            );
            return;
        }
        let owned = self.ops[op].as_mut().expect("live op").owned.take();
        let direct = owned.is_some();
        let placement = match member.place(
            disk_bytes,
            use_reserve,
            direct,
            &mut self.seq_next,
            &mut self.bufs,
        ) {
            Ok(placement) => placement,
            Err(error) => {
                self.op_mut(op).owned = owned;
                self.fail_write(op, error);
                return;
            }
        };
        if let Some(mut buf) = owned {
            self.append_direct(op, slot, placement, disk_bytes, kind, meta, &mut buf);
            let member = self.members[slot].as_mut().expect("member");
            member.submit_direct(buf, placement.offset, disk_bytes as usize, op);
            return;
        }
        let lsn = self.lsn_next;
        self.lsn_next += 1;
        let head = member.segment_of(placement.offset);
        let info = &mut member.segments[head as usize];
        info.lsn_min = info.lsn_min.min(lsn);
        let batch = member.filling.as_mut().expect("filling batch");
        let at = (placement.offset - batch.offset) as usize;
        let record = &mut batch.buf.as_mut_slice()[at..at + disk_bytes as usize];
        let entry = self.ops[op].as_mut().expect("live op");
        let source: &[u8] = match (&entry.kind, data, entry.staged.as_ref()) {
            (OpKind::Copy { damaged: true, .. }, _, _) => &[],
            (OpKind::Copy { source, .. }, _, _) => {
                let compaction = self.compaction.as_ref().expect("compaction in progress");
                let start = source + RECORD_HEADER_BYTES;
                &compaction.source().as_slice()[start..start + data_bytes]
            }
            (_, Some(data), _) => data,
            (_, None, Some(staged)) => &staged.bytes()[..data_bytes],
            (_, None, None) => &[],
        };
        assert_eq!(source.len(), data_bytes);
        let header = RecordHeader {
            kind,
            key: entry.key,
            meta,
            data_bytes: data_bytes as u32,
            data_crc: data_crc_of(entry.data_crc, source),
            segment_seq: placement.segment_seq,
            lsn,
            born_lsn: born.unwrap_or(lsn),
            device_tag: member_tag,
        };
        header.encode(record);
        record[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + data_bytes].copy_from_slice(source);
        record[RECORD_HEADER_BYTES + data_bytes..].fill(0);
        batch.len = at + disk_bytes as usize;
        batch.ops.push(op);
        let loc = Loc::new(
            slot as u8,
            placement.offset,
            disk_bytes,
            kind == RecordKind::Tombstone,
        );
        entry.placed = Some(loc);
        entry.stage = Stage::Placed;
        if let Some(staged) = entry.staged.take() {
            staged.release(&mut self.bufs);
        }
    }

    /// Writes the header into a zero-copy put's own buffer, which becomes a batch of one.
    #[allow(clippy::too_many_arguments)]
    fn append_direct(
        &mut self,
        op: usize,
        slot: usize,
        placement: crate::member::Placement,
        disk_bytes: u64,
        kind: RecordKind,
        meta: ShardMeta,
        buf: &mut DmaBuf,
    ) {
        let lsn = self.lsn_next;
        self.lsn_next += 1;
        let member = self.members[slot].as_mut().expect("member");
        let member_tag = member.sb.device_uuid as u64;
        let head = member.segment_of(placement.offset);
        let info = &mut member.segments[head as usize];
        info.lsn_min = info.lsn_min.min(lsn);
        let entry = self.ops[op].as_mut().expect("live op");
        let data_bytes = entry.data_bytes;
        let record = &mut buf.as_mut_slice()[..disk_bytes as usize];
        let data = &record[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + data_bytes];
        let header = RecordHeader {
            kind,
            key: entry.key,
            meta,
            data_bytes: data_bytes as u32,
            data_crc: data_crc_of(entry.data_crc, data),
            segment_seq: placement.segment_seq,
            lsn,
            born_lsn: lsn,
            device_tag: member_tag,
        };
        header.encode(record);
        record[RECORD_HEADER_BYTES + data_bytes..].fill(0);
        entry.placed = Some(Loc::new(slot as u8, placement.offset, disk_bytes, false));
        entry.stage = Stage::Placed;
    }

    /// The device with the most free space that takes writes.
    fn pick_member(&self, data_bytes: usize, avoid: Option<u8>) -> Option<usize> {
        let _ = data_bytes;
        self.members
            .iter()
            .enumerate()
            .filter_map(|(slot, member)| member.as_ref().map(|member| (slot, member)))
            .filter(|(slot, member)| member.accepts_writes() && avoid != Some(*slot as u8))
            .max_by_key(|(slot, member)| (member.free_bytes(), std::cmp::Reverse(*slot)))
            .map(|(slot, _)| slot)
            .or_else(|| {
                // Compaction may copy within its own device when it is the only one.
                let slot = usize::from(avoid?);
                self.members[slot]
                    .as_ref()
                    .filter(|m| m.accepts_writes())
                    .map(|_| slot)
            })
    }

    /// The op's record is durable: point the index at it and tell the caller.
    fn finish_write(&mut self, op: usize) {
        let done = self.free_op(op);
        let new = done.placed.expect("placed op");
        let fp = done.fp;
        self.add_live(new, 1);
        match done.kind {
            OpKind::Copy { old, .. } => {
                if self.index.replace(fp, old.bits(), new.bits()) {
                    self.add_live(old, -1);
                    self.stats.compaction_bytes_copied += new.len();
                } else {
                    // Rewritten or deleted while the copy was in flight: the copy is dead.
                    self.add_live(new, -1);
                }
                self.release(done.key);
                self.copy_done();
                return;
            }
            OpKind::Put { .. } | OpKind::Delete { .. } => {}
            OpKind::Get => unreachable!("gets are not written"),
        }
        match done.replaces {
            // Compaction may have dropped an entry to an unreadable record meanwhile (the only
            // entry it drops without the key's lock): then the new record simply joins.
            Some(old) if self.index.replace(fp, old.bits(), new.bits()) => self.add_live(old, -1),
            Some(_) => self.index.insert(fp, new.bits()),
            None => self.index.insert(fp, new.bits()),
        }
        self.release(done.key);
        let outcome = match done.kind {
            OpKind::Put { .. } => {
                self.stats.puts += 1;
                self.stats.put_bytes += done.data_bytes as u64;
                Outcome::Put(Ok(()))
            }
            _ => {
                self.stats.deletes += 1;
                let existed = done
                    .matched
                    .is_some_and(|(_, h)| h.kind == RecordKind::Shard);
                Outcome::Delete(Ok(existed))
            }
        };
        self.events.push_back(Event {
            token: done.token,
            outcome,
            buf: done.owned,
        });
    }

    pub(crate) fn fail_write(&mut self, op: usize, error: PutError) {
        let mut done = self.free_op(op);
        if let Some(staged) = done.staged.take() {
            staged.release(&mut self.bufs);
        }
        let locked = done.stage != Stage::Deferred;
        if locked {
            self.release(done.key);
        }
        match done.kind {
            OpKind::Put { .. } => {
                let outcome = Outcome::Put(Err(error));
                self.events.push_back(Event {
                    token: done.token,
                    outcome,
                    buf: done.owned,
                });
            }
            OpKind::Delete { .. } => self.emit(done.token, Outcome::Delete(Err(error))),
            OpKind::Copy { .. } => {
                tracing::warn!(key = %done.key, %error, "compaction copy failed");
                self.copy_failed();
            }
            OpKind::Get => unreachable!("gets are not written"),
        }
    }

    pub(crate) fn add_live(&mut self, loc: Loc, sign: i64) {
        let member = self.members[usize::from(loc.device())]
            .as_mut()
            .expect("member");
        let segment = member.segment_of(loc.offset());
        let info = &mut member.segments[segment as usize];
        if sign > 0 {
            info.live_bytes += loc.len();
        } else {
            assert!(
                info.live_bytes >= loc.len(),
                "live bytes of segment {segment} underflow"
            );
            info.live_bytes -= loc.len();
            info.dead_bytes += loc.len();
        }
    }

    /// Unlocks a key; deferred writes for it start at the next [`Self::run_deferred`].
    pub(crate) fn release(&mut self, key: ShardKey) {
        let removed = self.busy.remove(&key);
        assert!(removed, "key {key} was not locked");
    }

    /// Starts the oldest deferred write of every key that is free. Returns whether any started.
    fn run_deferred(&mut self) -> bool {
        let mut started = false;
        let mut index = 0;
        while index < self.deferred.len() {
            let op = self.deferred[index];
            let key = self.op(op).key;
            if self.busy.contains(&key) {
                index += 1;
                continue;
            }
            self.deferred.remove(index);
            started = true;
            if matches!(self.op(op).kind, OpKind::Copy { .. }) {
                self.busy.insert(key);
                self.op_mut(op).stage = Stage::Resolving;
                self.append(op, None);
            } else {
                self.start(op, None);
            }
        }
        started
    }
}
