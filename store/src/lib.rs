//! The shard store: log-structured records on a pool of block devices, one partition per data
//! core on every device (shared nothing), and a compact in-memory index from shard key to
//! record location.
//!
//! Layers, bottom up: formats ([`superblock`], [`segment`], [`record`], [`checkpoint`]), the
//! [`index`], the per-device [`member`] state with group commit, the per-core [`engine`] state
//! machine, and the blocking parts: [`mount`], [`recovery`], [`scrub`]; the background [`walk`] of every
//! record, a step at a time. On-disk layout:
//! `docs/disk-format.md`.

mod blocking;
mod bufs;
pub mod checkpoint;
mod compaction;
pub mod engine;
pub mod error;
pub mod index;
pub mod key;
pub mod limits;
pub mod loc;
mod member;
pub mod mount;
pub mod record;
pub mod recovery;
pub mod scan;
pub mod scrub;
pub mod segment;
pub mod stats;
pub mod superblock;
pub mod walk;

pub use engine::{
    put_buffer_bytes, CoreStore, Durability, Event, GetDone, Outcome, PUT_DATA_OFFSET,
};
pub use error::{CorruptReason, GetError, PutError};
pub use key::ShardKey;
pub use mount::{mount, peek, FormatOptions, FormatPolicy, MountError};
pub use record::{RecordHeader, RecordKind, ShardMeta};
pub use recovery::{MountedDevice, OpenError, RecoveryReport};
pub use scrub::{BadRecord, ScrubReport};
pub use stats::StoreStats;
pub use walk::{WalkCursor, WalkDamage, WalkDamageKind, WalkError, WalkStep, WalkedRecord};
