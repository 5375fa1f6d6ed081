//! The overlay's driver on the management thread: one UDP socket, the sans-IO `ds_overlay`
//! core, and the queries of the data cores (OVERLAY requests), answered into their inboxes.
//! Nothing here is on the data path of a request; what the cores need on it (the data
//! addresses of the nodes closest to an id) they read from the [`MembersWatch`] the driver
//! republishes, without a round trip to this thread.
//!
//! Start-up is in two steps so that every overlay message announces the data port the cores
//! really bound (the config may say port 0): [`OverlayDriver::bind`] binds the UDP socket and
//! makes the channels the cores need, the cores start and bind, then [`BoundOverlay::start`]
//! starts the overlay with that port.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ds_overlay::{
    distance, ClusterSecret, Config, DropReason, Event, LookupId, NodeId, NodeInfo, Overlay,
    Responsible, Stats,
};
use ds_proto::{OverlayPeer, OverlayReply};

use crate::reactor::mailbox::Inbox;
use crate::service::ctx::{Message, OverlayQuery};
use crate::service::owner::{OpError, ShardReply};

/// Queries waiting for the management thread; more are refused (the client gets UNAVAILABLE).
const QUERIES_MAX: usize = 256;
/// Longest the thread sleeps in `recv`, so queries and the stop flag are seen promptly.
const POLL_STEP: Duration = Duration::from_millis(5);
/// Largest datagram the overlay sends or accepts.
const DATAGRAM_BYTES_MAX: usize = 65_536;
/// How long a stopping node keeps flushing its LEAVE messages.
const LEAVE_FLUSH: Duration = Duration::from_millis(100);

/// The overlay's counters as the stats socket shows them.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct OverlaySnapshot {
    pub node_id: String,
    pub addr: String,
    pub joined: bool,
    pub routing_entries: usize,
    pub neighbourhood_entries: usize,
    pub lookups_started: u64,
    pub lookups_succeeded: u64,
    pub lookups_failed: u64,
    pub lookup_hops_p50: u32,
    pub lookup_hops_p99: u32,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub messages_dropped: u64,
    pub dropped_by_reason: HashMap<String, u64>,
    pub peers_added: u64,
    pub peers_removed: u64,
    pub responsible_cache_hits: u64,
    pub responsible_cache_misses: u64,
    /// How many times the neighbourhood changed.
    pub neighbourhood_changes: u64,
    /// Nodes known to serve data, this one included (what the cores place objects on).
    pub members: usize,
}

/// A node that serves data, as the overlay knows it: its node id and the address of its data
/// service (the object protocol over TCP: the node's overlay IP and the data port it announces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    pub id: u128,
    pub data: SocketAddr,
}

/// The nodes this node knows that serve data: itself and every routing table and neighbourhood
/// entry that announced a data port, sorted by id (no id twice).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberList {
    /// Bumped on every change; 0 is the empty list from before the overlay ran.
    pub generation: u64,
    pub members: Vec<Member>,
}

impl MemberList {
    /// Members `ids` (sorted, distinct), all announcing data address `data`: for simulations
    /// and tests, which place objects without reaching the nodes.
    pub fn of_ids(ids: &[u128], data: std::net::SocketAddr) -> MemberList {
        MemberList {
            generation: 1,
            members: ids.iter().map(|&id| Member { id, data }).collect(),
        }
    }

    /// The `n` members closest to `key` by XOR distance, closest first (fewer if fewer are
    /// known).
    pub fn closest(&self, key: u128, n: usize) -> Vec<Member> {
        let mut out = Vec::with_capacity(n.min(self.members.len()));
        self.closest_into(key, n, &mut out);
        out
    }

