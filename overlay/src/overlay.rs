//! The sans-IO overlay node: k-buckets, iterative lookups, bootstrap, refresh, failure
//! detection, LEAVE, the exact neighbourhood and the responsible-set cache.
//!
//! Calling order (as quinn-proto's `Connection`): after every `handle_*`, `start_lookup`,
//! `responsible_set`, `bootstrap` or `leave` call, drain `poll_transmit` (or
//! `poll_transmit_datagram`) and `poll_event` until they return `None`, then arm a timer at
//! `poll_timeout` and call `handle_timeout` when it fires. Time comes in with every call and must
//! not go back. Nothing here reads a clock, a socket or OS randomness.
//!
//! Membership rules (the why is in `docs/overlay.md`):
//! - A node enters the table or the neighbourhood only after a message from it was accepted
//!   (MAC-verified on the datagram path). NODES lists only name candidates: lookups ask them,
//!   and one that would enter the neighbourhood is pinged first.
//! - A full bucket keeps its live entries: a newcomer waits as the bucket's candidate while the
//!   least recently seen entry is pinged, and replaces it only once it is suspect.
//! - Every missed reply triggers a ping; `suspicion_threshold` misses in a row make an entry
//!   suspect (not handed out, replaceable), one more removes it.
//! - LEAVE removes its sender at once.

use std::collections::{HashMap, VecDeque};
use std::mem;
use std::net::SocketAddr;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::auth::ReplayGuard;
use crate::bucket::Seen;
use crate::cache::ResponsibleCache;
use crate::codec::{self, DecodeError};
use crate::config::{Config, ConfigError};
use crate::event::{Event, LookupDone, RemoveReason, Responsible};
use crate::id::{IdBuildHasher, NodeId, NodeInfo};
use crate::limits::{
    EVENT_QUEUE_MAX, LOOKUPS_ACTIVE_MAX, LOOKUPS_QUEUED_MAX, NODES_PER_MESSAGE_MAX,
    PINGS_INFLIGHT_MAX, REFRESHES_PER_TICK_MAX, RESPONSIBLE_SET_MAX, SEEDS_MAX,
    TRANSMIT_QUEUE_MAX,
};
use crate::lookup::{Lookup, LookupId, Progress, Purpose};
use crate::message::{Body, Message, RequestId};
use crate::neighbourhood::Neighbourhood;
use crate::removed::RemovedMemory;
use crate::requests::{Request, RequestKind, Requests};
use crate::stats::{DropReason, Stats};
use crate::table::RoutingTable;

#[derive(Default)]
struct Bootstrap {
    seeds: Vec<SocketAddr>,
    in_flight: usize,
    joined: bool,
    join_lookup: Option<LookupId>,
    last_attempt: Option<Instant>,
}

pub struct Overlay {
    info: NodeInfo,
    config: Config,
    rng: ChaCha8Rng,
    table: RoutingTable,
    neighbourhood: Neighbourhood,
    requests: Requests,
    lookups: Vec<Lookup>,
    queued: VecDeque<Lookup>,
    next_lookup: u64,
    /// Responsible-set lookups running, by key: (lookup, width).
    responsible_pending: HashMap<NodeId, (LookupId, usize), IdBuildHasher>,
    cache: ResponsibleCache,
    removed: RemovedMemory,
    replay: ReplayGuard,
    transmits: VecDeque<(SocketAddr, Message)>,
    events: VecDeque<Event>,
    stats: Stats,
    bootstrap: Bootstrap,
    next_tick: Instant,
    last_self_lookup: Instant,
    self_lookup_wanted: bool,
    self_lookup: Option<LookupId>,
    next_sequence: u64,
    left: bool,
    now: Instant,
    neighbourhood_dirty: bool,
    lookups_dirty: bool,
    scratch_closest: Vec<(u128, NodeInfo)>,
    /// Used from `&self` (closest_into), hence the `Cell`.
    scratch_slots: std::cell::Cell<Vec<(u128, u32)>>,
    scratch_queries: Vec<(NodeInfo, u8)>,
    scratch_lookups: Vec<LookupId>,
}

