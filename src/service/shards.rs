//! Shard and metadata operations on one node of the cluster, whichever it is: this node (a
//! call to the owning core, no copy of read data) or a peer (a peer opcode over the core's
//! connection to it). The coordinator of a request uses these and never asks which.

use std::net::SocketAddr;
use std::rc::Rc;

use ds_objects::{Scheme, ShardMeta, StripeLayout, Version};
use ds_proto::{Header, ObjectId, Opcode, Status};
use ds_store::ShardKey;

use crate::local::core_of;
use crate::service::ctx::CoreCtx;
use crate::service::meta::{ObjectMeta, META_STRIPE};
use crate::service::owner::{HeldShard, OpError, OwnedBytes, ShardOp, ShardReply, StripeBytes};
use crate::service::peer::{self, PeerReply};

/// Bytes of the shard header in front of a shard's bytes on the wire.
pub const SHARD_HEADER_BYTES: usize = ds_objects::limits::SHARD_META_BYTES;

/// Where a node of a placement is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Local,
    Remote(SocketAddr),
    /// Not among the nodes this one knows (down and forgotten, or never known).
    Unknown(u128),
}

/// A shard as read, with its header.
pub struct FetchedShard {
    pub meta: ShardMeta,
    data: ShardData,
}

enum ShardData {
    Local(StripeBytes),
    /// The reply payload: the shard header, then the bytes.
    Remote(Vec<u8>),
}

impl FetchedShard {
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            ShardData::Local(stored) => stored.as_slice(),
            ShardData::Remote(payload) => &payload[SHARD_HEADER_BYTES..],
        }
    }

    /// Gives a store buffer back to the store.
    pub fn release(self, ctx: &CoreCtx) {
        if let ShardData::Local(stored) = self.data {
            ctx.store.borrow_mut().recycle(stored.into_buf());
        }
    }
}

/// The core of this node that owns every record of `object`: one core serves all of an
/// object's local shards and its metadata copy, so no cross-core locking is needed.
pub fn owner_of(ctx: &CoreCtx, object: u128) -> usize {
    core_of(ShardKey::new(object, META_STRIPE, 0), ctx.cores)
}

/// The layout every object of `scheme` has (CREATE picks it; shards do not repeat it).
pub fn layout_of(k: u8, m: u8) -> Result<StripeLayout, OpError> {
    let scheme = Scheme::new(k, m).map_err(|e| OpError::Corrupt(format!("scheme {k}+{m}: {e}")))?;
    Ok(StripeLayout::for_scheme(scheme))
}

/// The wire header of a stored shard, from its record header.
pub fn header_of(key: ShardKey, stored: &ds_store::ShardMeta) -> Result<ShardMeta, OpError> {
    let meta = ShardMeta {
        object: key.object,
        stripe: key.stripe,
        shard: key.shard,
        layout: layout_of(stored.scheme_k, stored.scheme_m)?,
        version: Version::from_u64(stored.version),
        object_bytes: stored.object_bytes,
    };
    meta.validate()
        .map_err(|e| OpError::Corrupt(format!("shard {key}: {e}")))?;
    Ok(meta)
}

/// The record header fields of a shard from its wire header.
pub fn stored_of(meta: &ShardMeta) -> ds_store::ShardMeta {
    ds_store::ShardMeta {
        version: meta.version.as_u64(),
        scheme_k: meta.layout.scheme().k(),
        scheme_m: meta.layout.scheme().m(),
        object_bytes: meta.object_bytes,
    }
}

fn request(opcode: Opcode, object: u128) -> Header {
    Header {
        object_id: ObjectId(object),
        ..Header::request(opcode, 0)
    }
}

