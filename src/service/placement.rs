//! Where an object lives and what it is. Its shards go to the K + M nodes closest to its id
//! when it is created (the placement, kept in its metadata); its metadata record is copied to
//! the [`META_COPIES`] nodes closest to its id. Metadata is written to all copies and
//! acknowledged by a majority; it is read from all and needs a majority's complement of
//! answers, so a read meets every acknowledged update. A client request goes on as soon as it
//! has its quorum (a slow or hung copy does not hold it up), and its read asks only as many
//! copies as the quorum (this node's first), the others when one misses or is slow; repair
//! asks and waits for every copy.
//! Copies are merged (size grows, deletion sticks), and a read repairs the copies it found
//! behind.

use std::rc::Rc;
use std::time::Duration;

use ds_proto::{ObjectId, Status};

use crate::node::overlay::MemberList;
use crate::reactor::gather::Gather;
use crate::service::ctx::CoreCtx;
use crate::service::meta::ObjectMeta;
use crate::service::owner::{now_ns, OpError};
use crate::service::reply::{refuse, Refusal};
use crate::service::shards::{self, Target};

/// Nodes holding a copy of an object's metadata (fewer when the cluster is smaller).
pub const META_COPIES: usize = 6;

/// Where node `node` is reached from here.
pub fn target_of(ctx: &CoreCtx, list: &MemberList, node: u128) -> Target {
    if node == ctx.node_id {
        return Target::Local;
    }
    list.members
        .iter()
        .find(|m| m.id == node)
        .map_or(Target::Unknown(node), |m| Target::Remote(m.data))
}

/// The nodes holding copies of `object`'s metadata (never none: this node at least).
fn meta_targets(ctx: &CoreCtx, object: u128) -> Vec<Target> {
    let list = ctx.member_list();
    let mut targets: Vec<Target> = list
        .closest(object, META_COPIES)
        .into_iter()
        .map(|m| target_of(ctx, &list, m.id))
        .collect();
    if targets.is_empty() {
        return vec![Target::Local];
    }
    // This node's copy first: a quorum read asks the first copies, and the local one costs no
    // network round trip. The others stay in order of closeness.
    if let Some(at) = targets.iter().position(|t| *t == Target::Local) {
        targets[..=at].rotate_right(1);
    }
    targets
}

fn majority(copies: usize) -> usize {
    copies / 2 + 1
}

/// How long a metadata read or write waits: for a quorum of copies (client requests, which a
/// slow or hung copy must not hold up to the call timeout), or for every copy (repair, which
/// brings every copy up to date).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Quorum,
    All,
}

/// A read asks the others too when its first copies have not all answered by then.
const HEDGE_AFTER: Duration = Duration::from_millis(50);

/// What a gathering call hears: an answer from target `index`, or its hedge timer.
enum Heard<T> {
    Answer(usize, Result<T, OpError>),
    Hedge,
}

/// Runs `op` against the first `first` targets, and takes the results as they come until
/// `enough(results so far)` holds or every target asked has answered. The others are asked too
/// as soon as an answer is not a success, every first one has answered without `enough`, or
/// [`HEDGE_AFTER`] passes. Calls still running at the end finish unheard. Each result comes
/// with its target's index.
async fn on_targets<T: 'static, F>(
    ctx: &Rc<CoreCtx>,
    targets: &[Target],
    first: usize,
    op: impl Fn(Rc<CoreCtx>, Target) -> F,
    enough: impl Fn(&[(usize, Result<T, OpError>)]) -> bool,
) -> Vec<(usize, Result<T, OpError>)>
where
    F: std::future::Future<Output = Result<T, OpError>> + 'static,
{
    let gather = Gather::default();
    let ask = |indices: std::ops::Range<usize>| {
        for index in indices {
            let (call, sender) = (op(ctx.clone(), targets[index]), gather.sender());
            ctx.executor.spawn(async move {
                sender.push(Heard::Answer(index, call.await));
            });
        }
    };
    let mut asked = first.clamp(1, targets.len());
    ask(0..asked);
    if asked < targets.len() {
        let (timer_ctx, sender) = (ctx.clone(), gather.sender());
        ctx.executor.spawn(async move {
            timer_ctx.sleep(HEDGE_AFTER).await;
            sender.push(Heard::Hedge);
        });
    }
    let mut results = Vec::with_capacity(targets.len());
    while !enough(&results) {
        if results.len() == asked {
            if asked == targets.len() {
                break;
            }
            ask(asked..targets.len());
            asked = targets.len();
        }
        match gather.next().await {
            Heard::Answer(index, result) => {
                let missed = result.is_err();
                results.push((index, result));
                if missed && asked < targets.len() {
                    ask(asked..targets.len());
                    asked = targets.len();
                }
            }
            Heard::Hedge if asked < targets.len() => {
                ask(asked..targets.len());
                asked = targets.len();
            }
            Heard::Hedge => {}
        }
    }
    results
}

