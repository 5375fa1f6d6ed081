//! Shard operations as the core that owns the shard runs them, for a coordinator on this node
//! or on a peer: shard writes at the coordinator's version, reads, tombstones, and this node's
//! copy of an object's metadata record, which only this core ever writes, so its cached copy
//! is authoritative.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ds_nvme::DmaBuf;
use ds_store::limits::RECORD_HEADER_BYTES;
use ds_store::{GetError, PutError, ShardKey, ShardMeta};
use thiserror::Error;

use crate::reactor::lock::lock;
use crate::service::ctx::CoreCtx;
use crate::service::meta::{ObjectMeta, META_STRIPE};
use crate::service::payload::RecordPayload;

/// Cached metadata entries per core before idle ones are dropped.
const META_CACHE_MAX: usize = 65_536;
/// A write that finds a newer version (a clock that went back) retries this often.
const STALE_RETRIES_MAX: u32 = 4;

pub enum ShardOp {
    /// Fold a copy of an object's metadata into this node's (create, grow, delete); answers
    /// the merged record.
    MetaMerge {
        object: u128,
        meta: ObjectMeta,
    },
    /// This node's copy of an object's metadata (deleted ones too).
    MetaRead {
        object: u128,
    },
    /// Store a shard at the coordinator's version; `OpError::Stale` if one as new is there.
    ShardPut {
        key: ShardKey,
        meta: ShardMeta,
        data: OwnedBytes,
        /// The bytes' crc32c, when the coordinator's frame checksum gave it.
        data_crc: Option<u32>,
        /// Rewrite a damaged record at the same version (repair of a corrupt shard).
        repair: bool,
    },
    ShardRead {
        key: ShardKey,
    },
    /// Tombstone shard `shard` of stripes `first..first + count` at `version` or later.
    ShardDelete {
        object: u128,
        first: u32,
        count: u32,
        shard: u8,
        version: u64,
    },
    /// Which of shards `shards` (a bit set) of stripes `first..first + count` this node holds.
    ShardList {
        object: u128,
        first: u32,
        count: u32,
        shards: u64,
    },
}

/// Bytes `buf[range]`, owned or shared: a received frame's payload passes on without being
/// copied out from behind the header it starts with, and a coordinator's stripe reaches the
/// owning core's store without a copy per shard.
pub struct OwnedBytes {
    buf: Backing,
    range: std::ops::Range<usize>,
}

/// Bytes several owners read: a request's payload, an assembled stripe, parity.
pub type SharedBuf = Arc<dyn AsRef<[u8]> + Send + Sync>;

enum Backing {
    Owned(Vec<u8>),
    Shared(SharedBuf),
    /// A store record buffer, the bytes at `PUT_DATA_OFFSET`: the store writes it as it is.
    Record(RecordPayload),
}

impl std::fmt::Debug for OwnedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OwnedBytes({} bytes)", self.range.len())
    }
}

impl OwnedBytes {
    /// `buf[start..]`; `start` is at most `buf.len()`.
    pub fn after(buf: Vec<u8>, start: usize) -> Self {
        assert!(start <= buf.len());
        let range = start..buf.len();
        Self {
            buf: Backing::Owned(buf),
            range,
        }
    }

    /// `buf[range]`, shared with whoever else holds `buf`; the range lies inside it.
    pub fn shared(buf: SharedBuf, range: std::ops::Range<usize>) -> Self {
        assert!(range.start <= range.end && range.end <= (*buf).as_ref().len());
        Self {
            buf: Backing::Shared(buf),
            range,
        }
    }

    /// All of a record buffer's payload.
    pub fn record(record: RecordPayload) -> Self {
        let range = 0..record.as_slice().len();
        Self {
            buf: Backing::Record(record),
            range,
        }
    }

    /// The record buffer, when these bytes are all of one.
    pub fn into_record(self) -> Result<RecordPayload, Self> {
        match self.buf {
            Backing::Record(record) if self.range == (0..record.as_slice().len()) => Ok(record),
            buf => Err(Self {
                buf,
                range: self.range,
            }),
        }
    }
}

impl From<Vec<u8>> for OwnedBytes {
    fn from(buf: Vec<u8>) -> Self {
        Self::after(buf, 0)
    }
}

impl AsRef<[u8]> for OwnedBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::ops::Deref for OwnedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.buf {
            Backing::Owned(buf) => &buf[self.range.clone()],
            Backing::Shared(buf) => &(**buf).as_ref()[self.range.clone()],
            Backing::Record(record) => &record.as_slice()[self.range.clone()],
        }
    }
}

/// A shard a node holds, for STAT.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldShard {
    pub stripe: u32,
    pub shard: u8,
    pub device: String,
}

