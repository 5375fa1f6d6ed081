//! Repair of one object, run by the node that leads it (the closest member to its id): where
//! should its shards be now (the placement kept where its nodes are still members and close,
//! filled from the closest members otherwise), which shards are missing, corrupt, behind or
//! on the wrong node, and then, stripe by stripe with the fewest surviving shards first, the
//! missing ones rebuilt from K others (or copied) onto their node. Only when every stripe is
//! whole on the new placement does the metadata switch to it, and only then are copies on
//! nodes that left the placement dropped: full redundancy holds throughout a move.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ds_objects::{Scheme, ShardMeta, StripeLayout, Version};
use ds_proto::{ObjectId, Status};

use crate::node::overlay::MemberList;
use crate::service::ctx::CoreCtx;
use crate::service::meta::ObjectMeta;
use crate::service::owner::{now_ns, OpError, OwnedBytes};
use crate::service::placement::{self, target_of};
use crate::service::reply::{refuse, Refusal};
use crate::service::shards::{self, FetchedShard, Target};

/// What a repair of one object found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectReport {
    pub stripes: u64,
    /// Stripes with all K + M shards of their newest version on the placement (after repair).
    pub full: u64,
    /// Stripes readable but short of shards (after repair: a rebuild failed).
    pub degraded: u64,
    /// Stripes with fewer than K shards of any version: unreadable.
    pub lost: u64,
    pub shards_rebuilt: u64,
    pub bytes_rebuilt: u64,
    /// Shards found missing before the repair (the backlog it started with).
    pub shards_missing: u64,
    /// The placement changed (a node left or joined).
    pub moved: bool,
    /// The object is deleted (or unknown): nothing to repair.
    pub gone: bool,
}

/// Where the shards of an object should be, given who is a member now. Shard i stays on its
/// node while that node is among the `n` closest members (excluding `leaving`); the others go
/// to the closest members not used yet; with fewer members than shards, nodes take several.
pub fn target_placement(
    list: &MemberList,
    object: u128,
    old: &[u128],
    leaving: Option<u128>,
) -> Vec<u128> {
    let n = old.len();
    let candidates: Vec<u128> = list
        .closest(object, n + 1)
        .into_iter()
        .map(|m| m.id)
        .filter(|id| Some(*id) != leaving)
        .take(n)
        .collect();
    if candidates.is_empty() {
        return old.to_vec();
    }
    let mut new: Vec<Option<u128>> = vec![None; n];
    let mut used = BTreeSet::new();
    for (i, node) in old.iter().enumerate() {
        if candidates.contains(node) && used.insert(*node) {
            new[i] = Some(*node);
        }
    }
    let mut free = candidates.iter().filter(|c| !used.contains(*c)).copied();
    let mut spare = candidates.iter().cycle().copied();
    new.into_iter()
        .map(|slot| {
            slot.or_else(|| free.next())
                .unwrap_or_else(|| spare.next().expect("candidates is not empty"))
        })
        .collect()
}