/// Places a new object: the placement from the closest nodes, the record on its copies.
pub async fn create(
    ctx: &Rc<CoreCtx>,
    object: u128,
    scheme: ds_objects::Scheme,
) -> Result<ObjectMeta, Refusal> {
    let list = ctx.member_list();
    let shards = usize::from(scheme.n());
    if list.len() < shards {
        return Err(refuse(
            Status::Unavailable,
            format!(
                "scheme {}+{} needs {shards} nodes for its shards; this node knows {} serving data",
                scheme.k(),
                scheme.m(),
                list.len()
            ),
        ));
    }
    let layout = ds_objects::StripeLayout::for_scheme(scheme);
    let meta = ObjectMeta {
        scheme_k: scheme.k(),
        scheme_m: scheme.m(),
        stripe_bytes: layout.stripe_bytes(),
        size: 0,
        created_ns: now_ns(),
        generation: ctx.hlc.borrow_mut().now(now_ns()).as_u64(),
        deleted: false,
        placement_version: 0,
        placement: list.closest(object, shards).iter().map(|m| m.id).collect(),
        version: 0,
    };
    update(ctx, object, &meta, Wait::Quorum).await
}

/// Merges `meta` into every copy; succeeds once a majority holds it. Answers the merged record
/// (a deletion that won shows there).
pub async fn update(
    ctx: &Rc<CoreCtx>,
    object: u128,
    meta: &ObjectMeta,
    wait: Wait,
) -> Result<ObjectMeta, Refusal> {
    let targets = meta_targets(ctx, object);
    let needed = majority(targets.len());
    let shared = Rc::new(meta.clone());
    // Every copy is written; the wait ends at a majority.
    let results = on_targets(
        ctx,
        &targets,
        targets.len(),
        |ctx, target| {
            let meta = shared.clone();
            async move { shards::merge_meta(&ctx, target, object, &meta).await }
        },
        |heard| wait == Wait::Quorum && heard.iter().filter(|(_, r)| r.is_ok()).count() >= needed,
    )
    .await;
    let mut merged = meta.clone();
    let mut acked = 0;
    let mut errors = Vec::new();
    for (_, result) in results {
        match result {
            Ok(copy) => {
                merged.merge(&copy);
                acked += 1;
            }
            Err(error) => errors.push(error.to_string()),
        }
    }
    if acked < needed {
        return Err(refuse(
            Status::Unavailable,
            format!(
                "metadata of {}: {acked} of {} copies written, {needed} needed ({})",
                ObjectId(object),
                targets.len(),
                errors.join("; ")
            ),
        ));
    }
    Ok(merged)
}

/// Entries in a core's table of size growth before it is cleared.
const GROWS_MAX: usize = 65_536;

