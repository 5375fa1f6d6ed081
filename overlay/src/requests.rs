//! Requests in flight (PING, FIND_NODE) and their deadlines.
//!
//! Request numbers are handed out in sequence and every request gets the same timeout, so a
//! ring indexed by request number is both the map (O(1), no hashing) and the deadline queue:
//! the oldest request still pending sits at the front. Answered slots are emptied and the front
//! is trimmed, so the ring spans from the oldest pending request to the newest.

use std::collections::{HashSet, VecDeque};
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
    FindNode {
        lookup: LookupId,
        depth: u8,
    },
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

/// Ring slots at most: requests sent within one timeout of the oldest pending one. Far above
/// any real rate; past it new requests are refused like a full table.
pub const REQUEST_RING_MAX: usize = 16 * REQUESTS_INFLIGHT_MAX;

#[derive(Default)]
pub struct Requests {
    /// Request number of `ring[0]`.
    first: u64,
    ring: VecDeque<Option<(Request, Instant)>>,
    pending: usize,
    /// Nodes with a PING in flight (one at a time per node).
    pinging: HashSet<NodeId, IdBuildHasher>,
}

impl Requests {
    pub fn new() -> Requests {
        // 0 is never a request number: LEAVE carries it.
        Requests {
            first: 1,
            ..Requests::default()
        }
    }

    pub fn len(&self) -> usize {
        self.pending
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    pub fn pings(&self) -> usize {
        self.pinging.len()
    }

    pub fn is_pinging(&self, id: NodeId) -> bool {
        !self.pinging.is_empty() && self.pinging.contains(&id)
    }

    /// Registers a request; `None` when `REQUESTS_INFLIGHT_MAX` are in flight.
    pub fn insert(&mut self, request: Request, deadline: Instant) -> Option<RequestId> {
        if self.pending >= REQUESTS_INFLIGHT_MAX || self.ring.len() >= REQUEST_RING_MAX {
            return None;
        }
        if let Some(Some((_, last))) = self.ring.back() {
            assert!(*last <= deadline, "request deadlines must not go back");
        }
        if request.kind == RequestKind::Ping {
            let to = request.to.expect("a ping names its node");
            assert!(self.pinging.insert(to), "one ping per node at a time");
        }
        let id = self.first + self.ring.len() as u64;
        self.ring.push_back(Some((request, deadline)));
        self.pending += 1;
        Some(RequestId(id))
    }

    fn slot(&self, id: RequestId) -> Option<usize> {
        let at = id.0.checked_sub(self.first)?;
        (at < self.ring.len() as u64).then_some(at as usize)
    }

    fn take_at(&mut self, at: usize) -> Request {
        let (request, _) = self.ring[at].take().expect("slot is pending");
        self.pending -= 1;
        if request.kind == RequestKind::Ping {
            let to = request.to.expect("a ping names its node");
            assert!(self.pinging.remove(&to));
        }
        while let Some(None) = self.ring.front() {
            self.ring.pop_front();
            self.first += 1;
        }
        debug_assert!(self.ring.front().is_none_or(|slot| slot.is_some()));
        request
    }

    /// Takes request `id` if `matches` accepts it (a reply from the right node); otherwise
    /// leaves it in flight.
    pub fn take_if(
        &mut self,
        id: RequestId,
        matches: impl FnOnce(&Request) -> bool,
    ) -> Option<Request> {
        let at = self.slot(id)?;
        let (request, _) = self.ring[at].as_ref()?;
        if !matches(request) {
            return None;
        }
        Some(self.take_at(at))
    }

    /// The next request whose deadline is at or before `now`, taken out.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Request> {
        let (_, deadline) = self.ring.front()?.as_ref().expect("front is pending");
        if *deadline > now {
            return None;
        }
        Some(self.take_at(0))
    }

    /// The earliest deadline of a request still in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        let (_, deadline) = self.ring.front()?.as_ref().expect("front is pending");
        Some(*deadline)
    }

    pub fn clear(&mut self) {
        self.first += self.ring.len() as u64;
        self.ring.clear();
        self.pending = 0;
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
        let a = requests
            .insert(ping(1), t0 + Duration::from_secs(1))
            .unwrap();
        let b = requests
            .insert(ping(2), t0 + Duration::from_secs(2))
            .unwrap();
        assert!(requests.is_pinging(NodeId(1)));
        assert_eq!(requests.next_deadline(), Some(t0 + Duration::from_secs(1)));
        // A reply from the wrong node does not take the request.
        assert!(requests
            .take_if(a, |request| request.to == Some(NodeId(9)))
            .is_none());
        assert!(requests
            .take_if(a, |request| request.to == Some(NodeId(1)))
            .is_some());
        assert!(!requests.is_pinging(NodeId(1)));
        assert_eq!(requests.next_deadline(), Some(t0 + Duration::from_secs(2)));
        assert!(requests.pop_expired(t0 + Duration::from_secs(1)).is_none());
        let expired = requests.pop_expired(t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(expired.to, Some(NodeId(2)));
        assert!(requests.take_if(b, |_| true).is_none());
        assert!(requests.is_empty());
        assert_eq!(requests.pings(), 0);
        // Unknown and reused numbers are refused.
        assert!(requests.take_if(RequestId(0), |_| true).is_none());
        assert!(requests.take_if(RequestId(u64::MAX), |_| true).is_none());
    }

    #[test]
    fn answered_in_the_middle_keeps_the_front() {
        let t0 = Instant::now();
        let mut requests = Requests::new();
        let ids: Vec<RequestId> = (0..3)
            .map(|i| {
                requests
                    .insert(ping(i), t0 + Duration::from_secs(i as u64))
                    .unwrap()
            })
            .collect();
        assert!(requests.take_if(ids[1], |_| true).is_some());
        assert_eq!(requests.next_deadline(), Some(t0));
        assert!(requests.take_if(ids[0], |_| true).is_some());
        assert_eq!(requests.next_deadline(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(requests.len(), 1);
        requests.clear();
        assert!(requests.is_empty());
        let next = requests
            .insert(ping(7), t0 + Duration::from_secs(3))
            .unwrap();
        assert!(next.0 > ids[2].0, "numbers are never reused");
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
