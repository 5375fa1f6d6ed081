//! Responsible sets found by lookup, answered again while fresh. An entry is dropped when it is
//! older than the TTL or names a node removed since; a node that joined meanwhile is only seen
//! after the TTL (documented in `docs/overlay.md`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::id::{IdBuildHasher, NodeId, NodeInfo};
use crate::limits::RESPONSIBLE_CACHE_MAX;
use crate::removed::RemovedMemory;

struct CacheEntry {
    nodes: Vec<NodeInfo>,
    /// How many nodes the lookup looked for (more than `nodes.len()` in a small network).
    width: usize,
    at: Instant,
}

pub struct ResponsibleCache {
    map: HashMap<NodeId, CacheEntry, IdBuildHasher>,
    ttl: Duration,
}

impl ResponsibleCache {
    pub fn new(ttl: Duration) -> ResponsibleCache {
        ResponsibleCache {
            map: HashMap::default(),
            ttl,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The `n` closest nodes to `key` if a fresh, still valid answer is cached.
    pub fn get(
        &mut self,
        key: NodeId,
        n: usize,
        now: Instant,
        removed: &RemovedMemory,
    ) -> Option<Vec<NodeInfo>> {
        let entry = self.map.get(&key)?;
        let fresh = now.saturating_duration_since(entry.at) < self.ttl;
        let valid = entry
            .nodes
            .iter()
            .all(|node| removed.get(node.id, now).is_none());
        if !fresh || !valid {
            self.map.remove(&key);
            return None;
        }
        if entry.nodes.len() < n && entry.width < n {
            return None;
        }
        Some(entry.nodes.iter().take(n).copied().collect())
    }

    pub fn insert(&mut self, key: NodeId, nodes: Vec<NodeInfo>, width: usize, now: Instant) {
        if !self.map.contains_key(&key) && self.map.len() >= RESPONSIBLE_CACHE_MAX {
            let ttl = self.ttl;
            self.map
                .retain(|_, entry| now.saturating_duration_since(entry.at) < ttl);
            if self.map.len() >= RESPONSIBLE_CACHE_MAX {
                // All fresh: start over rather than scan for the oldest on every insert.
                self.map.clear();
            }
        }
        self.map.insert(
            key,
            CacheEntry {
                nodes,
                width,
                at: now,
            },
        );
        assert!(self.map.len() <= RESPONSIBLE_CACHE_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RemoveReason;

    fn info(id: u128) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            addr: ([10, 0, 0, 5], 1).into(),
            data_port: 0,
        }
    }

    #[test]
    fn fresh_valid_entries_only() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(5);
        let mut cache = ResponsibleCache::new(ttl);
        let mut removed = RemovedMemory::new(Duration::from_secs(60));
        cache.insert(NodeId(1), vec![info(1), info(2), info(3)], 3, t0);
        assert_eq!(
            cache.get(NodeId(1), 2, t0, &removed),
            Some(vec![info(1), info(2)])
        );
        assert_eq!(cache.get(NodeId(1), 4, t0, &removed), None);
        assert_eq!(cache.get(NodeId(1), 3, t0 + ttl, &removed), None);
        cache.insert(NodeId(1), vec![info(1), info(2)], 3, t0);
        removed.insert(NodeId(2), RemoveReason::Left, t0);
        assert_eq!(cache.get(NodeId(1), 1, t0, &removed), None);
        assert!(cache.is_empty());
        // A small network: the lookup wanted 20 and found 2; any n up to 20 is answered.
        cache.insert(NodeId(7), vec![info(1), info(3)], 20, t0);
        assert_eq!(
            cache.get(NodeId(7), 6, t0, &removed),
            Some(vec![info(1), info(3)])
        );
    }
}
