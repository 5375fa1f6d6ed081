//! Quorums, sans-IO: how many shards of a stripe must be durable before a write is acknowledged
//! ([`WriteTracker`]), and which shards a read asks for and when it may decode ([`ReadPlan`],
//! in `quorum/read.rs`).
//!
//! With W durable shards per acknowledged write, any N − W + 1 answers include at least one
//! target holding that write (or a newer one). The default W = K + ⌈M/2⌉ makes that number at
//! most K whenever K > ⌊M/2⌋, so the K shards a read needs anyway also prove it saw every
//! acknowledged write. A read that could not get that many answers still serves what survives
//! and says so (`ReadChoice::confirmed`).
//!
//! What it does not do: send anything, read a clock, or touch bytes. The coordinator drives one
//! tracker or plan per stripe and feeds it what its peers answer.

mod read;

pub use read::{ReadChoice, ReadError, ReadPlan, ReadState, ShardReply};

use crate::scheme::Scheme;
use crate::shard_set::ShardSet;

/// W: shards of a stripe that must be durable before a write is acknowledged. `K ≤ W ≤ N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WriteQuorum {
    scheme: Scheme,
    w: u8,
}

/// Why a write quorum is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// W is below K (an acknowledged write might not be restorable) or above N (never reached).
    #[error("write quorum {w} is outside {k}..={n} for scheme {k}+{m}", m = n - k)]
    OutOfRange { w: u8, k: u8, n: u8 },
}

impl WriteQuorum {
    /// K + ⌈M/2⌉: an acknowledged write survives the loss of ⌊M/2⌋ of its durable shards, and
    /// reads of K shards see it (when K > ⌊M/2⌋).
    pub fn default_for(scheme: Scheme) -> Self {
        let w = scheme.k() + scheme.m().div_ceil(2);
        Self::new(scheme, w).expect("K + ceil(M/2) is within K..=N")
    }

    pub fn new(scheme: Scheme, w: u8) -> Result<Self, QuorumError> {
        if w < scheme.k() || w > scheme.n() {
            return Err(QuorumError::OutOfRange {
                w,
                k: scheme.k(),
                n: scheme.n(),
            });
        }
        Ok(Self { scheme, w })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn w(&self) -> u8 {
        self.w
    }

    /// Answers (found or absent) a read needs to overlap every acknowledged write: N − W + 1.
    pub fn read_answers(&self) -> u8 {
        self.scheme.n() - self.w + 1
    }
}

/// What became of one shard write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardOutcome {
    /// The target made the shard durable.
    Durable,
    /// The target refused it as stale: it already holds this version or a newer one of the
    /// shard. Counts towards the quorum: under last-writer-wins the slot is at least as new as
    /// this write (and a retried write finds its own earlier copy this way).
    Superseded,
    /// The target answered with an error, or could not be reached.
    Failed,
    /// No answer in time: the shard may or may not be durable.
    TimedOut,
}

/// Where a stripe write stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteState {
    /// Fewer than W durable, and W still reachable.
    Pending,
    /// W shards durable: acknowledge (once every stripe of the request is). Final.
    Acked,
    /// W can no longer be reached: nothing may be acknowledged. Final.
    Failed(WriteError),
}

/// Why a stripe write was not acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Too many shard writes failed or timed out for the quorum.
    #[error(
        "write quorum lost: {durable} shards durable of {quorum} needed, {failed} failed, \
         {timed_out} timed out (those may still land); nothing was acknowledged"
    )]
    QuorumLost {
        durable: u8,
        failed: u8,
        timed_out: u8,
        quorum: u8,
    },
}

/// Counts the outcomes of the N shard writes of one stripe version (shard i to the i-th target).
#[derive(Clone, Debug)]
pub struct WriteTracker {
    quorum: WriteQuorum,
    durable: ShardSet,
    superseded: ShardSet,
    failed: ShardSet,
    timed_out: ShardSet,
    state: WriteState,
}

impl WriteTracker {
    pub fn new(quorum: WriteQuorum) -> Self {
        Self {
            quorum,
            durable: ShardSet::EMPTY,
            superseded: ShardSet::EMPTY,
            failed: ShardSet::EMPTY,
            timed_out: ShardSet::EMPTY,
            state: WriteState::Pending,
        }
    }

    /// Records the outcome of shard `shard` (one per shard; a shard with no target is reported
    /// `Failed` at once). Outcomes after the state became final are recorded and change nothing.
    pub fn handle_outcome(&mut self, shard: u8, outcome: ShardOutcome) -> WriteState {
        assert!(shard < self.quorum.scheme().n());
        assert!(
            !self.resolved().contains(shard),
            "shard {shard} reported twice"
        );
        match outcome {
            ShardOutcome::Durable => self.durable.insert(shard),
            ShardOutcome::Superseded => self.superseded.insert(shard),
            ShardOutcome::Failed => self.failed.insert(shard),
            ShardOutcome::TimedOut => self.timed_out.insert(shard),
        }
        if self.state == WriteState::Pending {
            let landed = self.landed().len();
            let unresolved = self.unresolved().len();
            if landed >= self.quorum.w() {
                self.state = WriteState::Acked;
            } else if landed + unresolved < self.quorum.w() {
                self.state = WriteState::Failed(WriteError::QuorumLost {
                    durable: landed,
                    failed: self.failed.len(),
                    timed_out: self.timed_out.len(),
                    quorum: self.quorum.w(),
                });
            }
        }
        self.state
    }

    pub fn state(&self) -> WriteState {
        self.state
    }

