//! One client request, run on the core whose connection received it (the coordinator): it
//! checks the request, runs shard operations on the cores that own the shards, and streams
//! the reply. Objects are cut into stripes of [`STRIPE_BYTES`]; stripe i holds object bytes
//! [i * STRIPE_BYTES, (i + 1) * STRIPE_BYTES) as shard record (object, i, 0); bytes never
//! written read as zeros.

use std::rc::Rc;
use std::time::Instant;

use ds_net::ConnId;
use ds_proto::{
    Frame, Header, ObjectId, Opcode, ReplyChunks, Scheme, StatPart, StatReply, Status,
    HEADER_BYTES, LENGTH_TO_END,
};
use ds_store::{ShardKey, ShardMeta};

use crate::local::core_of;
use crate::service::conn::{self, Gone};
use crate::service::ctx::CoreCtx;
use crate::service::meta::{ObjectMeta, META_STRIPE};
use crate::service::owner::{now_ns, OpError, ShardOp, ShardReply, StripeBytes};
use crate::stats::metrics::Op;

/// Object bytes per stripe (one shard record each on a single node, scheme 1+0).
pub const STRIPE_BYTES: u32 = 1 << 20;
/// Largest object: 1 TiB (the issue asks for at least 64 GiB).
pub const OBJECT_BYTES_MAX: u64 = 1 << 40;
/// Stripe reads a GET keeps in flight ahead of the frame being sent.
const GET_READ_AHEAD: usize = 4;
/// Shard operations a DELETE or STAT keeps in flight.
const FAN_OUT: usize = 32;
/// Stripes STAT lists parts of; beyond, the reply says how many there are but not where.
const STAT_PARTS_MAX: u64 = 65_536;
/// Largest responsible set an OVERLAY request may ask for.
const OVERLAY_SET_MAX: usize = 64;
/// Nodes this single-node service can place shards on (the cluster, with more, is issue 5).
const NODES: usize = 1;

/// A failed request: the status and the message of its error reply.
struct Refusal(Status, String);

impl From<OpError> for Refusal {
    fn from(error: OpError) -> Self {
        let status = match error {
            OpError::NotFound => Status::NotFound,
            OpError::Corrupt(_) => Status::Corrupt,
            OpError::NoSpace => Status::NoSpace,
            OpError::Busy => Status::Busy,
            OpError::Io(_) | OpError::Internal(_) => Status::Internal,
        };
        Refusal(status, error.to_string())
    }
}

