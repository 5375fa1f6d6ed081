//! The repair walker of one data core: passes, one after another, each a walk over every
//! record of the core's partition (the scrub: checksums of live records, damaged headers)
//! that also collects the objects this node holds metadata copies or shards of, followed by
//! the repair of the objects this node leads, of every object with a corrupt shard here, and,
//! while the node drains, of every object with a shard here (moving it off). A pass starts
//! `interval_secs` after the last, at once when the members change, or when asked.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ds_store::{RecordKind, WalkCursor, WalkError};

use crate::config::RepairConfig;
use crate::repair::board::RepairBoard;
use crate::repair::object::{repair_object, Pace};
use crate::service::ctx::CoreCtx;
use crate::service::meta::META_STRIPE;
use crate::service::placement;

/// Device bytes one walk step reads at most.
const WALK_STEP_BYTES: usize = 1 << 20;
/// Unreadable ranges one walk steps over before it gives up.
const WALK_SKIPS_MAX: usize = 4096;
/// Failed reads after which a device is taken out of service.
const DEVICE_READ_ERRORS_MAX: u64 = 8;
/// How often a waiting walker looks for a reason to start.
const WAIT_STEP: Duration = Duration::from_millis(200);
/// A change of members waits this long first, so a burst of changes makes one pass.
const SETTLE: Duration = Duration::from_secs(1);

pub async fn run(ctx: Rc<CoreCtx>, board: Arc<RepairBoard>, config: RepairConfig) {
    if config.interval_secs == 0 {
        return;
    }
    let walk_pace = Pace::new(config.scrub_rate.bytes());
    let pace = Pace::new(config.rate.bytes());
    let interval = Duration::from_secs(config.interval_secs);
    let mut last_end = Instant::now();
    let mut seen_generation = ctx.member_list().generation;
    let mut seen_kick = board.kick.load(Ordering::Relaxed);
    let mut changed_at: Option<Instant> = None;
    loop {
        if ctx.stopping.get() {
            return;
        }
        let generation = ctx.member_list().generation;
        if generation != seen_generation {
            seen_generation = generation;
            changed_at = Some(Instant::now());
        }
        let kick = board.kick.load(Ordering::Relaxed);
        let due = last_end.elapsed() >= interval
            || changed_at.is_some_and(|at| at.elapsed() >= SETTLE)
            || kick != seen_kick
            || (board.draining.load(Ordering::Relaxed) && last_end.elapsed() >= SETTLE);
        if !due {
            ctx.sleep(WAIT_STEP).await;
            continue;
        }
        seen_kick = kick;
        changed_at = None;
        pass(&ctx, &board, &walk_pace, &pace).await;
        last_end = Instant::now();
    }
}

/// What a walk found on this core.
#[derive(Default)]
struct Found {
    /// Objects this core holds a metadata copy of.
    metas: BTreeSet<u128>,
    /// Objects this core holds live shards of.
    shards: BTreeSet<u128>,
    /// Objects with a live corrupt shard here, and the stripes.
    corrupt: BTreeMap<u128, BTreeSet<u32>>,
}

/// Takes failing devices out of service (a failed write, or repeated failed reads), and
/// detaches those whose every segment was tried; what was on them is then missing from this
/// node's index, and the repair of other nodes (and this one) rebuilds it here or elsewhere.
fn tend_devices(ctx: &CoreCtx, board: &RepairBoard) {
    let mut store = ctx.store.borrow_mut();
    for (slot, read_errors, failed, draining) in store.device_health() {
        if draining {
            if store.try_detach(slot) {
                tracing::warn!(core = ctx.core, slot, "failed device detached");
                ctx.owner.borrow_mut().forget_cached();
                board.update(ctx.core, |c| c.devices_retired += 1);
            }
            continue;
        }
        if failed || read_errors >= DEVICE_READ_ERRORS_MAX {
            match store.retire_device(slot) {
                Ok(()) => {
                    ctx.owner.borrow_mut().forget_cached();
                    tracing::error!(
                        core = ctx.core,
                        slot,
                        read_errors,
                        failed,
                        "device fails: taken out of service; its shards will be rebuilt"
                    )
                }
                Err(error) => {
                    tracing::warn!(core = ctx.core, slot, %error, "a failing device cannot be retired")
                }
            }
        }
    }
}

