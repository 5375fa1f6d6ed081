//! Start-up: rebuild a core's index from the checkpoints and the log, and write checkpoints.
//!
//! Recovery of one partition: read every segment header; load the newest valid checkpoint;
//! replay, in sequence order across all devices, every segment opened since the checkpoint and
//! the tail of the segment that was the head when it was taken. Records whose data checksum
//! fails were never acknowledged (a torn batch) or are damaged, and are skipped. When two
//! records of one key meet, the higher version wins, then the higher lsn.
//!
//! Recovery blocks: it runs before the core serves requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ds_nvme::{run_one, Device, DeviceError, DmaBuf, IoError, IoRequest};

use crate::checkpoint::{
    self, CheckpointError, CheckpointHeader, CHECKPOINT_HEADER_BYTES, NO_SEGMENT,
};
use crate::engine::CoreStore;
use crate::key::ShardKey;
use crate::limits::{DEVICES_MAX, QUEUE_DEPTH};
use crate::loc::Loc;
use crate::member::Member;
use crate::record::RecordHeader;
use crate::scan::{scan, ScanItem};
use crate::segment::{SegmentHeader, SegmentHeaderError, SegmentInfo, SegmentMark, SegmentState};
use crate::superblock::Superblock;

/// A mounted device handed to a core.
#[derive(Clone)]
pub struct MountedDevice {
    pub device: Arc<dyn Device>,
    pub superblock: Superblock,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{device}: cannot open a queue: {source}")]
    Queue { device: String, source: DeviceError },
    #[error("{device}: read failed during recovery at offset {offset}: {source}")]
    Read {
        device: String,
        offset: u64,
        source: IoError,
    },
    #[error("{device}: write failed: {source}")]
    Write { device: String, source: IoError },
    #[error("more than {DEVICES_MAX} devices")]
    TooManyDevices,
    #[error("core {core} has no partition on {device}")]
    NoPartition { device: String, core: usize },
    #[error("the store is busy; {what} needs it idle")]
    NotIdle { what: &'static str },
    #[error("no device with slot {slot}")]
    NoSuchDevice { slot: u8 },
    #[error("device {slot} is the last one that takes writes; add another before removing it")]
    LastDevice { slot: u8 },
    /// The device holds a structure this build cannot read; nothing is touched.
    #[error("{device}: {what}")]
    Format { device: String, what: String },
}

/// What recovery did, for logs and the recovery benchmark.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub devices: usize,
    pub checkpoints_loaded: usize,
    pub checkpoint_entries: u64,
    pub segments_replayed: u64,
    pub records_replayed: u64,
    /// Records skipped because a checksum failed (torn, never acknowledged, or damaged).
    pub records_skipped: u64,
    pub headers_read: u64,
    pub elapsed: Duration,
}

/// Key, version and lsn of records already merged, so replay rarely reads a header back.
type Known = HashMap<u64, (ShardKey, u64, u64)>;

impl CoreStore {
    /// Opens the store of data core `core` on `devices` and recovers its state.
    pub fn open(
        core: usize,
        node_id: u128,
        devices: Vec<MountedDevice>,
    ) -> Result<(Self, RecoveryReport), OpenError> {
        if devices.len() > DEVICES_MAX {
            return Err(OpenError::TooManyDevices);
        }
        let started = Instant::now();
        let mut store = CoreStore::assemble(core, node_id);
        let mut report = RecoveryReport {
            devices: devices.len(),
            ..Default::default()
        };
        let mut slots = Vec::new();
        for mounted in devices {
            let slot = store.members.len() as u8;
            let member = store.load_member(slot, mounted)?;
            store.members.push(Some(member));
            slots.push(slot);
        }
        store.recover(&slots, &mut report)?;
        report.elapsed = started.elapsed();
        tracing::info!(core, ?report, "recovered");
        Ok((store, report))
    }