    /// Shards whose target holds this version or a newer one.
    pub fn landed(&self) -> ShardSet {
        self.durable.union(self.superseded)
    }

    /// Shards that failed or timed out: once acknowledged, repair's business.
    pub fn missed(&self) -> ShardSet {
        self.failed.union(self.timed_out)
    }

    /// Shards with no outcome yet.
    pub fn unresolved(&self) -> ShardSet {
        ShardSet::first(self.quorum.scheme().n()).difference(self.resolved())
    }

    fn resolved(&self) -> ShardSet {
        self.landed().union(self.missed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ShardOutcome::*;

    fn quorum(k: u8, m: u8) -> WriteQuorum {
        WriteQuorum::default_for(Scheme::new(k, m).unwrap())
    }

    #[test]
    fn default_and_limits() {
        assert_eq!(quorum(4, 2).w(), 5);
        assert_eq!(quorum(4, 3).w(), 6);
        assert_eq!(quorum(1, 2).w(), 2);
        assert_eq!(quorum(1, 0).w(), 1);
        assert_eq!(quorum(10, 4).w(), 12);
        assert_eq!(quorum(4, 2).read_answers(), 2);
        assert_eq!(quorum(1, 2).read_answers(), 2);
        let scheme = Scheme::new(4, 2).unwrap();
        assert_eq!(WriteQuorum::new(scheme, 4).unwrap().read_answers(), 3);
        assert_eq!(WriteQuorum::new(scheme, 6).unwrap().read_answers(), 1);
        assert_eq!(
            WriteQuorum::new(scheme, 3),
            Err(QuorumError::OutOfRange { w: 3, k: 4, n: 6 })
        );
        assert_eq!(
            WriteQuorum::new(scheme, 7),
            Err(QuorumError::OutOfRange { w: 7, k: 4, n: 6 })
        );
        assert_eq!(
            WriteQuorum::new(scheme, 7).unwrap_err().to_string(),
            "write quorum 7 is outside 4..=6 for scheme 4+2"
        );
    }

    #[test]
    fn acked_at_exactly_w() {
        let mut tracker = WriteTracker::new(quorum(4, 2));
        for shard in 0..4 {
            assert_eq!(tracker.handle_outcome(shard, Durable), WriteState::Pending);
        }
        assert_eq!(tracker.handle_outcome(5, Durable), WriteState::Acked);
        assert_eq!(tracker.unresolved(), [4].into_iter().collect());
        // A late failure changes nothing; repair learns of it.
        assert_eq!(tracker.handle_outcome(4, Failed), WriteState::Acked);
        assert_eq!(tracker.missed(), [4].into_iter().collect());
    }

    #[test]
    fn pending_while_w_is_reachable_then_failed() {
        let mut tracker = WriteTracker::new(quorum(4, 2));
        assert_eq!(tracker.handle_outcome(0, Failed), WriteState::Pending);
        assert_eq!(tracker.handle_outcome(1, Durable), WriteState::Pending);
        let lost = WriteState::Failed(WriteError::QuorumLost {
            durable: 1,
            failed: 1,
            timed_out: 1,
            quorum: 5,
        });
        assert_eq!(tracker.handle_outcome(2, TimedOut), lost);
        // Final: durable shards arriving late do not acknowledge it.
        for shard in 3..6 {
            assert_eq!(tracker.handle_outcome(shard, Durable), lost);
        }
        assert_eq!(tracker.landed().len(), 4);
    }

    #[test]
    fn superseded_counts_towards_the_quorum() {
        let mut tracker = WriteTracker::new(quorum(4, 2));
        for shard in 0..3 {
            tracker.handle_outcome(shard, Durable);
        }
        tracker.handle_outcome(3, Superseded);
        assert_eq!(tracker.handle_outcome(4, Superseded), WriteState::Acked);
    }

    #[test]
    fn w_equal_n_needs_every_shard() {
        let scheme = Scheme::new(2, 1).unwrap();
        let mut tracker = WriteTracker::new(WriteQuorum::new(scheme, 3).unwrap());
        tracker.handle_outcome(0, Durable);
        tracker.handle_outcome(1, Durable);
        assert_eq!(tracker.state(), WriteState::Pending);
        assert!(matches!(
            tracker.handle_outcome(2, TimedOut),
            WriteState::Failed(_)
        ));
    }

    #[test]
    fn plain_object_single_shard() {
        let mut tracker = WriteTracker::new(quorum(1, 0));
        assert_eq!(tracker.handle_outcome(0, Durable), WriteState::Acked);
        let mut tracker = WriteTracker::new(quorum(1, 0));
        assert!(matches!(
            tracker.handle_outcome(0, Failed),
            WriteState::Failed(_)
        ));
    }

    #[test]
    fn failure_is_known_as_soon_as_w_is_out_of_reach() {
        // 4+2, W = 5: two misses end it while four shards are still unanswered.
        let mut tracker = WriteTracker::new(quorum(4, 2));
        assert_eq!(tracker.handle_outcome(5, TimedOut), WriteState::Pending);
        assert!(matches!(
            tracker.handle_outcome(4, Failed),
            WriteState::Failed(_)
        ));
        assert_eq!(tracker.unresolved().len(), 4);
    }

    #[test]
    #[should_panic(expected = "reported twice")]
    fn an_outcome_twice_is_a_bug() {
        let mut tracker = WriteTracker::new(quorum(4, 2));
        tracker.handle_outcome(1, Durable);
        tracker.handle_outcome(1, Failed);
    }
}