/// Repairs `object` (see the module docs). `leaving`: a node being drained, which gets none.
/// `deep`: stripes to read in full even when every shard seems in place (a corrupt shard).
pub async fn repair_object(
    ctx: &Rc<CoreCtx>,
    object: u128,
    leaving: Option<u128>,
    deep: &BTreeSet<u32>,
    pace: &Pace,
) -> Result<ObjectReport, Refusal> {
    let gone = ObjectReport {
        gone: true,
        ..ObjectReport::default()
    };
    let meta = match placement::read_copies(ctx, object, placement::Wait::All).await {
        Ok(meta) => meta,
        Err(Refusal(Status::NotFound, _)) => return Ok(gone),
        Err(refusal) => return Err(refusal),
    };
    if meta.deleted {
        // Shards left on nodes that were down at the DELETE: tombstone them now.
        // Only where some are left, so a pass over old tombstones writes nothing.
        let list = ctx.member_list();
        let stripes = u32::try_from(meta.stripes()).unwrap_or(u32::MAX);
        let targets: Vec<Target> = meta
            .placement
            .iter()
            .map(|&id| target_of(ctx, &list, id))
            .collect();
        let held = survey(ctx, object, stripes, &meta.placement, &targets, &[], &[]).await;
        let version = ctx.hlc.borrow_mut().now(now_ns()).as_u64();
        for (i, (&node, &target)) in meta.placement.iter().zip(&targets).enumerate() {
            if held
                .iter()
                .any(|&(n, _, shard)| n == node && usize::from(shard) == i)
            {
                let _ = shards::delete_shards(ctx, target, object, (0, stripes), i as u8, version)
                    .await;
            }
        }
        return Ok(gone);
    }
    let corrupt = |what: String| refuse(Status::Corrupt, format!("{}: {what}", ObjectId(object)));
    let scheme = Scheme::new(meta.scheme_k, meta.scheme_m).map_err(|e| corrupt(e.to_string()))?;
    let layout = StripeLayout::new(scheme, meta.stripe_bytes / u32::from(scheme.k()))
        .map_err(|e| corrupt(e.to_string()))?;
    let list = ctx.member_list();
    let old = meta.placement.clone();
    let new = target_placement(&list, object, &old, leaving);
    let n = usize::from(scheme.n());
    let old_t: Vec<Target> = old.iter().map(|&id| target_of(ctx, &list, id)).collect();
    let new_t: Vec<Target> = new.iter().map(|&id| target_of(ctx, &list, id)).collect();
    let stripes = u32::try_from(meta.stripes()).unwrap_or(u32::MAX);
    let mut report = ObjectReport {
        stripes: u64::from(stripes),
        moved: new != old,
        ..ObjectReport::default()
    };
    // Which shards the placement's nodes (old and new) hold, from their indexes (no reads).
    let held = survey(ctx, object, stripes, &old, &old_t, &new, &new_t).await;
    // Stripes with the fewest shards in place first.
    let mut order: Vec<(usize, u32)> = (0..stripes)
        .map(|s| {
            let present = (0..n)
                .filter(|&i| held.contains(&(new[i], s, i as u8)))
                .count();
            (present, s)
        })
        .collect();
    order.sort();
    for (present, stripe) in order {
        if present == n && !report.moved && !deep.contains(&stripe) {
            report.full += 1;
            continue;
        }
        report.shards_missing += (n - present) as u64;
        let wait = pace.charge(u64::from(layout.stripe_bytes()));
        if !wait.is_zero() {
            ctx.sleep(wait).await;
        }
        match repair_stripe(ctx, object, layout, stripe, &old_t, &new_t).await {
            Ok(StripeOutcome::Whole { rebuilt, bytes }) => {
                report.full += 1;
                report.shards_rebuilt += rebuilt;
                report.bytes_rebuilt += bytes;
            }
            Ok(StripeOutcome::Hole) => report.full += 1,
            Ok(StripeOutcome::Short { rebuilt, bytes }) => {
                report.degraded += 1;
                report.shards_rebuilt += rebuilt;
                report.bytes_rebuilt += bytes;
            }
            Ok(StripeOutcome::Lost) => report.lost += 1,
            Err(error) => {
                tracing::debug!(object = %ObjectId(object), stripe, %error, "stripe repair failed");
                report.degraded += 1;
            }
        }
    }
    if report.moved && report.degraded == 0 && report.lost == 0 {
        // Every stripe is whole on the new placement: switch the metadata, then drop the
        // copies on nodes that left it.
        let moved = ObjectMeta {
            placement: new.clone(),
            placement_version: meta.placement_version + 1,
            ..meta.clone()
        };
        placement::update(ctx, object, &moved, placement::Wait::All).await?;
        let version = ctx.hlc.borrow_mut().now(now_ns()).as_u64();
        for (i, (&was, &now)) in old.iter().zip(&new).enumerate() {
            if was != now {
                let _ =
                    shards::delete_shards(ctx, old_t[i], object, (0, stripes), i as u8, version)
                        .await;
            }
        }
    } else {
        report.moved = false;
    }
    Ok(report)
}

/// Which (node, stripe, shard) the nodes of both placements hold.
async fn survey(
    ctx: &Rc<CoreCtx>,
    object: u128,
    stripes: u32,
    old: &[u128],
    old_t: &[Target],
    new: &[u128],
    new_t: &[Target],
) -> BTreeSet<(u128, u32, u8)> {
    let mut masks: BTreeMap<u128, (Target, u64)> = BTreeMap::new();
    for (i, (&node, &target)) in old
        .iter()
        .zip(old_t)
        .chain(new.iter().zip(new_t))
        .enumerate()
    {
        let shard = i % old.len();
        masks.entry(node).or_insert((target, 0)).1 |= 1 << shard;
    }
    let mut held = BTreeSet::new();
    for (node, (target, mask)) in masks {
        if let Ok(list) = shards::list_shards(ctx, target, object, (0, stripes), mask).await {
            for h in list {
                held.insert((node, h.stripe, h.shard));
            }
        }
    }
    held
}

enum StripeOutcome {
    /// Every shard of the newest version is on its new node now.
    Whole { rebuilt: u64, bytes: u64 },
    /// Readable, but some shards could not be written.
    Short { rebuilt: u64, bytes: u64 },
    /// No node holds anything of it (never written).
    Hole,
    /// Fewer than K shards of any version.
    Lost,
}

