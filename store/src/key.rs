//! The identity of one stored shard and its 64-bit fingerprint, the index's key.

use std::fmt;

/// One shard of one stripe of one object: the unit the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey {
    pub object: u128,
    pub stripe: u32,
    pub shard: u8,
}

impl ShardKey {
    pub fn new(object: u128, stripe: u32, shard: u8) -> Self {
        Self {
            object,
            stripe,
            shard,
        }
    }

    /// A well-mixed 64-bit hash. Object ids are random, but stripes and shards are not, so all
    /// three are mixed, one splitmix64 finaliser round per input word.
    pub fn fingerprint(&self) -> u64 {
        let low = self.object as u64;
        let high = (self.object >> 64) as u64;
        let tail = (u64::from(self.stripe) << 8) | u64::from(self.shard);
        let mut hash = mix(low ^ 0x9e37_79b9_7f4a_7c15);
        hash = mix(hash ^ high);
        mix(hash ^ tail)
    }
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}/{}/{}", self.object, self.stripe, self.shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn fingerprints_of_neighbouring_keys_differ() {
        let mut seen = HashSet::new();
        for object in 0..64u128 {
            for stripe in 0..64 {
                for shard in 0..8 {
                    assert!(seen.insert(ShardKey::new(object, stripe, shard).fingerprint()));
                }
            }
        }
    }
}