    /// [`MemberList::closest`] into `out` (cleared first), allocating nothing once `out` has
    /// room for `n`: for the data path.
    pub fn closest_into(&self, key: u128, n: usize, out: &mut Vec<Member>) {
        out.clear();
        if n == 0 {
            return;
        }
        for member in &self.members {
            let distance = member.id ^ key;
            if out.len() == n && distance >= out[n - 1].id ^ key {
                continue;
            }
            // Ids are distinct, so distances are too: insert in order, drop the farthest.
            let at = out.partition_point(|m| m.id ^ key < distance);
            if out.len() == n {
                out.pop();
            }
            out.insert(at, *member);
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The current [`MemberList`], shared with the data cores: the driver republishes it whenever
/// it changes; readers take an `Arc` of it (a short lock), or only look at the generation (an
/// atomic load) to see whether the copy they hold is still current.
#[derive(Default)]
pub struct MembersWatch {
    current: Mutex<Arc<MemberList>>,
    generation: AtomicU64,
}

impl MembersWatch {
    /// The members as last published.
    pub fn current(&self) -> Arc<MemberList> {
        match self.current.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The generation of the current list, without taking the lock.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Publishes `members` (any order; sorted and de-duplicated by id here) unless they equal
    /// the current list. Returns whether the list changed.
    pub fn publish(&self, mut members: Vec<Member>) -> bool {
        members.sort_by_key(|member| member.id);
        members.dedup_by_key(|member| member.id);
        let mut current = match self.current.lock() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        if current.members == members {
            return false;
        }
        let generation = current.generation + 1;
        *current = Arc::new(MemberList {
            generation,
            members,
        });
        self.generation.store(generation, Ordering::Release);
        true
    }
}

/// The node's neighbourhood as the overlay last reported it, for whoever must react to changes
/// (repair, issue 6): `changed` bumps `generation` and wakes every waiter.
#[derive(Default)]
pub struct NeighbourhoodWatch {
    state: Mutex<(u64, Vec<NodeInfo>)>,
    changed: std::sync::Condvar,
}

impl NeighbourhoodWatch {
    /// The generation (how many changes so far) and the nodes closest to this one.
    pub fn current(&self) -> (u64, Vec<NodeInfo>) {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until the generation passes `seen` or `timeout` ends; returns the current state.
    pub fn wait_change(&self, seen: u64, timeout: Duration) -> (u64, Vec<NodeInfo>) {
        let Ok(guard) = self.state.lock() else {
            return (seen, Vec::new());
        };
        match self
            .changed
            .wait_timeout_while(guard, timeout, |s| s.0 <= seen)
        {
            Ok((state, _)) => state.clone(),
            Err(_) => (seen, Vec::new()),
        }
    }

    fn publish(&self, nodes: Vec<NodeInfo>) {
        if let Ok(mut state) = self.state.lock() {
            state.0 += 1;
            state.1 = nodes;
        }
        self.changed.notify_all();
    }
}

/// The running driver. Dropping it sends LEAVE and stops the thread.
pub struct OverlayDriver {
    pub addr: SocketAddr,
    pub queries: SyncSender<OverlayQuery>,
    pub snapshot: Arc<Mutex<OverlaySnapshot>>,
    /// Changes of the node's neighbourhood.
    pub neighbourhood: Arc<NeighbourhoodWatch>,
    /// The nodes known to serve data, with their data addresses (this node included).
    pub members: Arc<MembersWatch>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub struct OverlaySetup {
    pub node_id: u128,
    pub listen: SocketAddr,
    pub seeds: Vec<SocketAddr>,
    pub secret: Vec<u8>,
    pub k: Option<usize>,
    pub alpha: Option<usize>,
    pub inboxes: Vec<Arc<Inbox<Message>>>,
}

/// The overlay with its socket bound, its config checked and the channels the cores need made,
/// but not running: queries wait in the channel, datagrams in the socket, and `members` stays
/// empty (generation 0) until [`BoundOverlay::start`].
pub struct BoundOverlay {
    pub addr: SocketAddr,
    pub queries: SyncSender<OverlayQuery>,
    pub members: Arc<MembersWatch>,
    socket: UdpSocket,
    receiver: Receiver<OverlayQuery>,
    config: Config,
    node_id: u128,
    seeds: Vec<SocketAddr>,
    inboxes: Vec<Arc<Inbox<Message>>>,
}

impl OverlayDriver {
    /// Binds the overlay's UDP socket and checks its config; [`BoundOverlay::start`] runs it.
    pub fn bind(setup: OverlaySetup) -> anyhow::Result<BoundOverlay> {
        let socket = UdpSocket::bind(setup.listen)
            .with_context(|| format!("binding the overlay's UDP socket {}", setup.listen))?;
        socket
            .set_read_timeout(Some(POLL_STEP))
            .context("overlay socket")?;
        let addr = socket.local_addr().context("overlay socket")?;
        let secret = ClusterSecret::new(&setup.secret).context("overlay.cluster_secret")?;
        let mut config = Config::new(secret);
        if let Some(k) = setup.k {
            config.k = k;
        }
        if let Some(alpha) = setup.alpha {
            config.alpha = alpha;
        }
        config.validate().context("overlay config")?;
        let (queries, receiver) = mpsc::sync_channel(QUERIES_MAX);
        Ok(BoundOverlay {
            addr,
            queries,
            members: Arc::new(MembersWatch::default()),
            socket,
            receiver,
            config,
            node_id: setup.node_id,
            seeds: setup.seeds,
            inboxes: setup.inboxes,
        })
    }

    /// [`OverlayDriver::bind`], then [`BoundOverlay::start`] announcing `data_port`.
    pub fn start(setup: OverlaySetup, data_port: u16) -> anyhow::Result<OverlayDriver> {
        OverlayDriver::bind(setup)?.start(data_port)
    }
}

impl BoundOverlay {
    /// Joins the overlay and runs it on its own thread; every message announces `data_port`
    /// (0: this node serves no data).
    pub fn start(self, data_port: u16) -> anyhow::Result<OverlayDriver> {
        let BoundOverlay {
            addr,
            queries,
            members,
            socket,
            receiver,
            mut config,
            node_id,
            seeds,
            inboxes,
        } = self;
        // Sequence numbers from the wall clock: a restarted node is not taken for a replayer.
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        config.sequence_start = micros;
        config.seed = node_id as u64 ^ micros;
        config.data_port = data_port;
        let info = NodeInfo {
            id: NodeId(node_id),
            addr,
            data_port,
        };
        let mut overlay = Overlay::new(info, config, Instant::now()).context("overlay config")?;
        overlay.bootstrap(&seeds, Instant::now());
        let snapshot = Arc::new(Mutex::new(OverlaySnapshot::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let neighbourhood = Arc::new(NeighbourhoodWatch::default());
        let mut driver = Driver {
            neighbourhood: neighbourhood.clone(),
            members: members.clone(),
            members_dirty: true,
            socket,
            overlay,
            receiver,
            inboxes,
            snapshot: snapshot.clone(),
            pending: HashMap::new(),
            buf: Vec::with_capacity(DATAGRAM_BYTES_MAX),
        };
        driver.publish_members();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ds-overlay".into())
            .spawn(move || driver.run(&thread_stop))
            .context("spawning the overlay thread")?;
        tracing::info!(%addr, data_port, seeds = seeds.len(), "overlay started");
        Ok(OverlayDriver {
            addr,
            queries,
            snapshot,
            neighbourhood,
            members,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for OverlayDriver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Driver {
    neighbourhood: Arc<NeighbourhoodWatch>,
    members: Arc<MembersWatch>,
    /// Set by membership events: republish the members after this round of events.
    members_dirty: bool,
    socket: UdpSocket,
    overlay: Overlay,
    receiver: Receiver<OverlayQuery>,
    inboxes: Vec<Arc<Inbox<Message>>>,
    snapshot: Arc<Mutex<OverlaySnapshot>>,
    /// Queries waiting for a lookup.
    pending: HashMap<LookupId, Vec<OverlayQuery>>,
    buf: Vec<u8>,
}

impl Driver {
    fn run(&mut self, stop: &AtomicBool) {
        let mut datagram = vec![0u8; DATAGRAM_BYTES_MAX];
        let mut last_publish = Instant::now() - Duration::from_secs(1);
        loop {
            self.flush();
            self.events();
            if self.members_dirty {
                self.publish_members();
            }
            self.queries();
            self.flush();
            if stop.load(Ordering::SeqCst) {
                self.overlay.leave(Instant::now());
                let until = Instant::now() + LEAVE_FLUSH;
                while Instant::now() < until {
                    self.flush();
                    std::thread::sleep(Duration::from_millis(10));
                }
                self.answer_all_pending(OpError::Internal("the node is stopping".into()));
                return;
            }
            match self.socket.recv_from(&mut datagram) {
                Ok((len, from)) => {
                    if let Err(error) =
                        self.overlay
                            .handle_datagram(from, &datagram[..len], Instant::now())
                    {
                        tracing::debug!(%from, %error, "overlay datagram refused");
                    }
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(error) => {
                    tracing::warn!(%error, "overlay socket");
                    std::thread::sleep(POLL_STEP);
                }
            }
            let now = Instant::now();
            if self.overlay.poll_timeout().is_some_and(|at| at <= now) {
                self.overlay.handle_timeout(now);
            }
            if now - last_publish >= Duration::from_millis(250) {
                self.publish();
                // Also catches data ports that changed without a membership event.
                self.publish_members();
                last_publish = now;
            }
        }
    }

    fn flush(&mut self) {
        while let Some(addr) = self.overlay.poll_transmit_datagram(&mut self.buf) {
            if let Err(error) = self.socket.send_to(&self.buf, addr) {
                tracing::debug!(%addr, %error, "overlay send failed");
            }
        }
    }

    fn events(&mut self) {
        while let Some(event) = self.overlay.poll_event() {
            match event {
                Event::LookupDone(done) => {
                    if let Some(waiting) = self.pending.remove(&done.id) {
                        for query in waiting {
                            let n = query.responsible.map_or(0, |(_, n)| n);
                            let nodes: Vec<NodeInfo> = done.nodes.iter().copied().take(n).collect();
                            self.answer(query, Some(nodes));
                        }
                    }
                }
                Event::NeighbourhoodChanged => {
                    tracing::debug!("overlay neighbourhood changed");
                    self.members_dirty = true;
                    self.neighbourhood
                        .publish(self.overlay.neighbourhood().to_vec());
                }
                Event::PeerAdded(node) => {
                    self.members_dirty = true;
                    tracing::debug!(id = %format!("{:032x}", node.id.0), addr = %node.addr, data_port = node.data_port, "overlay peer added")
                }
                Event::PeerRemoved { node, reason } => {
                    self.members_dirty = true;
                    tracing::info!(id = %format!("{:032x}", node.id.0), addr = %node.addr, ?reason, "overlay peer removed")
                }
                Event::Bootstrapped { routing_entries } => {
                    tracing::info!(routing_entries, "overlay joined")
                }
                Event::BootstrapFailed => tracing::warn!("overlay: no seed answered yet; retrying"),
            }
        }
    }

    fn queries(&mut self) {
        loop {
            let query = match self.receiver.try_recv() {
                Ok(query) => query,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            };
            match query.responsible {
                None => self.answer(query, None),
                Some((key, n)) => {
                    let n = n.clamp(1, ds_overlay::limits::RESPONSIBLE_SET_MAX);
                    match self.overlay.responsible_set(NodeId(key), n, Instant::now()) {
                        Responsible::Ready(nodes) => self.answer(query, Some(nodes)),
                        Responsible::Pending(id) => self.pending.entry(id).or_default().push(query),
                    }
                }
            }
        }
    }

    fn answer(&mut self, query: OverlayQuery, responsible: Option<Vec<NodeInfo>>) {
        let me = self.overlay.info();
        let mut routing = self.overlay.routing_table();
        routing.sort_by_key(|info| distance(info.id, me.id));
        let neighbourhood = self.overlay.neighbourhood().to_vec();
        let stats = OverlaySnapshot {
            neighbourhood_changes: self.neighbourhood.current().0,
            members: self.members.current().len(),
            ..snapshot_of(&self.overlay)
        };
        let document = overlay_document(
            &me,
            &routing,
            &neighbourhood,
            responsible.as_deref(),
            &stats,
        );
        self.reply(query, ShardReply::Document(Ok(document)));
    }

    fn reply(&self, query: OverlayQuery, reply: ShardReply) {
        let Some(inbox) = self.inboxes.get(query.core) else {
            return;
        };
        let mut message = Message::Reply {
            tag: query.tag,
            reply,
        };
        // A full inbox drains quickly; the core is waiting for this very answer.
        for _ in 0..1000 {
            match inbox.push(message) {
                Ok(()) => return,
                Err(back) => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        tracing::error!(core = query.core, "could not deliver an overlay answer");
    }

    fn answer_all_pending(&mut self, error: OpError) {
        for (_, waiting) in std::mem::take(&mut self.pending) {
            for query in waiting {
                self.reply(query, ShardReply::Document(Err(error.clone())));
            }
        }
    }

    fn publish(&self) {
        let changes = self.neighbourhood.current().0;
        let members = self.members.current().len();
        if let Ok(mut slot) = self.snapshot.lock() {
            *slot = snapshot_of(&self.overlay);
            slot.neighbourhood_changes = changes;
            slot.members = members;
        }
    }

    /// Republishes the members if they changed.
    fn publish_members(&mut self) {
        self.members_dirty = false;
        if self.members.publish(members_of(&self.overlay)) {
            let list = self.members.current();
            tracing::debug!(
                generation = list.generation,
                members = list.len(),
                "overlay members changed"
            );
        }
    }
}

/// This node and every node of the routing table and the neighbourhood that announced a data
/// port, with its data address (its overlay IP, its data port).
fn members_of(overlay: &Overlay) -> Vec<Member> {
    std::iter::once(overlay.info())
        .chain(overlay.routing_table())
        .chain(overlay.neighbourhood().iter().copied())
        .filter_map(|info| {
            info.data_addr().map(|data| Member {
                id: info.id.0,
                data,
            })
        })
        .collect()
}

fn snapshot_of(overlay: &Overlay) -> OverlaySnapshot {
    let stats: Stats = overlay.stats();
    let info = overlay.info();
    OverlaySnapshot {
        node_id: format!("{:032x}", info.id.0),
        addr: info.addr.to_string(),
        joined: overlay.is_joined(),
        routing_entries: stats.routing_entries,
        neighbourhood_entries: stats.neighbourhood_entries,
        lookups_started: stats.lookups_started,
        lookups_succeeded: stats.lookups_succeeded,
        lookups_failed: stats.lookups_failed,
        lookup_hops_p50: stats.hops.percentile(0.5),
        lookup_hops_p99: stats.hops.percentile(0.99),
        messages_sent: stats.messages_sent,
        messages_received: stats.messages_received,
        messages_dropped: stats.dropped.total(),
        dropped_by_reason: DropReason::ALL
            .iter()
            .map(|reason| (reason.name().to_string(), stats.dropped.get(*reason)))
            .collect(),
        peers_added: stats.peers_added,
        peers_removed: stats.peers_removed,
        responsible_cache_hits: stats.responsible_cache_hits,
        responsible_cache_misses: stats.responsible_cache_misses,
        neighbourhood_changes: 0,
        members: 0,
    }
}

/// The OVERLAY document: every node with its overlay address and, when it announced one, its
/// data address.
fn overlay_document(
    me: &NodeInfo,
    routing: &[NodeInfo],
    neighbourhood: &[NodeInfo],
    responsible: Option<&[NodeInfo]>,
    stats: &OverlaySnapshot,
) -> Vec<u8> {
    let peer = |info: &NodeInfo| OverlayPeer {
        id: format!("{:032x}", info.id.0),
        addr: info.addr.to_string(),
        data: info.data_addr().map(|addr| addr.to_string()),
    };
    OverlayReply {
        node: peer(me),
        routing: routing.iter().map(peer).collect(),
        neighbourhood: neighbourhood.iter().map(peer).collect(),
        responsible: responsible.map(|nodes| nodes.iter().map(peer).collect()),
        stats: match serde_json::to_value(stats) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        },
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_sees_the_next_neighbourhood() {
        let watch = Arc::new(NeighbourhoodWatch::default());
        assert_eq!(watch.current().0, 0);
        let publisher = watch.clone();
        let node = NodeInfo {
            id: NodeId(7),
            addr: "127.0.0.1:9".parse().unwrap(),
            data_port: 0,
        };
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            publisher.publish(vec![node]);
        });
        let (generation, nodes) = watch.wait_change(0, Duration::from_secs(10));
        assert_eq!((generation, nodes), (1, vec![node]));
        thread.join().unwrap();
        // Nothing new: the wait ends at the timeout with the same state.
        assert_eq!(watch.wait_change(1, Duration::from_millis(10)).0, 1);
    }

    fn member(id: u128) -> Member {
        Member {
            id,
            data: SocketAddr::from(([10, 0, 0, id as u8], 7000)),
        }
    }

    #[test]
    fn closest_members_by_xor_distance() {
        let ids = [0b0000u128, 0b0001, 0b0100, 0b0111, 0b1000, 0b1111, 1 << 100];
        let list = MemberList {
            generation: 1,
            members: ids.iter().map(|&id| member(id)).collect(),
        };
        let ids_of = |members: Vec<Member>| members.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(
            ids_of(list.closest(0b0101, 3)),
            vec![0b0100, 0b0111, 0b0001]
        );
        assert_eq!(ids_of(list.closest(0b1110, 2)), vec![0b1111, 0b1000]);
        assert_eq!(ids_of(list.closest(1 << 100, 1)), vec![1 << 100]);
        assert!(list.closest(5, 0).is_empty());
        // More asked than known: all of them, closest first.
        let all = list.closest(0, 100);
        assert_eq!(all.len(), ids.len());
        assert_eq!(all[0], member(0));
        assert!(MemberList::default().closest(1, 3).is_empty());
        // Against a full sort, for many keys.
        let mut key = 0x9E37_79B9_7F4A_7C15u128;
        let members: Vec<Member> = (0..200u128)
            .map(|i| member(i.wrapping_mul(0xD1B5_4A32_D192_ED03_AEF1_7B4C_6E3D_9A55)))
            .collect();
        let list = MemberList {
            generation: 1,
            members: members.clone(),
        };
        let mut out = Vec::new();
        for _ in 0..100 {
            key = key.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(1);
            let mut sorted = members.clone();
            sorted.sort_by_key(|m| m.id ^ key);
            sorted.truncate(7);
            list.closest_into(key, 7, &mut out);
            assert_eq!(out, sorted);
        }
    }

    #[test]
    fn members_are_republished_only_when_they_change() {
        let watch = MembersWatch::default();
        assert_eq!(watch.generation(), 0);
        assert!(watch.current().is_empty());
        assert!(watch.publish(vec![member(3), member(1), member(3)]));
        let list = watch.current();
        assert_eq!(list.generation, 1);
        assert_eq!(watch.generation(), 1);
        assert_eq!(list.members, vec![member(1), member(3)]);
        assert!(!watch.publish(vec![member(3), member(1)]));
        assert_eq!(watch.generation(), 1);
        let moved = Member {
            data: SocketAddr::from(([10, 0, 0, 3], 7001)),
            ..member(3)
        };
        assert!(watch.publish(vec![member(1), moved]));
        assert_eq!(watch.current().generation, 2);
        // An old copy stays what it was.
        assert_eq!(list.members[1], member(3));
    }

    #[test]
    fn the_document_shows_data_addresses() {
        let me = NodeInfo {
            id: NodeId(1),
            addr: "10.0.0.1:7001".parse().unwrap(),
            data_port: 7000,
        };
        let other = NodeInfo {
            id: NodeId(2),
            addr: "10.0.0.2:7001".parse().unwrap(),
            data_port: 7100,
        };
        let silent = NodeInfo {
            id: NodeId(3),
            addr: "10.0.0.3:7001".parse().unwrap(),
            data_port: 0,
        };
        let document = overlay_document(
            &me,
            &[other, silent],
            &[other],
            Some(&[me, other]),
            &OverlaySnapshot::default(),
        );
        let value: serde_json::Value = serde_json::from_slice(&document).unwrap();
        assert_eq!(value["node"]["data"], "10.0.0.1:7000");
        assert_eq!(value["node"]["addr"], "10.0.0.1:7001");
        assert_eq!(value["routing"][0]["data"], "10.0.0.2:7100");
        assert!(value["routing"][1].get("data").is_none());
        assert_eq!(value["neighbourhood"][0]["data"], "10.0.0.2:7100");
        assert_eq!(value["responsible"][1]["data"], "10.0.0.2:7100");
        // Still an OverlayReply to clients that do not know the field.
        let reply = OverlayReply::decode(&document).unwrap();
        assert_eq!(reply.routing.len(), 2);
    }
}
