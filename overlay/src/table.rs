//! The routing table: up to 128 k-buckets indexed by the length of the prefix a node shares
//! with us. Buckets are created on first use up to the deepest one reached, so a node in a
//! network of N nodes holds about log2(N) buckets.
//!
//! The table only stores and orders; it sends nothing. Eviction pings, suspicion and removal
//! are decided by the overlay (`overlay.rs`) from what the table reports.

use std::time::Instant;

use crate::bucket::{Bucket, Entry, Seen};
use crate::id::{NodeId, NodeInfo, ID_BITS};
use crate::limits::BUCKET_SIZE_MAX;

const _: () = assert!(BUCKET_SIZE_MAX <= 256); // slot = bucket << 8 | position

pub struct RoutingTable {
    self_id: NodeId,
    k: usize,
    buckets: Vec<Bucket>,
    entries: usize,
}

impl RoutingTable {
    pub fn new(self_id: NodeId, k: usize) -> RoutingTable {
        assert!(k > 0);
        assert!(k <= BUCKET_SIZE_MAX);
        RoutingTable {
            self_id,
            k,
            buckets: Vec::new(),
            entries: 0,
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Entries in all buckets.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Buckets created so far (every index below is usable).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    pub fn bucket(&self, index: usize) -> &Bucket {
        &self.buckets[index]
    }

    pub fn bucket_mut(&mut self, index: usize) -> &mut Bucket {
        &mut self.buckets[index]
    }

    /// The bucket for `id`, created (with every shallower one) if needed.
    pub fn bucket_for(&mut self, id: NodeId, now: Instant) -> Option<(usize, &mut Bucket)> {
        let index = self.self_id.bucket_index(id)?;
        while self.buckets.len() <= index {
            self.buckets.push(Bucket::new(now));
        }
        Some((index, &mut self.buckets[index]))
    }

    /// The existing bucket `id` falls in (none is created).
    pub fn existing_bucket_mut(&mut self, id: NodeId) -> Option<&mut Bucket> {
        let index = self.index_of(id)?;
        Some(&mut self.buckets[index])
    }

    fn index_of(&self, id: NodeId) -> Option<usize> {
        let index = self.self_id.bucket_index(id)?;
        (index < self.buckets.len()).then_some(index)
    }

    pub fn get(&self, id: NodeId) -> Option<&Entry> {
        self.buckets[self.index_of(id)?].get(id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.get(id).is_some()
    }

    /// A message from `info` was accepted at `now`. Returns the bucket index and what happened.
    pub fn seen(&mut self, info: NodeInfo, now: Instant) -> Option<(usize, Seen)> {
        let k = self.k;
        let (index, bucket) = self.bucket_for(info.id, now)?;
        let seen = bucket.seen(info, now, k);
        if seen == Seen::Added {
            self.entries += 1;
        }
        assert!(self.buckets[index].len() <= k);
        Some((index, seen))
    }

    /// Inserts `info` into bucket `index`, which must have room (the caller just made it).
    pub fn insert(&mut self, index: usize, info: NodeInfo, now: Instant) {
        assert_eq!(self.self_id.bucket_index(info.id), Some(index));
        let k = self.k;
        let seen = self.buckets[index].seen(info, now, k);
        assert_eq!(seen, Seen::Added);
        self.entries += 1;
    }

    pub fn record_miss(&mut self, id: NodeId) -> Option<u32> {
        let index = self.index_of(id)?;
        self.buckets[index].record_miss(id)
    }

    pub fn remove(&mut self, id: NodeId) -> Option<Entry> {
        let index = self.index_of(id)?;
        let entry = self.buckets[index].remove(id)?;
        assert!(self.entries > 0);
        self.entries -= 1;
        Some(entry)
    }

    /// Every entry, shallow buckets first.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.buckets
            .iter()
            .flat_map(|bucket| bucket.entries().iter())
    }

    /// The `count` entries closest to `key` with fewer than `suspect_after` misses, other than
    /// `exclude`, as (distance to key, node), closest first, into `out`. `scratch` holds
    /// (distance, slot) pairs so that only the chosen entries are read whole.
    ///
    /// Walks buckets in distance order instead of sorting the whole table: bucket b (the key's)
    /// holds the closest nodes, then the deeper buckets together, then b-1, b-2, ... 0.
    pub fn closest(
        &self,
        key: NodeId,
        count: usize,
        suspect_after: u32,
        exclude: Option<NodeId>,
        out: &mut Vec<(u128, NodeInfo)>,
        scratch: &mut Vec<(u128, u32)>,
    ) {
        out.clear();
        scratch.clear();
        if count == 0 {
            return;
        }
        let gather = |scratch: &mut Vec<(u128, u32)>, index: usize| {
            let bucket = &self.buckets[index];
            let slot = |at: usize| ((index as u32) << 8) | at as u32;
            if bucket.has_misses() {
                for (at, (id, misses)) in bucket.ids().iter().zip(bucket.misses()).enumerate() {
                    if *misses < suspect_after && Some(*id) != exclude {
                        scratch.push((id.distance(key), slot(at)));
                    }
                }
            } else {
                for (at, id) in bucket.ids().iter().enumerate() {
                    if Some(*id) != exclude {
                        scratch.push((id.distance(key), slot(at)));
                    }
                }
            }
        };
        let settle = |scratch: &mut Vec<(u128, u32)>, start: usize| {
            scratch[start..].sort_unstable_by_key(|(distance, _)| *distance);
            scratch.truncate(count);
        };
        let key_bucket = self.self_id.bucket_index(key).unwrap_or(ID_BITS);
        let buckets = self.buckets.len();
        if key_bucket < buckets {
            gather(scratch, key_bucket);
            settle(scratch, 0);
            if scratch.len() < count {
                let start = scratch.len();
                for index in key_bucket + 1..buckets {
                    gather(scratch, index);
                }
                settle(scratch, start);
            }
        }
        for index in (0..key_bucket.min(buckets)).rev() {
            if scratch.len() >= count {
                break;
            }
            let start = scratch.len();
            gather(scratch, index);
            settle(scratch, start);
        }
        debug_assert!(scratch.windows(2).all(|pair| pair[0].0 < pair[1].0));
        out.extend(scratch.iter().map(|&(distance, slot)| {
            let bucket = &self.buckets[(slot >> 8) as usize];
            (distance, bucket.entries()[(slot & 0xff) as usize].info)
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn info(id: u128) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            addr: ([10, 0, 0, 1], (id % 60000) as u16).into(),
            data_port: 0,
        }
    }

    #[test]
    fn closest_matches_a_full_sort() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let now = Instant::now();
        for round in 0..50 {
            let me = NodeId(rng.gen());
            let mut table = RoutingTable::new(me, 8);
            for _ in 0..400 {
                // Mostly near ids so that deep buckets fill too.
                let shift = rng.gen_range(0..128);
                let id = me.0 ^ (rng.gen::<u128>() >> shift);
                if id != me.0 {
                    table.seen(info(id), now);
                }
            }
            let key = if round % 5 == 0 {
                me
            } else {
                NodeId(rng.gen())
            };
            for count in [1, 3, 8, 20, 32] {
                let mut out = Vec::new();
                table.closest(key, count, u32::MAX, None, &mut out, &mut Vec::new());
                let mut all: Vec<(u128, NodeInfo)> = table
                    .iter()
                    .map(|entry| (entry.info.id.distance(key), entry.info))
                    .collect();
                all.sort_unstable_by_key(|(distance, _)| *distance);
                all.truncate(count);
                assert_eq!(out, all, "round {round} count {count}");
            }
        }
    }

    #[test]
    fn closest_skips_suspects_and_excluded() {
        let now = Instant::now();
        let mut table = RoutingTable::new(NodeId(0), 4);
        for id in 1..=6 {
            table.seen(info(id), now);
        }
        table.record_miss(NodeId(1));
        table.record_miss(NodeId(1));
        let mut out = Vec::new();
        table.closest(NodeId(0), 10, 2, Some(NodeId(2)), &mut out, &mut Vec::new());
        let ids: Vec<u128> = out.iter().map(|(_, node)| node.id.0).collect();
        assert_eq!(ids, vec![3, 4, 5, 6]);
    }

    #[test]
    fn buckets_never_exceed_k() {
        let now = Instant::now();
        let mut table = RoutingTable::new(NodeId(0), 3);
        // All in bucket 0 (top bit set).
        for id in 0..10u128 {
            table.seen(info((1 << 127) | id), now);
        }
        assert_eq!(table.bucket(0).len(), 3);
        assert_eq!(table.len(), 3);
        assert!(table.remove(NodeId(1 << 127)).is_some());
        assert_eq!(table.len(), 2);
        assert!(!table.contains(NodeId(1 << 127)));
    }
}