/// A peer's reply as an operation result: OK, or its status as an `OpError`.
async fn remote(
    ctx: &Rc<CoreCtx>,
    addr: SocketAddr,
    header: Header,
    parts: &[&[u8]],
) -> Result<PeerReply, OpError> {
    let reply = peer::call(ctx, addr, header, parts)
        .await
        .map_err(|e| OpError::Unavailable(e.to_string()))?;
    let message = || {
        format!(
            "node {addr}: {}",
            String::from_utf8_lossy(&reply.payload)
                .chars()
                .take(512)
                .collect::<String>()
        )
    };
    match reply.header.status {
        Status::Ok => Ok(reply),
        Status::NotFound => Err(OpError::NotFound),
        Status::Stale => Err(OpError::Stale(reply.header.aux)),
        Status::Corrupt => Err(OpError::Corrupt(message())),
        Status::NoSpace => Err(OpError::NoSpace),
        Status::Busy => Err(OpError::Busy),
        Status::Unavailable => Err(OpError::Unavailable(message())),
        _ => Err(OpError::Internal(message())),
    }
}

fn unknown(node: u128) -> OpError {
    OpError::Unavailable(format!(
        "node {node:032x} is not among the nodes this one knows"
    ))
}

fn wrong_reply(op: &str) -> OpError {
    OpError::Internal(format!("wrong reply kind to {op}"))
}

/// Stores one shard (`data` is its bytes, `meta.stored_bytes()` long; `data_crc`, when given,
/// their crc32c). With `repair`, a damaged copy at the same version is rewritten (scrub,
/// repair of a corrupt shard).
pub async fn write_shard(
    ctx: &Rc<CoreCtx>,
    target: Target,
    meta: ShardMeta,
    data: OwnedBytes,
    data_crc: Option<u32>,
    repair: bool,
) -> Result<(), OpError> {
    match target {
        Target::Local => {
            let key = ShardKey::new(meta.object, meta.stripe, meta.shard);
            let op = ShardOp::ShardPut {
                key,
                meta: stored_of(&meta),
                data,
                data_crc,
                repair,
            };
            match ctx.call(owner_of(ctx, meta.object), op).await {
                ShardReply::Done(result) => result,
                _ => Err(wrong_reply("ShardPut")),
            }
        }
        Target::Remote(addr) => {
            let mut header = request(Opcode::ShardWrite, meta.object);
            if repair {
                header.aux = crate::service::peer_ops::SHARD_WRITE_REPAIR;
            }
            remote(ctx, addr, header, &[&meta.encode(), &data])
                .await
                .map(drop)
        }
        Target::Unknown(node) => Err(unknown(node)),
    }
}

/// Reads shard `shard` of `stripe`; `None` when the node holds none. The header is checked
/// against the request and the bytes against the header.
pub async fn read_shard(
    ctx: &Rc<CoreCtx>,
    target: Target,
    object: u128,
    stripe: u32,
    shard: u8,
) -> Result<Option<FetchedShard>, OpError> {
    let key = ShardKey::new(object, stripe, shard);
    let fetched = match target {
        Target::Local => {
            let stored = match ctx
                .call(owner_of(ctx, object), ShardOp::ShardRead { key })
                .await
            {
                ShardReply::Data(result) => result?,
                _ => return Err(wrong_reply("ShardRead")),
            };
            let Some(stored) = stored else {
                return Ok(None);
            };
            let meta = match header_of(key, &stored.meta) {
                Ok(meta) => meta,
                Err(error) => {
                    ctx.store.borrow_mut().recycle(stored.into_buf());
                    return Err(error);
                }
            };
            FetchedShard {
                meta,
                data: ShardData::Local(stored),
            }
        }
        Target::Remote(addr) => {
            let mut header = request(Opcode::ShardRead, object);
            header.offset = u64::from(stripe);
            header.aux = u64::from(shard);
            let reply = match remote(ctx, addr, header, &[]).await {
                Ok(reply) => reply,
                Err(OpError::NotFound) => return Ok(None),
                Err(error) => return Err(error),
            };
            let meta = ShardMeta::decode(&reply.payload)
                .map_err(|e| OpError::Corrupt(format!("shard {key} from {addr}: {e}")))?;
            FetchedShard {
                meta,
                data: ShardData::Remote(reply.payload),
            }
        }
        Target::Unknown(node) => return Err(unknown(node)),
    };
    let meta = fetched.meta;
    let wanted = meta.stored_bytes() as usize;
    if (meta.object, meta.stripe, meta.shard) != (object, stripe, shard)
        || fetched.bytes().len() != wanted
    {
        let found = fetched.bytes().len();
        fetched.release(ctx);
        return Err(OpError::Corrupt(format!(
            "shard {key}: header names {:032x}/{}/{} with {wanted} bytes, {found} arrived",
            meta.object, meta.stripe, meta.shard
        )));
    }
    Ok(Some(fetched))
}