    /// Adds a device to the pool at run time; returns its slot. Records already on it (a
    /// device moved from elsewhere) are merged, which needs the store idle.
    pub fn add_device(&mut self, mounted: MountedDevice) -> Result<u8, OpenError> {
        let slot = match self.members.iter().position(Option::is_none) {
            Some(free) => free,
            None if self.members.len() < DEVICES_MAX => {
                self.members.push(None);
                self.members.len() - 1
            }
            None => return Err(OpenError::TooManyDevices),
        } as u8;
        let member = self.load_member(slot, mounted)?;
        let has_data = member
            .segments
            .iter()
            .any(|s| s.state != SegmentState::Free);
        if has_data && !self.is_idle() {
            return Err(OpenError::NotIdle {
                what: "adding a device that holds data",
            });
        }
        self.members[usize::from(slot)] = Some(member);
        let mut report = RecoveryReport::default();
        if has_data {
            if let Err(error) = self.recover(&[slot], &mut report) {
                // Leave nothing of a half-merged device behind: its entries go with it.
                self.forget_device(slot);
                return Err(error);
            }
        }
        Ok(slot)
    }

    /// Removes a device and every index entry that points at it.
    fn forget_device(&mut self, slot: u8) {
        let doomed: Vec<(u64, u64)> = self
            .index
            .iter()
            .filter(|&(_, bits)| Loc::from_bits(bits).device() == slot)
            .collect();
        for (fp, bits) in doomed {
            self.index.remove(fp, bits);
        }
        self.members[usize::from(slot)] = None;
    }

    /// Each device's trouble: (slot, failed reads, a write failed, being removed).
    pub fn device_health(&self) -> Vec<(u8, u64, bool, bool)> {
        self.members
            .iter()
            .flatten()
            .map(|m| (m.slot, m.read_errors, m.failed, m.draining))
            .collect()
    }

    /// Takes a failing device out of service: it takes no new records, what can still be read
    /// is moved off by compaction, and once every segment was tried it is detached
    /// ([`CoreStore::try_detach`]) with the entries of what could not be read, which repair
    /// then restores from other nodes. Refused for the last device that takes writes.
    pub fn retire_device(&mut self, slot: u8) -> Result<(), OpenError> {
        self.remove_device(slot)?;
        if let Some(member) = self.members[usize::from(slot)].as_mut() {
            member.failed = true;
        }
        Ok(())
    }

    /// Starts moving everything off device `slot`; it takes no new records from now on.
    /// [`CoreStore::try_detach`] reports when it is empty and detaches it.
    pub fn remove_device(&mut self, slot: u8) -> Result<(), OpenError> {
        if self
            .members
            .get(usize::from(slot))
            .and_then(Option::as_ref)
            .is_none()
        {
            return Err(OpenError::NoSuchDevice { slot });
        }
        let others = self
            .members
            .iter()
            .flatten()
            .any(|m| m.slot != slot && m.accepts_writes());
        if !others {
            return Err(OpenError::LastDevice { slot });
        }
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        member.draining = true;
        member.close_filling(&mut self.bufs);
        if let Some(head) = member.head.take() {
            member.segments[head as usize].state = SegmentState::Sealed;
        }
        Ok(())
    }

    /// Detaches a draining device once none of its segments holds records. Returns whether it
    /// is gone.
    pub fn try_detach(&mut self, slot: u8) -> bool {
        let Some(member) = self.members.get(usize::from(slot)).and_then(Option::as_ref) else {
            return true;
        };
        assert!(member.draining, "device {slot} is not being removed");
        // A damaged segment cannot be emptied; its records were never served. A failed device
        // cannot take FREE markers: once nothing live is left on it, it may go as it is.
        let empty = member.segments.iter().all(|s| {
            matches!(s.state, SegmentState::Free | SegmentState::Damaged)
                || (member.failed && s.live_bytes == 0)
        });
        let quiet = member.is_idle()
            && self
                .compaction
                .as_ref()
                .is_none_or(|_| !self.compaction_on(slot));
        if empty && quiet {
            self.members[usize::from(slot)] = None;
            return true;
        }
        // A failed device whose every segment was tried: what could be read was copied off;
        // entries left (tombstones, unreadable records) go with it, for repair to restore.
        let tried = member.segments.iter().all(|s| {
            matches!(s.state, SegmentState::Free | SegmentState::Damaged) || s.compaction_failed
        });
        if member.failed && tried && quiet {
            tracing::error!(
                slot,
                "detaching a failed device; shards left on it need repair"
            );
            self.forget_device(slot);
            return true;
        }
        false
    }