fn refuse(status: Status, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

pub async fn handle(ctx: &Rc<CoreCtx>, conn: ConnId, frame: Frame) {
    let started = Instant::now();
    let header = frame.header;
    let op = match header.opcode {
        Opcode::Ping => Some(Op::Ping),
        Opcode::Create => Some(Op::Create),
        Opcode::Put => Some(Op::Put),
        Opcode::Get => Some(Op::Get),
        Opcode::Delete => Some(Op::Delete),
        Opcode::Stat => Some(Op::Stat),
        Opcode::Overlay | Opcode::Unknown => None,
    };
    let payload_bytes = frame.payload.len() as u64;
    let result = match header.opcode {
        _ if header.is_reply() => Err(refuse(
            Status::BadRequest,
            "a request must not carry the REPLY flag",
        )),
        _ if header.status != Status::Ok => Err(refuse(
            Status::BadRequest,
            format!("a request must carry status OK, not {}", header.status),
        )),
        Opcode::Ping => reply(ctx, conn, &header, frame.payload).await,
        Opcode::Create => create(ctx, conn, &header).await,
        Opcode::Put => put(ctx, conn, &header, frame.payload).await,
        Opcode::Get => get(ctx, conn, &header).await,
        Opcode::Delete => delete(ctx, conn, &header).await,
        Opcode::Stat => stat(ctx, conn, &header).await,
        Opcode::Overlay => overlay(ctx, conn, &header).await,
        Opcode::Unknown => Err(refuse(
            Status::BadRequest,
            "opcode UNKNOWN is not a request",
        )),
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

/// What a handler returns: bytes sent on success, or a refusal to answer with.
type Handled = Result<Result<u64, Gone>, Refusal>;

/// Sends a one-frame successful reply with `payload`.
async fn reply(ctx: &CoreCtx, conn: ConnId, request: &Header, payload: Vec<u8>) -> Handled {
    let len = payload.len() as u64;
    let frame = Frame::new(request.reply(Status::Ok), payload)
        .map_err(|e| refuse(Status::Internal, e.to_string()))?;
    Ok(send_frame(ctx, conn, &frame).await.map(|()| len))
}

async fn send_frame(ctx: &CoreCtx, conn: ConnId, frame: &Frame) -> Result<(), Gone> {
    let mut bytes = ctx.take_send_buf(HEADER_BYTES + frame.payload.len());
    let _ = frame.encode_into(&mut bytes);
    conn::send(ctx, conn, bytes).await
}

/// A reply built in place in a pooled buffer: room for the header, then the payload is
/// appended by the caller, then [`finish_frame`] writes the header (one copy of the payload).
fn start_frame(ctx: &CoreCtx, payload_bytes: usize) -> Vec<u8> {
    let mut bytes = ctx.take_send_buf(HEADER_BYTES + payload_bytes);
    bytes.resize(HEADER_BYTES, 0);
    bytes
}

fn finish_frame(mut header: Header, bytes: &mut [u8]) -> Result<(), Refusal> {
    header
        .seal(&bytes[HEADER_BYTES..])
        .map_err(|e| refuse(Status::Internal, e.to_string()))?;
    bytes[..HEADER_BYTES].copy_from_slice(&header.encode());
    Ok(())
}

/// The core that owns every record of `object` (the core of its metadata key): one core
/// serves all of an object, so a request needs at most one hop and no cross-core metadata.
fn owner_of(ctx: &CoreCtx, object: u128) -> usize {
    core_of(ShardKey::new(object, META_STRIPE, 0), ctx.cores)
}

async fn load_meta(ctx: &Rc<CoreCtx>, object: u128) -> Result<ObjectMeta, Refusal> {
    match ctx
        .call(owner_of(ctx, object), ShardOp::MetaGet { object })
        .await
    {
        ShardReply::Meta(Ok(meta)) => Ok(meta),
        ShardReply::Meta(Err(OpError::NotFound)) => Err(refuse(
            Status::NotFound,
            format!("object {} does not exist", ObjectId(object)),
        )),
        ShardReply::Meta(Err(error)) => Err(error.into()),
        _ => Err(refuse(Status::Internal, "wrong reply kind to MetaGet")),
    }
}

async fn create(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header) -> Handled {
    let scheme =
        Scheme::from_aux(request.aux).map_err(|e| refuse(Status::BadRequest, e.to_string()))?;
    if scheme.shards() > NODES {
        return Err(refuse(
            Status::Unavailable,
            format!(
                "scheme {scheme} needs {} nodes for its shards; this node alone can place 1+0",
                scheme.shards()
            ),
        ));
    }
    let object: u128 = rand::random();
    let meta = ObjectMeta {
        scheme_k: scheme.k(),
        scheme_m: scheme.m(),
        stripe_bytes: STRIPE_BYTES,
        size: 0,
        created_ns: now_ns(),
        version: 0,
    };
    match ctx
        .call(owner_of(ctx, object), ShardOp::MetaCreate { object, meta })
        .await
    {
        ShardReply::Meta(Ok(_)) => {}
        ShardReply::Meta(Err(error)) => return Err(error.into()),
        _ => return Err(refuse(Status::Internal, "wrong reply kind to MetaCreate")),
    }
    let mut header = request.reply(Status::Ok);
    header.object_id = ObjectId(object);
    header.aux = request.aux;
    let frame =
        Frame::new(header, Vec::new()).map_err(|e| refuse(Status::Internal, e.to_string()))?;
    Ok(send_frame(ctx, conn, &frame).await.map(|()| 0))
}

async fn put(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header, mut data: Vec<u8>) -> Handled {
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
    let meta = load_meta(ctx, object).await?;
    let stripe_bytes = u64::from(meta.stripe_bytes);
    let shard_meta = ShardMeta {
        version: 0,
        scheme_k: meta.scheme_k,
        scheme_m: meta.scheme_m,
        object_bytes: end.max(meta.size),
    };
    // Every stripe the range touches, written concurrently on the cores that own them.
    let mut writes = Vec::new();
    let mut at = request.offset;
    while at < end {
        let stripe = at / stripe_bytes;
        let within = at % stripe_bytes;
        let take = (stripe_bytes - within).min(end - at);
        let from = (at - request.offset) as usize;
        // A write within one stripe (the usual 1 MiB aligned chunk) moves its buffer along.
        let piece = if from == 0 && take as usize == data.len() {
            std::mem::take(&mut data)
        } else {
            data[from..from + take as usize].to_vec()
        };
        let key = ShardKey::new(object, stripe as u32, 0);
        let whole = within == 0 && take == stripe_bytes;
        let op = ShardOp::Write {
            key,
            meta: shard_meta,
            at: within as u32,
            data: piece,
            whole,
        };
        let owner = owner_of(ctx, object);
        let task_ctx = ctx.clone();
        writes.push(
            ctx.executor
                .spawn_task(async move { task_ctx.call(owner, op).await }),
        );
        at += take;
    }
    for write in writes {
        match write.await {
            ShardReply::Done(Ok(())) => {}
            ShardReply::Done(Err(error)) => return Err(error.into()),
            _ => return Err(refuse(Status::Internal, "wrong reply kind to Write")),
        }
    }
    // An empty write only tells whether the object exists; it never grows it.
    if end > meta.size && written > 0 {
        match ctx
            .call(owner_of(ctx, object), ShardOp::MetaGrow { object, end })
            .await
        {
            ShardReply::Meta(Ok(_)) => {}
            ShardReply::Meta(Err(OpError::NotFound)) => {
                return Err(refuse(
                    Status::NotFound,
                    format!("object {} was deleted during the write", ObjectId(object)),
                ))
            }
            ShardReply::Meta(Err(error)) => return Err(error.into()),
            _ => return Err(refuse(Status::Internal, "wrong reply kind to MetaGrow")),
        }
    }
    // The reply echoes the offset and says how many bytes were written.
    let mut header = request.reply(Status::Ok);
    header.length = written;
    let frame =
        Frame::new(header, Vec::new()).map_err(|e| refuse(Status::Internal, e.to_string()))?;
    Ok(send_frame(ctx, conn, &frame).await.map(|()| 0))
}

async fn read_stripe(
    ctx: Rc<CoreCtx>,
    object: u128,
    stripe: u32,
) -> Result<Option<StripeBytes>, OpError> {
    let key = ShardKey::new(object, stripe, 0);
    match ctx
        .call(owner_of(&ctx, object), ShardOp::Read { key })
        .await
    {
        ShardReply::Data(result) => result,
        _ => Err(OpError::Internal("wrong reply kind to Read".into())),
    }
}

async fn get(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header) -> Handled {
    let object = request.object_id.0;
    let offset = request.offset;
    // The metadata and the first stripe in one trip to the owning core.
    let (meta, first_data) = match ctx
        .call(owner_of(ctx, object), ShardOp::ReadFirst { object, offset })
        .await
    {
        ShardReply::MetaAndData(Ok(found)) => found,
        ShardReply::MetaAndData(Err(OpError::NotFound)) => {
            return Err(refuse(
                Status::NotFound,
                format!("object {} does not exist", ObjectId(object)),
            ))
        }
        ShardReply::MetaAndData(Err(error)) => return Err(error.into()),
        _ => return Err(refuse(Status::Internal, "wrong reply kind to ReadFirst")),
    };
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
    let stripe_bytes = u64::from(meta.stripe_bytes);
    let first = offset / stripe_bytes;
    let last = if len == 0 {
        first
    } else {
        (end - 1) / stripe_bytes + 1
    };
    // Stripe reads run ahead of the frames being sent, a bounded number at a time.
    let mut pending = std::collections::VecDeque::new();
    let mut next = first + 1;
    let mut stripe_data: Option<(u64, Option<StripeBytes>)> = Some((first, first_data));
    let mut sent = 0u64;
    for chunk in chunks {
        let mut bytes = start_frame(ctx, chunk.bytes);
        let mut at = chunk.offset;
        let chunk_end = chunk.offset + chunk.bytes as u64;
        while at < chunk_end {
            let stripe = at / stripe_bytes;
            if stripe_data.as_ref().is_none_or(|(s, _)| *s != stripe) {
                while pending.len() < GET_READ_AHEAD && next < last {
                    let task_ctx = ctx.clone();
                    let s = next as u32;
                    pending.push_back((
                        next,
                        ctx.executor.spawn_task(read_stripe(task_ctx, object, s)),
                    ));
                    next += 1;
                }
                let Some((s, task)) = pending.pop_front() else {
                    return Err(refuse(Status::Internal, "stripe read-ahead ran dry"));
                };
                debug_assert_eq!(s, stripe);
                let read = task.await.map_err(Refusal::from)?;
                if let Some((_, Some(old))) = stripe_data.replace((stripe, read)) {
                    ctx.store.borrow_mut().recycle(old.into_buf());
                }
            }
            let stored: &[u8] = match &stripe_data {
                Some((_, Some(data))) => data.as_slice(),
                _ => &[],
            };
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
    if let Some((_, Some(last))) = stripe_data {
        ctx.store.borrow_mut().recycle(last.into_buf());
    }
    Ok(Ok(sent))
}

async fn delete(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header) -> Handled {
    let object = request.object_id.0;
    // The metadata goes first: from then on the object is gone for every reader, and a crash
    // before its stripes are tombstoned leaves only unreachable records.
    let meta = match ctx
        .call(owner_of(ctx, object), ShardOp::MetaDelete { object })
        .await
    {
        ShardReply::Meta(Ok(meta)) => meta,
        ShardReply::Meta(Err(OpError::NotFound)) => {
            return Err(refuse(
                Status::NotFound,
                format!("object {} does not exist", ObjectId(object)),
            ))
        }
        ShardReply::Meta(Err(error)) => return Err(error.into()),
        _ => return Err(refuse(Status::Internal, "wrong reply kind to MetaDelete")),
    };
    per_stripe(
        ctx,
        object,
        meta.stripes(),
        |key| ShardOp::Delete { key },
        |_, reply| match reply {
            ShardReply::Done(Err(error)) => Err(error.into()),
            _ => Ok(()),
        },
    )
    .await?;
    reply(ctx, conn, request, Vec::new()).await
}

/// Runs `op` on stripes 0..count of `object` on its core, at most [`FAN_OUT`] at a time, and
/// hands the replies to `each` in stripe order; the first refusal from `each` ends it.
async fn per_stripe(
    ctx: &Rc<CoreCtx>,
    object: u128,
    count: u64,
    op: impl Fn(ShardKey) -> ShardOp,
    mut each: impl FnMut(u64, ShardReply) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    let owner = owner_of(ctx, object);
    let mut next = 0u64;
    let mut running = std::collections::VecDeque::new();
    while next < count || !running.is_empty() {
        while running.len() < FAN_OUT && next < count {
            let shard_op = op(ShardKey::new(object, next as u32, 0));
            let task_ctx = ctx.clone();
            let task = async move { task_ctx.call(owner, shard_op).await };
            running.push_back((next, ctx.executor.spawn_task(task)));
            next += 1;
        }
        if let Some((stripe, task)) = running.pop_front() {
            each(stripe, task.await)?;
        }
    }
    Ok(())
}

async fn stat(ctx: &Rc<CoreCtx>, conn: ConnId, request: &Header) -> Handled {
    let object = request.object_id.0;
    let meta = load_meta(ctx, object).await?;
    let scheme = Scheme::new(meta.scheme_k, meta.scheme_m)
        .map_err(|e| refuse(Status::Corrupt, e.to_string()))?;
    let mut parts = Vec::new();
    let node = format!("{:032x}", ctx.node_id);
    let listed = meta.stripes().min(STAT_PARTS_MAX);
    per_stripe(
        ctx,
        object,
        listed,
        |key| ShardOp::Locate { key },
        |stripe, reply| {
            if let ShardReply::Located(devices) = reply {
                for device in devices {
                    parts.push(StatPart {
                        stripe: stripe as u32,
                        shard: 0,
                        node: node.clone(),
                        device: ctx.device_name(device),
                    });
                }
            }
            Ok(())
        },
    )
    .await?;
    let document = StatReply {
        id: ObjectId(object),
        size: meta.size,
        scheme,
        version: meta.version,
        created_ns: Some(meta.created_ns),
        parts,
    }
    .encode();
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

/// Sends a JSON document as a (multi-frame) reply.
async fn send_document(ctx: &CoreCtx, conn: ConnId, request: &Header, document: &[u8]) -> Handled {
    let total = document.len() as u64;
    let chunks =
        ReplyChunks::new(0, total).ok_or_else(|| refuse(Status::Internal, "document too large"))?;
    for chunk in chunks {
        let start = chunk.start as usize;
        let mut bytes = start_frame(ctx, chunk.bytes);
        bytes.extend_from_slice(&document[start..start + chunk.bytes]);
        finish_frame(chunk.header(request), &mut bytes)?;
        if conn::send(ctx, conn, bytes).await.is_err() {
            return Ok(Err(Gone));
        }
    }
    Ok(Ok(total))
}
