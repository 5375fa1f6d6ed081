//! One client request, run on the core whose connection received it (the coordinator): it
//! resolves the object's metadata from its copies, cuts the range into stripes, writes or
//! reads each stripe across the nodes of the placement (`stripes`), and streams the reply.
//! Peer opcodes from other nodes' coordinators go to `peer_ops`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use ds_net::ConnId;
use ds_proto::{
    Decoded, Frame, Header, ObjectId, Opcode, ReplyChunks, Scheme, StatMissing, StatPart,
    StatReply, Status, LENGTH_TO_END,
};

use crate::service::conn::{self, Gone};
use crate::service::ctx::CoreCtx;
use crate::service::owner::{now_ns, ShardReply, SharedBuf};
use crate::service::payload::{Payload, RecordPayload};
use crate::service::placement;
use crate::service::reply::{
    finish_frame, refuse, reply, send_document, send_frame, start_frame, Handled, Refusal,
};
use crate::service::shards;
use crate::service::stripes::{self, ObjectPlan, WriteData};
use crate::stats::metrics::Op;

/// Largest object: 1 TiB (the issue asks for at least 64 GiB).
pub const OBJECT_BYTES_MAX: u64 = ds_objects::limits::OBJECT_BYTES_MAX;
/// Stripe reads a GET keeps in flight ahead of the frame being sent.
const GET_READ_AHEAD: usize = 4;
/// Stripes STAT lists the shards of; beyond, the reply says how many there are.
const STAT_STRIPES_MAX: u64 = 65_536;
/// Largest responsible set an OVERLAY request may ask for.
const OVERLAY_SET_MAX: usize = 64;

pub async fn handle(ctx: &Rc<CoreCtx>, conn: ConnId, decoded: Decoded<RecordPayload>) {
    let started = Instant::now();
    let (header, payload) = match decoded {
        Decoded::Frame(frame) => (frame.header, Payload::Bytes(frame.payload)),
        Decoded::Placed { header, payload } => (header, Payload::Record(payload)),
    };
    let op = match header.opcode {
        Opcode::Ping => Some(Op::Ping),
        Opcode::Create => Some(Op::Create),
        Opcode::Put => Some(Op::Put),
        Opcode::Get => Some(Op::Get),
        Opcode::Delete => Some(Op::Delete),
        Opcode::Stat => Some(Op::Stat),
        _ => None,
    };
    let payload_bytes = payload.len() as u64;
    if matches!(
        header.opcode,
        Opcode::Create | Opcode::Put | Opcode::Get | Opcode::Delete | Opcode::Stat
    ) {
        ctx.members_ready().await;
    }
    let result = match header.opcode {
        _ if header.is_reply() => Err(refuse(
            Status::BadRequest,
            "a request must not carry the REPLY flag",
        )),
        _ if header.status != Status::Ok => Err(refuse(
            Status::BadRequest,
            format!("a request must carry status OK, not {}", header.status),
        )),
        Opcode::Ping => reply(ctx, conn, &header, payload.into_vec()).await,
        Opcode::Create => create(ctx, conn, &header).await,
        Opcode::Put => put(ctx, conn, &header, payload).await,
        Opcode::Get => get(ctx, conn, &header).await,
        Opcode::Delete => delete(ctx, conn, &header).await,
        Opcode::Stat => stat(ctx, conn, &header).await,
        Opcode::Overlay => overlay(ctx, conn, &header).await,
        Opcode::Health | Opcode::Drain => health(ctx, conn, &header).await,
        Opcode::Unknown => Err(refuse(
            Status::BadRequest,
            "opcode UNKNOWN is not a request",
        )),
        Opcode::ShardWrite
        | Opcode::ShardRead
        | Opcode::ShardDelete
        | Opcode::MetaRead
        | Opcode::MetaMerge
        | Opcode::ShardList => {
            crate::service::peer_ops::handle(ctx, conn, &header, payload.into_vec()).await
        }
    };
    let ok = match result {
        Ok(Ok(bytes_out)) => {
            if let Some(op) = op {
                let bytes = if op == Op::Put {
                    payload_bytes
                } else {
                    bytes_out
                };
                ctx.metrics
                    .borrow_mut()
                    .record(op, bytes, started.elapsed(), true);
            }
            return;
        }
        Ok(Err(Gone)) => false,
        Err(Refusal(status, message)) => {
            let mut bytes = Vec::new();
            let _ = Frame::error_reply(&header, status, &message).encode_into(&mut bytes);
            let _ = conn::send(ctx, conn, bytes).await;
            false
        }
    };
    if let Some(op) = op {
        ctx.metrics
            .borrow_mut()
            .record(op, 0, started.elapsed(), ok);
    }
}

