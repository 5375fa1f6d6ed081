//! One iterative parallel lookup of the nodes closest to a key (Kademlia's node lookup).
//!
//! Candidates are kept sorted by distance to the key. At most `alpha` FIND_NODE requests are in
//! flight; only the `width` closest candidates that have not failed are ever queried, and the
//! lookup is done when all of those have answered. The querying node is a candidate from the
//! start (answered, depth 0), so a responsible set that includes it comes out right.
//!
//! Hops: a candidate learned from a node at depth d has depth d + 1 (the own table's nodes have
//! depth 1). The hops of a lookup are the largest depth among the nodes it returns: the number
//! of round trips on the longest chain it needed.
//!
//! It does not send or time anything: the overlay asks `next_queries` what to send and reports
//! each answer or timeout with `finish`.

use std::time::Instant;

use crate::id::{NodeId, NodeInfo};
use crate::limits::{LOOKUP_CANDIDATES_MAX, LOOKUP_REQUESTS_MAX, LOOKUP_WIDTH_MAX};

/// Names a lookup in `LookupDone` events.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct LookupId(pub u64);

/// Why a lookup runs; only `User` and `Responsible` lookups end in an event.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Purpose {
    User,
    Responsible,
    /// Fills a stale bucket (lookup of a random id in it).
    Refresh,
    /// The self-lookup that ends a bootstrap.
    Join,
    /// The periodic self-lookup that keeps the neighbourhood exact.
    SelfLookup,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Waiting,
    InFlight,
    Answered,
    Failed,
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    distance: u128,
    info: NodeInfo,
    state: State,
    depth: u8,
    /// Requests sent to it; a lost datagram must not drop one of the closest nodes.
    attempts: u8,
}

/// Requests a lookup sends one node before it counts it as failed.
pub const LOOKUP_ATTEMPTS_MAX: u8 = 2;

/// Whether a lookup needs more answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Progress {
    Continue,
    Done,
}

pub struct Lookup {
    pub id: LookupId,
    pub key: NodeId,
    /// Nodes the caller wants back (at most `width`).
    pub n: usize,
    /// The closest `width` non-failed candidates must answer before the lookup is done.
    pub width: usize,
    pub purpose: Purpose,
    pub deadline: Instant,
    self_id: NodeId,
    candidates: Vec<Candidate>,
    in_flight: usize,
    requests: usize,
    answered_remote: usize,
}

impl Lookup {
    pub fn new(
        id: LookupId,
        key: NodeId,
        n: usize,
        width: usize,
        purpose: Purpose,
        deadline: Instant,
        self_info: NodeInfo,
    ) -> Lookup {
        assert!(n > 0);
        assert!(n <= width);
        assert!(width <= LOOKUP_WIDTH_MAX);
        let mut candidates = Vec::with_capacity(width * 2);
        candidates.push(Candidate {
            distance: key.distance(self_info.id),
            info: self_info,
            state: State::Answered,
            depth: 0,
            attempts: 0,
        });
        Lookup {
            id,
            key,
            n,
            width,
            purpose,
            deadline,
            self_id: self_info.id,
            candidates,
            in_flight: 0,
            requests: 0,
            answered_remote: 0,
        }
    }

    /// FIND_NODE requests sent so far.
    pub fn requests(&self) -> usize {
        self.requests
    }

    /// Requests sent and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Remote nodes that answered.
    pub fn answered_remote(&self) -> usize {
        self.answered_remote
    }

    /// XOR is a bijection for a fixed key, so equal distance means the same node.
    fn search(&self, id: NodeId) -> Result<usize, usize> {
        let distance = self.key.distance(id);
        self.candidates
            .binary_search_by_key(&distance, |candidate| candidate.distance)
    }

    /// Adds a node learned at `depth`; returns whether it was new and kept.
    pub fn add_candidate(&mut self, info: NodeInfo, depth: u8) -> bool {
        let Err(at) = self.search(info.id) else {
            return false;
        };
        if at >= LOOKUP_CANDIDATES_MAX {
            return false;
        }
        self.candidates.insert(
            at,
            Candidate {
                distance: self.key.distance(info.id),
                info,
                state: State::Waiting,
                depth,
                attempts: 0,
            },
        );
        // The farthest one falls off; if it was in flight its answer is simply not matched.
        self.candidates.truncate(LOOKUP_CANDIDATES_MAX);
        debug_assert!(self
            .candidates
            .windows(2)
            .all(|p| p[0].distance < p[1].distance));
        true
    }

