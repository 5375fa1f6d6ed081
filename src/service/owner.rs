//! Shard operations as the core that owns the shard runs them: read-modify-write of a stripe
//! under its lock, reads, tombstones, and an object's metadata record (create, grow, delete),
//! which only this core ever writes, so its cached copy is authoritative.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use ds_nvme::DmaBuf;
use ds_store::limits::RECORD_HEADER_BYTES;
use ds_store::{GetError, PutError, ShardKey, ShardMeta};
use thiserror::Error;

use crate::reactor::lock::lock;
use crate::service::ctx::CoreCtx;
use crate::service::meta::{ObjectMeta, META_STRIPE};

/// Cached metadata entries per core before idle ones are dropped.
const META_CACHE_MAX: usize = 65_536;
/// A write that finds a newer version (a clock that went back) retries this often.
const STALE_RETRIES_MAX: u32 = 4;

pub enum ShardOp {
    MetaCreate {
        object: u128,
        meta: ObjectMeta,
    },
    MetaGet {
        object: u128,
    },
    /// The metadata and the stripe holding byte `offset` (when inside the object): a GET's
    /// first trip.
    ReadFirst {
        object: u128,
        offset: u64,
    },
    /// Make the durable size at least `end`; answers the metadata after.
    MetaGrow {
        object: u128,
        end: u64,
    },
    /// Tombstone the metadata; answers what it was.
    MetaDelete {
        object: u128,
    },
    /// Write `data` at byte `at` of a stripe (read-modify-write when partial).
    Write {
        key: ShardKey,
        meta: ShardMeta,
        at: u32,
        data: Vec<u8>,
        whole: bool,
    },
    Read {
        key: ShardKey,
    },
    Delete {
        key: ShardKey,
    },
    Locate {
        key: ShardKey,
    },
}

pub enum ShardReply {
    Meta(Result<ObjectMeta, OpError>),
    Done(Result<(), OpError>),
    /// The stripe's bytes, or `None` for a stripe never written (a hole).
    Data(Result<Option<StripeBytes>, OpError>),
    Located(Vec<u8>),
    MetaAndData(Result<(ObjectMeta, Option<StripeBytes>), OpError>),
    /// A JSON document (the management thread's answer to an OVERLAY request).
    Document(Result<Vec<u8>, OpError>),
}

/// A stripe as the store read it: the record's buffer itself, handed from the owning core to
/// the coordinator without a copy. Give it back with `CoreStore::recycle` when done.
pub struct StripeBytes {
    buf: DmaBuf,
    len: usize,
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
    /// The largest size a pending grow asked for, so one metadata write serves many PUTs.
    wanted: HashMap<u128, u64>,
}

impl OwnerState {
    /// A version newer than both the wall clock and `above`.
    pub fn next_version(&mut self, above: u64) -> u64 {
        let now = now_ns();
        self.clock = now.max(self.clock + 1).max(above + 1);
        self.clock
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
        ShardOp::MetaCreate { object, meta } => {
            ShardReply::Meta(meta_create(ctx, object, meta).await)
        }
        ShardOp::MetaGet { object } => ShardReply::Meta(meta_get(ctx, object).await),
        ShardOp::MetaGrow { object, end } => ShardReply::Meta(meta_grow(ctx, object, end).await),
        ShardOp::MetaDelete { object } => ShardReply::Meta(meta_delete(ctx, object).await),
        ShardOp::Write {
            key,
            meta,
            at,
            data,
            whole,
        } => ShardReply::Done(write(ctx, key, meta, at, data, whole).await),
        ShardOp::Read { key } => ShardReply::Data(read(ctx, key).await),
        ShardOp::ReadFirst { object, offset } => {
            ShardReply::MetaAndData(read_first(ctx, object, offset).await)
        }
        ShardOp::Delete { key } => {
            let version = ctx.owner.borrow_mut().next_version(0);
            ShardReply::Done(
                ctx.delete(key, version)
                    .await
                    .map(drop)
                    .map_err(OpError::from),
            )
        }
        ShardOp::Locate { key } => ShardReply::Located(ctx.store.borrow_mut().locate(key)),
    }
}

/// Writes a metadata record (the caller holds the object's metadata lock).
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
                ctx.owner.borrow_mut().cache(object, meta);
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

