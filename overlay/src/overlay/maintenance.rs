//! The periodic work: bootstrap retries, lookup deadlines, bucket refresh, self-lookups and
//! neighbour probes.

use std::mem;

use super::Overlay;
use crate::limits::{LOOKUPS_ACTIVE_MAX, NODES_PER_MESSAGE_MAX, REFRESHES_PER_TICK_MAX};
use crate::lookup::Purpose;
use crate::message::{Body, Message};
use crate::requests::{Request, RequestKind};
use crate::stats::DropReason;

impl Overlay {
    // ----- maintenance -----

    pub(super) fn send_bootstrap(&mut self) {
        self.bootstrap.last_attempt = Some(self.now);
        let deadline = self.now + self.config.request_timeout;
        let count = self.self_lookup_width().min(NODES_PER_MESSAGE_MAX) as u8;
        let seeds = mem::take(&mut self.bootstrap.seeds);
        for seed in &seeds {
            let request = Request {
                to: None,
                addr: *seed,
                kind: RequestKind::Bootstrap,
            };
            let Some(request) = self.requests.insert(request, deadline) else {
                self.drop_message(DropReason::RequestsFull);
                continue;
            };
            self.bootstrap.in_flight += 1;
            let message = Message {
                sender: self.info.id,
                sender_data_port: self.info.data_port,
                receiver: None,
                request,
                body: Body::FindNode {
                    key: self.info.id,
                    count,
                },
            };
            self.send(*seed, message);
        }
        self.bootstrap.seeds = seeds;
    }

    pub(super) fn tick(&mut self) {
        let now = self.now;
        self.next_tick = now + self.config.tick_interval;
        // Lookups past their deadline end with what they have.
        while let Some(at) = self
            .lookups
            .iter()
            .position(|lookup| lookup.deadline <= now)
        {
            let lookup = self.lookups.swap_remove(at);
            self.complete(lookup, false);
        }
        while self.lookups.len() < LOOKUPS_ACTIVE_MAX {
            let Some(next) = self.queued.pop_front() else {
                break;
            };
            self.activate(next);
        }
        // Bootstrap again while no seed answered, or when every peer is gone.
        let retry_due = self
            .bootstrap
            .last_attempt
            .is_none_or(|at| now >= at + self.config.bootstrap_retry);
        if !self.bootstrap.seeds.is_empty()
            && (!self.bootstrap.joined || self.table.is_empty())
            && self.bootstrap.in_flight == 0
            && self.bootstrap.join_lookup.is_none()
            && retry_due
        {
            self.bootstrap.joined = false;
            self.send_bootstrap();
        }
        if !self.bootstrap.joined || self.table.is_empty() {
            return;
        }
        // Refresh stale buckets, a few per tick.
        let mut started = 0;
        for index in 0..self.table.bucket_count() {
            if started == REFRESHES_PER_TICK_MAX {
                break;
            }
            let due = self
                .table
                .bucket(index)
                .last_lookup
                .is_none_or(|at| now >= at + self.config.refresh_interval);
            if due {
                let key = self.info.id.random_in_bucket(index, &mut self.rng);
                let k = self.config.k;
                self.start_lookup_internal(key, k, k, Purpose::Refresh);
                started += 1;
            }
        }
        // Keep the neighbourhood exact.
        let interval = if self.catch_up {
            self.config.bootstrap_retry
        } else {
            self.config.self_lookup_interval
        };
        let self_lookup_due = now >= self.last_self_lookup + interval;
        if self.self_lookup.is_none() && (self.self_lookup_wanted || self_lookup_due) {
            self.self_lookup_wanted = false;
            self.last_self_lookup = now;
            self.self_lookup_version = self.neighbourhood_version;
            let width = self.self_lookup_width();
            let id = self.start_lookup_internal(self.info.id, width, width, Purpose::SelfLookup);
            if self.lookup_index(id).is_some() {
                self.self_lookup = Some(id);
            }
        }
        // Probe neighbours not heard from lately.
        let mut stale = mem::take(&mut self.scratch_closest);
        stale.clear();
        for entry in self.neighbourhood.entries() {
            if now.saturating_duration_since(entry.last_seen) >= self.config.probe_interval {
                stale.push((0, entry.info));
            }
        }
        for (_, info) in &stale {
            self.ping(*info);
        }
        self.scratch_closest = stale;
    }
}
