//! Authentication of overlay messages: the cluster secret (HMAC-SHA256 key) and the per-sender
//! replay window.
//!
//! Every node of a cluster holds the same secret; a datagram whose MAC does not verify is
//! dropped, so a node without the secret cannot join or disturb the overlay. The MAC proves
//! "made by a holder of the secret", not "made by the node named as sender": any holder can
//! claim any id (see `docs/overlay.md`, attacks not handled).
//!
//! Replays: each sender numbers its datagrams with a strictly increasing sequence number. The
//! receiver keeps, per sender id, the highest number seen and a bitmap of the `REPLAY_WINDOW`
//! numbers below it (as IPsec does), so reordered datagrams pass once and repeats do not.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::id::{IdBuildHasher, NodeId};
use crate::limits::{REPLAY_PEERS_MAX, REPLAY_WINDOW};

/// Bytes of the MAC at the end of every datagram.
pub const MAC_BYTES: usize = 32;
/// Shortest secret accepted.
pub const SECRET_BYTES_MIN: usize = 16;
/// Longest secret accepted.
pub const SECRET_BYTES_MAX: usize = 1024;

/// Why a cluster secret was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SecretError {
    /// Shorter than `SECRET_BYTES_MIN`: too easy to guess.
    #[error("cluster secret of {bytes} bytes is shorter than {SECRET_BYTES_MIN}")]
    TooShort { bytes: usize },
    /// Longer than `SECRET_BYTES_MAX`.
    #[error("cluster secret of {bytes} bytes is longer than {SECRET_BYTES_MAX}")]
    TooLong { bytes: usize },
}

/// The cluster's shared HMAC key, kept keyed so each MAC starts from a copied state.
#[derive(Clone)]
pub struct ClusterSecret {
    keyed: Hmac<Sha256>,
}

impl ClusterSecret {
    pub fn new(secret: &[u8]) -> Result<ClusterSecret, SecretError> {
        if secret.len() < SECRET_BYTES_MIN {
            return Err(SecretError::TooShort {
                bytes: secret.len(),
            });
        }
        if secret.len() > SECRET_BYTES_MAX {
            return Err(SecretError::TooLong {
                bytes: secret.len(),
            });
        }
        let keyed = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        Ok(ClusterSecret { keyed })
    }

    /// The MAC of `data`.
    pub fn tag(&self, data: &[u8]) -> [u8; MAC_BYTES] {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of `data` (constant-time comparison).
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

#[derive(Clone, Copy, Debug)]
struct Window {
    highest: u64,
    /// Bit i set: sequence `highest - i` was seen.
    seen: u64,
    /// Value of the guard's counter when this sender was last accepted (for forgetting).
    used: u64,
}

/// The sequence number was seen already, or is too far behind to tell.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("sequence number {sequence} from {sender} replayed or too old")]
pub struct Replayed {
    pub sender: NodeId,
    pub sequence: u64,
}

/// Replay windows of the senders heard from, at most `REPLAY_PEERS_MAX`.
///
/// Forgetting a sender (only when the map is full) lets its old datagrams through once more;
/// they still carry a valid MAC, so this is a bounded-memory trade, documented in overlay.md.
#[derive(Default)]
pub struct ReplayGuard {
    peers: HashMap<NodeId, Window, IdBuildHasher>,
    counter: u64,
}

impl ReplayGuard {
    pub fn new() -> ReplayGuard {
        ReplayGuard::default()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Accepts `sequence` from `sender` once; call only after the MAC verified.
    pub fn check(&mut self, sender: NodeId, sequence: u64) -> Result<(), Replayed> {
        self.counter += 1;
        let counter = self.counter;
        if !self.peers.contains_key(&sender) && self.peers.len() >= REPLAY_PEERS_MAX {
            self.forget_oldest();
        }
        let window = self.peers.entry(sender).or_insert(Window {
            highest: sequence,
            seen: 0,
            used: counter,
        });
        if sequence > window.highest {
            let shift = sequence - window.highest;
            window.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                window.seen << shift
            };
            window.highest = sequence;
        }
        let behind = window.highest - sequence;
        if behind >= REPLAY_WINDOW {
            return Err(Replayed { sender, sequence });
        }
        let bit = 1u64 << behind;
        if window.seen & bit != 0 {
            return Err(Replayed { sender, sequence });
        }
        window.seen |= bit;
        window.used = counter;
        assert!(self.peers.len() <= REPLAY_PEERS_MAX);
        Ok(())
    }

    /// Drops the least recently heard eighth of the senders.
    fn forget_oldest(&mut self) {
        let mut used: Vec<u64> = self.peers.values().map(|window| window.used).collect();
        let drop = (used.len() / 8).max(1);
        let (_, cut, _) = used.select_nth_unstable(drop - 1);
        let cut = *cut;
        self.peers.retain(|_, window| window.used > cut);
        assert!(self.peers.len() < REPLAY_PEERS_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_of_bad_length_are_refused() {
        assert_eq!(
            ClusterSecret::new(b"short").unwrap_err(),
            SecretError::TooShort { bytes: 5 }
        );
        assert!(ClusterSecret::new(&[0u8; SECRET_BYTES_MAX + 1]).is_err());
        assert!(ClusterSecret::new(&[7u8; 32]).is_ok());
    }

    #[test]
    fn tags_depend_on_secret_and_data() {
        let a = ClusterSecret::new(b"0123456789abcdef").unwrap();
        let b = ClusterSecret::new(b"0123456789abcdeX").unwrap();
        let tag = a.tag(b"hello");
        assert!(a.verify(b"hello", &tag));
        assert!(!a.verify(b"hellO", &tag));
        assert!(!b.verify(b"hello", &tag));
        assert!(!a.verify(b"hello", &tag[..31]));
    }

    #[test]
    fn window_accepts_reordered_once() {
        let mut guard = ReplayGuard::new();
        let peer = NodeId(9);
        for sequence in [10, 12, 11, 5, 70] {
            assert_eq!(guard.check(peer, sequence), Ok(()), "{sequence}");
        }
        for sequence in [10, 12, 11, 70, 6] {
            assert!(guard.check(peer, sequence).is_err(), "{sequence}");
        }
        // 7 is within 64 of 70 and unseen.
        assert_eq!(guard.check(peer, 7), Ok(()));
        assert!(guard.check(peer, 7).is_err());
        // A different sender has its own window.
        assert_eq!(guard.check(NodeId(10), 10), Ok(()));
    }

    #[test]
    fn full_guard_forgets_least_recent() {
        let mut guard = ReplayGuard::new();
        for peer in 0..(REPLAY_PEERS_MAX as u128 + 10) {
            guard.check(NodeId(peer), 1).unwrap();
        }
        assert!(guard.len() <= REPLAY_PEERS_MAX);
        // The most recent sender is still remembered.
        let last = NodeId(REPLAY_PEERS_MAX as u128 + 9);
        assert!(guard.check(last, 1).is_err());
    }
}
