//! The delta: entries inserted since the last merge, in an open-addressing table of fixed size.
//!
//! Linear probing from a home slot that grows with the fingerprint (`fp * slots / 2^64`), with
//! every probe run kept in fingerprint order (Amble and Knuth's ordered hashing, the same order
//! Robin Hood hashing keeps). So a lookup stops as soon as it passes where `fp` would be, which
//! keeps misses as short as hits at high load, and the whole table is already sorted apart from
//! the run that wraps around the end: a merge sorts it in place with one rotation.
//!
//! The table never grows: the index sizes it for the entries it may take before the next merge.

use super::packed;
use super::DELTA_LOAD_PERCENT_MAX;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Entry {
    pub fp: u64,
    pub value: u64,
}

pub(super) struct Delta {
    /// Meaningful only where `occupied` is set.
    slots: Vec<Entry>,
    /// One bit per slot.
    occupied: Vec<u64>,
    len: usize,
    /// Entries it may hold; at least one slot always stays empty, which ends every probe.
    room: usize,
}

impl Delta {
    /// No room: the first insert must replace it by one with room.
    pub fn empty() -> Self {
        Self {
            slots: Vec::new(),
            occupied: Vec::new(),
            len: 0,
            room: 0,
        }
    }

    pub fn with_room(room: usize) -> Self {
        Self::with_room_in(Vec::new(), room)
    }