async fn create(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header) -> Handled {
    // aux 0: the node's default scheme.
    let scheme = if request.aux == 0 {
        ctx.policy.borrow().default_scheme
    } else {
        Scheme::from_aux(request.aux).map_err(|e| refuse(Status::BadRequest, e.to_string()))?
    };
    let scheme = ds_objects::Scheme::new(scheme.k(), scheme.m())
        .map_err(|e| refuse(Status::BadRequest, format!("scheme {scheme}: {e}")))?;
    let object: u128 = rand::random();
    placement::create(ctx, object, scheme).await?;
    let mut header = request.reply(Status::Ok);
    header.object_id = ObjectId(object);
    header.aux = u64::from(scheme.k()) | u64::from(scheme.m()) << 8;
    let frame =
        Frame::new(header, Vec::new()).map_err(|e| refuse(Status::Internal, e.to_string()))?;
    Ok(send_frame(ctx, conn, &frame).await.map(|()| 0))
}

async fn put(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header, data: Payload) -> Handled {
    let object = request.object_id.0;
    let written = data.len() as u64;
    let end = request.offset.checked_add(written).ok_or_else(|| {
        refuse(
            Status::OutOfRange,
            format!("offset {} + {written} bytes overflows", request.offset),
        )
    })?;
    if end > OBJECT_BYTES_MAX {
        return Err(refuse(
            Status::TooLarge,
            format!("a write ending at byte {end} is past the object size limit of {OBJECT_BYTES_MAX} bytes"),
        ));
    }
    let meta = placement::resolve(ctx, object).await?;
    let plan = ObjectPlan::new(ctx, object, &meta)?;
    // Bytes below the end of writes started here count as the object's for read-modify-write.
    let size = if written > 0 {
        meta.size
            .max(stripes::note_write_end(ctx, object, end))
            .max(end)
    } else {
        meta.size
    };
    let ranges: Vec<_> = plan
        .layout
        .ranges(request.offset, written)
        .map_err(|e| refuse(Status::OutOfRange, e.to_string()))?
        .collect();
    let data_crc = Some(request.payload_crc);
    match data {
        // A record buffer can go to the store as it is only as the one shard of one stripe.
        Payload::Record(record) if ranges.len() == 1 && plan.layout.scheme().n() == 1 => {
            let range = ranges[0];
            let from = range.buffer_offset as usize;
            let data = WriteData::Record(record);
            stripes::write(ctx, &plan, range, data, from, data_crc, size).await?;
        }
        data => {
            // Shared as it is, a record buffer too (EC shards are ranges of it, not copies).
            let data: SharedBuf = match data {
                Payload::Bytes(bytes) => Arc::new(bytes),
                Payload::Record(record) => Arc::new(record),
            };
            let writes: Vec<_> = ranges
                .into_iter()
                .map(|range| {
                    let (task_ctx, plan) = (ctx.clone(), plan.clone());
                    let data = WriteData::Shared(data.clone());
                    ctx.executor.spawn_task(async move {
                        let from = range.buffer_offset as usize;
                        stripes::write(&task_ctx, &plan, range, data, from, data_crc, size).await
                    })
                })
                .collect();
            for write in writes {
                write.await?;
            }
        }
    }
    // An empty write only tells whether the object exists; it never grows it.
    if end > meta.size && written > 0 {
        let grown = placement::grow(ctx, &meta, object, end).await?;
        if grown.deleted {
            return Err(refuse(
                Status::NotFound,
                format!("object {} was deleted during the write", ObjectId(object)),
            ));
        }
    }
    // The reply echoes the offset and says how many bytes were written.
    let mut header = request.reply(Status::Ok);
    header.length = written;
    let frame =
        Frame::new(header, Vec::new()).map_err(|e| refuse(Status::Internal, e.to_string()))?;
    Ok(send_frame(ctx, conn, &frame).await.map(|()| 0))
}

