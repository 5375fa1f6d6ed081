//! The node's own neighbourhood: the verified live nodes closest to it, closest first, kept
//! apart from the routing table so that it is exact even where a bucket is full. Repair uses it
//! to know which nodes share responsibility with this one.
//!
//! Entries come in only once a node has answered or contacted us (never from a NODES list
//! alone) and go out when the node leaves, fails, or is pushed past the far end by closer ones.

use std::time::Instant;

use crate::bucket::Entry;
use crate::id::{NodeId, NodeInfo};
use crate::limits::NEIGHBOURHOOD_SIZE_MAX;

pub struct Neighbourhood {
    self_id: NodeId,
    capacity: usize,
    /// Sorted by distance to `self_id`; `distances[i]`, `infos[i]` and `states[i]` describe
    /// one node. The distances make the common case (a far node: not admitted) one compare.
    distances: Vec<u128>,
    infos: Vec<NodeInfo>,
    states: Vec<Entry>,
}

impl Neighbourhood {
    pub fn new(self_id: NodeId, capacity: usize) -> Neighbourhood {
        assert!(capacity > 0);
        assert!(capacity <= NEIGHBOURHOOD_SIZE_MAX);
        Neighbourhood {
            self_id,
            capacity,
            distances: Vec::with_capacity(capacity),
            infos: Vec::with_capacity(capacity),
            states: Vec::with_capacity(capacity),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.infos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.infos.len() == self.capacity
    }

    pub fn infos(&self) -> &[NodeInfo] {
        &self.infos
    }

    pub fn entries(&self) -> &[Entry] {
        &self.states
    }

    /// XOR is a bijection for a fixed `self_id`, so equal distance means the same node.
    fn search(&self, id: NodeId) -> Result<usize, usize> {
        let distance = self.self_id.distance(id);
        if self.is_full() && distance > self.distances[self.capacity - 1] {
            return Err(self.capacity);
        }
        self.distances.binary_search(&distance)
    }

    pub fn get(&self, id: NodeId) -> Option<&Entry> {
        self.search(id).ok().map(|at| &self.states[at])
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.search(id).is_ok()
    }

    /// Whether a node not yet here would get in.
    pub fn would_admit(&self, id: NodeId) -> bool {
        if id == self.self_id {
            return false;
        }
        match self.search(id) {
            Ok(_) => false,
            Err(at) => at < self.capacity,
        }
    }

    /// A message from `info` was accepted at `last_seen`. Returns whether the membership, an
    /// address or a data port changed.
    pub fn seen(&mut self, info: NodeInfo, last_seen: Instant) -> bool {
        if info.id == self.self_id {
            return false;
        }
        match self.search(info.id) {
            Ok(at) => {
                let state = &mut self.states[at];
                state.last_seen = state.last_seen.max(last_seen);
                state.misses = 0;
                let moved = self.infos[at] != info;
                self.infos[at] = info;
                state.info = info;
                moved
            }
            Err(at) if at < self.capacity => {
                self.distances.insert(at, self.self_id.distance(info.id));
                self.infos.insert(at, info);
                self.states.insert(
                    at,
                    Entry {
                        info,
                        last_seen,
                        misses: 0,
                    },
                );
                self.distances.truncate(self.capacity);
                self.infos.truncate(self.capacity);
                self.states.truncate(self.capacity);
                debug_assert!(self.is_sorted());
                true
            }
            Err(_) => false,
        }
    }

    pub fn record_miss(&mut self, id: NodeId) -> Option<u32> {
        let at = self.search(id).ok()?;
        self.states[at].misses += 1;
        Some(self.states[at].misses)
    }

    pub fn remove(&mut self, id: NodeId) -> Option<Entry> {
        let at = self.search(id).ok()?;
        self.distances.remove(at);
        self.infos.remove(at);
        Some(self.states.remove(at))
    }

    fn is_sorted(&self) -> bool {
        self.distances.windows(2).all(|pair| pair[0] < pair[1])
            && self
                .infos
                .iter()
                .zip(&self.distances)
                .all(|(info, distance)| self.self_id.distance(info.id) == *distance)
            && self
                .infos
                .iter()
                .zip(&self.states)
                .all(|(info, state)| info.id == state.info.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u128) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            addr: ([10, 0, 0, 2], id as u16).into(),
            data_port: 0,
        }
    }

    #[test]
    fn keeps_the_closest_in_order() {
        let now = Instant::now();
        let mut set = Neighbourhood::new(NodeId(0b1000), 3);
        for id in [0b0001, 0b1111, 0b1001, 0b1100, 0b1010] {
            set.seen(info(id), now);
        }
        let ids: Vec<u128> = set.infos().iter().map(|node| node.id.0).collect();
        assert_eq!(ids, vec![0b1001, 0b1010, 0b1100]);
        assert!(!set.would_admit(NodeId(0b1111)));
        assert!(set.would_admit(NodeId(0b1011)));
        assert!(!set.would_admit(NodeId(0b1000)));
        assert!(set.remove(NodeId(0b1010)).is_some());
        assert!(set.would_admit(NodeId(0b1111)));
        assert!(set.is_sorted());
    }

    #[test]
    fn misses_reset_when_seen() {
        let now = Instant::now();
        let mut set = Neighbourhood::new(NodeId(0), 2);
        set.seen(info(5), now);
        assert_eq!(set.record_miss(NodeId(5)), Some(1));
        assert!(!set.seen(info(5), now));
        assert_eq!(set.get(NodeId(5)).unwrap().misses, 0);
        assert_eq!(set.record_miss(NodeId(6)), None);
    }
}
