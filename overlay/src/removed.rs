//! Nodes removed recently (left or unresponsive), so that other nodes' NODES lists, which lag
//! behind, do not bring them straight back. Bounded; entries expire after `removed_memory`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::event::RemoveReason;
use crate::id::{IdBuildHasher, NodeId};
use crate::limits::REMOVED_MEMORY_MAX;

pub struct RemovedMemory {
    map: HashMap<NodeId, (Instant, RemoveReason), IdBuildHasher>,
    ttl: Duration,
}

impl RemovedMemory {
    pub fn new(ttl: Duration) -> RemovedMemory {
        RemovedMemory {
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

    /// Why `id` was removed, if that was less than `ttl` ago.
    pub fn get(&self, id: NodeId, now: Instant) -> Option<RemoveReason> {
        if self.map.is_empty() {
            return None;
        }
        let &(at, reason) = self.map.get(&id)?;
        (now.saturating_duration_since(at) < self.ttl).then_some(reason)
    }

    pub fn insert(&mut self, id: NodeId, reason: RemoveReason, now: Instant) {
        if !self.map.contains_key(&id) && self.map.len() >= REMOVED_MEMORY_MAX {
            let ttl = self.ttl;
            self.map
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            if self.map.len() >= REMOVED_MEMORY_MAX {
                // Forget the oldest eighth.
                let mut times: Vec<Instant> = self.map.values().map(|(at, _)| *at).collect();
                let drop = times.len() / 8;
                let (_, cut, _) = times.select_nth_unstable(drop);
                let cut = *cut;
                self.map.retain(|_, (at, _)| *at > cut);
            }
        }
        self.map.insert(id, (now, reason));
        assert!(self.map.len() <= REMOVED_MEMORY_MAX);
    }

    pub fn remove(&mut self, id: NodeId) {
        if !self.map.is_empty() {
            self.map.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_stays_bounded() {
        let t0 = Instant::now();
        let mut memory = RemovedMemory::new(Duration::from_secs(10));
        memory.insert(NodeId(1), RemoveReason::Left, t0);
        assert_eq!(memory.get(NodeId(1), t0), Some(RemoveReason::Left));
        assert_eq!(memory.get(NodeId(1), t0 + Duration::from_secs(10)), None);
        for id in 0..(REMOVED_MEMORY_MAX as u128 * 2) {
            memory.insert(
                NodeId(id),
                RemoveReason::Unresponsive,
                t0 + Duration::from_nanos(id as u64),
            );
        }
        assert!(memory.len() <= REMOVED_MEMORY_MAX);
        let last = NodeId(REMOVED_MEMORY_MAX as u128 * 2 - 1);
        assert!(memory.get(last, t0 + Duration::from_secs(1)).is_some());
    }
}
