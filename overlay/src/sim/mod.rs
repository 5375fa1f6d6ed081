//! Deterministic many-node simulation of the overlay: the same `Overlay` code for every node,
//! one thread, simulated time, seeded randomness.
//!
//! Time is nanoseconds since the start; each node sees `base + ns` as its `Instant`. A binary
//! heap orders what happens next: message deliveries (random latency, random loss), node timers
//! and scripted actions (joins, lookups, checks). Messages are handed over as values by default;
//! with `codec` they go through `encode`/`decode` with the cluster secret, as on the wire.
//!
//! A run (`Simulation::run`): nodes join one after another, each through one random node that
//! joined before it; the network settles; then at the churn instant a fraction fails at once
//! (and a fraction leaves gracefully, and new nodes may join), and for `duration` random live
//! nodes look up random keys. The truth (the N closest live nodes) is computed from the global
//! view the simulator has and the nodes do not.

mod config;
mod report;

pub use config::{OverlayTuning, SimConfig};
pub use report::SimReport;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::auth::ClusterSecret;
use crate::config::Config;
use crate::event::{Event, Responsible};
use crate::id::{IdBuildHasher, NodeId, NodeInfo};
use crate::lookup::LookupId;
use crate::message::Message;
use crate::overlay::Overlay;
use crate::stats::HopsHistogram;

pub const SIM_NODES_MAX: usize = 1 << 24;
/// UDP port of every simulated node.
const SIM_PORT: u16 = 7000;
/// Nodes whose neighbourhood and table are checked against the truth at the end.
const SAMPLE_NODES_MAX: usize = 500;
/// The secret of the simulated cluster (codec mode).
const SIM_SECRET: &[u8] = b"ds-sim cluster secret, not for production";
const WRONG_SECRET: &[u8] = b"a secret that is not the cluster's";

enum Payload {
    Message(Message),
    Datagram(Vec<u8>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Check {
    Lookup,
    AccuracyDuring,
    AccuracyFinal,
}

enum What {
    Deliver {
        to: u32,
        from: u32,
        payload: Payload,
    },
    Timer {
        node: u32,
    },
    Join {
        node: u32,
    },
    Start(Check),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NodeState {
    /// Created, not started yet.
    Waiting,
    Alive,
    /// Failed or left; never runs again.
    Gone,
}

struct SimNode {
    overlay: Overlay,
    state: NodeState,
    /// The earliest timer event queued for this node (u64::MAX: none).
    timer_at: u64,
    intruder: bool,
}

struct Tracked {
    key: NodeId,
    check: Check,
    /// Simulated time it started at.
    started: u64,
}

/// Lookups started this soon after the churn instant are also counted apart.
const EARLY_NANOS: u64 = 10_000_000_000;

#[derive(Default)]
struct Tally {
    done: usize,
    good: usize,
}

pub struct Simulation {
    config: SimConfig,
    base: Instant,
    now: u64,
    rng: ChaCha8Rng,
    nodes: Vec<SimNode>,
    /// (time, sequence, slot): earliest first, ties in scheduling order. The payloads wait in
    /// `slots` so the heap moves 24-byte entries, not messages.
    queue: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slots: Vec<Option<What>>,
    free_slots: Vec<u32>,
    sequence: u64,
    tracked: HashMap<(u32, LookupId), Tracked, IdBuildHasher>,
    lookups_started: usize,
    lookup_success: Tally,
    /// Lookups started within `EARLY_NANOS` of the churn instant.
    lookup_success_early: Tally,
    lookup_converged: Tally,
    hops: HopsHistogram,
    accuracy_during: Tally,
    accuracy_final: Tally,
    started_checks: [usize; 3],
    window: Option<(u64, u64)>,
    messages_total: u64,
    messages_in_window: u64,
    messages_join: u64,
    messages_lost: u64,
    messages_to_dead: u64,
    events: u64,
    buf: Vec<u8>,
}

fn node_addr(index: u32) -> SocketAddr {
    assert!((index as usize) < SIM_NODES_MAX);
    let [_, a, b, c] = index.to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, a, b, c), SIM_PORT))
}

