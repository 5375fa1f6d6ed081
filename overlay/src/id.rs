//! Node ids and the XOR metric. A node id lives in the same 128-bit space as object ids, so the
//! nodes responsible for an object are the ones whose ids are XOR-closest to the object's id.
//! Also a cheap deterministic hasher for maps keyed by ids (the simulator replays from a seed,
//! so iteration order must not depend on a random hash key).

use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;

use rand::Rng;

/// Bits in an id, and so the number of buckets.
pub const ID_BITS: usize = 128;

/// A node id (or a key: an object id) in the 128-bit XOR space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u128);

impl NodeId {
    /// XOR distance to `other`.
    pub fn distance(self, other: NodeId) -> u128 {
        self.0 ^ other.0
    }

    /// Index of the bucket `other` falls in from `self`'s point of view: the number of leading
    /// bits they share. 0 is the farthest half of the space, 127 the closest single id; `None`
    /// for `other == self`.
    pub fn bucket_index(self, other: NodeId) -> Option<usize> {
        let distance = self.distance(other);
        if distance == 0 {
            None
        } else {
            Some(distance.leading_zeros() as usize)
        }
    }

    /// A uniformly random id in bucket `bucket` of `self` (shares exactly `bucket` leading bits).
    pub fn random_in_bucket<R: Rng>(self, bucket: usize, rng: &mut R) -> NodeId {
        assert!(bucket < ID_BITS);
        let bit = 1u128 << (ID_BITS - 1 - bucket);
        let low = bit - 1;
        let high = !(low | bit);
        let id = NodeId((self.0 & high) | ((self.0 & bit) ^ bit) | (rng.gen::<u128>() & low));
        debug_assert_eq!(self.bucket_index(id), Some(bucket));
        id
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// XOR distance between two ids.
pub fn distance(a: NodeId, b: NodeId) -> u128 {
    a.distance(b)
}

/// A node as the overlay knows it: its id, the address its messages come from, and the port
/// of its data service (the object protocol over TCP, at the same IP as `addr`) as the node
/// itself announced it; 0 when it serves no data (yet), as in the simulator.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NodeInfo {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub data_port: u16,
}

impl NodeInfo {
    /// The address of the node's data service: its overlay IP and its data port; `None` for
    /// data port 0.
    pub fn data_addr(&self) -> Option<SocketAddr> {
        (self.data_port != 0).then(|| SocketAddr::new(self.addr.ip(), self.data_port))
    }
}

/// Multiplicative hasher for ids and request numbers: ids are random already, request numbers
/// are sequential and only need spreading. Deterministic (no per-process key).
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

const HASH_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(29) ^ value).wrapping_mul(HASH_MULTIPLIER);
    }

    fn write_u128(&mut self, value: u128) {
        self.write_u64(value as u64 ^ (value >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `BuildHasher` for maps keyed by ids or request numbers.
pub type IdBuildHasher = BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn bucket_index_is_shared_prefix_length() {
        let a = NodeId(0);
        assert_eq!(a.bucket_index(a), None);
        assert_eq!(a.bucket_index(NodeId(1 << 127)), Some(0));
        assert_eq!(a.bucket_index(NodeId(1)), Some(127));
        assert_eq!(a.bucket_index(NodeId(0b1010)), Some(124));
    }

    #[test]
    fn distance_is_a_metric() {
        let a = NodeId(0x1234);
        let b = NodeId(0xff00);
        let c = NodeId(0x0f0f);
        assert_eq!(distance(a, a), 0);
        assert_eq!(distance(a, b), distance(b, a));
        // XOR satisfies the triangle inequality with XOR itself: d(a,c) = d(a,b) ^ d(b,c).
        assert_eq!(distance(a, c), distance(a, b) ^ distance(b, c));
        assert!(distance(a, c) <= distance(a, b) + distance(b, c));
    }

    #[test]
    fn random_in_bucket_lands_in_that_bucket() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let me = NodeId(rng.gen());
            for bucket in [0, 1, 7, 64, 126, 127] {
                let id = me.random_in_bucket(bucket, &mut rng);
                assert_eq!(me.bucket_index(id), Some(bucket));
            }
        }
    }
}