pub enum ShardReply {
    Meta(Result<ObjectMeta, OpError>),
    Done(Result<(), OpError>),
    /// The shard's bytes and header, or `None` when this node holds none.
    Data(Result<Option<StripeBytes>, OpError>),
    Held(Vec<HeldShard>),
    /// A JSON document (the management thread's answer to an OVERLAY request).
    Document(Result<Vec<u8>, OpError>),
}

/// A stripe as the store read it: the record's buffer itself, handed from the owning core to
/// the coordinator without a copy. Give it back with `CoreStore::recycle` when done.
pub struct StripeBytes {
    buf: DmaBuf,
    len: usize,
    /// The record's version, scheme and object size as written.
    pub meta: ShardMeta,
}

impl StripeBytes {
    pub fn as_slice(&self) -> &[u8] {
        &self.buf.as_slice()[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + self.len]
    }

    pub fn into_buf(self) -> DmaBuf {
        self.buf
    }
}

/// Why a shard operation failed, in terms the protocol maps to statuses.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum OpError {
    #[error("not found")]
    NotFound,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("no space left on the node's devices")]
    NoSpace,
    #[error("the node is busy")]
    Busy,
    #[error("device error: {0}")]
    Io(String),
    #[error("{0}")]
    Internal(String),
    /// A shard write found this version (the same or newer) already stored.
    #[error("a version as new is stored ({0})")]
    Stale(u64),
    /// Not enough nodes answered.
    #[error("{0}")]
    Unavailable(String),
}

impl From<GetError> for OpError {
    fn from(error: GetError) -> Self {
        match error {
            GetError::NotFound => OpError::NotFound,
            GetError::Corrupt { .. } => OpError::Corrupt(error.to_string()),
            GetError::Busy => OpError::Busy,
            GetError::Io(_) => OpError::Io(error.to_string()),
        }
    }
}

impl From<PutError> for OpError {
    fn from(error: PutError) -> Self {
        match error {
            PutError::NoSpace => OpError::NoSpace,
            PutError::Busy => OpError::Busy,
            PutError::Io(_) => OpError::Io(error.to_string()),
            PutError::Unreadable { .. } => OpError::Corrupt(error.to_string()),
            other => OpError::Internal(other.to_string()),
        }
    }
}

/// What the owning core keeps about the objects and shards it owns.
#[derive(Default)]
pub struct OwnerState {
    /// The last version handed out (nanoseconds; a hybrid clock that never goes back).
    clock: u64,
    metas: HashMap<u128, ObjectMeta>,
}

impl OwnerState {
    /// A version newer than both the wall clock and `above`.
    pub fn next_version(&mut self, above: u64) -> u64 {
        let now = now_ns();
        self.clock = now.max(self.clock + 1).max(above + 1);
        self.clock
    }

    /// Drops every cached metadata copy (a device went: some copies may have gone with it,
    /// and must read as missing so that other nodes restore them).
    pub fn forget_cached(&mut self) {
        self.metas.clear();
    }

