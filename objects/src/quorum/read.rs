//! The read of one stripe, sans-IO: which shards to ask for, when to hedge, and when the shards
//! at hand may be decoded.
//!
//! Driving it: `ReadPlan::new`, then repeatedly `poll_request` (send each shard request),
//! `poll_timeout` (arm a timer), and feed `handle_reply` / `handle_timeout`, until `state` is no
//! longer `Waiting`. Shard request timeouts are the caller's: a request that times out is
//! reported `Failed`.
//!
//! Rules:
//! - Ask the K data shards first (more, data first, when the quorum needs more answers to see
//!   every acknowledged write: `WriteQuorum::read_answers`).
//! - Keep enough requests in flight for the most advanced version to reach K and for the
//!   answers the decision waits for: a failed or absent answer asks the next shard at once.
//!   Parity shards are asked in index order.
//! - Hedge: every `hedge_after` without a decision, ask one shard more (Storj's long-tail cut).
//! - Decide on the highest version with K shards, unless a higher version seen could still
//!   reach K (then wait for it). Shards of two versions are never decoded together; older ones
//!   are ignored. "Absent" (the target holds nothing) counts as the lowest version: K absent
//!   answers make a hole, read as zeros, never a partly-absent stripe.
//! - Before deciding, wait for answers that could still confirm that no acknowledged write is
//!   newer (`ReadChoice::confirmed`); decide unconfirmed only when they can no longer come.
//! - Fail as soon as no version (seen or not) can reach K with the answers still to come.

use std::time::{Duration, Instant};

use crate::hlc::Version;
use crate::limits::SHARDS_MAX;
use crate::quorum::WriteQuorum;
use crate::shard_set::ShardSet;

/// What a target answered for one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardReply {
    /// The target holds the shard at this version (its header checked against the object).
    Found(Version),
    /// The target holds no shard under this key: never written there, or deleted.
    Absent,
    /// No usable answer: an error, a corrupt shard, a header that does not match, a timeout.
    Failed,
}

/// The shards to restore a stripe from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadChoice {
    pub version: Version,
    /// Exactly K shards, all at `version`, lowest indices first (data before parity).
    pub shards: ShardSet,
    /// Some data shard is not among them: parity is decoded. The node counts these.
    pub degraded: bool,
    /// No acknowledged write can be newer: enough targets answered (`read_answers`), and every
    /// newer version seen is held by too few targets to have been acknowledged. False only when
    /// too many targets failed to tell (the newest write may be lost with them); the node may
    /// serve what survives or refuse, and should count it either way.
    pub confirmed: bool,
}

/// Where a stripe read stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadState {
    /// More answers are needed.
    Waiting,
    /// Decode (or copy) the stripe from these shards. Final.
    Ready(ReadChoice),
    /// K targets hold nothing for this stripe: it was never written (or is deleted); it reads as
    /// zeros. `confirmed` as in `ReadChoice`. Final.
    Hole { confirmed: bool },
    /// No version can reach K shards. Final.
    Failed(ReadError),
}

/// Why a stripe could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Too many shards failed, are missing or belong to different versions.
    #[error(
        "stripe unreadable: {needed} shards of one version are needed, at most {best} of one \
         version can be had ({absent} targets hold none, {failed} failed)"
    )]
    Unreadable {
        needed: u8,
        best: u8,
        absent: u8,
        failed: u8,
    },
}

/// The read of one stripe. See the module docs for the rules.
#[derive(Clone, Debug)]
pub struct ReadPlan {
    quorum: WriteQuorum,
    /// Requests handed out by `poll_request`.
    asked: ShardSet,
    /// Requests decided on, not yet handed out.
    queued: ShardSet,
    found: ShardSet,
    absent: ShardSet,
    failed: ShardSet,
    /// Version of each shard in `found`.
    versions: [Version; SHARDS_MAX],
    hedge_after: Duration,
    hedge_at: Option<Instant>,
    hedges: u8,
    state: ReadState,
}

/// Shards per version seen, highest version first; absent targets as `Version::ZERO`.
struct Tally {
    entries: [(Version, u8); SHARDS_MAX + 1],
    len: usize,
}

impl Tally {
    fn iter(&self) -> impl Iterator<Item = (Version, u8)> + '_ {
        self.entries[..self.len].iter().copied()
    }
}