/// Tombstones shard `shard` of stripes `first..first + count` at `version`.
pub async fn delete_shards(
    ctx: &Rc<CoreCtx>,
    target: Target,
    object: u128,
    (first, count): (u32, u32),
    shard: u8,
    version: u64,
) -> Result<(), OpError> {
    match target {
        Target::Local => {
            let op = ShardOp::ShardDelete {
                object,
                first,
                count,
                shard,
                version,
            };
            match ctx.call(owner_of(ctx, object), op).await {
                ShardReply::Done(result) => result,
                _ => Err(wrong_reply("ShardDelete")),
            }
        }
        Target::Remote(addr) => {
            let mut header = request(Opcode::ShardDelete, object);
            header.offset = u64::from(first);
            header.length = u64::from(count);
            header.aux = u64::from(shard);
            remote(ctx, addr, header, &[&version.to_le_bytes()])
                .await
                .map(drop)
        }
        Target::Unknown(node) => Err(unknown(node)),
    }
}

fn meta_from(reply: PeerReply, object: u128) -> Result<ObjectMeta, OpError> {
    ObjectMeta::decode(&reply.payload, reply.header.aux)
        .map_err(|e| OpError::Corrupt(format!("metadata of {object:032x} from a peer: {e}")))
}

/// The node's copy of the object's metadata (deleted ones too); `NotFound` when it has none.
pub async fn read_meta(
    ctx: &Rc<CoreCtx>,
    target: Target,
    object: u128,
) -> Result<ObjectMeta, OpError> {
    match target {
        Target::Local => match ctx
            .call(owner_of(ctx, object), ShardOp::MetaRead { object })
            .await
        {
            ShardReply::Meta(result) => result,
            _ => Err(wrong_reply("MetaRead")),
        },
        Target::Remote(addr) => {
            let reply = remote(ctx, addr, request(Opcode::MetaRead, object), &[]).await?;
            meta_from(reply, object)
        }
        Target::Unknown(node) => Err(unknown(node)),
    }
}

/// Merges `meta` into the node's copy; answers the merged copy.
pub async fn merge_meta(
    ctx: &Rc<CoreCtx>,
    target: Target,
    object: u128,
    meta: &ObjectMeta,
) -> Result<ObjectMeta, OpError> {
    match target {
        Target::Local => {
            let op = ShardOp::MetaMerge {
                object,
                meta: meta.clone(),
            };
            match ctx.call(owner_of(ctx, object), op).await {
                ShardReply::Meta(result) => result,
                _ => Err(wrong_reply("MetaMerge")),
            }
        }
        Target::Remote(addr) => {
            let reply = remote(
                ctx,
                addr,
                request(Opcode::MetaMerge, object),
                &[&meta.encode()],
            )
            .await?;
            meta_from(reply, object)
        }
        Target::Unknown(node) => Err(unknown(node)),
    }
}

/// Which of shards `shards` (a bit set) of stripes `first..first + count` the node holds.
pub async fn list_shards(
    ctx: &Rc<CoreCtx>,
    target: Target,
    object: u128,
    (first, count): (u32, u32),
    shards: u64,
) -> Result<Vec<HeldShard>, OpError> {
    match target {
        Target::Local => {
            let op = ShardOp::ShardList {
                object,
                first,
                count,
                shards,
            };
            match ctx.call(owner_of(ctx, object), op).await {
                ShardReply::Held(held) => Ok(held),
                _ => Err(wrong_reply("ShardList")),
            }
        }
        Target::Remote(addr) => {
            let mut header = request(Opcode::ShardList, object);
            header.offset = u64::from(first);
            header.length = u64::from(count);
            header.aux = shards;
            let reply = remote(ctx, addr, header, &[]).await?;
            serde_json::from_slice(&reply.payload)
                .map_err(|e| OpError::Internal(format!("shard list from {addr}: {e}")))
        }
        Target::Unknown(node) => Err(unknown(node)),
    }
}