    fn cache(&mut self, object: u128, meta: ObjectMeta) {
        if self.metas.len() >= META_CACHE_MAX && !self.metas.contains_key(&object) {
            // Only this core writes these records, so dropping entries loses nothing but a read.
            self.metas.clear();
        }
        self.metas.insert(object, meta);
    }
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn meta_key(object: u128) -> ShardKey {
    ShardKey::new(object, META_STRIPE, 0)
}

pub async fn execute(ctx: &Rc<CoreCtx>, op: ShardOp) -> ShardReply {
    match op {
        ShardOp::MetaMerge { object, meta } => {
            ShardReply::Meta(meta_merge(ctx, object, meta).await)
        }
        ShardOp::MetaRead { object } => ShardReply::Meta(meta_read(ctx, object).await),
        ShardOp::ShardPut {
            key,
            meta,
            data,
            data_crc,
            repair,
        } => {
            let result = if repair {
                ctx.repair_put(key, meta, &data).await
            } else {
                match data.into_record() {
                    Ok(record) => ctx.put_record(key, meta, record, data_crc).await,
                    Err(data) => ctx.put_owned(key, meta, data, data_crc).await,
                }
            };
            ShardReply::Done(match result {
                Ok(()) => Ok(()),
                Err(PutError::Stale { current, .. }) => Err(OpError::Stale(current)),
                Err(error) => Err(error.into()),
            })
        }
        ShardOp::ShardRead { key } => ShardReply::Data(read(ctx, key).await),
        ShardOp::ShardDelete {
            object,
            first,
            count,
            shard,
            version,
        } => ShardReply::Done(delete_range(ctx, object, (first, count), shard, version).await),
        ShardOp::ShardList {
            object,
            first,
            count,
            shards,
        } => {
            let mut held = Vec::new();
            let mut store = ctx.store.borrow_mut();
            for stripe in first..first.saturating_add(count) {
                for shard in (0..64u8).filter(|i| shards >> i & 1 == 1) {
                    for device in store.locate(ShardKey::new(object, stripe, shard)) {
                        held.push(HeldShard {
                            stripe,
                            shard,
                            device: ctx.device_name(device),
                        });
                    }
                }
            }
            ShardReply::Held(held)
        }
    }
}

/// Writes this node's copy of a metadata record (the caller holds the object's metadata lock).
async fn put_meta(
    ctx: &CoreCtx,
    object: u128,
    mut meta: ObjectMeta,
) -> Result<ObjectMeta, OpError> {
    let mut above = meta.version;
    for _ in 0..STALE_RETRIES_MAX {
        meta.version = ctx.owner.borrow_mut().next_version(above);
        let shard = ShardMeta {
            version: meta.version,
            scheme_k: meta.scheme_k,
            scheme_m: meta.scheme_m,
            object_bytes: meta.size,
        };
        match ctx.put(meta_key(object), shard, &meta.encode()).await {
            Ok(()) => {
                ctx.owner.borrow_mut().cache(object, meta.clone());
                return Ok(meta);
            }
            Err(PutError::Stale { current, .. }) => above = current,
            Err(error) => return Err(error.into()),
        }
    }
    Err(OpError::Internal(format!(
        "metadata of {object:032x} kept losing to newer versions"
    )))
}

/// This node's copy of the metadata, from the cache or the store (the caller holds the lock).
async fn load_meta(ctx: &CoreCtx, object: u128) -> Result<ObjectMeta, OpError> {
    if let Some(meta) = ctx.owner.borrow().metas.get(&object) {
        return Ok(meta.clone());
    }
    let done = ctx.get(meta_key(object)).await?;
    let meta = ObjectMeta::decode(done.data(), done.header.meta.version)
        .map_err(|e| OpError::Corrupt(format!("metadata of {object:032x}: {e}")));
    ctx.store.borrow_mut().recycle(done.buf);
    let mut meta = meta?;
    if meta.placement.is_empty() {
        // A format 1 record: written by this node alone, before the cluster.
        meta.placement = vec![ctx.node_id];
    }
    ctx.owner.borrow_mut().cache(object, meta.clone());
    Ok(meta)
}

async fn meta_read(ctx: &Rc<CoreCtx>, object: u128) -> Result<ObjectMeta, OpError> {
    if let Some(meta) = ctx.owner.borrow().metas.get(&object) {
        return Ok(meta.clone());
    }
    let _guard = lock(&ctx.meta_locks, object).await;
    load_meta(ctx, object).await
}

async fn meta_merge(
    ctx: &Rc<CoreCtx>,
    object: u128,
    incoming: ObjectMeta,
) -> Result<ObjectMeta, OpError> {
    let _guard = lock(&ctx.meta_locks, object).await;
    let merged = match load_meta(ctx, object).await {
        Ok(mut local) => {
            if !local.merge(&incoming) {
                return Ok(local);
            }
            local
        }
        Err(OpError::NotFound) => ObjectMeta {
            version: 0,
            ..incoming
        },
        Err(error) => return Err(error),
    };
    put_meta(ctx, object, merged).await
}

/// Tombstones run at most this many at a time.
const DELETES_IN_FLIGHT: usize = 32;

async fn delete_range(
    ctx: &Rc<CoreCtx>,
    object: u128,
    (first, count): (u32, u32),
    shard: u8,
    version: u64,
) -> Result<(), OpError> {
    let mut running = std::collections::VecDeque::new();
    let mut outcome = Ok(());
    for stripe in first..first.saturating_add(count) {
        if running.len() >= DELETES_IN_FLIGHT {
            if let Some(task) = running.pop_front() {
                outcome = outcome.and(task.await);
            }
        }
        let task_ctx = ctx.clone();
        let key = ShardKey::new(object, stripe, shard);
        running.push_back(ctx.executor.spawn_task(async move {
            // At least the coordinator's version, and above anything this core wrote.
            let version = task_ctx
                .owner
                .borrow_mut()
                .next_version(version.saturating_sub(1));
            match task_ctx.delete(key, version).await {
                Ok(_) | Err(PutError::Stale { .. }) => Ok(()),
                Err(error) => Err(OpError::from(error)),
            }
        }));
    }
    for task in running {
        outcome = outcome.and(task.await);
    }
    outcome
}

async fn read(ctx: &Rc<CoreCtx>, key: ShardKey) -> Result<Option<StripeBytes>, OpError> {
    match ctx.get(key).await {
        Ok(done) => Ok(Some(StripeBytes {
            len: done.header.data_bytes as usize,
            meta: done.header.meta,
            buf: done.buf,
        })),
        Err(GetError::NotFound) => Ok(None),
        Err(error) => Err(error.into()),
    }
}
