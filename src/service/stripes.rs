//! One stripe of an object, as the coordinator of a request writes or reads it: encoded into
//! K + M shards sent to the nodes of the placement and acknowledged at the write quorum, or
//! restored from the first K shards of one version (data shards first, a hedge when one is
//! slow, parity decoded when some are missing or corrupt). The decisions are `ds_objects`'
//! state machines; this drives them.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ds_objects::{
    ReadPlan, ReadState, Scheme, ShardMeta, ShardOutcome, StripeLayout, StripeRange, WriteQuorum,
    WriteState, WriteTracker,
};
use ds_proto::{ObjectId, Status};

use crate::reactor::gather::Gather;
use crate::reactor::lock::lock;
use crate::reactor::timer;
use crate::service::ctx::CoreCtx;
use crate::service::meta::ObjectMeta;
use crate::service::owner::{now_ns, OpError, OwnedBytes, SharedBuf};
use crate::service::payload::RecordPayload;
use crate::service::placement::target_of;
use crate::service::reply::{refuse, Refusal};
use crate::service::shards::{self, FetchedShard, Target};

/// A read asks one more shard when an answer takes longer than this.
const HEDGE_AFTER: Duration = Duration::from_millis(50);
/// Entries in a core's table of write ends before it is cleared.
const WRITE_ENDS_MAX: usize = 65_536;

/// What every stripe request of one object needs: its layout, quorum and shard targets.
pub struct ObjectPlan {
    pub object: u128,
    pub layout: StripeLayout,
    pub quorum: WriteQuorum,
    /// The node of shard i.
    pub targets: Vec<Target>,
}

impl ObjectPlan {
    pub fn new(ctx: &CoreCtx, object: u128, meta: &ObjectMeta) -> Result<Rc<Self>, Refusal> {
        let corrupt = |what: String| {
            refuse(
                Status::Corrupt,
                format!("metadata of {}: {what}", ObjectId(object)),
            )
        };
        let scheme =
            Scheme::new(meta.scheme_k, meta.scheme_m).map_err(|e| corrupt(e.to_string()))?;
        let k = u32::from(scheme.k());
        if !meta.stripe_bytes.is_multiple_of(k) {
            return Err(corrupt(format!(
                "stripe size {} is not a multiple of K",
                meta.stripe_bytes
            )));
        }
        let layout =
            StripeLayout::new(scheme, meta.stripe_bytes / k).map_err(|e| corrupt(e.to_string()))?;
        let parity = ctx
            .policy
            .borrow()
            .write_quorum_parity
            .unwrap_or(scheme.m().div_ceil(2))
            .min(scheme.m());
        let quorum =
            WriteQuorum::new(scheme, scheme.k() + parity).map_err(|e| corrupt(e.to_string()))?;
        if meta.placement.len() != usize::from(scheme.n()) {
            return Err(corrupt(format!(
                "{} nodes placed for {} shards",
                meta.placement.len(),
                scheme.n()
            )));
        }
        let list = ctx.member_list();
        let targets = meta
            .placement
            .iter()
            .map(|&node| target_of(ctx, &list, node))
            .collect();
        Ok(Rc::new(Self {
            object,
            layout,
            quorum,
            targets,
        }))
    }
}

/// Notes that a write reaching `end` started, and answers the largest such end so far: a
/// read-modify-write treats bytes below it as the object's, even before the size says so.
pub fn note_write_end(ctx: &CoreCtx, object: u128, end: u64) -> u64 {
    let mut ends = ctx.write_ends.borrow_mut();
    if ends.len() >= WRITE_ENDS_MAX && !ends.contains_key(&object) {
        ends.clear();
    }
    let known = ends.entry(object).or_insert(0);
    *known = (*known).max(end);
    *known
}

pub(crate) fn with_codec<T>(
    ctx: &CoreCtx,
    layout: StripeLayout,
    f: impl FnOnce(&mut ds_objects::EcCodec) -> T,
) -> Result<T, Refusal> {
    let mut codecs = ctx.codecs.borrow_mut();
    let codec = match codecs.entry(layout) {
        std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
            ds_objects::EcCodec::new(layout)
                .map_err(|e| refuse(Status::Internal, e.to_string()))?,
        ),
    };
    Ok(f(codec))
}

/// The bytes a PUT writes: shared by its stripes, or the record buffer it was received into
/// (a PUT of one stripe: see `service::payload`).
pub enum WriteData {
    Shared(SharedBuf),
    Record(RecordPayload),
}

