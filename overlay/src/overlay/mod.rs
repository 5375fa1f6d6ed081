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

mod lookups;
mod maintenance;
mod membership;
mod receive;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::auth::ReplayGuard;
use crate::cache::ResponsibleCache;
use crate::codec::{self, DecodeError};
use crate::config::{Config, ConfigError};
use crate::event::{Event, Responsible};
use crate::id::{IdBuildHasher, NodeId, NodeInfo};
use crate::limits::{
    LOOKUPS_ACTIVE_MAX, LOOKUPS_QUEUED_MAX, RESPONSIBLE_SET_MAX, SEEDS_MAX, TRANSMIT_QUEUE_MAX,
};
use crate::lookup::{Lookup, LookupId, Purpose};
use crate::message::{Body, Message, RequestId};
use crate::neighbourhood::Neighbourhood;
use crate::removed::RemovedMemory;
use crate::requests::Requests;
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
    /// After joining: self-lookups every `bootstrap_retry` while they still find neighbours
    /// (a seed that had just started itself knew nobody to tell us about).
    catch_up: bool,
    /// Bumped on every neighbourhood change; compared across a catch-up self-lookup.
    neighbourhood_version: u64,
    self_lookup_version: u64,
    /// Buckets below this index were marked for refresh after a self-lookup.
    refreshed_below: usize,
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
    /// A node with id and address `info`; its data port is `config.data_port`.
    pub fn new(info: NodeInfo, config: Config, now: Instant) -> Result<Overlay, ConfigError> {
        config.validate()?;
        let info = NodeInfo {
            data_port: config.data_port,
            ..info
        };
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
            catch_up: false,
            neighbourhood_version: 0,
            self_lookup_version: 0,
            refreshed_below: 0,
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
        if let Err(replayed) = self.replay.check(decoded.message.sender, decoded.sequence) {
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
        assert!(
            n > 0 && n <= RESPONSIBLE_SET_MAX,
            "n = {n} outside 1..={RESPONSIBLE_SET_MAX}"
        );
        let width = n.max(self.config.k);
        let id = self.start_lookup_internal(key, n, width, Purpose::User);
        self.finish_call();
        id
    }

    /// The `n` nodes responsible for `key` (closest to it), from the cache while fresh, else by
    /// a lookup whose `Event::LookupDone` carries the answer (`Responsible::Pending`).
    pub fn responsible_set(&mut self, key: NodeId, n: usize, now: Instant) -> Responsible {
        self.advance(now);
        assert!(
            n > 0 && n <= RESPONSIBLE_SET_MAX,
            "n = {n} outside 1..={RESPONSIBLE_SET_MAX}"
        );
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
                sender_data_port: self.info.data_port,
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

    fn advance(&mut self, now: Instant) {
        assert!(now >= self.now, "time went backwards");
        self.now = now;
    }

    fn drop_message(&mut self, reason: DropReason) {
        self.stats.dropped.add(reason);
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