    /// Opens fresh device queues for the calling thread. A queue belongs to the first thread
    /// that uses it (io_uring single issuer): a store recovered on one thread and then handed to
    /// its core calls this on the core before its first request. Needs the store idle.
    pub fn rebind_queues(&mut self) -> Result<(), OpenError> {
        if !self.is_idle() {
            return Err(OpenError::NotIdle {
                what: "rebinding queues",
            });
        }
        for member in self.members.iter_mut().flatten() {
            let name = member.device.info().name.clone();
            member.queue =
                member
                    .device
                    .open_queue(QUEUE_DEPTH)
                    .map_err(|source| OpenError::Queue {
                        device: name,
                        source,
                    })?;
        }
        Ok(())
    }

    /// Slots and names of the devices in the pool, with their free bytes.
    /// Per device of this core's pool: slot, path, capacity and free bytes of the partition.
    pub fn device_usage(&self) -> Vec<(u8, String, u64, u64)> {
        self.members
            .iter()
            .flatten()
            .map(|m| {
                let name = m.device.info().name.clone();
                (m.slot, name, m.capacity_bytes(), m.free_bytes())
            })
            .collect()
    }

    pub fn devices(&self) -> Vec<(u8, String, u64)> {
        self.members
            .iter()
            .flatten()
            .map(|m| (m.slot, m.device.info().name.clone(), m.free_bytes()))
            .collect()
    }

    fn load_member(&mut self, slot: u8, mounted: MountedDevice) -> Result<Member, OpenError> {
        let MountedDevice {
            device,
            superblock: sb,
        } = mounted;
        let name = device.info().name.clone();
        if self.core >= sb.partitions.len() {
            return Err(OpenError::NoPartition {
                device: name,
                core: self.core,
            });
        }
        let queue = device
            .open_queue(QUEUE_DEPTH)
            .map_err(|source| OpenError::Queue {
                device: name.clone(),
                source,
            })?;
        let count = sb.segments_per_partition(self.core);
        let mut member = Member {
            slot,
            device,
            queue,
            sb,
            partition: self.core,
            segments: vec![SegmentInfo::free(); count as usize],
            head: None,
            filling: None,
            batches: Default::default(),
            flush_inflight: false,
            batch_next: 0,
            backlog: Default::default(),
            draining: false,
            failed: false,
            read_errors: 0,
            bytes_written: 0,
            bytes_since_checkpoint: 0,
            checkpoint_generation: 0,
            free_count: count as usize,
            fua: false,
        };
        let block = member.block_bytes() as usize;
        let uuid = member.sb.device_uuid;
        for segment in 0..count {
            let offset = member.segment_offset(segment);
            let buf = read_blocking(&mut member, offset, block)?;
            let header = match SegmentHeader::decode(buf.as_slice()) {
                Ok(header) => header,
                Err(SegmentHeaderError::Missing) => continue,
                Err(SegmentHeaderError::Version { found }) => {
                    return Err(OpenError::Format {
                        device: name,
                        what: format!("segment {segment} has format version {found}, which this build cannot read"),
                    });
                }
                Err(error) => {
                    // Used or freed, nobody can tell: neither replayed nor reused; reported.
                    tracing::error!(device = %name, segment, %error, "segment header damaged; quarantined");
                    let info = &mut member.segments[segment as usize];
                    info.state = SegmentState::Damaged;
                    // What it holds is unknown: it must hold back every tombstone drop.
                    info.lsn_min = 0;
                    continue;
                }
            };
            let ours = header.device_uuid == uuid
                && header.partition == self.core as u32
                && header.segment == segment;
            if !ours {
                continue;
            }
            // Freed incarnations count too: a sequence number is never handed out twice.
            self.seq_next = self.seq_next.max(header.seq + 1);
            if header.mark == SegmentMark::Used {
                member.segments[segment as usize] = SegmentInfo {
                    state: SegmentState::Sealed,
                    seq: header.seq,
                    written_bytes: member.segment_bytes(),
                    live_bytes: 0,
                    lsn_min: 0,
                    readers: 0,
                    header_durable: true,
                    dead_bytes: 0,
                    compaction_failed: false,
                };
            }
        }
        member.recount_free();
        member.fua = self.durability.fua_for(member.device.info().kind);
        Ok(member)
    }