/// Makes the object's size at least `end` on a majority of its copies. Concurrent calls for one
/// object on this core share updates: while one is in flight the others wait, then one update
/// carries the largest size any of them asked for. Answers the merged record.
pub async fn grow(
    ctx: &Rc<CoreCtx>,
    meta: &ObjectMeta,
    object: u128,
    end: u64,
) -> Result<ObjectMeta, Refusal> {
    {
        let mut grows = ctx.grows.borrow_mut();
        if grows.len() >= GROWS_MAX && !grows.contains_key(&object) {
            grows.clear();
        }
        let (wanted, _) = grows.entry(object).or_insert((0, 0));
        *wanted = (*wanted).max(end);
    }
    let _guard = crate::reactor::lock::lock(&ctx.grow_locks, object).await;
    let (wanted, durable) = ctx.grows.borrow().get(&object).copied().unwrap_or((end, 0));
    if durable >= end {
        return Ok(ObjectMeta {
            size: meta.size.max(durable),
            ..meta.clone()
        });
    }
    let size = wanted.max(end);
    let merged = update(
        ctx,
        object,
        &ObjectMeta {
            size,
            ..meta.clone()
        },
        Wait::Quorum,
    )
    .await?;
    if let Some((_, durable)) = ctx.grows.borrow_mut().get_mut(&object) {
        *durable = (*durable).max(size);
    }
    Ok(merged)
}

/// The object's metadata as a quorum of copies agree; NOT_FOUND for an unknown or deleted
/// object.
pub async fn resolve(ctx: &Rc<CoreCtx>, object: u128) -> Result<ObjectMeta, Refusal> {
    let merged = read_copies(ctx, object, Wait::Quorum).await?;
    if merged.deleted {
        return Err(not_found(object));
    }
    Ok(merged)
}

/// The object's metadata as the copies agree, deleted ones included (repair cleans up after a
/// delete); NOT_FOUND when no copy exists.
pub async fn read_copies(
    ctx: &Rc<CoreCtx>,
    object: u128,
    wait: Wait,
) -> Result<ObjectMeta, Refusal> {
    let targets = meta_targets(ctx, object);
    // Any `needed` answers meet every majority that acknowledged an update. Only copies found
    // end the wait early: a node that does not know the object may be one that just became
    // one of the closest (joined) and has no copy yet, so "not found" waits for every copy.
    let needed = targets.len() + 1 - majority(targets.len());
    // A quorum read asks `needed` copies (this node's first) and the others only when one
    // misses or is slow; repair asks every copy.
    let first = match wait {
        Wait::Quorum => needed,
        Wait::All => targets.len(),
    };
    let results = on_targets(
        ctx,
        &targets,
        first,
        |ctx, target| async move { shards::read_meta(&ctx, target, object).await },
        |heard| wait == Wait::Quorum && heard.iter().filter(|(_, r)| r.is_ok()).count() >= needed,
    )
    .await;
    let mut merged: Option<ObjectMeta> = None;
    let mut answered = 0;
    let mut errors = Vec::new();
    for (_, result) in &results {
        match result {
            Ok(copy) => {
                answered += 1;
                match &mut merged {
                    Some(merged) => {
                        merged.merge(copy);
                    }
                    None => merged = Some(copy.clone()),
                }
            }
            Err(OpError::NotFound) => answered += 1,
            Err(error) => errors.push(error.to_string()),
        }
    }
    if answered < needed {
        return Err(refuse(
            Status::Unavailable,
            format!(
                "metadata of {}: {answered} of {} copies answered, {needed} needed ({})",
                ObjectId(object),
                targets.len(),
                errors.join("; ")
            ),
        ));
    }
    let Some(merged) = merged else {
        return Err(not_found(object));
    };
    // Copies that answered behind the merged record catch up in the background.
    for (index, result) in &results {
        let target = &targets[*index];
        let behind = match result {
            Ok(copy) => copy.size != merged.size || copy.deleted != merged.deleted,
            Err(OpError::NotFound) => true,
            Err(_) => false,
        };
        if behind {
            let (task_ctx, target, meta) = (ctx.clone(), *target, merged.clone());
            ctx.executor.spawn(async move {
                let _ = shards::merge_meta(&task_ctx, target, object, &meta).await;
            });
        }
    }
    Ok(merged)
}

pub fn not_found(object: u128) -> Refusal {
    refuse(
        Status::NotFound,
        format!("object {} does not exist", ObjectId(object)),
    )
}
