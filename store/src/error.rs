//! Errors of the shard store, one enum per operation.

use ds_nvme::IoError;

use crate::key::ShardKey;
use crate::record::HeaderError;

/// Why a put or delete was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// No free segment is left for client writes; reads, deletes and compaction still work.
    #[error("no space left on the devices of this core")]
    NoSpace,
    /// The store holds this shard at the same or a newer version.
    #[error("shard {key} is stored at version {current}, not older than {offered}")]
    Stale {
        key: ShardKey,
        current: u64,
        offered: u64,
    },
    #[error("shard data of {bytes} bytes is over the limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    /// Too many requests in flight on this core.
    #[error("too many requests in flight")]
    Busy,
    /// A record behind the key's fingerprint cannot be read, so whether the write is newer
    /// cannot be known; only a repair write may replace it.
    #[error("an unreadable record (device {device}, offset {offset}) may hold this shard; it needs repair")]
    Unreadable { device: u8, offset: u64 },
    /// A zero-copy put's buffer cannot hold the record.
    #[error("put buffer of {capacity} bytes is smaller than the {needed} bytes the record needs")]
    BufferTooSmall { capacity: usize, needed: usize },
    #[error("device error: {0}")]
    Io(IoError),
    /// The device holding the previous version is being removed or has failed.
    #[error("no device can take the write")]
    NoDevice,
}

/// Why a get returned no data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    #[error("shard not found")]
    NotFound,
    /// The record exists but failed its checksums: never returned as data.
    #[error("shard record at device {device} offset {offset} is corrupt: {reason}")]
    Corrupt {
        device: u8,
        offset: u64,
        reason: CorruptReason,
    },
    #[error("too many requests in flight")]
    Busy,
    #[error("device error: {0}")]
    Io(IoError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    #[error("header: {0}")]
    Header(HeaderError),
    #[error("data checksum mismatch")]
    DataChecksum,
    /// Found corrupt earlier (by compaction) and kept as a marker until repair rewrites it.
    #[error("marked damaged, awaiting repair")]
    Marked,
}