    fn recover(&mut self, slots: &[u8], report: &mut RecoveryReport) -> Result<(), OpenError> {
        self.recovering = slots.to_vec();
        let result = self.recover_slots(slots, report);
        self.recovering.clear();
        result
    }

    fn recover_slots(
        &mut self,
        slots: &[u8],
        report: &mut RecoveryReport,
    ) -> Result<(), OpenError> {
        let mut known = Known::new();
        // (seq, slot, segment, start offset within the segment)
        let mut replay: Vec<(u64, u8, u32, u64)> = Vec::new();
        for &slot in slots {
            let checkpoint = self.load_checkpoint(slot, report, &mut known)?;
            let member = self.members[usize::from(slot)].as_ref().expect("member");
            let block = u64::from(member.block_bytes());
            for (segment, info) in member.segments.iter().enumerate() {
                if info.state != SegmentState::Sealed {
                    continue;
                }
                let start = match &checkpoint {
                    None => Some(block),
                    Some(c) if info.seq >= c.seq_next => Some(block),
                    Some(c) if c.head_segment == segment as u32 && c.head_seq == info.seq => {
                        Some(c.head_bytes.max(block))
                    }
                    Some(_) => None,
                };
                if let Some(start) = start {
                    replay.push((info.seq, slot, segment as u32, start));
                }
            }
        }
        replay.sort_unstable();
        for (seq, slot, segment, start) in replay {
            self.replay_segment(slot, segment, seq, start, report, &mut known)?;
        }
        drop(known);
        // Live bytes follow from the index alone.
        let entries: Vec<u64> = self.index.iter().map(|(_, bits)| bits).collect();
        for bits in entries {
            let loc = Loc::from_bits(bits);
            if slots.contains(&loc.device()) {
                self.add_live(loc, 1);
            }
        }
        // What a recovered segment holds beyond its live records (dead ones, unused tail) is
        // what compacting it would reclaim.
        for &slot in slots {
            let member = self.members[usize::from(slot)].as_mut().expect("member");
            let room = member.segment_bytes() - u64::from(member.block_bytes());
            for info in member
                .segments
                .iter_mut()
                .filter(|s| s.state == SegmentState::Sealed)
            {
                info.dead_bytes = room.saturating_sub(info.live_bytes);
            }
        }
        Ok(())
    }