/// Reads the metadata, from the cache or the store (the caller holds the metadata lock).
async fn load_meta(ctx: &CoreCtx, object: u128) -> Result<ObjectMeta, OpError> {
    if let Some(meta) = ctx.owner.borrow().metas.get(&object) {
        return Ok(*meta);
    }
    let done = ctx.get(meta_key(object)).await?;
    let meta = ObjectMeta::decode(done.data(), done.header.meta.version)
        .map_err(|e| OpError::Corrupt(format!("metadata of {object:032x}: {e}")));
    ctx.store.borrow_mut().recycle(done.buf);
    let meta = meta?;
    ctx.owner.borrow_mut().cache(object, meta);
    Ok(meta)
}

async fn meta_create(
    ctx: &Rc<CoreCtx>,
    object: u128,
    meta: ObjectMeta,
) -> Result<ObjectMeta, OpError> {
    let _guard = lock(&ctx.meta_locks, object).await;
    put_meta(ctx, object, meta).await
}

async fn meta_get(ctx: &Rc<CoreCtx>, object: u128) -> Result<ObjectMeta, OpError> {
    if let Some(meta) = ctx.owner.borrow().metas.get(&object) {
        return Ok(*meta);
    }
    let _guard = lock(&ctx.meta_locks, object).await;
    load_meta(ctx, object).await
}

async fn meta_grow(ctx: &Rc<CoreCtx>, object: u128, end: u64) -> Result<ObjectMeta, OpError> {
    {
        let mut owner = ctx.owner.borrow_mut();
        let wanted = owner.wanted.entry(object).or_insert(0);
        *wanted = (*wanted).max(end);
    }
    let _guard = lock(&ctx.meta_locks, object).await;
    let meta = load_meta(ctx, object).await;
    let wanted = ctx.owner.borrow_mut().wanted.remove(&object).unwrap_or(end);
    let meta = meta?;
    if meta.size >= end {
        return Ok(meta);
    }
    // Everyone queued so far asked for at most `wanted`: one write covers them all.
    put_meta(
        ctx,
        object,
        ObjectMeta {
            size: wanted.max(end),
            ..meta
        },
    )
    .await
}

async fn meta_delete(ctx: &Rc<CoreCtx>, object: u128) -> Result<ObjectMeta, OpError> {
    let _guard = lock(&ctx.meta_locks, object).await;
    let meta = load_meta(ctx, object).await?;
    let version = ctx.owner.borrow_mut().next_version(meta.version);
    ctx.delete(meta_key(object), version).await?;
    ctx.owner.borrow_mut().metas.remove(&object);
    Ok(meta)
}

async fn write(
    ctx: &Rc<CoreCtx>,
    key: ShardKey,
    mut meta: ShardMeta,
    at: u32,
    data: Vec<u8>,
    whole: bool,
) -> Result<(), OpError> {
    let _guard = lock(&ctx.stripe_locks, (key.object, key.stripe)).await;
    let (bytes, mut above) = if whole {
        (data, 0)
    } else {
        let (mut bytes, version) = match ctx.get(key).await {
            Ok(done) => {
                let out = (done.data().to_vec(), done.header.meta.version);
                ctx.store.borrow_mut().recycle(done.buf);
                out
            }
            Err(GetError::NotFound) => (Vec::new(), 0),
            Err(error) => return Err(error.into()),
        };
        let at = at as usize;
        let end = at + data.len();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[at..end].copy_from_slice(&data);
        (bytes, version)
    };
    for _ in 0..STALE_RETRIES_MAX {
        meta.version = ctx.owner.borrow_mut().next_version(above);
        match ctx.put(key, meta, &bytes).await {
            Ok(()) => return Ok(()),
            Err(PutError::Stale { current, .. }) => above = current,
            Err(error) => return Err(error.into()),
        }
    }
    Err(OpError::Internal(format!(
        "shard {key} kept losing to newer versions"
    )))
}

async fn read(ctx: &Rc<CoreCtx>, key: ShardKey) -> Result<Option<StripeBytes>, OpError> {
    match ctx.get(key).await {
        Ok(done) => Ok(Some(StripeBytes {
            len: done.header.data_bytes as usize,
            buf: done.buf,
        })),
        Err(GetError::NotFound) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

async fn read_first(
    ctx: &Rc<CoreCtx>,
    object: u128,
    offset: u64,
) -> Result<(ObjectMeta, Option<StripeBytes>), OpError> {
    let meta = meta_get(ctx, object).await?;
    if offset >= meta.size {
        return Ok((meta, None));
    }
    let stripe = offset / u64::from(meta.stripe_bytes);
    let key = ShardKey::new(object, stripe as u32, 0);
    Ok((meta, read(ctx, key).await?))
}