async fn pass(ctx: &Rc<CoreCtx>, board: &RepairBoard, walk_pace: &Pace, pace: &Pace) {
    let core = ctx.core;
    board.update(core, |c| c.in_pass = true);
    tend_devices(ctx, board);
    let draining = board.draining.load(Ordering::Relaxed);
    let found = walk(ctx, board, walk_pace).await;
    let list = ctx.member_list();
    let leaving = draining.then_some(ctx.node_id);
    let mut work: BTreeSet<u128> = found.corrupt.keys().copied().collect();
    for &object in &found.metas {
        let leader = list.closest(object, 1).first().map(|m| m.id);
        if leader == Some(ctx.node_id) && !draining {
            work.insert(object);
        } else {
            // Not ours to repair: only bring the metadata copies up to date (a node that
            // joined closer to the id gets its copy here, and then leads the object).
            let _ = placement::resolve(ctx, object).await;
        }
    }
    if draining {
        work.extend(found.shards.iter().copied());
    }
    let mut totals = crate::repair::object::ObjectReport::default();
    let mut objects = 0u64;
    let mut errors = 0u64;
    let no_stripes = BTreeSet::new();
    for object in work {
        if ctx.stopping.get() {
            break;
        }
        let deep = found.corrupt.get(&object).unwrap_or(&no_stripes);
        match repair_object(ctx, object, leaving, deep, pace).await {
            Ok(report) => {
                objects += 1;
                totals.stripes += report.stripes;
                totals.full += report.full;
                totals.degraded += report.degraded;
                totals.lost += report.lost;
                totals.shards_missing += report.shards_missing;
                totals.shards_rebuilt += report.shards_rebuilt;
                totals.bytes_rebuilt += report.bytes_rebuilt;
                board.update(core, |c| {
                    c.shards_rebuilt += report.shards_rebuilt;
                    c.bytes_rebuilt += report.bytes_rebuilt;
                    c.objects_moved += u64::from(report.moved);
                    c.repair_backlog = totals.shards_missing.saturating_sub(totals.shards_rebuilt);
                });
            }
            Err(refusal) => {
                errors += 1;
                tracing::debug!(core, object = %ds_proto::ObjectId(object), error = %refusal.1, "object not repaired");
            }
        }
    }
    board.update(core, |c| {
        c.in_pass = false;
        c.passes += 1;
        c.objects = objects;
        c.stripes = totals.stripes;
        c.full = totals.full;
        c.degraded = totals.degraded;
        c.lost = totals.lost;
        c.repair_backlog =
            totals.shards_missing.saturating_sub(totals.shards_rebuilt) + totals.degraded + errors;
        c.repair_errors += errors;
        c.devices_failing = ctx
            .store
            .borrow()
            .device_health()
            .iter()
            .filter(|d| d.2 || d.3)
            .count() as u64;
        if draining {
            c.drain_remaining = found.shards.len() as u64;
            c.drained = found.shards.is_empty() && errors == 0;
        }
    });
}

/// One walk over every record of this core, at the scrub rate.
async fn walk(ctx: &Rc<CoreCtx>, board: &RepairBoard, walk_pace: &Pace) -> Found {
    let core = ctx.core;
    let mut found = Found::default();
    let mut cursor = WalkCursor::START;
    let mut skips = 0;
    loop {
        if ctx.stopping.get() {
            return found;
        }
        let step = match ctx.walk(cursor, WALK_STEP_BYTES).await {
            Ok(step) => step,
            Err(WalkError::Busy) => {
                ctx.sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(WalkError::Io { skip, .. }) if skips < WALK_SKIPS_MAX => {
                // An unreadable range: leave it out (its shards read as failed and are
                // rebuilt once the device is retired) and walk on.
                skips += 1;
                board.update(core, |c| c.scrub_errors += 1);
                cursor = skip;
                continue;
            }
            Err(error) => {
                tracing::warn!(core, %error, "walk step failed; the pass ends early");
                board.update(core, |c| c.scrub_errors += 1);
                return found;
            }
        };
        let mut records = 0;
        let mut corrupt = 0;
        for record in step.records.iter().filter(|r| r.live) {
            records += 1;
            let object = record.key.object;
            let bad = !record.data_ok || record.kind == RecordKind::Damaged;
            if record.key.stripe == META_STRIPE {
                if record.kind == RecordKind::Shard {
                    found.metas.insert(object);
                }
                continue;
            }
            if record.kind == RecordKind::Tombstone {
                continue;
            }
            found.shards.insert(object);
            if bad {
                corrupt += 1;
                found
                    .corrupt
                    .entry(object)
                    .or_default()
                    .insert(record.key.stripe);
            }
        }
        let (behind, total) = ctx.store.borrow().walk_progress(step.next);
        board.update(core, |c| {
            c.scrub_bytes += step.bytes_read;
            c.scrub_records += records;
            c.scrub_corrupt += corrupt;
            c.scrub_damaged += step.damaged.len() as u64;
            c.scrub_progress = if step.wrapped || total == 0 {
                1.0
            } else {
                behind as f64 / total as f64
            };
            if step.wrapped {
                c.scrub_passes += 1;
            }
        });
        if step.wrapped {
            return found;
        }
        cursor = step.next;
        let wait = walk_pace.charge(step.bytes_read);
        if !wait.is_zero() {
            ctx.sleep(wait).await;
        }
    }
}
