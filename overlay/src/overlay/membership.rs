//! Who is in the table and the neighbourhood: liveness, LRS eviction, misses, suspicion,
//! removal, and the pings all of that needs.

use std::net::SocketAddr;

use super::Overlay;
use crate::bucket::Seen;
use crate::event::{Event, RemoveReason};
use crate::id::{NodeId, NodeInfo};
use crate::limits::{EVENT_QUEUE_MAX, PINGS_INFLIGHT_MAX, TRANSMIT_QUEUE_MAX};
use crate::message::{Body, Message};
use crate::requests::{Request, RequestKind};
use crate::stats::DropReason;

impl Overlay {
    /// A message from `info` was accepted. `via_request`: it was a PING or FIND_NODE (a node
    /// that left comes back only by asking, not through late replies).
    pub(super) fn note_alive(&mut self, info: NodeInfo, via_request: bool) {
        let now = self.now;
        if let Some(reason) = self.removed.get(info.id, now) {
            if reason == RemoveReason::Left && !via_request {
                return;
            }
            self.removed.remove(info.id);
        }
        match self.table.seen(info, now) {
            None => unreachable!("own id filtered before"),
            Some((_, Seen::Added)) => {
                self.stats.peers_added += 1;
                self.push_event(Event::PeerAdded(info));
            }
            Some((index, Seen::Refreshed)) => {
                let bucket = self.table.bucket_mut(index);
                if bucket.evicting == Some(info.id) {
                    // The entry pinged for a newcomer is alive: it stays, the newcomer goes.
                    bucket.evicting = None;
                    if bucket.candidate.take().is_some() {
                        self.stats.evictions_refused += 1;
                    }
                }
            }
            Some((index, Seen::Full)) => self.offer_candidate(index, info),
        }
        if self.neighbourhood.seen(info, now) {
            self.neighbourhood_changed();
        }
    }

    /// `info` contacted us and its bucket is full.
    pub(super) fn offer_candidate(&mut self, index: usize, info: NodeInfo) {
        let threshold = self.config.suspicion_threshold;
        let bucket = self.table.bucket_mut(index);
        bucket.candidate = Some(info);
        if let Some(suspect) = bucket.suspect(threshold) {
            self.remove_peer(suspect, RemoveReason::Unresponsive);
            return;
        }
        if bucket.evicting.is_some() {
            return;
        }
        let head = *bucket.head().expect("a full bucket has a head");
        if self.now.saturating_duration_since(head.last_seen) < self.config.probe_interval {
            // Even the least recently seen entry was heard from lately: the bucket is live and
            // a ping would only confirm it (this keeps joins and floods from costing a ping
            // per newcomer).
            bucket.candidate = None;
            self.stats.evictions_refused += 1;
            return;
        }
        bucket.evicting = Some(head.info.id);
        if !self.ping(head.info) {
            self.table.bucket_mut(index).evicting = None;
        }
    }

    pub(super) fn neighbourhood_changed(&mut self) {
        self.neighbourhood_dirty = true;
        self.neighbourhood_version += 1;
    }

    // ----- requests and failures -----

    /// Pings `node` unless a ping to it is in flight already. False if it could not be sent.
    pub(super) fn ping(&mut self, node: NodeInfo) -> bool {
        if self.requests.is_pinging(node.id) {
            return true;
        }
        if self.requests.pings() >= PINGS_INFLIGHT_MAX {
            self.drop_message(DropReason::PingsFull);
            return false;
        }
        let request = Request {
            to: Some(node.id),
            addr: node.addr,
            kind: RequestKind::Ping,
        };
        let deadline = self.now + self.config.request_timeout;
        let Some(request) = self.requests.insert(request, deadline) else {
            self.drop_message(DropReason::RequestsFull);
            return false;
        };
        let message = Message {
            sender: self.info.id,
            sender_data_port: self.info.data_port,
            receiver: Some(node.id),
            request,
            body: Body::Ping,
        };
        self.send(node.addr, message);
        true
    }

    pub(super) fn send(&mut self, addr: SocketAddr, message: Message) {
        if self.transmits.len() >= TRANSMIT_QUEUE_MAX {
            self.drop_message(DropReason::TransmitQueueFull);
            return;
        }
        self.stats.messages_sent += 1;
        self.transmits.push_back((addr, message));
    }