impl WriteData {
    fn bytes(&self) -> &[u8] {
        match self {
            WriteData::Shared(data) => (**data).as_ref(),
            WriteData::Record(record) => record.as_slice(),
        }
    }
}

/// The new content of a stripe: `buf[at..at + len]`, the request's own bytes when they are
/// all of it (no copy) or a stripe assembled from them and the old content, handed to shards
/// as shared ranges; or a 1+0 stripe that is all of a record buffer, handed whole to its one
/// shard.
enum StripeContent {
    Shared {
        buf: SharedBuf,
        at: usize,
        len: usize,
    },
    Record(RecordPayload),
}

impl StripeContent {
    fn bytes(&self) -> &[u8] {
        match self {
            StripeContent::Shared { buf, at, len } => &(**buf).as_ref()[*at..*at + *len],
            StripeContent::Record(record) => record.as_slice(),
        }
    }
}

/// Writes `data[from..from + range.len]` over `range` of its stripe; `size` is what the object
/// holds before (at least); `data_crc`, when given, is the crc32c of all of `data` (a frame's
/// payload checksum). Returns once the write quorum of shards is durable, or the error that
/// made it unreachable.
pub async fn write(
    ctx: &Rc<CoreCtx>,
    plan: &Rc<ObjectPlan>,
    range: StripeRange,
    data: WriteData,
    from: usize,
    data_crc: Option<u32>,
    size: u64,
) -> Result<(), Refusal> {
    let object = plan.object;
    let layout = plan.layout;
    // Two writes into one stripe from this core must not both rebuild it from the same old one.
    let _guard = lock(&ctx.stripe_locks, (object, range.stripe)).await;
    let write_plan = layout.write_plan(&range, size);
    let written = from..from + range.len as usize;
    let scheme = layout.scheme();
    let data_len = data.bytes().len();
    let whole = write_plan.is_whole() && range.start == 0 && range.len == write_plan.stripe_len;
    // Whether the stripe is all of the payload, so the frame's checksum is its data's (1+0).
    let all_of_payload = written == (0..data_len);
    let (stripe, whole_payload) = match data {
        WriteData::Shared(data) if whole => (
            StripeContent::Shared {
                buf: data,
                at: written.start,
                len: written.len(),
            },
            all_of_payload,
        ),
        WriteData::Record(record) if whole && scheme.n() == 1 && all_of_payload => {
            (StripeContent::Record(record), true)
        }
        data => {
            let mut stripe = vec![0u8; write_plan.stripe_len as usize];
            let old = if write_plan.is_whole() {
                Vec::new()
            } else {
                read(ctx, plan, range.stripe).await?
            };
            write_plan.assemble(&old, &data.bytes()[written], &mut stripe);
            let len = stripe.len();
            // Assembled: old bytes in it, whatever its length.
            let stripe = StripeContent::Shared {
                buf: Arc::new(stripe),
                at: 0,
                len,
            };
            (stripe, false)
        }
    };
    let coded = layout.coded_bytes(write_plan.stripe_len) as usize;
    // One buffer each (`vec![vec![..]; m]` would zero one even for m = 0, then copy it).
    let mut parity: Vec<Vec<u8>> = (0..scheme.m()).map(|_| vec![0u8; coded]).collect();
    let started = Instant::now();
    with_codec(ctx, layout, |codec| {
        codec.encode(stripe.bytes(), &mut parity)
    })?
    .map_err(|e| refuse(Status::Internal, format!("encoding: {e}")))?;
    {
        let mut coding = ctx.coding.borrow_mut();
        coding.coding_ns += started.elapsed().as_nanos() as u64;
        coding.stripes_encoded += 1;
        coding.bytes_encoded += stripe.bytes().len() as u64;
    }
    // Nodes this one does not know cannot take a shard: refuse before writing any, rather
    // than leave shards of a version that can never be acknowledged.
    let known = plan
        .targets
        .iter()
        .filter(|t| !matches!(t, Target::Unknown(_)))
        .count();
    if known < usize::from(plan.quorum.w()) {
        ctx.coding.borrow_mut().failed_writes += 1;
        return Err(refuse(
            Status::Unavailable,
            format!(
                "stripe {} of {}: {known} of its {} nodes are known to be up, {} must take the \
                 write; nothing was written",
                range.stripe,
                ObjectId(object),
                plan.targets.len(),
                plan.quorum.w()
            ),
        ));
    }
    let version = ctx.hlc.borrow_mut().now(now_ns());
    let start = layout.stripe_start(range.stripe);
    let object_bytes = size.max(start + u64::from(range.end()));
    debug_assert_eq!(
        layout.stripe_len(range.stripe, object_bytes),
        write_plan.stripe_len
    );
    let stripe_len = stripe.bytes().len();
    let (shared, mut record) = match stripe {
        StripeContent::Shared { buf, at, .. } => (Some((buf, at)), None),
        StripeContent::Record(record) => (None, Some(record)),
    };
    let parity: Vec<Arc<Vec<u8>>> = parity.into_iter().map(Arc::new).collect();
    let gather = Gather::default();
    for shard in 0..scheme.n() {
        let meta = ShardMeta {
            object,
            stripe: range.stripe,
            shard,
            layout,
            version,
            object_bytes,
        };
        let stored = meta.stored_bytes() as usize;
        let (bytes, crc) = if shard < scheme.k() {
            let range = layout.data_range(stripe_len as u32, shard);
            let start = range.start as usize;
            assert!(start + stored <= range.end as usize);
            // The frame's checksum is the shard's when the shard is all of the payload.
            let crc = data_crc.filter(|_| whole_payload && scheme.k() == 1 && stored == data_len);
            let bytes = match (&shared, record.take()) {
                (_, Some(record)) => {
                    assert_eq!((start, stored), (0, stripe_len));
                    OwnedBytes::record(record)
                }
                (Some((buf, at)), None) => {
                    OwnedBytes::shared(buf.clone(), at + start..at + start + stored)
                }
                (None, None) => unreachable!("a record buffer is the only shard of its stripe"),
            };
            (bytes, crc)
        } else {
            let parity = parity[usize::from(shard - scheme.k())].clone();
            assert!(stored <= parity.len());
            (OwnedBytes::shared(parity, 0..stored), None)
        };
        let (task_ctx, target, sender) = (
            ctx.clone(),
            plan.targets[usize::from(shard)],
            gather.sender(),
        );
        ctx.executor.spawn(async move {
            let result = shards::write_shard(&task_ctx, target, meta, bytes, crc, false).await;
            sender.push((shard, result));
        });
    }
    let mut tracker = WriteTracker::new(plan.quorum);
    let mut errors = Vec::new();
    for answered in 1..=usize::from(scheme.n()) {
        let (shard, result) = gather.next().await;
        let outcome = match result {
            Ok(()) => ShardOutcome::Durable,
            Err(OpError::Stale(current)) => {
                let _ = ctx
                    .hlc
                    .borrow_mut()
                    .observe_bounded(now_ns(), ds_objects::Version::from_u64(current));
                ShardOutcome::Superseded
            }
            Err(error) => {
                errors.push(format!("shard {shard}: {error}"));
                ShardOutcome::Failed
            }
        };
        match tracker.handle_outcome(shard, outcome) {
            WriteState::Pending => {}
            WriteState::Acked => return Ok(()),
            WriteState::Failed(_) if answered < usize::from(scheme.n()) => {
                // Not acknowledged, but shards still in flight may land: wait for them (each
                // call is bounded by its timeout), so the reply comes after every shard of
                // this version that will land has, and a caller that sees the error next
                // finds the stripe settled (K of one version or the other).
            }
            WriteState::Failed(error) => {
                return Err(write_failed(ctx, plan, &range, error, &errors))
            }
        }
    }
    match tracker.state() {
        WriteState::Acked => Ok(()),
        WriteState::Failed(error) => Err(write_failed(ctx, plan, &range, error, &errors)),
        WriteState::Pending => Err(refuse(
            Status::Internal,
            "a stripe write had every answer and no decision",
        )),
    }
}

