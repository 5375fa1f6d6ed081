//! The node's side of the peer opcodes: another node's coordinator asks this node to store,
//! read, tombstone or list its shards of an object, or to read or merge its copy of the
//! object's metadata. Each is one call to the core that owns the object here.

use std::rc::Rc;

use ds_net::ConnId;
use ds_objects::ShardMeta;
use ds_proto::{Header, Opcode, Status};
use ds_store::ShardKey;

use crate::service::ctx::CoreCtx;
use crate::service::meta::{ObjectMeta, META_STRIPE};
use crate::service::owner::{OpError, OwnedBytes, ShardOp, ShardReply};
use crate::service::reply::{refuse, reply, reply_with, send_document, Handled, Refusal};
use crate::service::shards::{header_of, owner_of, stored_of, SHARD_HEADER_BYTES};

/// SHARD_WRITE `aux` bit: rewrite a damaged copy of the shard at the same version.
pub const SHARD_WRITE_REPAIR: u64 = 1;
/// Most stripes one SHARD_LIST or SHARD_DELETE covers.
pub const STRIPES_PER_REQUEST_MAX: u64 = 1 << 20;

pub async fn handle(
    ctx: &Rc<CoreCtx>,
    conn: ConnId,
    request: &Header,
    payload: Vec<u8>,
) -> Handled {
    let object = request.object_id.0;
    let owner = owner_of(ctx, object);
    match request.opcode {
        Opcode::ShardWrite => {
            // A draining node takes no shards: they would only have to move again, and a
            // repair elsewhere may be moving them off at the same time.
            let draining = ctx
                .repair_board
                .borrow()
                .as_ref()
                .is_some_and(|b| b.draining.load(std::sync::atomic::Ordering::Relaxed));
            if draining {
                return Err(refuse(
                    Status::Unavailable,
                    "this node is draining and takes no shards",
                ));
            }
            let meta = ShardMeta::decode(&payload)
                .map_err(|e| refuse(Status::BadRequest, format!("shard header: {e}")))?;
            if meta.object != object {
                return Err(refuse(
                    Status::BadRequest,
                    "the shard header names another object",
                ));
            }
            let follow = payload.len() - SHARD_HEADER_BYTES;
            if follow != meta.stored_bytes() as usize {
                return Err(refuse(
                    Status::BadRequest,
                    format!(
                        "shard header says {} bytes, {follow} follow",
                        meta.stored_bytes(),
                    ),
                ));
            }
            let key = ShardKey::new(object, meta.stripe, meta.shard);
            // The frame's checksum (verified when it was decoded) covers the shard header and
            // the bytes: the bytes' own crc follows from it without another pass over them.
            let data_crc = ds_proto::crc::suffix_crc(
                request.payload_crc,
                &payload[..SHARD_HEADER_BYTES],
                follow,
            );
            let op = ShardOp::ShardPut {
                key,
                meta: stored_of(&meta),
                data: OwnedBytes::after(payload, SHARD_HEADER_BYTES),
                data_crc: Some(data_crc),
                repair: request.aux & SHARD_WRITE_REPAIR != 0,
            };
            match ctx.call(owner, op).await {
                ShardReply::Done(Ok(())) => reply(ctx, conn, request, Vec::new()).await,
                ShardReply::Done(Err(OpError::Stale(current))) => {
                    let mut header = request.reply(Status::Stale);
                    header.aux = current;
                    let message = format!("shard {key} is stored at version {current}");
                    reply_with(ctx, conn, header, message.into_bytes()).await
                }
                ShardReply::Done(Err(error)) => Err(error.into()),
                _ => Err(wrong("ShardPut")),
            }
        }
        Opcode::ShardRead => {
            let key = shard_key(request)?;
            let stored = match ctx.call(owner, ShardOp::ShardRead { key }).await {
                ShardReply::Data(Ok(Some(stored))) => stored,
                ShardReply::Data(Ok(None)) => {
                    return Err(refuse(Status::NotFound, format!("no shard {key} here")))
                }
                ShardReply::Data(Err(error)) => return Err(error.into()),
                _ => return Err(wrong("ShardRead")),
            };
            let header = header_of(key, &stored.meta);
            let mut payload = ctx.take_send_buf(SHARD_HEADER_BYTES + stored.as_slice().len());
            if let Ok(header) = &header {
                payload.extend_from_slice(&header.encode());
                payload.extend_from_slice(stored.as_slice());
            }
            ctx.store.borrow_mut().recycle(stored.into_buf());
            header.map_err(Refusal::from)?;
            reply(ctx, conn, request, payload).await
        }
        Opcode::ShardDelete => {
            let (first, count) = stripes(request)?;
            let shard = shard_index(request)?;
            let version = payload
                .as_slice()
                .try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| {
                    refuse(Status::BadRequest, "SHARD_DELETE carries an 8-byte version")
                })?;
            let op = ShardOp::ShardDelete {
                object,
                first,
                count,
                shard,
                version,
            };
            match ctx.call(owner, op).await {
                ShardReply::Done(Ok(())) => reply(ctx, conn, request, Vec::new()).await,
                ShardReply::Done(Err(error)) => Err(error.into()),
                _ => Err(wrong("ShardDelete")),
            }
        }
        Opcode::MetaRead => match ctx.call(owner, ShardOp::MetaRead { object }).await {
            ShardReply::Meta(Ok(meta)) => send_meta(ctx, conn, request, &meta).await,
            ShardReply::Meta(Err(error)) => Err(error.into()),
            _ => Err(wrong("MetaRead")),
        },
        Opcode::MetaMerge => {
            let meta = ObjectMeta::decode(&payload, 0)
                .map_err(|e| refuse(Status::BadRequest, format!("metadata record: {e}")))?;
            match ctx.call(owner, ShardOp::MetaMerge { object, meta }).await {
                ShardReply::Meta(Ok(meta)) => send_meta(ctx, conn, request, &meta).await,
                ShardReply::Meta(Err(error)) => Err(error.into()),
                _ => Err(wrong("MetaMerge")),
            }
        }
        Opcode::ShardList => {
            let (first, count) = stripes(request)?;
            let op = ShardOp::ShardList {
                object,
                first,
                count,
                shards: request.aux,
            };
            match ctx.call(owner, op).await {
                ShardReply::Held(held) => {
                    let document = serde_json::to_vec(&held)
                        .map_err(|e| refuse(Status::Internal, e.to_string()))?;
                    send_document(ctx, conn, request, &document).await
                }
                _ => Err(wrong("ShardList")),
            }
        }
        other => Err(refuse(
            Status::BadRequest,
            format!("{other} is not a peer operation"),
        )),
    }
}