impl Overlay {
    pub fn new(info: NodeInfo, config: Config, now: Instant) -> Result<Overlay, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        // A random phase keeps the ticks of nodes started together apart.
        let phase = rng.gen_range(0..=config.tick_interval.as_nanos() as u64);
        Ok(Overlay {
            info,
            table: RoutingTable::new(info.id, config.k),
            neighbourhood: Neighbourhood::new(info.id, config.neighbourhood_size),
            requests: Requests::new(),
            lookups: Vec::new(),
            queued: VecDeque::new(),
            next_lookup: 1,
            responsible_pending: HashMap::default(),
            cache: ResponsibleCache::new(config.responsible_ttl),
            removed: RemovedMemory::new(config.removed_memory),
            replay: ReplayGuard::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            bootstrap: Bootstrap::default(),
            next_tick: now + std::time::Duration::from_nanos(phase),
            last_self_lookup: now,
            self_lookup_wanted: false,
            self_lookup: None,
            next_sequence: config.sequence_start,
            left: false,
            now,
            neighbourhood_dirty: false,
            lookups_dirty: false,
            scratch_closest: Vec::new(),
            scratch_slots: std::cell::Cell::new(Vec::new()),
            scratch_queries: Vec::new(),
            scratch_lookups: Vec::new(),
            rng,
            config,
        })
    }

    pub fn id(&self) -> NodeId {
        self.info.id
    }

    pub fn info(&self) -> NodeInfo {
        self.info
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the bootstrap's self-lookup has completed (or the node started alone).
    pub fn is_joined(&self) -> bool {
        self.bootstrap.joined
    }

    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Every routing table entry (suspects included), shallow buckets first.
    pub fn routing_table(&self) -> Vec<NodeInfo> {
        self.table.iter().map(|entry| entry.info).collect()
    }

    pub fn routing_entries(&self) -> usize {
        self.table.len()
    }

    /// The nodes closest to this one, closest first (exact: see the module doc).
    pub fn neighbourhood(&self) -> &[NodeInfo] {
        self.neighbourhood.infos()
    }

    /// Whether `id` is in the routing table or the neighbourhood.
    pub fn knows(&self, id: NodeId) -> bool {
        self.table.contains(id) || self.neighbourhood.contains(id)
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.stats;
        stats.routing_entries = self.table.len();
        stats.neighbourhood_entries = self.neighbourhood.len();
        stats
    }

    // ----- inputs -----

    /// A message that arrived from `from` (already decoded and authenticated by the driver, or
    /// handed over by the simulator).
    pub fn handle_message(&mut self, from: SocketAddr, message: Message, now: Instant) {
        self.advance(now);
        self.receive(from, message);
        self.finish_call();
    }

    /// A datagram that arrived from `from`: decoded, authenticated, checked against the
    /// sender's replay window, then handled. Refused datagrams are counted and returned.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), DecodeError> {
        self.advance(now);
        let decoded = match codec::decode(bytes, &self.config.secret) {
            Ok(decoded) => decoded,
            Err(error) => {
                self.stats.dropped.add(error.into());
                return Err(error);
            }
        };
        if let Err(replayed) = self
            .replay
            .check(decoded.message.sender, decoded.sequence)
        {
            let error = DecodeError::from(replayed);
            self.stats.dropped.add(error.into());
            return Err(error);
        }
        self.receive(from, decoded.message);
        self.finish_call();
        Ok(())
    }

    /// Time passed: expire requests and lookups, run the maintenance tick when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if self.left {
            return;
        }
        while let Some(request) = self.requests.pop_expired(now) {
            self.on_request_timeout(request);
        }
        if now >= self.next_tick {
            self.tick();
        }
        self.finish_call();
    }

    /// Joins through `seeds` (addresses only; ids are learned from the answers). Retries by
    /// itself every `bootstrap_retry` while no seed answers. No seeds: this node starts alone.
    pub fn bootstrap(&mut self, seeds: &[SocketAddr], now: Instant) {
        self.advance(now);
        assert!(!self.left, "bootstrap after leave");
        self.bootstrap.seeds = seeds
            .iter()
            .copied()
            .filter(|seed| *seed != self.info.addr)
            .take(SEEDS_MAX)
            .collect();
        if self.bootstrap.seeds.is_empty() {
            self.bootstrap.joined = true;
        } else {
            self.send_bootstrap();
        }
        self.finish_call();
    }

    /// Starts a lookup of the `n` nodes closest to `key`; the answer comes as
    /// `Event::LookupDone` with the returned id.
    pub fn start_lookup(&mut self, key: NodeId, n: usize, now: Instant) -> LookupId {
        self.advance(now);
        assert!(n > 0 && n <= RESPONSIBLE_SET_MAX, "n = {n} outside 1..={RESPONSIBLE_SET_MAX}");
        let width = n.max(self.config.k);
        let id = self.start_lookup_internal(key, n, width, Purpose::User);
        self.finish_call();
        id
    }

    /// The `n` nodes responsible for `key` (closest to it), from the cache while fresh, else by
    /// a lookup whose `Event::LookupDone` carries the answer (`Responsible::Pending`).
    pub fn responsible_set(&mut self, key: NodeId, n: usize, now: Instant) -> Responsible {
        self.advance(now);
        assert!(n > 0 && n <= RESPONSIBLE_SET_MAX, "n = {n} outside 1..={RESPONSIBLE_SET_MAX}");
        if let Some(nodes) = self.cache.get(key, n, now, &self.removed) {
            self.stats.responsible_cache_hits += 1;
            return Responsible::Ready(nodes);
        }
        self.stats.responsible_cache_misses += 1;
        let width = n.max(self.config.k);
        if let Some(&(id, pending_width)) = self.responsible_pending.get(&key) {
            if pending_width >= width {
                return Responsible::Pending(id);
            }
        }
        let id = LookupId(self.next_lookup);
        self.responsible_pending.insert(key, (id, width));
        let started = self.start_lookup_internal(key, n, width, Purpose::Responsible);
        assert_eq!(started, id);
        self.finish_call();
        Responsible::Pending(id)
    }

    /// Says goodbye: LEAVE to every node in the table and the neighbourhood. Afterwards the
    /// node only drains its transmit queue; every input is ignored.
    pub fn leave(&mut self, now: Instant) {
        self.advance(now);
        if self.left {
            return;
        }
        let mut targets: Vec<NodeInfo> = self.table.iter().map(|entry| entry.info).collect();
        for info in self.neighbourhood.infos() {
            if !self.table.contains(info.id) {
                targets.push(*info);
            }
        }
        for target in targets {
            let message = Message {
                sender: self.info.id,
                receiver: Some(target.id),
                request: RequestId(0),
                body: Body::Leave,
            };
            self.send(target.addr, message);
        }
        self.left = true;
        self.lookups.clear();
        self.queued.clear();
        self.requests.clear();
        self.responsible_pending.clear();
    }

    // ----- outputs -----

    /// The next message to send, as a value.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Message)> {
        self.transmits.pop_front()
    }

    /// The next message to send, encoded and authenticated into `buf` (cleared first).
    pub fn poll_transmit_datagram(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (addr, message) = self.transmits.pop_front()?;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        codec::encode(&message, sequence, &self.config.secret, buf);
        Some(addr)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next; `None` after `leave`.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.left {
            return None;
        }
        let tick = self.next_tick;
        Some(match self.requests.next_deadline() {
            Some(deadline) => deadline.min(tick),
            None => tick,
        })
    }

    // ----- receiving -----

    fn advance(&mut self, now: Instant) {
        assert!(now >= self.now, "time went backwards");
        self.now = now;
    }

    fn drop_message(&mut self, reason: DropReason) {
        self.stats.dropped.add(reason);
    }

    fn receive(&mut self, from: SocketAddr, message: Message) {
        if self.left {
            self.drop_message(DropReason::Left);
            return;
        }
        if message.sender == self.info.id {
            self.drop_message(DropReason::SelfId);
            return;
        }
        match message.receiver {
            Some(receiver) if receiver != self.info.id => {
                self.drop_message(DropReason::Misdirected);
                return;
            }
            None if !message.body.is_request() => {
                self.drop_message(DropReason::Misdirected);
                return;
            }
            _ => {}
        }
        self.stats.messages_received += 1;
        let sender = NodeInfo {
            id: message.sender,
            addr: from,
        };
        let request = message.request;
        match message.body {
            Body::Ping => {
                self.note_alive(sender, true);
                self.reply(sender, request, Body::Pong);
            }
            Body::FindNode { key, count } => {
                self.note_alive(sender, true);
                let count = usize::from(count).clamp(1, NODES_PER_MESSAGE_MAX);
                let nodes = self.closest_nodes(key, count, Some(sender.id));
                self.reply(sender, request, Body::Nodes { nodes });
            }
            Body::Pong => self.handle_pong(sender, request),
            Body::Nodes { nodes } => self.handle_nodes(sender, request, nodes),
            Body::Leave => self.remove_peer(sender.id, RemoveReason::Left),
        }
    }

    fn reply(&mut self, to: NodeInfo, request: RequestId, body: Body) {
        let message = Message {
            sender: self.info.id,
            receiver: Some(to.id),
            request,
            body,
        };
        self.send(to.addr, message);
    }

    fn handle_pong(&mut self, sender: NodeInfo, request: RequestId) {
        let taken = self.requests.take_if(request, |pending| {
            pending.kind == RequestKind::Ping && pending.to == Some(sender.id)
        });
        if taken.is_none() {
            self.drop_message(DropReason::Unsolicited);
            return;
        }
        self.note_alive(sender, false);
    }

    fn handle_nodes(&mut self, sender: NodeInfo, request: RequestId, mut nodes: Vec<NodeInfo>) {
        let taken = self.requests.take_if(request, |pending| match pending.kind {
            RequestKind::FindNode { .. } => pending.to == Some(sender.id),
            RequestKind::Bootstrap => pending.addr == sender.addr,
            RequestKind::Ping => false,
        });
        let Some(taken) = taken else {
            self.drop_message(DropReason::Unsolicited);
            return;
        };
        self.note_alive(sender, false);
        let self_id = self.info.id;
        nodes.truncate(NODES_PER_MESSAGE_MAX);
        nodes.retain(|node| node.id != self_id && node.id != sender.id);
        match taken.kind {
            RequestKind::FindNode { lookup, depth } => {
                let Some(at) = self.lookup_index(lookup) else {
                    return;
                };
                // A self-lookup asks the would-be neighbours itself; other lookups may stumble
                // on a node near us that we did not know.
                if !matches!(self.lookups[at].purpose, Purpose::Join | Purpose::SelfLookup) {
                    for node in &nodes {
                        self.consider_neighbour(*node);
                    }
                }
                let Some(at) = self.lookup_index(lookup) else {
                    return;
                };
                self.lookups[at].finish(sender.id, true);
                self.feed_lookup(at, &nodes, depth.saturating_add(1));
                self.drive_lookup(lookup);
            }
            RequestKind::Bootstrap => {
                assert!(self.bootstrap.in_flight > 0);
                self.bootstrap.in_flight -= 1;
                let lookup = match self.bootstrap.join_lookup {
                    Some(lookup) => lookup,
                    None if !self.bootstrap.joined => {
                        let width = self.self_lookup_width();
                        let lookup =
                            self.start_lookup_internal(self.info.id, width, width, Purpose::Join);
                        self.bootstrap.join_lookup = Some(lookup);
                        lookup
                    }
                    None => return,
                };
                if let Some(at) = self.lookup_index(lookup) {
                    self.feed_lookup(at, &nodes, 1);
                    self.drive_lookup(lookup);
                }
            }
            RequestKind::Ping => unreachable!("filtered by take_if"),
        }
    }

    fn feed_lookup(&mut self, at: usize, nodes: &[NodeInfo], depth: u8) {
        let now = self.now;
        for node in nodes {
            if self.removed.get(node.id, now).is_none() {
                self.lookups[at].add_candidate(*node, depth);
            }
        }
    }

    /// A node named in a NODES list: if it would enter the neighbourhood, verify it first.
    fn consider_neighbour(&mut self, node: NodeInfo) {
        if !self.neighbourhood.would_admit(node.id) {
            return;
        }
        if self.removed.get(node.id, self.now).is_some() {
            return;
        }
        if let Some(entry) = self.table.get(node.id) {
            // Verified already (a full bucket's neighbour that was pushed out earlier).
            let (info, last_seen) = (entry.info, entry.last_seen);
            if self.neighbourhood.seen(info, last_seen) {
                self.neighbourhood_dirty = true;
            }
            return;
        }
        self.ping(node);
    }

    /// A message from `info` was accepted. `via_request`: it was a PING or FIND_NODE (a node
    /// that left comes back only by asking, not through late replies).
    fn note_alive(&mut self, info: NodeInfo, via_request: bool) {
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
            self.neighbourhood_dirty = true;
        }
    }

    /// `info` contacted us and its bucket is full.
    fn offer_candidate(&mut self, index: usize, info: NodeInfo) {
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
        if self.now.saturating_duration_since(head.last_seen) < self.config.request_timeout {
            // Heard from just now: alive, no ping needed.
            bucket.candidate = None;
            self.stats.evictions_refused += 1;
            return;
        }
        bucket.evicting = Some(head.info.id);
        if !self.ping(head.info) {
            self.table.bucket_mut(index).evicting = None;
        }
    }

    // ----- requests and failures -----

    /// Pings `node` unless a ping to it is in flight already. False if it could not be sent.
    fn ping(&mut self, node: NodeInfo) -> bool {
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
            receiver: Some(node.id),
            request,
            body: Body::Ping,
        };
        self.send(node.addr, message);
        true
    }

    fn send(&mut self, addr: SocketAddr, message: Message) {
        if self.transmits.len() >= TRANSMIT_QUEUE_MAX {
            self.drop_message(DropReason::TransmitQueueFull);
            return;
        }
        self.stats.messages_sent += 1;
        self.transmits.push_back((addr, message));
    }

    fn push_event(&mut self, event: Event) {
        if self.events.len() >= EVENT_QUEUE_MAX {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn on_request_timeout(&mut self, request: Request) {
        self.stats.requests_timed_out += 1;
        match request.kind {
            RequestKind::Ping => {
                self.miss(request.to.expect("a ping names its node"));
            }
            RequestKind::FindNode { lookup, .. } => {
                let to = request.to.expect("a query names its node");
                if let Some(at) = self.lookup_index(lookup) {
                    self.lookups[at].finish(to, false);
                    self.drive_lookup(lookup);
                }
                self.miss(to);
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
    fn miss(&mut self, id: NodeId) {
        let in_table = self.table.record_miss(id);
        let in_neighbourhood = self.neighbourhood.record_miss(id);
        let Some(misses) = in_table.max(in_neighbourhood) else {
            // An unverified candidate that did not answer: do not let NODES lists bring it
            // back at once.
            self.removed.insert(id, RemoveReason::Unresponsive, self.now);
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
    fn remove_peer(&mut self, id: NodeId, reason: RemoveReason) {
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
        if self.neighbourhood.remove(id).is_some() {
            self.neighbourhood_dirty = true;
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

    // ----- lookups -----

    /// The self-lookup counts this node among its closest, hence the + 1: every neighbour
    /// slot gets a verified node.
    fn self_lookup_width(&self) -> usize {
        self.config.k.max(self.config.neighbourhood_size + 1)
    }

    fn lookup_index(&self, id: LookupId) -> Option<usize> {
        self.lookups.iter().position(|lookup| lookup.id == id)
    }

    /// The `count` known nodes closest to `key` (suspects and `exclude` left out), from the
    /// table and the neighbourhood together.
    fn closest_nodes(&mut self, key: NodeId, count: usize, exclude: Option<NodeId>) -> Vec<NodeInfo> {
        let mut closest = mem::take(&mut self.scratch_closest);
        self.closest_into(key, count, exclude, &mut closest);
        let nodes = closest.iter().map(|(_, node)| *node).collect();
        self.scratch_closest = closest;
        nodes
    }

    fn closest_into(
        &self,
        key: NodeId,
        count: usize,
        exclude: Option<NodeId>,
        out: &mut Vec<(u128, NodeInfo)>,
    ) {
        let threshold = self.config.suspicion_threshold;
        let mut slots = self.scratch_slots.take();
        self.table.closest(key, count, threshold, exclude, out, &mut slots);
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

    fn start_lookup_internal(
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

    fn activate(&mut self, mut lookup: Lookup) {
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
    fn drive_lookup(&mut self, id: LookupId) {
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

    fn drive_all_lookups(&mut self) {
        let mut ids = mem::take(&mut self.scratch_lookups);
        ids.clear();
        ids.extend(self.lookups.iter().map(|lookup| lookup.id));
        for id in &ids {
            self.drive_lookup(*id);
        }
        self.scratch_lookups = ids;
    }

    /// A lookup ended: `finished` false when it was cut short (deadline, overload).
    fn complete(&mut self, lookup: Lookup, finished: bool) {
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
            }
            Purpose::Refresh => {}
        }
    }

    /// After joining, refresh every bucket farther than the closest neighbour (Kademlia's
    /// join), spread over the next ticks.
    fn mark_far_buckets_stale(&mut self) {
        let Some(closest) = self.neighbourhood.infos().first().copied() else {
            return;
        };
        let now = self.now;
        let Some((index, _)) = self.table.bucket_for(closest.id, now) else {
            return;
        };
        for bucket in 0..index {
            self.table.bucket_mut(bucket).last_lookup = None;
        }
    }

    // ----- maintenance -----

    fn send_bootstrap(&mut self) {
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

    fn tick(&mut self) {
        let now = self.now;
        self.next_tick = now + self.config.tick_interval;
        // Lookups past their deadline end with what they have.
        while let Some(at) = self.lookups.iter().position(|lookup| lookup.deadline <= now) {
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
        let self_lookup_due = now >= self.last_self_lookup + self.config.self_lookup_interval;
        if self.self_lookup.is_none() && (self.self_lookup_wanted || self_lookup_due) {
            self.self_lookup_wanted = false;
            self.last_self_lookup = now;
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

    /// Ends every public call: drives lookups touched by removals, reports the neighbourhood.
    fn finish_call(&mut self) {
        if self.lookups_dirty {
            self.lookups_dirty = false;
            self.drive_all_lookups();
        }
        if self.neighbourhood_dirty {
            self.neighbourhood_dirty = false;
            self.push_event(Event::NeighbourhoodChanged);
        }
        assert!(self.lookups.len() <= LOOKUPS_ACTIVE_MAX);
        assert!(self.queued.len() <= LOOKUPS_QUEUED_MAX);
        assert!(self.transmits.len() <= TRANSMIT_QUEUE_MAX);
    }
}