fn write_failed(
    ctx: &CoreCtx,
    plan: &ObjectPlan,
    range: &StripeRange,
    error: ds_objects::WriteError,
    errors: &[String],
) -> Refusal {
    ctx.coding.borrow_mut().failed_writes += 1;
    let status = if errors.iter().any(|e| e.contains("no space")) {
        Status::NoSpace
    } else {
        Status::Unavailable
    };
    refuse(
        status,
        format!(
            "stripe {} of {}: {error} ({})",
            range.stripe,
            ObjectId(plan.object),
            errors.join("; ")
        ),
    )
}

enum Event {
    Answer(u8, Result<Option<FetchedShard>, OpError>),
    Hedge,
}

/// The content of stripe `stripe` (as long as it was written; empty for a stripe never
/// written), restored from K shards of its newest readable version.
pub async fn read(
    ctx: &Rc<CoreCtx>,
    plan: &Rc<ObjectPlan>,
    stripe: u32,
) -> Result<Vec<u8>, Refusal> {
    let object = plan.object;
    let n = usize::from(plan.layout.scheme().n());
    let mut read_plan = ReadPlan::new(plan.quorum, Instant::now(), HEDGE_AFTER);
    let gather: Gather<Event> = Gather::default();
    let mut fetched: Vec<Option<FetchedShard>> = (0..n).map(|_| None).collect();
    let mut hedge_armed = false;
    let mut errors = Vec::new();
    let state = loop {
        while let Some(shard) = read_plan.poll_request() {
            let (task_ctx, target, sender) = (
                ctx.clone(),
                plan.targets[usize::from(shard)],
                gather.sender(),
            );
            ctx.executor.spawn(async move {
                let result = shards::read_shard(&task_ctx, target, object, stripe, shard).await;
                sender.push(Event::Answer(shard, result));
            });
        }
        match read_plan.state() {
            ReadState::Waiting => {}
            decided => break decided,
        }
        if !hedge_armed {
            if let Some(at) = read_plan.poll_timeout() {
                hedge_armed = true;
                let (timers, sender) = (ctx.timers.clone(), gather.sender());
                ctx.executor.spawn(async move {
                    timer::sleep_until(timers, at).await;
                    sender.push(Event::Hedge);
                });
            }
        }
        match gather.next().await {
            Event::Answer(shard, result) => {
                let reply = match result {
                    Ok(Some(found)) => {
                        let version = found.meta.version;
                        if let Some(old) = fetched[usize::from(shard)].replace(found) {
                            old.release(ctx);
                        }
                        ds_objects::ShardReply::Found(version)
                    }
                    Ok(None) => ds_objects::ShardReply::Absent,
                    Err(error) => {
                        errors.push(format!("shard {shard}: {error}"));
                        ds_objects::ShardReply::Failed
                    }
                };
                read_plan.handle_reply(shard, reply);
            }
            Event::Hedge => {
                hedge_armed = false;
                read_plan.handle_timeout(Instant::now());
            }
        }
    };
    ctx.coding.borrow_mut().hedged_requests += u64::from(read_plan.hedges());
    let result = match state {
        ReadState::Ready(choice) => decode(ctx, plan, stripe, &fetched, choice),
        ReadState::Hole { .. } => Ok(Vec::new()),
        ReadState::Failed(error) => {
            ctx.coding.borrow_mut().failed_reads += 1;
            Err(refuse(
                Status::Unavailable,
                format!(
                    "stripe {stripe} of {}: {error} ({})",
                    ObjectId(object),
                    errors.join("; ")
                ),
            ))
        }
        ReadState::Waiting => unreachable!("the loop ends only when decided"),
    };
    for shard in fetched.into_iter().flatten() {
        shard.release(ctx);
    }
    result
}