async fn send_meta(ctx: &CoreCtx, conn: ConnId, request: &Header, meta: &ObjectMeta) -> Handled {
    let mut header = request.reply(Status::Ok);
    header.aux = meta.version;
    reply_with(ctx, conn, header, meta.encode()).await
}

fn wrong(op: &str) -> Refusal {
    refuse(Status::Internal, format!("wrong reply kind to {op}"))
}

fn shard_index(request: &Header) -> Result<u8, Refusal> {
    u8::try_from(request.aux)
        .ok()
        .filter(|&shard| usize::from(shard) < ds_objects::limits::SHARDS_MAX)
        .ok_or_else(|| {
            refuse(
                Status::BadRequest,
                format!("shard index {} is out of range", request.aux),
            )
        })
}

fn shard_key(request: &Header) -> Result<ShardKey, Refusal> {
    let stripe = u32::try_from(request.offset)
        .ok()
        .filter(|&stripe| stripe != META_STRIPE)
        .ok_or_else(|| {
            refuse(
                Status::BadRequest,
                format!("stripe {} is out of range", request.offset),
            )
        })?;
    Ok(ShardKey::new(
        request.object_id.0,
        stripe,
        shard_index(request)?,
    ))
}

/// Stripes `offset..offset + length`, bounded.
fn stripes(request: &Header) -> Result<(u32, u32), Refusal> {
    let end = request.offset.checked_add(request.length);
    match end {
        Some(end) if end <= u64::from(META_STRIPE) && request.length <= STRIPES_PER_REQUEST_MAX => {
            Ok((request.offset as u32, request.length as u32))
        }
        _ => Err(refuse(
            Status::BadRequest,
            format!(
                "stripes {}..+{} are out of range (at most {STRIPES_PER_REQUEST_MAX} per request)",
                request.offset, request.length
            ),
        )),
    }
}
