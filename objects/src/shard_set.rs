//! A set of shard indices of one stripe, as a 64-bit mask (`SHARDS_MAX` is 64): copyable, no
//! allocation, iterates in index order (data shards before parity).

use std::fmt;

use crate::limits::SHARDS_MAX;

#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ShardSet(u64);

impl ShardSet {
    pub const EMPTY: ShardSet = ShardSet(0);

    /// Shards `0..count`: the data shards when `count` is K, every shard when it is N.
    pub fn first(count: u8) -> Self {
        assert!(usize::from(count) <= SHARDS_MAX);
        if usize::from(count) == SHARDS_MAX {
            ShardSet(u64::MAX)
        } else {
            ShardSet((1u64 << count) - 1)
        }
    }

    pub fn from_bits(bits: u64) -> Self {
        ShardSet(bits)
    }

    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn contains(self, shard: u8) -> bool {
        usize::from(shard) < SHARDS_MAX && self.0 & (1u64 << shard) != 0
    }

    pub fn insert(&mut self, shard: u8) {
        assert!(usize::from(shard) < SHARDS_MAX);
        self.0 |= 1u64 << shard;
    }

    pub fn remove(&mut self, shard: u8) {
        assert!(usize::from(shard) < SHARDS_MAX);
        self.0 &= !(1u64 << shard);
    }

    pub fn len(self) -> u8 {
        self.0.count_ones() as u8
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: ShardSet) -> ShardSet {
        ShardSet(self.0 | other.0)
    }

    pub fn intersection(self, other: ShardSet) -> ShardSet {
        ShardSet(self.0 & other.0)
    }

    pub fn difference(self, other: ShardSet) -> ShardSet {
        ShardSet(self.0 & !other.0)
    }

    /// The lowest index in the set.
    pub fn lowest(self) -> Option<u8> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as u8)
    }

    /// The `count` lowest indices of the set (all of it if it has fewer).
    pub fn lowest_n(self, count: u8) -> ShardSet {
        let mut out = ShardSet::EMPTY;
        for shard in self.iter().take(usize::from(count)) {
            out.insert(shard);
        }
        out
    }

    /// Indices in increasing order.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let shard = rest.trailing_zeros() as u8;
            rest &= rest - 1;
            Some(shard)
        })
    }
}

impl FromIterator<u8> for ShardSet {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> Self {
        let mut set = ShardSet::EMPTY;
        for shard in iter {
            set.insert(shard);
        }
        set
    }
}

impl fmt::Debug for ShardSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations() {
        assert_eq!(ShardSet::first(0), ShardSet::EMPTY);
        assert_eq!(ShardSet::first(64).len(), 64);
        assert_eq!(ShardSet::first(3).iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        let mut set: ShardSet = [5, 1, 63].into_iter().collect();
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![1, 5, 63]);
        assert!(set.contains(63));
        assert!(!set.contains(64));
        assert_eq!(set.lowest(), Some(1));
        assert_eq!(set.lowest_n(2), [1, 5].into_iter().collect());
        set.remove(1);
        assert_eq!(set.len(), 2);
        let other: ShardSet = [5, 6].into_iter().collect();
        assert_eq!(set.union(other).len(), 3);
        assert_eq!(set.intersection(other), [5].into_iter().collect());
        assert_eq!(set.difference(other), [63].into_iter().collect());
        assert_eq!(ShardSet::EMPTY.lowest(), None);
        assert_eq!(format!("{set:?}"), "{5, 63}");
    }
}