    /// Loads the newest valid checkpoint of a device into the index.
    fn load_checkpoint(
        &mut self,
        slot: u8,
        report: &mut RecoveryReport,
        known: &mut Known,
    ) -> Result<Option<CheckpointHeader>, OpenError> {
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        let block = member.block_bytes() as usize;
        let mut found: Vec<(CheckpointHeader, u64)> = Vec::new();
        for copy in 0..2 {
            let offset = member.sb.checkpoint_offset(member.partition, copy);
            let buf = read_blocking(member, offset, block)?;
            let header = match CheckpointHeader::decode(buf.as_slice()) {
                Ok(header) => header,
                Err(CheckpointError::Version { found }) => {
                    return Err(OpenError::Format {
                        device: member.device.info().name.clone(),
                        what: format!("checkpoint format version {found} is not supported"),
                    });
                }
                Err(_) => continue,
            };
            member.checkpoint_generation = member.checkpoint_generation.max(header.generation);
            if header.device_uuid == member.sb.device_uuid
                && header.partition == member.partition as u32
            {
                found.push((header, offset));
            }
        }
        // Newest first; a damaged one falls back to the older (more replay, nothing lost).
        found.sort_by_key(|(header, _)| std::cmp::Reverse(header.generation));
        let mut chosen = None;
        for (header, offset) in found {
            match read_checkpoint(member, &header, offset) {
                Ok(entries) => {
                    chosen = Some((header, entries));
                    break;
                }
                Err(reason) => {
                    tracing::warn!(
                        slot,
                        generation = header.generation,
                        reason,
                        "checkpoint unusable"
                    );
                }
            }
        }
        let Some((header, entries)) = chosen else {
            return Ok(None);
        };
        self.lsn_next = self.lsn_next.max(header.lsn_next);
        self.seq_next = self.seq_next.max(header.seq_next);
        report.checkpoints_loaded += 1;
        let mut bulk = Vec::with_capacity(entries.len());
        let mut candidates = Vec::new();
        for (fp, bits) in entries {
            let stored = Loc::from_bits(bits);
            assert!(stored.len() > 0, "validated by read_checkpoint");
            let loc = Loc::new(slot, stored.offset(), stored.len(), stored.is_tombstone());
            let member = self.members[usize::from(slot)].as_ref().expect("member");
            let Some(segment) = segment_containing(member, loc) else {
                continue;
            };
            let info = member.segments[segment as usize];
            // Entries into segments freed (or reused) since are superseded by replayed copies.
            if info.state != SegmentState::Sealed || info.seq >= header.seq_next {
                continue;
            }
            report.checkpoint_entries += 1;
            // Entries of one checkpoint lived together in one index; only a key that another
            // device already brought needs resolving.
            candidates.clear();
            self.index.candidates(fp, &mut candidates);
            if candidates.is_empty() {
                bulk.push((fp, loc.bits()));
            } else {
                self.merge(fp, loc, None, report, known)?;
            }
        }
        self.index.insert_many(&bulk);
        Ok(Some(header))
    }

    fn replay_segment(
        &mut self,
        slot: u8,
        segment: u32,
        seq: u64,
        start: u64,
        report: &mut RecoveryReport,
        known: &mut Known,
    ) -> Result<(), OpenError> {
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        let offset = member.segment_offset(segment);
        let bytes = member.segment_bytes() as usize;
        let block = member.block_bytes() as usize;
        let image = read_blocking(member, offset, bytes)?;
        report.segments_replayed += 1;
        let mut records = Vec::new();
        let mut skipped = 0;
        let mut unsupported = None;
        let tag = member.sb.device_uuid as u64;
        scan(
            image.as_slice(),
            seq,
            tag,
            block,
            start as usize,
            |item| match item {
                ScanItem::Record {
                    offset,
                    header,
                    disk_bytes,
                    data_ok: true,
                } => records.push((offset, header, disk_bytes)),
                ScanItem::Damaged {
                    error: crate::record::HeaderError::Version { found },
                    ..
                } => unsupported = Some(found),
                ScanItem::Record { .. } | ScanItem::Damaged { .. } => skipped += 1,
            },
        );
        if let Some(found) = unsupported {
            return Err(OpenError::Format {
                device: member.device.info().name.clone(),
                what: format!("segment {segment} holds records of format version {found}, which this build cannot read"),
            });
        }
        report.records_skipped += skipped;
        let mut lsn_min = u64::MAX;
        for (at, header, disk_bytes) in records {
            let loc = Loc::of_record(slot, offset + at as u64, disk_bytes, header.kind);
            lsn_min = lsn_min.min(header.lsn);
            self.lsn_next = self.lsn_next.max(header.lsn + 1);
            report.records_replayed += 1;
            self.merge(header.key.fingerprint(), loc, Some(header), report, known)?;
        }
        let member = self.members[usize::from(slot)].as_mut().expect("member");
        if start as usize == block {
            member.segments[segment as usize].lsn_min = lsn_min;
        }
        self.bufs.give(image);
        Ok(())
    }