fn node_index(addr: SocketAddr) -> u32 {
    match addr {
        SocketAddr::V4(v4) => {
            let [_, a, b, c] = v4.ip().octets();
            u32::from_be_bytes([0, a, b, c])
        }
        SocketAddr::V6(_) => panic!("simulated nodes have IPv4 addresses"),
    }
}

impl Simulation {
    pub fn new(config: SimConfig) -> Simulation {
        let total = config.nodes + config.joins + config.intruders;
        assert!(config.nodes > 0);
        assert!(total <= SIM_NODES_MAX);
        assert!((0.0..=1.0).contains(&config.loss));
        assert!(config.churn + config.leave < 1.0);
        assert!(config.latency_min <= config.latency_max);
        assert!(
            config.intruders == 0 || config.codec,
            "intruders need the codec"
        );
        let base = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let secret = ClusterSecret::new(SIM_SECRET).expect("valid secret");
        let wrong = ClusterSecret::new(WRONG_SECRET).expect("valid secret");
        let mut nodes = Vec::with_capacity(total);
        for index in 0..total {
            let intruder = index >= config.nodes + config.joins;
            let info = NodeInfo {
                id: NodeId(rng.gen()),
                addr: node_addr(index as u32),
                // Simulated nodes serve no data.
                data_port: 0,
            };
            let mut overlay_config = Config::new(if intruder {
                wrong.clone()
            } else {
                secret.clone()
            });
            overlay_config.k = config.k;
            overlay_config.alpha = config.alpha;
            overlay_config.seed = rng.gen();
            let tuning = &config.overlay;
            overlay_config.neighbourhood_size = tuning.neighbourhood_size;
            overlay_config.request_timeout = tuning.request_timeout;
            overlay_config.tick_interval = tuning.tick_interval;
            overlay_config.refresh_interval = tuning.refresh_interval;
            overlay_config.self_lookup_interval = tuning.self_lookup_interval;
            overlay_config.probe_interval = tuning.probe_interval;
            overlay_config.suspicion_threshold = tuning.suspicion_threshold;
            overlay_config.lookup_timeout = tuning.lookup_timeout;
            let overlay = Overlay::new(info, overlay_config, base).expect("valid config");
            nodes.push(SimNode {
                overlay,
                state: NodeState::Waiting,
                timer_at: u64::MAX,
                intruder,
            });
        }
        Simulation {
            config,
            base,
            now: 0,
            rng,
            nodes,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            sequence: 0,
            tracked: HashMap::default(),
            lookups_started: 0,
            lookup_success: Tally::default(),
            lookup_success_early: Tally::default(),
            lookup_converged: Tally::default(),
            hops: HopsHistogram::default(),
            accuracy_during: Tally::default(),
            accuracy_final: Tally::default(),
            started_checks: [0; 3],
            window: None,
            messages_total: 0,
            messages_in_window: 0,
            messages_join: 0,
            messages_lost: 0,
            messages_to_dead: 0,
            events: 0,
            buf: Vec::new(),
        }
    }

