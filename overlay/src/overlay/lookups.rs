//! Running lookups: seeding, sending their queries, completing them (events, cache, join).

use std::mem;

use super::Overlay;
use crate::event::{Event, LookupDone};
use crate::id::{NodeId, NodeInfo};
use crate::limits::{LOOKUPS_ACTIVE_MAX, LOOKUPS_QUEUED_MAX, NODES_PER_MESSAGE_MAX};
use crate::lookup::{Lookup, LookupId, Progress, Purpose};
use crate::message::{Body, Message};
use crate::requests::{Request, RequestKind};
use crate::stats::DropReason;

impl Overlay {
    // ----- lookups -----

    /// The self-lookup counts this node among its closest, hence the + 1: every neighbour
    /// slot gets a verified node.
    pub(super) fn self_lookup_width(&self) -> usize {
        self.config.k.max(self.config.neighbourhood_size + 1)
    }

    pub(super) fn lookup_index(&self, id: LookupId) -> Option<usize> {
        self.lookups.iter().position(|lookup| lookup.id == id)
    }

    /// The `count` known nodes closest to `key` (suspects and `exclude` left out), from the
    /// table and the neighbourhood together.
    pub(super) fn closest_nodes(
        &mut self,
        key: NodeId,
        count: usize,
        exclude: Option<NodeId>,
    ) -> Vec<NodeInfo> {
        let mut closest = mem::take(&mut self.scratch_closest);
        self.closest_into(key, count, exclude, &mut closest);
        let nodes = closest.iter().map(|(_, node)| *node).collect();
        self.scratch_closest = closest;
        nodes
    }

    pub(super) fn closest_into(
        &self,
        key: NodeId,
        count: usize,
        exclude: Option<NodeId>,
        out: &mut Vec<(u128, NodeInfo)>,
    ) {
        let threshold = self.config.suspicion_threshold;
        let mut slots = self.scratch_slots.take();
        self.table
            .closest(key, count, threshold, exclude, out, &mut slots);
        self.scratch_slots.set(slots);
        for entry in self.neighbourhood.entries() {
            if entry.misses >= threshold || Some(entry.info.id) == exclude {
                continue;
            }
            let distance = entry.info.id.distance(key);
            if out.len() >= count && distance >= out[out.len() - 1].0 {
                continue;
            }
            // Equal distance means the same node (XOR is a bijection).
            if let Err(at) = out.binary_search_by_key(&distance, |(d, _)| *d) {
                out.insert(at, (distance, entry.info));
                out.truncate(count);
            }
        }
    }