async fn get(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header) -> Handled {
    let object = request.object_id.0;
    let offset = request.offset;
    let meta = placement::resolve(ctx, object).await?;
    let plan = ObjectPlan::new(ctx, object, &meta)?;
    let len = match request.length {
        // To the end: an offset past the end is refused below like any other range.
        LENGTH_TO_END => meta.size.saturating_sub(offset),
        len => len,
    };
    let end = offset
        .checked_add(len)
        .filter(|&end| end <= meta.size)
        .ok_or_else(|| {
            refuse(
                Status::OutOfRange,
                format!(
                    "object {} has {} bytes; bytes {offset}..{} are past its end",
                    ObjectId(object),
                    meta.size,
                    offset as u128 + len as u128
                ),
            )
        })?;
    let chunks = ReplyChunks::new(offset, len)
        .ok_or_else(|| refuse(Status::OutOfRange, "range overflows"))?;
    let stripe_bytes = u64::from(plan.layout.stripe_bytes());
    let first = offset / stripe_bytes;
    let last = if len == 0 {
        first
    } else {
        (end - 1) / stripe_bytes + 1
    };
    // Stripe reads run ahead of the frames being sent, a bounded number at a time.
    let mut pending = std::collections::VecDeque::new();
    let mut next = first;
    let mut current: Option<(u64, Vec<u8>)> = None;
    let mut sent = 0u64;
    for chunk in chunks {
        let mut bytes = start_frame(ctx, chunk.bytes);
        let mut at = chunk.offset;
        let chunk_end = chunk.offset + chunk.bytes as u64;
        while at < chunk_end {
            let stripe = at / stripe_bytes;
            if current.as_ref().is_none_or(|(s, _)| *s != stripe) {
                while pending.len() < GET_READ_AHEAD && next < last {
                    let (task_ctx, plan) = (ctx.clone(), plan.clone());
                    let s = next as u32;
                    pending.push_back(
                        ctx.executor
                            .spawn_task(async move { stripes::read(&task_ctx, &plan, s).await }),
                    );
                    next += 1;
                }
                let Some(task) = pending.pop_front() else {
                    return Err(refuse(Status::Internal, "stripe read-ahead ran dry"));
                };
                current = Some((stripe, task.await?));
            }
            let stored: &[u8] = current.as_ref().map_or(&[], |(_, data)| data);
            let within = at % stripe_bytes;
            let take = (stripe_bytes - within).min(chunk_end - at);
            // A hole, or a stripe shorter than the range: zeros.
            let have_from = (within as usize).min(stored.len());
            let have_to = ((within + take) as usize).min(stored.len());
            bytes.extend_from_slice(&stored[have_from..have_to]);
            bytes.resize(bytes.len() + (take as usize - (have_to - have_from)), 0);
            at += take;
        }
        finish_frame(chunk.header(request), &mut bytes)?;
        if conn::send(ctx, conn, bytes).await.is_err() {
            return Ok(Err(Gone));
        }
        sent += chunk.bytes as u64;
    }
    Ok(Ok(sent))
}

async fn delete(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header) -> Handled {
    let object = request.object_id.0;
    let meta = placement::resolve(ctx, object).await?;
    // The metadata goes first: from then on the object is gone for every reader, and shards
    // a down node still holds are unreachable garbage (repair drops them).
    placement::update(
        ctx,
        object,
        &crate::service::meta::ObjectMeta {
            deleted: true,
            ..meta.clone()
        },
        placement::Wait::Quorum,
    )
    .await?;
    let plan = ObjectPlan::new(ctx, object, &meta)?;
    let version = ctx.hlc.borrow_mut().now(now_ns()).as_u64();
    let stripes = u32::try_from(meta.stripes()).unwrap_or(u32::MAX);
    let tombstones: Vec<_> = plan
        .targets
        .iter()
        .enumerate()
        .map(|(shard, &target)| {
            let task_ctx = ctx.clone();
            ctx.executor.spawn_task(async move {
                shards::delete_shards(
                    &task_ctx,
                    target,
                    object,
                    (0, stripes),
                    shard as u8,
                    version,
                )
                .await
            })
        })
        .collect();
    for (shard, task) in tombstones.into_iter().enumerate() {
        if let Err(error) = task.await {
            tracing::debug!(object = %ObjectId(object), shard, %error, "shards not tombstoned");
        }
    }
    reply(ctx, conn, request, Vec::new()).await
}