    /// Reuses `storage` (a previous delta's, from `into_sorted`) for the slots: a merge then
    /// does not fault in fresh pages for each new delta.
    pub fn with_room_in(mut storage: Vec<Entry>, room: usize) -> Self {
        assert!(room > 0);
        let slots = (room * 100).div_ceil(DELTA_LOAD_PERCENT_MAX).max(room + 1);
        storage.clear();
        storage.shrink_to(slots);
        storage.reserve_exact(slots);
        storage.resize(slots, Entry::default());
        let mut occupied = Vec::new();
        occupied.reserve_exact(slots.div_ceil(64));
        occupied.resize(slots.div_ceil(64), 0);
        Self {
            slots: storage,
            occupied,
            len: 0,
            room,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn room(&self) -> usize {
        self.room
    }

    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Entry>() + self.occupied.capacity() * size_of::<u64>()
    }

    /// Order-preserving: `a < b` implies `home(a) <= home(b)`.
    #[inline]
    fn home(&self, fp: u64) -> usize {
        ((u128::from(fp) * self.slots.len() as u128) >> 64) as usize
    }

    #[inline]
    fn is_occupied(&self, slot: usize) -> bool {
        self.occupied[slot / 64] & (1 << (slot % 64)) != 0
    }

    #[inline]
    fn set_occupied(&mut self, slot: usize, occupied: bool) {
        if occupied {
            self.occupied[slot / 64] |= 1 << (slot % 64);
        } else {
            self.occupied[slot / 64] &= !(1 << (slot % 64));
        }
    }

    #[inline]
    fn next(&self, slot: usize) -> usize {
        if slot + 1 == self.slots.len() {
            0
        } else {
            slot + 1
        }
    }

    /// How far the entry in `slot` sits past its home.
    #[inline]
    fn displacement(&self, slot: usize) -> usize {
        let home = self.home(self.slots[slot].fp);
        if slot >= home {
            slot - home
        } else {
            slot + self.slots.len() - home
        }
    }

    /// Calls `found` with the slot of every entry whose fingerprint is `fp`; stops early when it
    /// returns true.
    #[inline]
    fn probe(&self, fp: u64, mut found: impl FnMut(usize) -> bool) {
        if self.len == 0 {
            return;
        }
        let mut slot = self.home(fp);
        let mut distance = 0;
        while self.is_occupied(slot) {
            let displacement = self.displacement(slot);
            if displacement < distance {
                return; // an entry from a later home: fp's run has ended
            }
            if displacement == distance {
                let here = self.slots[slot].fp;
                if here == fp {
                    if found(slot) {
                        return;
                    }
                } else if here > fp {
                    return;
                }
            }
            slot = self.next(slot);
            distance += 1;
        }
    }

    #[inline]
    pub fn prefetch(&self, fp: u64) {
        if self.len > 0 {
            packed::prefetch(&self.slots, self.home(fp));
        }
    }

    pub fn candidates(&self, fp: u64, out: &mut Vec<u64>) {
        self.probe(fp, |slot| {
            out.push(self.slots[slot].value);
            false
        });
    }

    pub fn find(&self, fp: u64, value: u64) -> Option<usize> {
        let mut at = None;
        self.probe(fp, |slot| {
            if self.slots[slot].value == value {
                at = Some(slot);
            }
            at.is_some()
        });
        at
    }

    pub fn set_value(&mut self, slot: usize, value: u64) {
        assert!(self.is_occupied(slot));
        self.slots[slot].value = value;
    }

    pub fn insert(&mut self, entry: Entry) {
        assert!(
            self.len < self.room,
            "delta full: the index merges before this"
        );
        let mut slot = self.home(entry.fp);
        let mut distance = 0;
        // Find where the entry belongs in its run: before the first entry that sorts after it.
        while self.is_occupied(slot) {
            let displacement = self.displacement(slot);
            if displacement < distance
                || (displacement == distance && self.slots[slot].fp > entry.fp)
            {
                break;
            }
            slot = self.next(slot);
            distance += 1;
        }
        // Shift the rest of the run one slot on, into the next empty slot.
        let mut empty = slot;
        while self.is_occupied(empty) {
            empty = self.next(empty);
        }
        self.set_occupied(empty, true);
        let mut to = empty;
        while to != slot {
            let from = if to == 0 {
                self.slots.len() - 1
            } else {
                to - 1
            };
            self.slots[to] = self.slots[from];
            to = from;
        }
        self.slots[slot] = entry;
        self.len += 1;
    }

    /// Removes the entry in `slot`, shifting the rest of its run back (no tombstones).
    pub fn remove_at(&mut self, mut slot: usize) {
        assert!(self.is_occupied(slot));
        loop {
            let next = self.next(slot);
            if !self.is_occupied(next) || self.displacement(next) == 0 {
                self.set_occupied(slot, false);
                break;
            }
            self.slots[slot] = self.slots[next];
            slot = next;
        }
        self.len -= 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        (0..self.slots.len())
            .filter(|&slot| self.is_occupied(slot))
            .map(|slot| self.slots[slot])
    }

    /// Every entry sorted by fingerprint, in the table's own memory (no second buffer).
    pub fn into_sorted(mut self) -> Vec<Entry> {
        // Runs are sorted and start at their home, so the table is sorted except that the entries
        // of the run that wraps past the end sit at its start: count them, compact every entry to
        // the front keeping slot order, and rotate the wrapped ones to the back.
        let mut wrapped = 0;
        while wrapped < self.slots.len()
            && self.is_occupied(wrapped)
            && self.home(self.slots[wrapped].fp) > wrapped
        {
            wrapped += 1;
        }
        let mut kept = 0;
        for slot in 0..self.slots.len() {
            if self.is_occupied(slot) {
                self.slots[kept] = self.slots[slot];
                kept += 1;
            }
        }
        assert_eq!(kept, self.len);
        let mut entries = std::mem::take(&mut self.slots);
        entries.truncate(kept);
        entries.rotate_left(wrapped);
        debug_assert!(entries.windows(2).all(|pair| pair[0].fp <= pair[1].fp));
        entries
    }

    /// O(slots). Every run sorted, every entry reachable from its home, `len` right.
    pub fn check(&self) {
        let mut count = 0;
        for slot in 0..self.slots.len() {
            if !self.is_occupied(slot) {
                continue;
            }
            count += 1;
            let next = self.next(slot);
            if self.is_occupied(next) && self.displacement(next) > 0 {
                let (here, after) = (self.slots[slot].fp, self.slots[next].fp);
                let same_home = self.home(here) == self.home(after);
                assert!(
                    !same_home || here <= after,
                    "delta run out of order at slot {slot}"
                );
                assert!(self.displacement(next) <= self.displacement(slot) + 1);
            }
            let entry = self.slots[slot];
            assert_eq!(
                self.find(entry.fp, entry.value),
                Some(slot),
                "slot {slot} unreachable"
            );
        }
        assert_eq!(count, self.len);
        assert!(self.len <= self.room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(entries: &[Entry]) -> Vec<Entry> {
        let mut entries = entries.to_vec();
        entries.sort();
        entries
    }

    #[test]
    fn wrapping_run_sorts_and_finds() {
        let mut delta = Delta::with_room(8);
        // Fingerprints whose home is the last slot, so their run wraps to the start.
        let entries: Vec<Entry> = (0..6)
            .map(|i| Entry {
                fp: u64::MAX - i * 3,
                value: i,
            })
            .chain([Entry { fp: 5, value: 100 }, Entry { fp: 5, value: 101 }])
            .collect();
        for &entry in &entries {
            delta.insert(entry);
            delta.check();
        }
        for &entry in &entries {
            assert!(delta.find(entry.fp, entry.value).is_some());
        }
        let mut out = Vec::new();
        delta.candidates(5, &mut out);
        out.sort();
        assert_eq!(out, [100, 101]);
        let slot = delta.find(u64::MAX, 0).unwrap();
        delta.remove_at(slot);
        delta.check();
        assert!(delta.find(u64::MAX, 0).is_none());
        let all: Vec<Entry> = entries[1..].to_vec();
        let got = delta.into_sorted();
        assert_eq!(got.iter().map(|e| e.fp).collect::<Vec<_>>(), {
            let mut fps: Vec<u64> = all.iter().map(|e| e.fp).collect();
            fps.sort();
            fps
        });
        assert_eq!(sorted(&got), sorted(&all));
    }

    #[test]
    fn fills_to_room() {
        let room = 1000;
        let mut delta = Delta::with_room(room);
        let mut x = 1u64;
        for value in 0..room as u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            delta.insert(Entry { fp: x, value });
        }
        delta.check();
        let entries = delta.into_sorted();
        assert_eq!(entries.len(), room);
    }
}
