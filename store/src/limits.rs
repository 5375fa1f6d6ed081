//! Every bound of the shard store, in one place, units last (TigerBeetle's habit).

/// Size of one superblock copy; two copies sit at the start of every device.
pub const SUPERBLOCK_BYTES: u64 = 4096;
/// Number of redundant superblock copies.
pub const SUPERBLOCK_COPIES: u64 = 2;
/// Where the first partition may start: room for the superblocks, aligned for every block size.
pub const DATA_START_BYTES: u64 = 1 << 20;
/// Partitions (data cores) per device.
pub const PARTITIONS_MAX: usize = 64;
/// Devices in one pool (the location packs the device slot in 8 bits).
pub const DEVICES_MAX: usize = 256;
/// Largest logical block the format supports.
pub const BLOCK_BYTES_MAX: u32 = 4096;
/// Record header size on disk.
pub const RECORD_HEADER_BYTES: usize = 96;
/// Largest data payload of one record (a shard of a stripe).
pub const RECORD_DATA_BYTES_MAX: usize = 8 << 20;
/// Smallest and default segment size.
pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// One group-commit batch is at most this many bytes; a record larger than it goes alone.
pub const BATCH_BYTES_MAX: usize = 4 << 20;
/// Batches written and not yet acknowledged, per partition.
pub const BATCHES_INFLIGHT_MAX: usize = 8;
/// Requests a core has accepted and not completed.
pub const OPS_INFLIGHT_MAX: usize = 4096;
/// Walk steps ([`crate::CoreStore::submit_walk`]) a core has in flight at once.
pub const WALKS_INFLIGHT_MAX: usize = 8;
/// Device queue depth per core.
pub const QUEUE_DEPTH: u32 = 128;
/// Free segments held back from client writes so deletes and compaction can still proceed.
pub const SEGMENTS_RESERVED: usize = 2;
/// A checkpoint slot holds one entry per this many partition bytes.
pub const CHECKPOINT_BYTES_PER_ENTRY_SLOT: u64 = 2048;
/// One checkpoint entry: fingerprint + location.
pub const CHECKPOINT_ENTRY_BYTES: u64 = 16;
/// Compaction reads its segment in chunks of this size, at most this many in flight.
pub const COMPACTION_READ_CHUNK_BYTES: usize = 1 << 20;
pub const COMPACTION_READS_INFLIGHT_MAX: usize = 2;
/// Segments nothing live points into that one compaction frees together (one flush).
pub const UNREAD_FREES_MAX: usize = 16;
/// A segment is worth compacting when at least this share of it is dead (percent).
pub const COMPACTION_DEAD_PERCENT_MIN: u64 = 25;

const _: () = assert!(SUPERBLOCK_BYTES * SUPERBLOCK_COPIES <= DATA_START_BYTES);
const _: () = assert!(DATA_START_BYTES.is_multiple_of(BLOCK_BYTES_MAX as u64));
const _: () = assert!(SEGMENT_BYTES_MIN.is_multiple_of(BLOCK_BYTES_MAX as u64));
const _: () = assert!(SEGMENT_BYTES_DEFAULT.is_multiple_of(SEGMENT_BYTES_MIN));
const _: () = assert!(RECORD_DATA_BYTES_MAX + RECORD_HEADER_BYTES < SEGMENT_BYTES_DEFAULT as usize);
const _: () = assert!(BATCH_BYTES_MAX as u64 <= SEGMENT_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_BYTES_MIN.is_multiple_of(COMPACTION_READ_CHUNK_BYTES as u64));