    /// Puts a record found on disk into the index, unless a newer record of its key is there.
    fn merge(
        &mut self,
        fp: u64,
        loc: Loc,
        header: Option<RecordHeader>,
        report: &mut RecoveryReport,
        known: &mut Known,
    ) -> Result<(), OpenError> {
        let mut candidates = Vec::new();
        self.index.candidates(fp, &mut candidates);
        if candidates.is_empty() {
            if let Some(h) = header {
                known.insert(loc.bits(), (h.key, h.meta.version, h.lsn));
            }
            self.index.insert(fp, loc.bits());
            return Ok(());
        }
        let Some(new) = self.identify(loc, header, report, known)? else {
            return Ok(());
        };
        for bits in candidates {
            let Some(old) = self.identify(Loc::from_bits(bits), None, report, known)? else {
                continue;
            };
            if old.0 != new.0 {
                continue;
            }
            if (new.1, new.2) > (old.1, old.2) {
                self.index.replace(fp, bits, loc.bits());
                // Live bytes of devices not being recovered were counted already.
                let replaced = Loc::from_bits(bits);
                if !self.recovering.contains(&replaced.device()) {
                    self.add_live(replaced, -1);
                }
            }
            return Ok(());
        }
        self.index.insert(fp, loc.bits());
        Ok(())
    }

    /// Key, version and lsn of the record at `loc`, reading its header when not yet known.
    fn identify(
        &mut self,
        loc: Loc,
        header: Option<RecordHeader>,
        report: &mut RecoveryReport,
        known: &mut Known,
    ) -> Result<Option<(ShardKey, u64, u64)>, OpenError> {
        if let Some(found) = known.get(&loc.bits()) {
            return Ok(Some(*found));
        }
        let header = match header {
            Some(header) => header,
            None => {
                let member = self.members[usize::from(loc.device())]
                    .as_mut()
                    .expect("member");
                let block = member.block_bytes() as usize;
                let buf = read_blocking(member, loc.offset(), block)?;
                report.headers_read += 1;
                let decoded = RecordHeader::decode(buf.as_slice());
                self.bufs.give(buf);
                match decoded {
                    Ok(header) => header,
                    Err(_) => return Ok(None),
                }
            }
        };
        let found = (header.key, header.meta.version, header.lsn);
        known.insert(loc.bits(), found);
        Ok(Some(found))
    }

    /// Writes a checkpoint of every device's part of the index. Needs the store idle.
    pub fn checkpoint(&mut self) -> Result<(), OpenError> {
        if !self.is_idle() {
            return Err(OpenError::NotIdle {
                what: "a checkpoint",
            });
        }
        let mut per_slot: HashMap<u8, Vec<u8>> = HashMap::new();
        for (fp, bits) in self.index.iter() {
            let entry = per_slot.entry(Loc::from_bits(bits).device()).or_default();
            checkpoint::encode_entries(std::iter::once((fp, bits)), entry);
        }
        for slot in 0..self.members.len() {
            let Some(member) = self.members[slot].as_mut() else {
                continue;
            };
            let entries = per_slot.remove(&(slot as u8)).unwrap_or_default();
            let block = member.block_bytes() as usize;
            if (entries.len() + block) as u64 > member.sb.checkpoint_slot_bytes {
                tracing::warn!(
                    slot,
                    "index part too large for the checkpoint slot; skipped"
                );
                continue;
            }
            let generation = member.checkpoint_generation + 1;
            let (head_segment, head_seq, head_bytes) = match member.head {
                Some(head) => {
                    let info = member.segments[head as usize];
                    (head, info.seq, info.written_bytes)
                }
                None => (NO_SEGMENT, 0, 0),
            };
            let header = CheckpointHeader {
                partition: member.partition as u32,
                generation,
                device_uuid: member.sb.device_uuid,
                seq_next: self.seq_next,
                lsn_next: self.lsn_next,
                head_segment,
                head_seq,
                head_bytes,
                entry_count: entries.len() as u64 / 16,
                entries_crc: crc32c::crc32c(&entries),
            };
            let total = (block + entries.len()).next_multiple_of(block);
            let mut buf = DmaBuf::new(total);
            let slice = buf.as_mut_slice();
            slice[..total].fill(0);
            header.encode(&mut slice[..CHECKPOINT_HEADER_BYTES]);
            slice[block..block + entries.len()].copy_from_slice(&entries);
            let offset = member
                .sb
                .checkpoint_offset(member.partition, generation % 2);
            write_blocking(member, buf, offset, total)?;
            member.checkpoint_generation = generation;
            member.bytes_since_checkpoint = 0;
        }
        self.stats.checkpoints += 1;
        Ok(())
    }