fn decode(
    ctx: &CoreCtx,
    plan: &ObjectPlan,
    stripe: u32,
    fetched: &[Option<FetchedShard>],
    choice: ds_objects::ReadChoice,
) -> Result<Vec<u8>, Refusal> {
    let chosen: Vec<Option<&[u8]>> = fetched
        .iter()
        .enumerate()
        .map(|(i, shard)| {
            shard
                .as_ref()
                .filter(|_| choice.shards.contains(i as u8))
                .map(FetchedShard::bytes)
        })
        .collect();
    let first = fetched
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.as_ref().filter(|_| choice.shards.contains(i as u8)))
        .ok_or_else(|| refuse(Status::Internal, "a read chose no shards"))?;
    let stripe_len = first.meta.stripe_len();
    if fetched
        .iter()
        .enumerate()
        .filter(|(i, _)| choice.shards.contains(*i as u8))
        .any(|(_, s)| {
            s.as_ref()
                .is_none_or(|s| !s.meta.same_stripe_version(&first.meta))
        })
    {
        return Err(refuse(
            Status::Corrupt,
            format!(
                "stripe {stripe} of {}: chosen shards disagree on their headers",
                ObjectId(plan.object)
            ),
        ));
    }
    let mut out = vec![0u8; stripe_len as usize];
    let started = Instant::now();
    with_codec(ctx, plan.layout, |codec| codec.decode(&chosen, &mut out))?
        .map_err(|e| refuse(Status::Corrupt, format!("decoding stripe {stripe}: {e}")))?;
    let mut coding = ctx.coding.borrow_mut();
    coding.coding_ns += started.elapsed().as_nanos() as u64;
    coding.stripes_decoded += 1;
    coding.bytes_decoded += out.len() as u64;
    if choice.degraded {
        coding.degraded_reads += 1;
    }
    Ok(out)
}