impl ReadPlan {
    /// Starts a read at `now`; hedges every `hedge_after` until it is decided.
    pub fn new(quorum: WriteQuorum, now: Instant, hedge_after: Duration) -> Self {
        let mut plan = Self {
            quorum,
            asked: ShardSet::EMPTY,
            queued: ShardSet::EMPTY,
            found: ShardSet::EMPTY,
            absent: ShardSet::EMPTY,
            failed: ShardSet::EMPTY,
            versions: [Version::ZERO; SHARDS_MAX],
            hedge_after,
            hedge_at: now.checked_add(hedge_after),
            hedges: 0,
            state: ReadState::Waiting,
        };
        plan.evaluate();
        plan
    }

    /// The next shard to request, if any.
    pub fn poll_request(&mut self) -> Option<u8> {
        let shard = self.queued.lowest()?;
        self.queued.remove(shard);
        self.asked.insert(shard);
        Some(shard)
    }

    /// When to call `handle_timeout` next: the hedge, while undecided and a shard is left to ask.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state != ReadState::Waiting || self.unasked().is_empty() {
            return None;
        }
        self.hedge_at
    }

    /// Hedges when the hedge time has come: one shard more.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(hedge_at) = self.poll_timeout() else {
            return;
        };
        if now < hedge_at {
            return;
        }
        let shard = self
            .unasked()
            .lowest()
            .expect("poll_timeout checked for one");
        self.queued.insert(shard);
        self.hedges += 1;
        self.hedge_at = now.checked_add(self.hedge_after);
    }

    /// Takes the answer for a requested shard (one per request). Answers after the read was
    /// decided are recorded and change nothing.
    pub fn handle_reply(&mut self, shard: u8, reply: ShardReply) {
        assert!(
            self.asked.contains(shard),
            "reply for shard {shard}, never requested"
        );
        assert!(
            !self.answered().contains(shard),
            "shard {shard} answered twice"
        );
        match reply {
            ShardReply::Found(version) => {
                assert!(version > Version::ZERO, "version 0 is never stored");
                self.versions[usize::from(shard)] = version;
                self.found.insert(shard);
            }
            ShardReply::Absent => self.absent.insert(shard),
            ShardReply::Failed => self.failed.insert(shard),
        }
        self.evaluate();
    }

    pub fn state(&self) -> ReadState {
        self.state
    }

    /// Requests sent and not answered: the caller may cancel them once the read is decided.
    pub fn pending(&self) -> ShardSet {
        self.asked.difference(self.answered())
    }

    /// Hedged requests so far.
    pub fn hedges(&self) -> u8 {
        self.hedges
    }

    /// Once ready: shards whose targets answered with an older version or nothing. The stripe
    /// is readable, but those targets need repair.
    pub fn lagging(&self) -> ShardSet {
        let ReadState::Ready(choice) = self.state else {
            return ShardSet::EMPTY;
        };
        let older = self
            .found
            .iter()
            .filter(|&shard| self.versions[usize::from(shard)] < choice.version);
        self.absent.union(older.collect())
    }

    fn answered(&self) -> ShardSet {
        self.found.union(self.absent).union(self.failed)
    }

    fn unasked(&self) -> ShardSet {
        let all = ShardSet::first(self.quorum.scheme().n());
        all.difference(self.asked).difference(self.queued)
    }

    fn tally(&self) -> Tally {
        let mut tally = Tally {
            entries: [(Version::ZERO, 0); SHARDS_MAX + 1],
            len: 0,
        };
        for shard in self.found.iter() {
            let version = self.versions[usize::from(shard)];
            match tally.entries[..tally.len]
                .iter_mut()
                .find(|(v, _)| *v == version)
            {
                Some(entry) => entry.1 += 1,
                None => {
                    tally.entries[tally.len] = (version, 1);
                    tally.len += 1;
                }
            }
        }
        if !self.absent.is_empty() {
            tally.entries[tally.len] = (Version::ZERO, self.absent.len());
            tally.len += 1;
        }
        tally.entries[..tally.len].sort_unstable_by_key(|&(version, _)| std::cmp::Reverse(version));
        tally
    }

    /// Shards at `version` (absent targets for `Version::ZERO`).
    fn holders(&self, version: Version) -> ShardSet {
        if version == Version::ZERO {
            return self.absent;
        }
        let at = self
            .found
            .iter()
            .filter(|&s| self.versions[usize::from(s)] == version);
        at.collect()
    }

    /// Found shards at `version` or newer: targets that hold at least that write.
    fn at_least(&self, version: Version) -> u8 {
        let newer = self
            .found
            .iter()
            .filter(|&s| self.versions[usize::from(s)] >= version);
        newer.count() as u8
    }

    /// Decides if it can, then queues the requests the rules call for.
    fn evaluate(&mut self) {
        if self.state != ReadState::Waiting {
            return;
        }
        let scheme = self.quorum.scheme();
        let k = scheme.k();
        let w = self.quorum.w();
        let unanswered = scheme.n() - self.answered().len();
        let definitive = self.found.len() + self.absent.len();
        let failed = self.failed.len();
        let read_answers = self.quorum.read_answers();
        let tally = self.tally();
        let reachable = |count: u8| count + unanswered >= k;
        // Further answers the decision waits for (beyond reaching K shards).
        let mut answers_wanted = read_answers.saturating_sub(definitive);

        let best = tally.iter().find(|&(_, count)| count >= k);
        if let Some((version, _)) = best {
            // A newer version that may still reach K is what a reader should get: wait for it.
            let blocked = tally
                .iter()
                .any(|(v, count)| v > version && reachable(count));
            // Confirmed: no acknowledged write (W targets holding it or newer) can be newer.
            // Enough answers rule out versions not seen; a newer version seen is ruled out when
            // too few targets can hold it. Confirmable: more answers could still confirm.
            let mut confirmed = definitive >= read_answers;
            let mut confirmable = definitive + unanswered >= read_answers;
            for (newer, _) in tally.iter().filter(|&(v, _)| v > version) {
                let held = self.at_least(newer) + failed;
                confirmed &= held + unanswered < w;
                confirmable &= held < w;
                answers_wanted = answers_wanted.max((held + unanswered + 1).saturating_sub(w));
            }
            if !blocked && (confirmed || !confirmable) {
                self.state = self.decide(version, confirmed);
                self.queued = ShardSet::EMPTY;
                return;
            }
        } else {
            let most = tally.iter().map(|(_, count)| count).max().unwrap_or(0);
            if !reachable(most) {
                self.state = ReadState::Failed(ReadError::Unreadable {
                    needed: k,
                    best: most,
                    absent: self.absent.len(),
                    failed,
                });
                self.queued = ShardSet::EMPTY;
                return;
            }
        }

        // Requests: enough in flight for the version the decision waits on to reach K, and for
        // the answers it waits for.
        let target = match best {
            // Blocked: the newest version above the best that may still reach K.
            Some((version, count)) => tally
                .iter()
                .find(|&(v, c)| v > version && reachable(c))
                .map_or(count, |(_, c)| c),
            // The most advanced version found; with none, any version at all while K answers are
            // left (so an absent data shard asks parity at once, like a failed one); only then
            // a hole.
            None => {
                let found = tally
                    .iter()
                    .filter(|&(v, c)| v > Version::ZERO && reachable(c));
                match found.map(|(_, count)| count).max() {
                    Some(count) => count,
                    None if unanswered >= k => 0,
                    None => self.absent.len(),
                }
            }
        };
        // Answers beyond those left cannot be had (with W low, many failures end it there).
        let deficit = k.saturating_sub(target).max(answers_wanted.min(unanswered));
        let in_flight = self.pending().len() + self.queued.len();
        let more = deficit.saturating_sub(in_flight);
        let next = self.unasked().lowest_n(more);
        assert_eq!(
            next.len(),
            more,
            "the rules never want more shards than are left"
        );
        self.queued = self.queued.union(next);
    }

    fn decide(&self, version: Version, confirmed: bool) -> ReadState {
        if version == Version::ZERO {
            return ReadState::Hole { confirmed };
        }
        let k = self.quorum.scheme().k();
        let shards = self.holders(version).lowest_n(k);
        assert_eq!(shards.len(), k);
        ReadState::Ready(ReadChoice {
            version,
            shards,
            degraded: shards != ShardSet::first(k),
            confirmed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::Scheme;
    use ShardReply::{Absent, Failed};

    const HEDGE: Duration = Duration::from_millis(20);

    fn quorum(k: u8, m: u8) -> WriteQuorum {
        WriteQuorum::default_for(Scheme::new(k, m).unwrap())
    }

    fn set(shards: &[u8]) -> ShardSet {
        shards.iter().copied().collect()
    }

    fn at(version: u64) -> ShardReply {
        ShardReply::Found(Version::from_u64(version))
    }

    fn start(quorum: WriteQuorum) -> (ReadPlan, Instant) {
        let now = Instant::now();
        (ReadPlan::new(quorum, now, HEDGE), now)
    }

    fn requests(plan: &mut ReadPlan) -> Vec<u8> {
        std::iter::from_fn(|| plan.poll_request()).collect()
    }

    fn ready(version: u64, shards: &[u8], degraded: bool) -> ReadState {
        ReadState::Ready(ReadChoice {
            version: Version::from_u64(version),
            shards: set(shards),
            degraded,
            confirmed: true,
        })
    }

    #[test]
    fn asks_data_shards_first() {
        let (mut plan, _) = start(quorum(4, 2));
        assert_eq!(requests(&mut plan), vec![0, 1, 2, 3]);
        assert_eq!(plan.state(), ReadState::Waiting);
        assert_eq!(plan.pending(), set(&[0, 1, 2, 3]));
        // 1+2 with W = 2 needs two answers to see every acknowledged write.
        let (mut plan, _) = start(quorum(1, 2));
        assert_eq!(requests(&mut plan), vec![0, 1]);
        // 2+4 with W = 4 needs three.
        let (mut plan, _) = start(quorum(2, 4));
        assert_eq!(requests(&mut plan), vec![0, 1, 2]);
        let (mut plan, _) = start(quorum(1, 0));
        assert_eq!(requests(&mut plan), vec![0]);
    }

    #[test]
    fn all_data_shards_no_decode() {
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        for shard in 0..3 {
            plan.handle_reply(shard, at(7));
            assert_eq!(plan.state(), ReadState::Waiting);
            assert!(requests(&mut plan).is_empty());
        }
        plan.handle_reply(3, at(7));
        assert_eq!(plan.state(), ready(7, &[0, 1, 2, 3], false));
        assert_eq!(plan.lagging(), ShardSet::EMPTY);
        assert_eq!(plan.poll_timeout(), None);
        assert_eq!(plan.poll_request(), None);
    }

    #[test]
    fn failed_data_shard_asks_parity_at_once() {
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        plan.handle_reply(1, Failed);
        assert_eq!(requests(&mut plan), vec![4]);
        for shard in [0, 2, 3] {
            plan.handle_reply(shard, at(7));
        }
        assert_eq!(plan.state(), ReadState::Waiting);
        plan.handle_reply(4, at(7));
        assert_eq!(plan.state(), ready(7, &[0, 2, 3, 4], true));
    }

    #[test]
    fn absent_data_shard_is_rebuilt_and_reported_lagging() {
        // A replaced node holds nothing yet.
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        plan.handle_reply(0, Absent);
        assert_eq!(requests(&mut plan), vec![4]);
        for shard in [1, 2, 3, 4] {
            plan.handle_reply(shard, at(7));
        }
        assert_eq!(plan.state(), ready(7, &[1, 2, 3, 4], true));
        assert_eq!(plan.lagging(), set(&[0]));
    }

    #[test]
    fn mixed_versions_ask_more_and_take_the_newer() {
        // Shard 3 missed the newest write.
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        plan.handle_reply(0, at(9));
        plan.handle_reply(1, at(9));
        plan.handle_reply(2, at(9));
        plan.handle_reply(3, at(8));
        assert_eq!(requests(&mut plan), vec![4]);
        plan.handle_reply(4, at(9));
        assert_eq!(plan.state(), ready(9, &[0, 1, 2, 4], true));
        assert_eq!(plan.lagging(), set(&[3]));
        assert_eq!(plan.pending(), ShardSet::EMPTY);
    }

    #[test]
    fn a_newer_version_that_cannot_reach_k_is_ignored() {
        // Leftovers of a failed write (version 9) on shard 0 only.
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        plan.handle_reply(0, at(9));
        assert!(requests(&mut plan).is_empty());
        // One shard each of two versions: either needs three more, two are out.
        plan.handle_reply(1, at(8));
        assert_eq!(requests(&mut plan), vec![4]);
        plan.handle_reply(2, at(8));
        plan.handle_reply(3, at(8));
        assert!(requests(&mut plan).is_empty());
        assert_eq!(plan.state(), ReadState::Waiting);
        plan.handle_reply(4, at(8));
        // 9 could still have shard 5: two of four, never K. Shard 5 was never asked.
        assert_eq!(plan.state(), ready(8, &[1, 2, 3, 4], true));
        assert_eq!(plan.lagging(), ShardSet::EMPTY);
        assert_eq!(plan.pending(), ShardSet::EMPTY);
    }

    #[test]
    fn waits_for_a_newer_version_that_can_still_reach_k() {
        // 2+4: version 5 has K shards first, but version 6 is seen and may reach K.
        let (mut plan, _) = start(quorum(2, 4));
        assert_eq!(requests(&mut plan), vec![0, 1, 2]);
        plan.handle_reply(0, at(5));
        plan.handle_reply(1, at(5));
        plan.handle_reply(2, at(6));
        assert_eq!(plan.state(), ReadState::Waiting);
        assert_eq!(requests(&mut plan), vec![3]);
        plan.handle_reply(3, at(6));
        assert_eq!(plan.state(), ready(6, &[2, 3], true));
        assert_eq!(plan.lagging(), set(&[0, 1]));
    }

    #[test]
    fn blocked_until_the_newer_version_runs_out_of_shards() {
        let (mut plan, _) = start(quorum(2, 4));
        requests(&mut plan);
        plan.handle_reply(0, at(5));
        plan.handle_reply(1, at(5));
        plan.handle_reply(2, at(6));
        requests(&mut plan);
        plan.handle_reply(3, at(5));
        assert_eq!(plan.state(), ReadState::Waiting);
        assert_eq!(requests(&mut plan), vec![4]);
        plan.handle_reply(4, Failed);
        assert_eq!(requests(&mut plan), vec![5]);
        plan.handle_reply(5, at(5));
        // 6 is on one target of six: not acknowledged (W = 4), not restorable.
        assert_eq!(plan.state(), ready(5, &[0, 1], false));
    }

    #[test]
    fn hole_when_k_targets_hold_nothing() {
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        for shard in 0..4 {
            plan.handle_reply(shard, Absent);
        }
        assert_eq!(plan.state(), ReadState::Hole { confirmed: true });
        assert_eq!(plan.lagging(), ShardSet::EMPTY);
    }

    #[test]
    fn absent_and_data_mix_is_never_a_hole() {
        // Three replaced nodes hold nothing, three hold the data: three shards of data is too
        // few, and three absent answers are no hole either. An error, never zeros.
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        plan.handle_reply(0, Absent);
        assert_eq!(requests(&mut plan), vec![4]);
        plan.handle_reply(1, Absent);
        assert_eq!(requests(&mut plan), vec![5]);
        plan.handle_reply(2, Absent);
        plan.handle_reply(3, at(4));
        plan.handle_reply(4, at(4));
        assert_eq!(plan.state(), ReadState::Waiting);
        plan.handle_reply(5, at(4));
        assert_eq!(
            plan.state(),
            ReadState::Failed(ReadError::Unreadable {
                needed: 4,
                best: 3,
                absent: 3,
                failed: 0
            })
        );
    }

    #[test]
    fn a_hole_with_a_failed_target() {
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        plan.handle_reply(0, Failed);
        assert_eq!(requests(&mut plan), vec![4]);
        plan.handle_reply(1, Absent);
        // A version would need all of 2 to 5.
        assert_eq!(requests(&mut plan), vec![5]);
        plan.handle_reply(2, Absent);
        plan.handle_reply(3, Absent);
        // Three absent, two out: a version can no longer reach K; a hole still can.
        assert_eq!(plan.state(), ReadState::Waiting);
        assert!(requests(&mut plan).is_empty());
        plan.handle_reply(4, Absent);
        assert_eq!(plan.state(), ReadState::Hole { confirmed: true });
    }

    #[test]
    fn fails_as_soon_as_k_is_out_of_reach() {
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        plan.handle_reply(0, Failed);
        plan.handle_reply(1, Failed);
        assert_eq!(requests(&mut plan), vec![4, 5]);
        assert_eq!(plan.state(), ReadState::Waiting);
        plan.handle_reply(4, Failed);
        let failed = ReadState::Failed(ReadError::Unreadable {
            needed: 4,
            best: 0,
            absent: 0,
            failed: 3,
        });
        assert_eq!(plan.state(), failed);
        assert_eq!(plan.pending(), set(&[2, 3, 5]));
        // Late answers change nothing.
        plan.handle_reply(2, at(1));
        assert_eq!(plan.state(), failed);
        assert_eq!(plan.poll_timeout(), None);
    }

    #[test]
    fn two_versions_each_short_of_k_fail() {
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        for shard in 0..3 {
            plan.handle_reply(shard, at(2));
        }
        plan.handle_reply(3, at(1));
        requests(&mut plan);
        plan.handle_reply(4, at(1));
        requests(&mut plan);
        plan.handle_reply(5, at(1));
        assert_eq!(
            plan.state(),
            ReadState::Failed(ReadError::Unreadable {
                needed: 4,
                best: 3,
                absent: 0,
                failed: 0
            })
        );
    }

    #[test]
    fn hedges_one_shard_per_delay() {
        let (mut plan, t0) = start(quorum(4, 2));
        requests(&mut plan);
        assert_eq!(plan.poll_timeout(), Some(t0 + HEDGE));
        plan.handle_timeout(t0 + HEDGE / 2);
        assert!(requests(&mut plan).is_empty());
        assert_eq!(plan.hedges(), 0);
        plan.handle_timeout(t0 + HEDGE);
        assert_eq!(requests(&mut plan), vec![4]);
        assert_eq!(plan.hedges(), 1);
        let t1 = t0 + HEDGE + Duration::from_millis(3);
        assert_eq!(plan.poll_timeout(), Some(t0 + 2 * HEDGE));
        plan.handle_timeout(t1 + HEDGE);
        assert_eq!(requests(&mut plan), vec![5]);
        // Every shard asked: nothing left to hedge with.
        assert_eq!(plan.poll_timeout(), None);
        plan.handle_timeout(t1 + 10 * HEDGE);
        assert!(requests(&mut plan).is_empty());
        assert_eq!(plan.hedges(), 2);
    }

    #[test]
    fn hedged_parity_beats_a_slow_data_shard() {
        let (mut plan, t0) = start(quorum(4, 2));
        requests(&mut plan);
        for shard in [0, 1, 3] {
            plan.handle_reply(shard, at(3));
        }
        plan.handle_timeout(t0 + HEDGE);
        assert_eq!(requests(&mut plan), vec![4]);
        plan.handle_reply(4, at(3));
        assert_eq!(plan.state(), ready(3, &[0, 1, 3, 4], true));
        // Shard 2 is still out: the caller may cancel it; its answer changes nothing.
        assert_eq!(plan.pending(), set(&[2]));
        plan.handle_reply(2, at(3));
        assert_eq!(plan.state(), ready(3, &[0, 1, 3, 4], true));
    }

    #[test]
    fn no_hedge_once_decided_or_with_an_unbounded_delay() {
        let now = Instant::now();
        let mut plan = ReadPlan::new(quorum(4, 2), now, Duration::MAX);
        requests(&mut plan);
        assert_eq!(plan.poll_timeout(), None);
        let (mut plan, t0) = start(quorum(1, 0));
        requests(&mut plan);
        // 1+0 has no other shard to ask.
        assert_eq!(plan.poll_timeout(), None);
        plan.handle_timeout(t0 + HEDGE);
        assert!(requests(&mut plan).is_empty());
    }

    #[test]
    fn replication_reads_two_replicas_and_takes_the_newer() {
        let (mut plan, _) = start(quorum(1, 2));
        requests(&mut plan);
        plan.handle_reply(0, at(3));
        // One replica is not enough to see every acknowledged write (W = 2).
        assert_eq!(plan.state(), ReadState::Waiting);
        plan.handle_reply(1, at(4));
        assert_eq!(plan.state(), ready(4, &[1], true));
        assert_eq!(plan.lagging(), set(&[0]));
    }

    #[test]
    fn replication_with_two_replicas_down_serves_the_survivor_unconfirmed() {
        let (mut plan, _) = start(quorum(1, 2));
        requests(&mut plan);
        plan.handle_reply(0, at(3));
        plan.handle_reply(1, Failed);
        assert_eq!(requests(&mut plan), vec![2]);
        assert_eq!(plan.state(), ReadState::Waiting);
        plan.handle_reply(2, Failed);
        assert_eq!(
            plan.state(),
            ReadState::Ready(ReadChoice {
                version: Version::from_u64(3),
                shards: set(&[0]),
                degraded: false,
                confirmed: false
            })
        );
    }

    #[test]
    fn replication_one_down_still_confirmed() {
        let (mut plan, _) = start(quorum(1, 2));
        requests(&mut plan);
        plan.handle_reply(1, Failed);
        assert_eq!(requests(&mut plan), vec![2]);
        plan.handle_reply(0, at(3));
        plan.handle_reply(2, at(3));
        assert_eq!(plan.state(), ready(3, &[0], false));
    }

    #[test]
    fn newer_version_on_failed_targets_leaves_the_read_unconfirmed() {
        // 2+4, W = 4: version 6 seen once, three targets failed. Six may be on W = 4 targets
        // (the one seen and the three failed): the older version is served unconfirmed.
        let (mut plan, _) = start(quorum(2, 4));
        requests(&mut plan);
        plan.handle_reply(0, Failed);
        plan.handle_reply(1, Failed);
        plan.handle_reply(2, Failed);
        assert_eq!(requests(&mut plan), vec![3, 4, 5]);
        plan.handle_reply(3, at(6));
        plan.handle_reply(4, at(5));
        plan.handle_reply(5, at(5));
        assert_eq!(
            plan.state(),
            ReadState::Ready(ReadChoice {
                version: Version::from_u64(5),
                shards: set(&[4, 5]),
                degraded: true,
                confirmed: false
            })
        );
    }

    #[test]
    fn waits_for_answers_that_can_rule_out_a_newer_write() {
        // 3+6, W = 6, four answers needed. Version 5 on shards 0 to 2, version 6 seen on shard 3,
        // shards 4 to 7 fail: 6 cannot reach K, but with shard 8 it could be on W targets.
        for (last, confirmed) in [(at(5), true), (Failed, false)] {
            let (mut plan, _) = start(quorum(3, 6));
            assert_eq!(requests(&mut plan), vec![0, 1, 2, 3]);
            for shard in 0..3 {
                plan.handle_reply(shard, at(5));
            }
            assert!(requests(&mut plan).is_empty());
            plan.handle_reply(3, at(6));
            // Blocked by 6, which needs two more.
            assert_eq!(requests(&mut plan), vec![4, 5]);
            plan.handle_reply(4, Failed);
            assert_eq!(requests(&mut plan), vec![6]);
            plan.handle_reply(5, Failed);
            assert_eq!(requests(&mut plan), vec![7]);
            plan.handle_reply(6, Failed);
            assert_eq!(requests(&mut plan), vec![8]);
            plan.handle_reply(7, Failed);
            // 6 is out of reach of K, not of W: wait for shard 8.
            assert_eq!(plan.state(), ReadState::Waiting);
            assert!(requests(&mut plan).is_empty());
            plan.handle_reply(8, last);
            assert_eq!(
                plan.state(),
                ReadState::Ready(ReadChoice {
                    version: Version::from_u64(5),
                    shards: set(&[0, 1, 2]),
                    degraded: false,
                    confirmed
                })
            );
        }
    }

    #[test]
    fn plain_object() {
        let (mut plan, _) = start(quorum(1, 0));
        requests(&mut plan);
        plan.handle_reply(0, at(1));
        assert_eq!(plan.state(), ready(1, &[0], false));
        let (mut plan, _) = start(quorum(1, 0));
        requests(&mut plan);
        plan.handle_reply(0, Absent);
        assert_eq!(plan.state(), ReadState::Hole { confirmed: true });
        let (mut plan, _) = start(quorum(1, 0));
        requests(&mut plan);
        plan.handle_reply(0, Failed);
        assert!(matches!(plan.state(), ReadState::Failed(_)));
    }

    #[test]
    #[should_panic(expected = "never requested")]
    fn a_reply_for_an_unrequested_shard_is_a_bug() {
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        plan.handle_reply(5, at(1));
    }

    #[test]
    #[should_panic(expected = "answered twice")]
    fn a_second_reply_is_a_bug() {
        let (mut plan, _) = start(quorum(4, 2));
        requests(&mut plan);
        plan.handle_reply(0, at(1));
        plan.handle_reply(0, at(1));
    }
}
