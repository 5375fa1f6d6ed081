//! One k-bucket: at most k live nodes of one distance range, with when each was last seen.
//!
//! A full bucket never drops a live entry for a newcomer. The newcomer waits as the bucket's
//! single `candidate` while the least recently seen entry (`evicting`) is pinged; only if that
//! entry turns suspect (misses replies) does the candidate take its place. A flood of new ids
//! therefore only replaces the candidate and triggers one ping at a time; live entries answer
//! and stay. The bucket does not send anything itself: the overlay reads `evicting` and pings.

use std::time::Instant;

use crate::id::{NodeId, NodeInfo};

/// A node in a bucket or in the neighbourhood.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub info: NodeInfo,
    /// When a message from the node was last accepted.
    pub last_seen: Instant,
    /// Requests to the node that went unanswered in a row.
    pub misses: u32,
}

/// What `Bucket::seen` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Already there: moved to the most recently seen end.
    Refreshed,
    /// Inserted into free room.
    Added,
    /// Full and not there: the caller decides (candidate + eviction ping).
    Full,
}

#[derive(Clone, Debug, Default)]
pub struct Bucket {
    /// `ids[i]` and `misses[i]` mirror `entries[i]`: the hot scans (find, closest) read these
    /// small arrays instead of whole entries. Order is insertion order, not recency:
    /// `last_seen` says who is least recently seen, so a refresh moves no memory.
    ids: Vec<NodeId>,
    misses: Vec<u32>,
    entries: Vec<Entry>,
    /// Entries with at least one miss; while 0 the scans skip `misses` altogether.
    missing: usize,
    /// A node that contacted us while the bucket was full, waiting for a slot.
    pub candidate: Option<NodeInfo>,
    /// The entry being pinged to see whether the candidate may replace it.
    pub evicting: Option<NodeId>,
    /// When a lookup for an id in this bucket's range last started; `None`: due for refresh.
    pub last_lookup: Option<Instant>,
}

impl Bucket {
    pub fn new(now: Instant) -> Bucket {
        Bucket {
            ids: Vec::new(),
            misses: Vec::new(),
            entries: Vec::new(),
            missing: 0,
            candidate: None,
            evicting: None,
            last_lookup: Some(now),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in no particular order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The ids, in the order of `entries()`.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// Missed replies in a row, in the order of `entries()`.
    pub fn misses(&self) -> &[u32] {
        &self.misses
    }

    /// Whether some entry has missed a reply (else every `misses()` is 0).
    pub fn has_misses(&self) -> bool {
        self.missing > 0
    }

    pub fn position(&self, id: NodeId) -> Option<usize> {
        self.ids.iter().position(|known| *known == id)
    }

    pub fn get(&self, id: NodeId) -> Option<&Entry> {
        self.position(id).map(|at| &self.entries[at])
    }

    /// The least recently seen entry.
    pub fn head(&self) -> Option<&Entry> {
        self.entries.iter().min_by_key(|entry| entry.last_seen)
    }

    /// A message from `info` was accepted at `now`.
    pub fn seen(&mut self, info: NodeInfo, now: Instant, capacity: usize) -> Seen {
        assert!(capacity > 0);
        if let Some(at) = self.position(info.id) {
            let entry = &mut self.entries[at];
            entry.info.addr = info.addr;
            entry.info.data_port = info.data_port;
            entry.last_seen = entry.last_seen.max(now);
            if entry.misses > 0 {
                entry.misses = 0;
                self.misses[at] = 0;
                self.missing -= 1;
            }
            return Seen::Refreshed;
        }
        if self.entries.len() < capacity {
            self.ids.push(info.id);
            self.misses.push(0);
            self.entries.push(Entry {
                info,
                last_seen: now,
                misses: 0,
            });
            return Seen::Added;
        }
        assert_eq!(self.entries.len(), capacity);
        Seen::Full
    }

    /// Counts a missed reply; returns the misses in a row, or `None` if `id` is not here.
    pub fn record_miss(&mut self, id: NodeId) -> Option<u32> {
        let at = self.position(id)?;
        let entry = &mut self.entries[at];
        if entry.misses == 0 {
            self.missing += 1;
        }
        entry.misses += 1;
        self.misses[at] = entry.misses;
        Some(entry.misses)
    }

    pub fn remove(&mut self, id: NodeId) -> Option<Entry> {
        let at = self.position(id)?;
        if self.evicting == Some(id) {
            self.evicting = None;
        }
        self.ids.swap_remove(at);
        self.misses.swap_remove(at);
        let entry = self.entries.swap_remove(at);
        if entry.misses > 0 {
            self.missing -= 1;
        }
        debug_assert!(self
            .ids
            .iter()
            .zip(&self.entries)
            .all(|(id, e)| *id == e.info.id));
        debug_assert_eq!(self.missing, self.misses.iter().filter(|m| **m > 0).count());
        Some(entry)
    }

    /// The first entry with at least `threshold` misses (a suspect), if any.
    pub fn suspect(&self, threshold: u32) -> Option<NodeId> {
        if self.missing == 0 {
            return None;
        }
        let at = self.misses.iter().position(|misses| *misses >= threshold)?;
        Some(self.ids[at])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn info(id: u128) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            addr: ([127, 0, 0, 1], 1000 + id as u16).into(),
            data_port: 0,
        }
    }

    #[test]
    fn keeps_least_recently_seen_first() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(t0);
        assert_eq!(bucket.seen(info(1), t0, 3), Seen::Added);
        assert_eq!(bucket.seen(info(2), t0, 3), Seen::Added);
        assert_eq!(bucket.seen(info(3), t0, 3), Seen::Added);
        assert_eq!(bucket.head().unwrap().info.id, NodeId(1));
        assert_eq!(
            bucket.seen(info(1), t0 + Duration::from_secs(1), 3),
            Seen::Refreshed
        );
        assert_eq!(bucket.head().unwrap().info.id, NodeId(2));
        assert_eq!(
            bucket.seen(info(2), t0 + Duration::from_secs(2), 3),
            Seen::Refreshed
        );
        assert_eq!(bucket.head().unwrap().info.id, NodeId(3));
    }

    #[test]
    fn full_bucket_refuses_newcomers() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(t0);
        for id in 1..=2 {
            bucket.seen(info(id), t0, 2);
        }
        assert_eq!(bucket.seen(info(9), t0, 2), Seen::Full);
        assert_eq!(bucket.len(), 2);
        assert!(bucket.get(NodeId(9)).is_none());
    }

    #[test]
    fn misses_reset_when_seen() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(t0);
        bucket.seen(info(1), t0, 2);
        assert_eq!(bucket.record_miss(NodeId(1)), Some(1));
        assert_eq!(bucket.record_miss(NodeId(1)), Some(2));
        assert_eq!(bucket.suspect(2), Some(NodeId(1)));
        bucket.seen(info(1), t0, 2);
        assert_eq!(bucket.get(NodeId(1)).unwrap().misses, 0);
        assert_eq!(bucket.suspect(2), None);
        assert_eq!(bucket.record_miss(NodeId(7)), None);
    }

    #[test]
    fn remove_clears_eviction() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(t0);
        bucket.seen(info(1), t0, 2);
        bucket.evicting = Some(NodeId(1));
        assert!(bucket.remove(NodeId(1)).is_some());
        assert_eq!(bucket.evicting, None);
        assert!(bucket.is_empty());
    }
}
