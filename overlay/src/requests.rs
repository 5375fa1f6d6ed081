//! Requests in flight (PING, FIND_NODE) and their deadlines.
//!
//! Every request gets the same timeout and time never goes back, so deadlines are in send order:
//! a queue gives the next one in O(1). Answered requests leave the map at once and their queue
//! entries are skipped when they reach the front (or compacted when the queue grows).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::id::{IdBuildHasher, NodeId};
use crate::limits::REQUESTS_INFLIGHT_MAX;
use crate::lookup::LookupId;
use crate::message::RequestId;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RequestKind {
    Ping,
    /// A query of a lookup; `depth` is the candidate's discovery depth.
    FindNode { lookup: LookupId, depth: u8 },
    /// FIND_NODE(self) to a seed whose id is not known yet.
    Bootstrap,
}

#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// The node asked; `None` for a seed.
    pub to: Option<NodeId>,
    pub addr: SocketAddr,
    pub kind: RequestKind,
}

/// Queue entries kept at most, answered ones included, before compaction.
const DEADLINES_MAX: usize = 4 * REQUESTS_INFLIGHT_MAX;

#[derive(Default)]
pub struct Requests {
    next: u64,
    pending: HashMap<u64, Request, IdBuildHasher>,
    deadlines: VecDeque<(Instant, u64)>,
    /// Nodes with a PING in flight (one at a time per node).
    pinging: HashSet<NodeId, IdBuildHasher>,
}

impl Requests {
    pub fn new() -> Requests {
        // 0 is never a request number: LEAVE carries it.
        Requests {
            next: 1,
            ..Requests::default()
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn pings(&self) -> usize {
        self.pinging.len()
    }

    pub fn is_pinging(&self, id: NodeId) -> bool {
        self.pinging.contains(&id)
    }

    /// Registers a request; `None` when `REQUESTS_INFLIGHT_MAX` are in flight.
    pub fn insert(&mut self, request: Request, deadline: Instant) -> Option<RequestId> {
        if self.pending.len() >= REQUESTS_INFLIGHT_MAX {
            return None;
        }
        if let Some(&(last, _)) = self.deadlines.back() {
            assert!(last <= deadline, "request deadlines must not go back");
        }
        if request.kind == RequestKind::Ping {
            let to = request.to.expect("a ping names its node");
            assert!(self.pinging.insert(to), "one ping per node at a time");
        }
        let id = self.next;
        self.next += 1;
        self.pending.insert(id, request);
        if self.deadlines.len() >= DEADLINES_MAX {
            let pending = &self.pending;
            self.deadlines.retain(|(_, id)| pending.contains_key(id));
        }
        self.deadlines.push_back((deadline, id));
        assert!(self.deadlines.len() <= DEADLINES_MAX);
        Some(RequestId(id))
    }

    fn forget(&mut self, request: &Request) {
        if request.kind == RequestKind::Ping {
            let to = request.to.expect("a ping names its node");
            assert!(self.pinging.remove(&to));
        }
    }

    /// Takes request `id` if `matches` accepts it (a reply from the right node); otherwise
    /// leaves it in flight.
    pub fn take_if(
        &mut self,
        id: RequestId,
        matches: impl FnOnce(&Request) -> bool,
    ) -> Option<Request> {
        let request = self.pending.get(&id.0)?;
        if !matches(request) {
            return None;
        }
        let request = self.pending.remove(&id.0).expect("just found");
        self.forget(&request);
        Some(request)
    }

    /// The next request whose deadline is at or before `now`, taken out.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Request> {
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now {
                return None;
            }
            self.deadlines.pop_front();
            if let Some(request) = self.pending.remove(&id) {
                self.forget(&request);
                return Some(request);
            }
        }
        None
    }

    /// The earliest deadline of a request still in flight.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if self.pending.contains_key(&id) {
                return Some(deadline);
            }
            self.deadlines.pop_front();
        }
        None
    }

    pub fn clear(&mut self) {
        self.pending.clear();
        self.deadlines.clear();
        self.pinging.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ping(id: u128) -> Request {
        Request {
            to: Some(NodeId(id)),
            addr: ([10, 0, 0, 4], 1).into(),
            kind: RequestKind::Ping,
        }
    }

    #[test]
    fn deadlines_come_out_in_order_and_answered_ones_are_skipped() {
        let t0 = Instant::now();
        let mut requests = Requests::new();
        let a = requests.insert(ping(1), t0 + Duration::from_secs(1)).unwrap();
        let b = requests.insert(ping(2), t0 + Duration::from_secs(2)).unwrap();
        assert!(requests.is_pinging(NodeId(1)));
        assert_eq!(requests.next_deadline(), Some(t0 + Duration::from_secs(1)));
        // A reply from the wrong node does not take the request.
        assert!(requests.take_if(a, |request| request.to == Some(NodeId(9))).is_none());
        assert!(requests.take_if(a, |request| request.to == Some(NodeId(1))).is_some());
        assert!(!requests.is_pinging(NodeId(1)));
        assert_eq!(requests.next_deadline(), Some(t0 + Duration::from_secs(2)));
        assert!(requests.pop_expired(t0 + Duration::from_secs(1)).is_none());
        let expired = requests.pop_expired(t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(expired.to, Some(NodeId(2)));
        assert!(requests.take_if(b, |_| true).is_none());
        assert!(requests.is_empty());
        assert_eq!(requests.pings(), 0);
    }

    #[test]
    fn bounded() {
        let t0 = Instant::now();
        let mut requests = Requests::new();
        for id in 0..REQUESTS_INFLIGHT_MAX as u128 {
            assert!(requests.insert(ping(id), t0).is_some());
        }
        assert!(requests.insert(ping(u128::MAX), t0).is_none());
    }
}