/// Brings one stripe to all K + M shards of its newest readable version on `new_t`.
async fn repair_stripe(
    ctx: &Rc<CoreCtx>,
    object: u128,
    layout: StripeLayout,
    stripe: u32,
    old_t: &[Target],
    new_t: &[Target],
) -> Result<StripeOutcome, OpError> {
    let n = usize::from(layout.scheme().n());
    let k = usize::from(layout.scheme().k());
    // Every shard from its new node, and from its old one when that differs.
    let mut asks = Vec::new();
    for i in 0..n {
        for (from_new, target) in [(true, new_t[i]), (false, old_t[i])] {
            if !from_new && old_t[i] == new_t[i] {
                continue;
            }
            let task_ctx = ctx.clone();
            let task = ctx.executor.spawn_task(async move {
                shards::read_shard(&task_ctx, target, object, stripe, i as u8).await
            });
            asks.push((i, from_new, task));
        }
    }
    let mut found: Vec<Option<FetchedShard>> = (0..n).map(|_| None).collect();
    // The version each new node holds (None: nothing usable there).
    let mut on_new: Vec<Option<Version>> = vec![None; n];
    let mut answered_absent = 0;
    let mut corrupt_on_new = vec![false; n];
    for (i, from_new, task) in asks {
        match task.await {
            Ok(Some(shard)) => {
                if from_new {
                    on_new[i] = Some(shard.meta.version);
                }
                let better = found[i]
                    .as_ref()
                    .is_none_or(|have| have.meta.version < shard.meta.version);
                if better {
                    if let Some(old) = found[i].replace(shard) {
                        old.release(ctx);
                    }
                } else {
                    shard.release(ctx);
                }
            }
            Ok(None) => answered_absent += 1,
            Err(OpError::Corrupt(_)) if from_new => corrupt_on_new[i] = true,
            Err(_) => {}
        }
    }
    // The newest version with K shards.
    let mut versions: BTreeMap<Version, Vec<usize>> = BTreeMap::new();
    for (i, shard) in found.iter().enumerate() {
        if let Some(shard) = shard {
            versions.entry(shard.meta.version).or_default().push(i);
        }
    }
    let Some((&version, indices)) = versions.iter().rev().find(|(_, idx)| idx.len() >= k) else {
        let outcome = if versions.is_empty() && answered_absent > 0 {
            StripeOutcome::Hole
        } else {
            StripeOutcome::Lost
        };
        release_all(ctx, found);
        return Ok(outcome);
    };
    let indices = indices.clone();
    let header: ShardMeta = found[indices[0]].as_ref().expect("found").meta;
    let need: Vec<usize> = (0..n).filter(|&i| on_new[i] != Some(version)).collect();
    if need.is_empty() {
        release_all(ctx, found);
        return Ok(StripeOutcome::Whole {
            rebuilt: 0,
            bytes: 0,
        });
    }
    // Restore the stripe from K shards of that version, then code every shard again.
    let stripe_len = header.stripe_len();
    let chosen: Vec<Option<&[u8]>> = (0..n)
        .map(|i| {
            found[i]
                .as_ref()
                .filter(|s| s.meta.version == version && indices.iter().take(k).any(|&j| j == i))
                .map(FetchedShard::bytes)
        })
        .collect();
    let mut content = vec![0u8; stripe_len as usize];
    let coded = layout.coded_bytes(stripe_len) as usize;
    let mut parity = vec![vec![0u8; coded]; usize::from(layout.scheme().m())];
    let coding = crate::service::stripes::with_codec(ctx, layout, |codec| {
        codec
            .decode(&chosen, &mut content)
            .and_then(|_| codec.encode(&content, &mut parity))
    });
    release_all(ctx, found);
    match coding {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(OpError::Corrupt(format!("rebuilding: {error}"))),
        Err(Refusal(_, message)) => return Err(OpError::Internal(message)),
    }
    // Shared, so a shard for this node reaches the store without a copy.
    let content = Arc::new(content);
    let parity: Vec<Arc<Vec<u8>>> = parity.into_iter().map(Arc::new).collect();
    let mut rebuilt = 0;
    let mut bytes = 0;
    let mut short = false;
    for i in need {
        let meta = ShardMeta {
            shard: i as u8,
            ..header
        };
        let stored = meta.stored_bytes() as usize;
        let data = if i < k {
            let range = layout.data_range(stripe_len, i as u8);
            let start = range.start as usize;
            assert!(start + stored <= range.end as usize);
            OwnedBytes::shared(content.clone(), start..start + stored)
        } else {
            assert!(stored <= parity[i - k].len());
            OwnedBytes::shared(parity[i - k].clone(), 0..stored)
        };
        let written = match shards::write_shard(ctx, new_t[i], meta, data, None, corrupt_on_new[i])
            .await
        {
            Ok(()) => true,
            // The node holds something as new or newer under this key: the shard itself (a
            // racing repair or write), or a tombstone left when the shard moved away earlier,
            // which a rebuild at the stripe's version cannot replace. Only a read tells.
            Err(OpError::Stale(_)) => matches!(
                shards::read_shard(ctx, new_t[i], object, stripe, i as u8).await,
                Ok(Some(ref held)) if held.meta.version >= version
            ),
            Err(error) => {
                tracing::debug!(object = %ObjectId(object), stripe, shard = i, %error, "shard not rebuilt");
                false
            }
        };
        if written {
            rebuilt += 1;
            bytes += stored as u64;
        } else {
            short = true;
        }
    }
    Ok(if short {
        StripeOutcome::Short { rebuilt, bytes }
    } else {
        StripeOutcome::Whole { rebuilt, bytes }
    })
}