async fn stat(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header) -> Handled {
    let object = request.object_id.0;
    let meta = placement::resolve(ctx, object).await?;
    let plan = ObjectPlan::new(ctx, object, &meta)?;
    let scheme = Scheme::new(meta.scheme_k, meta.scheme_m)
        .map_err(|e| refuse(Status::Corrupt, e.to_string()))?;
    let listed = meta.stripes().min(STAT_STRIPES_MAX);
    // One question per node: which of its shards of the listed stripes it holds.
    let mut nodes: Vec<(u128, shards::Target, u64)> = Vec::new();
    for (shard, (&node, &target)) in meta.placement.iter().zip(&plan.targets).enumerate() {
        match nodes.iter_mut().find(|(n, _, _)| *n == node) {
            Some((_, _, mask)) => *mask |= 1 << shard,
            None => nodes.push((node, target, 1 << shard)),
        }
    }
    let asks: Vec<_> = nodes
        .iter()
        .map(|&(_, target, mask)| {
            let task_ctx = ctx.clone();
            ctx.executor.spawn_task(async move {
                shards::list_shards(&task_ctx, target, object, (0, listed as u32), mask).await
            })
        })
        .collect();
    let mut parts = Vec::new();
    let mut answers = Vec::new();
    for ((node, _, mask), ask) in nodes.iter().zip(asks) {
        let name = format!("{node:032x}");
        match ask.await {
            Ok(held) => {
                for h in &held {
                    parts.push(StatPart {
                        stripe: h.stripe,
                        shard: h.shard,
                        node: name.clone(),
                        device: h.device.clone(),
                    });
                }
                answers.push((name, *mask, Ok(held)));
            }
            Err(error) => answers.push((name, *mask, Err(error.to_string()))),
        }
    }
    // A stripe no node holds anything of is a hole, not a loss: only stripes with some shard
    // somewhere have missing shards.
    let written: std::collections::BTreeSet<u32> = parts.iter().map(|p| p.stripe).collect();
    let mut missing = Vec::new();
    for (name, mask, answer) in &answers {
        for &stripe in &written {
            for shard in (0..64u8).filter(|i| mask >> i & 1 == 1) {
                let reason = match answer {
                    Ok(held) if held.iter().any(|h| h.stripe == stripe && h.shard == shard) => {
                        continue
                    }
                    Ok(_) => "absent".to_string(),
                    Err(error) => error.clone(),
                };
                missing.push(StatMissing {
                    stripe,
                    shard,
                    node: name.clone(),
                    reason,
                });
            }
        }
    }
    parts.sort_by_key(|p| (p.stripe, p.shard));
    missing.sort_by_key(|p| (p.stripe, p.shard));
    let document = StatReply {
        id: ObjectId(object),
        size: meta.size,
        scheme,
        version: meta.version,
        created_ns: Some(meta.created_ns),
        parts,
        missing,
        stripes: meta.stripes(),
        stripes_listed: listed,
    }
    .encode();
    send_document(ctx, conn, request, &document).await
}

/// HEALTH: the repair table's sums. DRAIN: the same, after asking every core to move its
/// shards off this node (the node stops once they have).
async fn health(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header) -> Handled {
    let board = ctx
        .repair_board
        .borrow()
        .clone()
        .ok_or_else(|| refuse(Status::Unavailable, "this node runs no repair"))?;
    if request.opcode == Opcode::Drain
        && !board
            .draining
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        tracing::info!("drain requested: moving every shard off this node");
        board.kick.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let document =
        serde_json::to_vec(&board.health()).map_err(|e| refuse(Status::Internal, e.to_string()))?;
    send_document(ctx, conn, request, &document).await
}

async fn overlay(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header) -> Handled {
    let n = usize::try_from(request.length).unwrap_or(usize::MAX);
    let responsible = (n > 0).then_some((request.object_id.0, n.min(OVERLAY_SET_MAX)));
    let document = match ctx.ask_overlay(responsible).await {
        Some(ShardReply::Document(Ok(document))) => document,
        Some(ShardReply::Document(Err(error))) => return Err(error.into()),
        Some(_) => {
            return Err(refuse(
                Status::Internal,
                "wrong reply kind to an overlay query",
            ))
        }
        None => {
            return Err(refuse(
                Status::Unavailable,
                "the node's overlay is not running or is overloaded",
            ))
        }
    };
    send_document(ctx, conn, request, &document).await
}