    pub(super) fn start_lookup_internal(
        &mut self,
        key: NodeId,
        n: usize,
        width: usize,
        purpose: Purpose,
    ) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        self.stats.lookups_started += 1;
        if let Some(index) = self.info.id.bucket_index(key) {
            if index < self.table.bucket_count() {
                self.table.bucket_mut(index).last_lookup = Some(self.now);
            }
        }
        let deadline = self.now + self.config.lookup_timeout;
        let lookup = Lookup::new(id, key, n, width, purpose, deadline, self.info);
        if self.lookups.len() < LOOKUPS_ACTIVE_MAX {
            self.activate(lookup);
        } else if self.queued.len() < LOOKUPS_QUEUED_MAX {
            self.queued.push_back(lookup);
        } else {
            self.complete(lookup, false);
        }
        id
    }

    pub(super) fn activate(&mut self, mut lookup: Lookup) {
        assert!(self.lookups.len() < LOOKUPS_ACTIVE_MAX);
        lookup.deadline = self.now + self.config.lookup_timeout;
        let mut closest = mem::take(&mut self.scratch_closest);
        self.closest_into(lookup.key, lookup.width, None, &mut closest);
        for (_, node) in &closest {
            lookup.add_candidate(*node, 1);
        }
        self.scratch_closest = closest;
        let id = lookup.id;
        self.lookups.push(lookup);
        self.drive_lookup(id);
    }

    /// Sends what lookup `id` wants sent; completes it when done.
    pub(super) fn drive_lookup(&mut self, id: LookupId) {
        let Some(at) = self.lookup_index(id) else {
            return;
        };
        let mut queries = mem::take(&mut self.scratch_queries);
        let alpha = self.config.alpha;
        let progress = self.lookups[at].next_queries(alpha, &mut queries);
        let (key, width) = (self.lookups[at].key, self.lookups[at].width);
        let deadline = self.now + self.config.request_timeout;
        for (node, depth) in queries.drain(..) {
            let request = Request {
                to: Some(node.id),
                addr: node.addr,
                kind: RequestKind::FindNode { lookup: id, depth },
            };
            match self.requests.insert(request, deadline) {
                Some(request) => {
                    let message = Message {
                        sender: self.info.id,
                        sender_data_port: self.info.data_port,
                        receiver: Some(node.id),
                        request,
                        body: Body::FindNode {
                            key,
                            count: width.min(NODES_PER_MESSAGE_MAX) as u8,
                        },
                    };
                    self.send(node.addr, message);
                }
                None => {
                    self.drop_message(DropReason::RequestsFull);
                    self.lookups[at].finish(node.id, false);
                    self.lookups_dirty = true;
                }
            }
        }
        self.scratch_queries = queries;
        if progress == Progress::Done {
            let lookup = self.lookups.swap_remove(at);
            self.complete(lookup, true);
            while self.lookups.len() < LOOKUPS_ACTIVE_MAX {
                let Some(next) = self.queued.pop_front() else {
                    break;
                };
                self.activate(next);
            }
        }
    }

    pub(super) fn drive_all_lookups(&mut self) {
        let mut ids = mem::take(&mut self.scratch_lookups);
        ids.clear();
        ids.extend(self.lookups.iter().map(|lookup| lookup.id));
        for id in &ids {
            self.drive_lookup(*id);
        }
        self.scratch_lookups = ids;
    }

    /// A lookup ended: `finished` false when it was cut short (deadline, overload).
    pub(super) fn complete(&mut self, lookup: Lookup, finished: bool) {
        let converged = finished && lookup.answered_remote() > 0;
        let (nodes, hops) = lookup.result(lookup.n);
        if converged {
            self.stats.lookups_succeeded += 1;
            self.stats.hops.record(hops);
        } else {
            self.stats.lookups_failed += 1;
        }
        match lookup.purpose {
            Purpose::User | Purpose::Responsible => {
                if lookup.purpose == Purpose::Responsible {
                    if let Some(&(pending, _)) = self.responsible_pending.get(&lookup.key) {
                        if pending == lookup.id {
                            self.responsible_pending.remove(&lookup.key);
                        }
                    }
                }
                if converged {
                    let (all, _) = lookup.result(lookup.width);
                    self.cache.insert(lookup.key, all, lookup.width, self.now);
                }
                self.push_event(Event::LookupDone(LookupDone {
                    id: lookup.id,
                    key: lookup.key,
                    nodes,
                    hops,
                    converged,
                }));
            }
            Purpose::Join => {
                self.bootstrap.join_lookup = None;
                if lookup.answered_remote() > 0 {
                    self.bootstrap.joined = true;
                    self.catch_up = !self.neighbourhood.is_full();
                    self.last_self_lookup = self.now;
                    self.mark_far_buckets_stale();
                    self.push_event(Event::Bootstrapped {
                        routing_entries: self.table.len(),
                    });
                } else {
                    self.push_event(Event::BootstrapFailed);
                }
            }
            Purpose::SelfLookup => {
                if self.self_lookup == Some(lookup.id) {
                    self.self_lookup = None;
                }
                if self.catch_up {
                    // Still joining: refresh the buckets the closer neighbours put beyond us.
                    self.mark_far_buckets_stale();
                    let found_nothing = self.neighbourhood_version == self.self_lookup_version;
                    if self.neighbourhood.is_full() || found_nothing {
                        self.catch_up = false;
                    }
                }
            }
            Purpose::Refresh => {}
        }
    }

    /// After joining, refresh every bucket farther than the closest neighbour (Kademlia's
    /// join), spread over the next ticks. Later self-lookups that find a closer neighbour
    /// extend this to the buckets between; buckets refreshed this way once are left alone.
    pub(super) fn mark_far_buckets_stale(&mut self) {
        let Some(closest) = self.neighbourhood.infos().first().copied() else {
            return;
        };
        let now = self.now;
        let Some((index, _)) = self.table.bucket_for(closest.id, now) else {
            return;
        };
        for bucket in self.refreshed_below..index {
            self.table.bucket_mut(bucket).last_lookup = None;
        }
        self.refreshed_below = self.refreshed_below.max(index);
    }
}