    fn compaction_on(&self, slot: u8) -> bool {
        let _ = slot;
        self.compaction.is_some()
    }
}

/// Reads and checks the entries of a checkpoint; the reason when they cannot be trusted.
fn read_checkpoint(
    member: &mut Member,
    header: &CheckpointHeader,
    offset: u64,
) -> Result<Vec<(u64, u64)>, &'static str> {
    let block = u64::from(member.block_bytes());
    let fits = header
        .entry_count
        .checked_mul(16)
        .and_then(|bytes| bytes.checked_add(block))
        .is_some_and(|bytes| bytes <= member.sb.checkpoint_slot_bytes);
    if !fits {
        return Err("entry count larger than the slot");
    }
    if !header.head_bytes.is_multiple_of(block) || header.head_bytes > member.segment_bytes() {
        return Err("head offset not block aligned or beyond the segment");
    }
    if header.head_segment != NO_SEGMENT && header.head_segment as usize >= member.segments.len() {
        return Err("head segment out of range");
    }
    let bytes = (header.entry_count * 16).next_multiple_of(block) as usize;
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let buf = read_blocking(member, offset + block, bytes).map_err(|_| "entries unreadable")?;
    let entries =
        checkpoint::decode_entries(header, buf.as_slice()).map_err(|_| "entries checksum")?;
    let first = member.segment_offset(0);
    let end = first + member.segments.len() as u64 * member.segment_bytes();
    for &(_, bits) in &entries {
        let loc = Loc::from_bits(bits);
        let inside = loc.len() > 0 && loc.offset() >= first && loc.offset() + loc.len() <= end;
        let whole = inside
            && (loc.offset() - first) / member.segment_bytes()
                == (loc.offset() + loc.len() - 1 - first) / member.segment_bytes();
        if !whole || !loc.offset().is_multiple_of(block) {
            return Err("entry points outside the partition");
        }
    }
    Ok(entries)
}

fn segment_containing(member: &Member, loc: Loc) -> Option<u32> {
    let first = member.segment_offset(0);
    let segment = loc.offset().checked_sub(first)? / member.segment_bytes();
    (segment < member.segments.len() as u64).then_some(segment as u32)
}

/// A start-up read: submit and wait. Never used on the data path.
pub(crate) fn read_blocking(
    member: &mut Member,
    offset: u64,
    len: usize,
) -> Result<DmaBuf, OpenError> {
    let request = IoRequest::read(DmaBuf::new(len), offset, len);
    let done = run_one(
        member.queue.as_mut(),
        request,
        u64::MAX - 1,
        &mut Vec::new(),
    )
    .expect("recovery reads are aligned");
    let device = member.device.info().name.clone();
    done.result.map_err(|source| OpenError::Read {
        device,
        offset,
        source,
    })?;
    Ok(done.buf.expect("buffer"))
}

/// A maintenance write followed by a flush.
fn write_blocking(
    member: &mut Member,
    buf: DmaBuf,
    offset: u64,
    len: usize,
) -> Result<(), OpenError> {
    let device = member.device.info().name.clone();
    let mut others = Vec::new();
    let done = run_one(
        member.queue.as_mut(),
        IoRequest::write(buf, offset, len),
        u64::MAX - 2,
        &mut others,
    )
    .expect("aligned write");
    done.result.map_err(|source| OpenError::Write {
        device: device.clone(),
        source,
    })?;
    let done = run_one(
        member.queue.as_mut(),
        IoRequest::flush(),
        u64::MAX - 3,
        &mut others,
    )
    .expect("flush");
    done.result
        .map_err(|source| OpenError::Write { device, source })?;
    assert!(
        others.is_empty(),
        "maintenance I/O raced with the data path"
    );
    Ok(())
}