    /// `info` answered for itself: its addresses replace those a NODES list gave for it.
    pub fn update_info(&mut self, info: NodeInfo) {
        if let Ok(at) = self.search(info.id) {
            self.candidates[at].info = info;
        }
    }

    /// A request of this lookup to `from` finished: answered, or timed out (`answered` false;
    /// asked again up to `LOOKUP_ATTEMPTS_MAX` times in all).
    /// Returns whether `from` now counts as failed.
    pub fn finish(&mut self, from: NodeId, answered: bool) -> bool {
        assert!(self.in_flight > 0);
        self.in_flight -= 1;
        let Ok(at) = self.search(from) else {
            return false;
        };
        let candidate = &mut self.candidates[at];
        if candidate.state == State::InFlight {
            candidate.state = if answered {
                self.answered_remote += 1;
                State::Answered
            } else if candidate.attempts < LOOKUP_ATTEMPTS_MAX {
                State::Waiting
            } else {
                State::Failed
            };
        }
        candidate.state == State::Failed
    }

    /// `id` is known to be gone (it left or was removed): never wait for it.
    pub fn mark_failed(&mut self, id: NodeId) {
        if id == self.self_id {
            return;
        }
        if let Ok(at) = self.search(id) {
            let candidate = &mut self.candidates[at];
            if matches!(candidate.state, State::Waiting | State::InFlight) {
                candidate.state = State::Failed;
            }
        }
    }

    /// Puts the next requests to send (node, depth) into `out` and says whether the lookup goes
    /// on. Done when the `width` closest candidates that have not failed have all answered.
    pub fn next_queries(&mut self, alpha: usize, out: &mut Vec<(NodeInfo, u8)>) -> Progress {
        assert!(alpha > 0);
        out.clear();
        let mut considered = 0;
        let mut pending = false;
        for candidate in &mut self.candidates {
            match candidate.state {
                State::Failed => continue,
                State::Answered => {}
                State::InFlight => pending = true,
                State::Waiting => {
                    if self.requests >= LOOKUP_REQUESTS_MAX {
                        // Out of budget: this one will never be asked.
                        candidate.state = State::Failed;
                        continue;
                    }
                    pending = true;
                    if self.in_flight < alpha {
                        candidate.state = State::InFlight;
                        candidate.attempts += 1;
                        self.in_flight += 1;
                        self.requests += 1;
                        out.push((candidate.info, candidate.depth));
                    }
                }
            }
            considered += 1;
            if considered == self.width {
                break;
            }
        }
        assert!(self.in_flight <= alpha);
        if pending {
            Progress::Continue
        } else {
            Progress::Done
        }
    }

    /// The `n` closest nodes that answered (this node included where it belongs) and the hops
    /// the longest of their discovery chains took.
    pub fn result(&self, n: usize) -> (Vec<NodeInfo>, u8) {
        let mut nodes = Vec::with_capacity(n);
        let mut hops = 0;
        for candidate in &self.candidates {
            if nodes.len() == n {
                break;
            }
            if candidate.state == State::Answered {
                nodes.push(candidate.info);
                hops = hops.max(candidate.depth);
            }
        }
        (nodes, hops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn info(id: u128) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            addr: ([10, 0, 0, 3], id as u16).into(),
            data_port: 0,
        }
    }

    /// A toy network: every node knows the nodes whose ids are within `reach` of its own.
    fn answer(all: &[u128], asked: u128, key: u128, count: usize) -> Vec<NodeInfo> {
        let mut known: Vec<u128> = all
            .iter()
            .copied()
            .filter(|&id| id != asked && (id ^ asked) < 64 || id % 16 == asked % 16)
            .collect();
        known.sort_by_key(|&id| id ^ key);
        known.truncate(count);
        known.into_iter().map(info).collect()
    }