fn release_all(ctx: &CoreCtx, found: Vec<Option<FetchedShard>>) {
    for shard in found.into_iter().flatten() {
        shard.release(ctx);
    }
}

/// A byte budget per second for repair, so it cannot starve client traffic.
pub struct Pace {
    bytes_per_second: u64,
    /// Bytes granted beyond what time has paid for.
    debt: std::cell::Cell<f64>,
    last: std::cell::Cell<std::time::Instant>,
}

impl Pace {
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1),
            debt: std::cell::Cell::new(0.0),
            last: std::cell::Cell::new(std::time::Instant::now()),
        }
    }

    /// How long to wait before spending `bytes` more.
    pub fn charge(&self, bytes: u64) -> Duration {
        let now = std::time::Instant::now();
        let paid = now.duration_since(self.last.get()).as_secs_f64() * self.bytes_per_second as f64;
        self.last.set(now);
        let debt = (self.debt.get() - paid).max(0.0) + bytes as f64;
        self.debt.set(debt);
        // A second's worth may be spent at once.
        let over = debt - self.bytes_per_second as f64;
        Duration::from_secs_f64((over / self.bytes_per_second as f64).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ids: &[u128]) -> MemberList {
        MemberList::of_ids(ids, std::net::SocketAddr::from(([127, 0, 0, 1], 1)))
    }

    #[test]
    fn shards_stay_where_their_nodes_still_are() {
        let members = list(&[1, 2, 3, 4, 5, 6]);
        let old = vec![1, 2, 3, 4, 5, 6];
        assert_eq!(target_placement(&members, 0, &old, None), old);
    }

    #[test]
    fn a_lost_node_is_replaced_by_the_closest_spare() {
        let members = list(&[1, 2, 3, 5, 6, 7, 8]);
        let old = vec![1, 2, 3, 4, 5, 6];
        assert_eq!(
            target_placement(&members, 0, &old, None),
            vec![1, 2, 3, 7, 5, 6]
        );
    }

    #[test]
    fn fewer_members_than_shards_double_up() {
        let members = list(&[1, 2, 3, 4]);
        let new = target_placement(&members, 0, &[1, 2, 3, 4, 5, 6], None);
        assert_eq!(&new[..4], &[1, 2, 3, 4]);
        assert!(new[4..].iter().all(|id| [1, 2, 3, 4].contains(id)));
    }

    #[test]
    fn a_leaving_node_gets_nothing() {
        let members = list(&[1, 2, 3, 4, 5, 6, 7]);
        let new = target_placement(&members, 0, &[1, 2, 3, 4, 5, 6], Some(3));
        assert!(!new.contains(&3));
        assert_eq!(new, vec![1, 2, 7, 4, 5, 6]);
    }

    #[test]
    fn a_closer_newcomer_takes_over_from_the_farthest() {
        // Node 9 joins; for key 8 it is the closest (distance 1), so the farthest old node
        // (6, distance 14) gives way, and only its shard moves.
        let members = list(&[1, 2, 3, 4, 5, 6, 9]);
        let new = target_placement(&members, 8, &[2, 3, 4, 5, 6, 1], None);
        assert_eq!(new, vec![2, 3, 4, 5, 9, 1]);
    }

    #[test]
    fn pace_lets_a_second_through_then_waits() {
        let pace = Pace::new(1000);
        assert_eq!(pace.charge(1000), Duration::ZERO);
        assert!(pace.charge(500) > Duration::from_millis(400));
    }
}