    pub(super) fn push_event(&mut self, event: Event) {
        if self.events.len() >= EVENT_QUEUE_MAX {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    pub(super) fn on_request_timeout(&mut self, request: Request) {
        self.stats.requests_timed_out += 1;
        match request.kind {
            RequestKind::Ping => {
                self.miss(request.to.expect("a ping names its node"));
            }
            RequestKind::FindNode { lookup, .. } => {
                let to = request.to.expect("a query names its node");
                // First the miss: it may remove the node, which fails it in every lookup.
                self.miss(to);
                if let Some(at) = self.lookup_index(lookup) {
                    let failed = self.lookups[at].finish(to, false);
                    if failed && !self.knows(to) {
                        // A stranger from a NODES list that never answered: do not let other
                        // lists bring it back at once.
                        self.removed
                            .insert(to, RemoveReason::Unresponsive, self.now);
                    }
                    self.drive_lookup(lookup);
                }
            }
            RequestKind::Bootstrap => {
                assert!(self.bootstrap.in_flight > 0);
                self.bootstrap.in_flight -= 1;
                if self.bootstrap.in_flight == 0
                    && !self.bootstrap.joined
                    && self.bootstrap.join_lookup.is_none()
                {
                    self.push_event(Event::BootstrapFailed);
                }
            }
        }
    }

    /// `id` missed a reply.
    pub(super) fn miss(&mut self, id: NodeId) {
        let in_table = self.table.record_miss(id);
        let in_neighbourhood = self.neighbourhood.record_miss(id);
        let Some(misses) = in_table.max(in_neighbourhood) else {
            // A stranger (lookup candidate, would-be neighbour): one lost datagram must not
            // hide it; lookups remember the ones that fail every attempt.
            return;
        };
        let threshold = self.config.suspicion_threshold;
        if misses > threshold {
            self.remove_peer(id, RemoveReason::Unresponsive);
            return;
        }
        if misses == threshold && in_table.is_some() {
            let index = self.info.id.bucket_index(id).expect("not self");
            if self.table.bucket(index).candidate.is_some() {
                // Suspect, and a live newcomer waits for the slot.
                self.remove_peer(id, RemoveReason::Unresponsive);
                return;
            }
        }
        // Ask again at once, so a dead node is found out without waiting for traffic.
        let info = match self.table.get(id) {
            Some(entry) => entry.info,
            None => self.neighbourhood.get(id).expect("found above").info,
        };
        self.ping(info);
    }

    /// Forgets `id` everywhere; a newcomer waiting for its bucket takes the slot.
    pub(super) fn remove_peer(&mut self, id: NodeId, reason: RemoveReason) {
        let now = self.now;
        if let Some(entry) = self.table.remove(id) {
            self.stats.peers_removed += 1;
            self.push_event(Event::PeerRemoved {
                node: entry.info,
                reason,
            });
            let index = self.info.id.bucket_index(id).expect("not self");
            let k = self.table.k();
            let bucket = self.table.bucket_mut(index);
            if let Some(candidate) = bucket.candidate.take() {
                if bucket.len() < k && bucket.get(candidate.id).is_none() {
                    self.table.insert(index, candidate, now);
                    self.stats.peers_added += 1;
                    self.stats.evictions += 1;
                    self.push_event(Event::PeerAdded(candidate));
                }
            }
        }
        // A newcomer that left (or failed) while waiting for a slot must not get it later.
        if let Some(bucket) = self.table.existing_bucket_mut(id) {
            if bucket.candidate.is_some_and(|candidate| candidate.id == id) {
                bucket.candidate = None;
            }
        }
        if self.neighbourhood.remove(id).is_some() {
            self.neighbourhood_changed();
            // Look for the node that now belongs at the far end.
            self.self_lookup_wanted = true;
        }
        self.removed.insert(id, reason, now);
        for lookup in &mut self.lookups {
            lookup.mark_failed(id);
        }
        if !self.lookups.is_empty() {
            self.lookups_dirty = true;
        }
    }
}