    /// Simulated nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node(&self, index: usize) -> &Overlay {
        &self.nodes[index].overlay
    }

    pub fn is_alive(&self, index: usize) -> bool {
        self.nodes[index].state == NodeState::Alive
    }

    /// Indices of the live nodes.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_alive(i))
            .collect()
    }

    fn instant(&self, at: u64) -> Instant {
        self.base + Duration::from_nanos(at)
    }

    fn schedule(&mut self, at: u64, what: What) {
        assert!(at >= self.now);
        self.sequence += 1;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                assert!(self.slots[slot as usize].is_none());
                self.slots[slot as usize] = Some(what);
                slot
            }
            None => {
                self.slots.push(Some(what));
                (self.slots.len() - 1) as u32
            }
        };
        self.queue.push(Reverse((at, self.sequence, slot)));
    }

    /// Schedules the join of every initial node and runs through the join phase and the
    /// settle time.
    pub fn join_all(&mut self) {
        let nodes = self.config.nodes as u64;
        let spacing = self.config.join_time.as_nanos() as u64 / nodes.max(1);
        for index in 0..self.config.nodes {
            self.schedule(
                self.now + spacing * index as u64,
                What::Join { node: index as u32 },
            );
        }
        let end = self.now
            + self.config.join_time.as_nanos() as u64
            + self.config.settle.as_nanos() as u64;
        self.run_until(end);
    }

    fn start_node(&mut self, index: u32) {
        let node = &self.nodes[index as usize];
        assert_eq!(node.state, NodeState::Waiting);
        // The seed is a random live node that joined before (none for the first).
        let candidates: Vec<u32> = if node.intruder || index as usize >= self.config.nodes {
            (0..self.config.nodes as u32)
                .filter(|&i| self.is_alive(i as usize))
                .collect()
        } else {
            Vec::new()
        };
        let seed = if index == 0 {
            None
        } else if !candidates.is_empty() {
            candidates.choose(&mut self.rng).copied()
        } else {
            // Initial joins: pick among the earlier nodes until a live one is found.
            let mut found = None;
            for _ in 0..64 {
                let pick = self.rng.gen_range(0..index);
                if self.is_alive(pick as usize) {
                    found = Some(pick);
                    break;
                }
            }
            found
        };
        let now = self.instant(self.now);
        let node = &mut self.nodes[index as usize];
        node.state = NodeState::Alive;
        let seeds: Vec<SocketAddr> = seed.map(node_addr).into_iter().collect();
        node.overlay.bootstrap(&seeds, now);
        self.after_input(index);
    }

    /// Drains a node's outputs after an input and arms its timer.
    fn after_input(&mut self, index: u32) {
        let at = index as usize;
        loop {
            let (addr, payload) = if self.config.codec {
                let mut buf = std::mem::take(&mut self.buf);
                let Some(addr) = self.nodes[at].overlay.poll_transmit_datagram(&mut buf) else {
                    self.buf = buf;
                    break;
                };
                let payload = Payload::Datagram(buf.clone());
                self.buf = buf;
                (addr, payload)
            } else {
                let Some((addr, message)) = self.nodes[at].overlay.poll_transmit() else {
                    break;
                };
                (addr, Payload::Message(message))
            };
            self.count_message();
            if self.config.loss > 0.0 && self.rng.gen_bool(self.config.loss) {
                self.messages_lost += 1;
                continue;
            }
            let (low, high) = (
                self.config.latency_min.as_nanos() as u64,
                self.config.latency_max.as_nanos() as u64,
            );
            let latency = if low == high {
                low
            } else {
                self.rng.gen_range(low..=high)
            };
            let to = node_index(addr);
            self.schedule(
                self.now + latency,
                What::Deliver {
                    to,
                    from: index,
                    payload,
                },
            );
        }
        while let Some(event) = self.nodes[at].overlay.poll_event() {
            if let Event::LookupDone(done) = event {
                let Some(tracked) = self.tracked.remove(&(index, done.id)) else {
                    continue;
                };
                self.judge(tracked, &done.nodes, done.hops, done.converged);
            }
        }
        if self.nodes[at].state != NodeState::Alive {
            return;
        }
        if let Some(deadline) = self.nodes[at].overlay.poll_timeout() {
            let deadline = deadline.duration_since(self.base).as_nanos() as u64;
            let deadline = deadline.max(self.now);
            if deadline < self.nodes[at].timer_at {
                self.nodes[at].timer_at = deadline;
                self.schedule(deadline, What::Timer { node: index });
            }
        }
    }

    fn count_message(&mut self) {
        self.messages_total += 1;
        match self.window {
            Some((start, end)) if self.now >= start && self.now < end => {
                self.messages_in_window += 1
            }
            None => self.messages_join += 1,
            _ => {}
        }
    }

    /// Processes everything scheduled before `until`, then sets the clock to it.
    pub fn run_until(&mut self, until: u64) {
        while let Some(&Reverse((at, _, slot))) = self.queue.peek() {
            if at > until {
                break;
            }
            self.queue.pop();
            let what = self.slots[slot as usize]
                .take()
                .expect("scheduled slot is full");
            self.free_slots.push(slot);
            assert!(at >= self.now);
            self.now = at;
            self.events += 1;
            self.dispatch(what);
        }
        self.now = self.now.max(until);
    }

    fn dispatch(&mut self, what: What) {
        let now = self.instant(self.now);
        match what {
            What::Deliver { to, from, payload } => {
                let node = &mut self.nodes[to as usize];
                if node.state != NodeState::Alive {
                    self.messages_to_dead += 1;
                    return;
                }
                let from = node_addr(from);
                match payload {
                    Payload::Message(message) => node.overlay.handle_message(from, message, now),
                    Payload::Datagram(bytes) => {
                        // Refused datagrams are counted by the node itself.
                        let _ = node.overlay.handle_datagram(from, &bytes, now);
                    }
                }
                self.after_input(to);
            }
            What::Timer { node: index } => {
                let node = &mut self.nodes[index as usize];
                if node.state != NodeState::Alive || node.timer_at != self.now {
                    return;
                }
                node.timer_at = u64::MAX;
                node.overlay.handle_timeout(now);
                self.after_input(index);
            }
            What::Join { node } => self.start_node(node),
            What::Start(check) => self.start_check(check),
        }
    }

    fn random_live(&mut self) -> Option<u32> {
        // Rejection sampling: most nodes are alive.
        for _ in 0..1000 {
            let pick = self.rng.gen_range(0..self.nodes.len());
            let node = &self.nodes[pick];
            if node.state == NodeState::Alive && !node.intruder {
                return Some(pick as u32);
            }
        }
        None
    }

    /// Whether `at` is within `EARLY_NANOS` after the churn instant.
    fn is_early(&self, at: u64) -> bool {
        self.window
            .is_some_and(|(start, _)| at >= start && at < start + EARLY_NANOS)
    }

    fn start_check(&mut self, check: Check) {
        let Some(index) = self.random_live() else {
            return;
        };
        let key = NodeId(self.rng.gen());
        let n = self.config.responsible_n;
        let now = self.instant(self.now);
        let started = self.now;
        self.started_checks[check as usize] += 1;
        if check == Check::Lookup && self.is_early(started) {
            self.lookup_success_early.done += 1;
        }
        let overlay = &mut self.nodes[index as usize].overlay;
        match check {
            Check::Lookup => {
                self.lookups_started += 1;
                let id = overlay.start_lookup(key, n, now);
                self.tracked.insert(
                    (index, id),
                    Tracked {
                        key,
                        check,
                        started,
                    },
                );
            }
            Check::AccuracyDuring | Check::AccuracyFinal => {
                match overlay.responsible_set(key, n, now) {
                    Responsible::Ready(nodes) => self.judge(
                        Tracked {
                            key,
                            check,
                            started,
                        },
                        &nodes,
                        0,
                        true,
                    ),
                    Responsible::Pending(id) => {
                        self.tracked.insert(
                            (index, id),
                            Tracked {
                                key,
                                check,
                                started,
                            },
                        );
                    }
                }
            }
        }
        self.after_input(index);
    }

    fn judge(&mut self, tracked: Tracked, nodes: &[NodeInfo], hops: u8, converged: bool) {
        let n = self.config.responsible_n;
        let truth = self.true_closest(tracked.key, n);
        let got: Vec<NodeId> = nodes.iter().map(|node| node.id).collect();
        match tracked.check {
            Check::Lookup => {
                self.lookup_success.done += 1;
                self.lookup_converged.done += 1;
                if converged {
                    self.lookup_converged.good += 1;
                }
                if !got.is_empty() && got.first() == truth.first() {
                    self.lookup_success.good += 1;
                    self.hops.record(hops);
                    if self.is_early(tracked.started) {
                        self.lookup_success_early.good += 1;
                    }
                }
            }
            Check::AccuracyDuring => {
                self.accuracy_during.done += 1;
                self.accuracy_during.good += usize::from(got == truth);
            }
            Check::AccuracyFinal => {
                self.accuracy_final.done += 1;
                self.accuracy_final.good += usize::from(got == truth);
            }
        }
    }

    /// The `n` live honest nodes closest to `key`, closest first (the simulator's global view).
    pub fn true_closest(&self, key: NodeId, n: usize) -> Vec<NodeId> {
        let mut best: Vec<(u128, NodeId)> = Vec::with_capacity(n + 1);
        for node in &self.nodes {
            if node.state != NodeState::Alive || node.intruder {
                continue;
            }
            let id = node.overlay.id();
            let distance = id.distance(key);
            if best.len() == n && distance >= best[n - 1].0 {
                continue;
            }
            let at = best.partition_point(|(d, _)| *d < distance);
            best.insert(at, (distance, id));
            best.truncate(n);
        }
        best.into_iter().map(|(_, id)| id).collect()
    }

    /// Fails `count` random live nodes at once (no LEAVE). Returns their indices.
    pub fn fail_random(&mut self, count: usize) -> Vec<usize> {
        let victims = self.pick_live(count);
        for &victim in &victims {
            self.nodes[victim].state = NodeState::Gone;
        }
        victims
    }

    /// Makes `count` random live nodes leave gracefully. Returns their indices.
    pub fn leave_random(&mut self, count: usize) -> Vec<usize> {
        let leavers = self.pick_live(count);
        for &leaver in &leavers {
            self.leave(leaver);
        }
        leavers
    }

    /// Node `index` sends LEAVE to everyone it knows and stops.
    pub fn leave(&mut self, index: usize) {
        assert!(self.is_alive(index));
        let now = self.instant(self.now);
        self.nodes[index].overlay.leave(now);
        self.nodes[index].state = NodeState::Gone;
        self.after_input(index as u32);
    }

    fn pick_live(&mut self, count: usize) -> Vec<usize> {
        let mut live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.is_alive(i) && !self.nodes[i].intruder)
            .collect();
        live.shuffle(&mut self.rng);
        live.truncate(count);
        live.sort_unstable();
        live
    }

    /// Schedules `count` checks of one kind at random instants in [start, end).
    fn schedule_checks(&mut self, check: Check, count: usize, start: u64, end: u64) {
        for _ in 0..count {
            let at = if end > start {
                self.rng.gen_range(start..end)
            } else {
                start
            };
            self.schedule(at, What::Start(check));
        }
    }

    /// Runs the whole scenario of `SimConfig` and reports.
    pub fn run(&mut self) -> SimReport {
        let wall = Instant::now();
        self.join_all();
        let start = self.now;
        let end = start + self.config.duration.as_nanos() as u64;
        self.window = Some((start, end));
        let fail = (self.config.churn * self.config.nodes as f64).round() as usize;
        let leave = (self.config.leave * self.config.nodes as f64).round() as usize;
        self.fail_random(fail);
        self.leave_random(leave);
        let first_join = self.config.nodes;
        let joins_end = start + (end - start) / 2;
        for offset in 0..self.config.joins {
            let at = self.rng.gen_range(start..joins_end.max(start + 1));
            self.schedule(
                at,
                What::Join {
                    node: (first_join + offset) as u32,
                },
            );
        }
        for offset in 0..self.config.intruders {
            let node = (first_join + self.config.joins + offset) as u32;
            self.schedule(start, What::Join { node });
        }
        self.schedule_checks(Check::Lookup, self.config.lookups, start, end);
        self.schedule_checks(Check::AccuracyDuring, self.config.accuracy_keys, start, end);
        self.run_until(end);
        self.schedule_checks(Check::AccuracyFinal, self.config.accuracy_keys, end, end);
        // Let the last lookups finish (they end by their own deadline at the latest).
        let drain =
            end + (self.config.overlay.lookup_timeout + Duration::from_secs(2)).as_nanos() as u64;
        while !self.tracked.is_empty() && self.now < drain {
            let step = self.now + 1_000_000_000;
            self.run_until(step.min(drain));
        }
        let mut report = self.report();
        report.wall_seconds = wall.elapsed().as_secs_f64();
        report
    }
}