    #[test]
    fn converges_on_the_true_closest() {
        let all: Vec<u128> = (1..=300).collect();
        let now = Instant::now();
        let me = info(1);
        let key = NodeId(250);
        let mut lookup = Lookup::new(LookupId(1), key, 5, 5, Purpose::User, now, me);
        for node in answer(&all, 1, key.0, 5) {
            lookup.add_candidate(node, 1);
        }
        let mut out = Vec::new();
        let mut rounds = 0;
        while lookup.next_queries(3, &mut out) == Progress::Continue {
            rounds += 1;
            assert!(rounds < 100);
            assert!(out.len() <= 3);
            let sent = out.clone();
            for (node, depth) in sent {
                lookup.finish(node.id, true);
                for learned in answer(&all, node.id.0, key.0, 5) {
                    if learned.id != me.id {
                        lookup.add_candidate(learned, depth + 1);
                    }
                }
            }
        }
        let (nodes, hops) = lookup.result(5);
        let mut truth = all.clone();
        truth.sort_by_key(|&id| id ^ key.0);
        let truth: Vec<u128> = truth.into_iter().take(5).collect();
        let got: Vec<u128> = nodes.iter().map(|node| node.id.0).collect();
        assert_eq!(got, truth);
        assert!(hops >= 1);
        assert_eq!(lookup.in_flight(), 0);
    }

    #[test]
    fn failed_nodes_are_skipped_and_alpha_is_kept() {
        let now = Instant::now();
        let mut lookup = Lookup::new(LookupId(2), NodeId(0), 2, 2, Purpose::User, now, info(1000));
        for id in 1..=6 {
            lookup.add_candidate(info(id), 1);
        }
        let mut out = Vec::new();
        assert_eq!(lookup.next_queries(2, &mut out), Progress::Continue);
        let first: Vec<u128> = out.iter().map(|(node, _)| node.id.0).collect();
        assert_eq!(first, vec![1, 2]);
        // Nothing more while two are in flight.
        assert_eq!(lookup.next_queries(2, &mut out), Progress::Continue);
        assert!(out.is_empty());
        lookup.finish(NodeId(1), false);
        lookup.finish(NodeId(2), true);
        // Node 1 gets a second chance, then counts as failed.
        assert_eq!(lookup.next_queries(2, &mut out), Progress::Continue);
        let next: Vec<u128> = out.iter().map(|(node, _)| node.id.0).collect();
        assert_eq!(next, vec![1]);
        lookup.finish(NodeId(1), false);
        assert_eq!(lookup.next_queries(2, &mut out), Progress::Continue);
        let next: Vec<u128> = out.iter().map(|(node, _)| node.id.0).collect();
        assert_eq!(next, vec![3]);
        lookup.finish(NodeId(3), true);
        assert_eq!(lookup.next_queries(2, &mut out), Progress::Done);
        let (nodes, _) = lookup.result(2);
        let ids: Vec<u128> = nodes.iter().map(|node| node.id.0).collect();
        assert_eq!(ids, vec![2, 3]);
    }

    #[test]
    fn includes_self_where_it_belongs() {
        let now = Instant::now();
        let mut lookup = Lookup::new(LookupId(3), NodeId(4), 3, 3, Purpose::User, now, info(5));
        for id in [6, 7, 12] {
            lookup.add_candidate(info(id), 1);
        }
        let mut out = Vec::new();
        let mut answers = HashMap::new();
        while lookup.next_queries(3, &mut out) == Progress::Continue {
            for (node, _) in out.clone() {
                answers.insert(node.id, ());
                lookup.finish(node.id, true);
            }
        }
        let (nodes, _) = lookup.result(3);
        let ids: Vec<u128> = nodes.iter().map(|node| node.id.0).collect();
        assert_eq!(ids, vec![5, 6, 7]);
    }

    #[test]
    fn duplicates_are_ignored() {
        let now = Instant::now();
        let mut lookup = Lookup::new(LookupId(4), NodeId(0), 3, 3, Purpose::User, now, info(99));
        assert!(lookup.add_candidate(info(1), 1));
        assert!(!lookup.add_candidate(info(1), 2));
        assert!(!lookup.add_candidate(info(99), 1));
    }
}
