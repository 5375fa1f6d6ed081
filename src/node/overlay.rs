//! The overlay's driver on the management thread: one UDP socket, the sans-IO `ds_overlay`
//! core, and the queries of the data cores (OVERLAY requests), answered into their inboxes.
//! Nothing here is on the data path of a request.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
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

impl OverlayDriver {
    pub fn start(setup: OverlaySetup) -> anyhow::Result<OverlayDriver> {
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
        // Sequence numbers from the wall clock: a restarted node is not taken for a replayer.
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        config.sequence_start = micros;
        config.seed = setup.node_id as u64 ^ micros;
        let info = NodeInfo {
            id: NodeId(setup.node_id),
            addr,
        };
        let mut overlay = Overlay::new(info, config, Instant::now()).context("overlay config")?;
        overlay.bootstrap(&setup.seeds, Instant::now());
        let (queries, receiver) = mpsc::sync_channel(QUERIES_MAX);
        let snapshot = Arc::new(Mutex::new(OverlaySnapshot::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let neighbourhood = Arc::new(NeighbourhoodWatch::default());
        let mut driver = Driver {
            neighbourhood: neighbourhood.clone(),
            socket,
            overlay,
            receiver,
            inboxes: setup.inboxes,
            snapshot: snapshot.clone(),
            pending: HashMap::new(),
            buf: Vec::with_capacity(DATAGRAM_BYTES_MAX),
        };
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ds-overlay".into())
            .spawn(move || driver.run(&thread_stop))
            .context("spawning the overlay thread")?;
        tracing::info!(%addr, seeds = setup.seeds.len(), "overlay started");
        Ok(OverlayDriver {
            addr,
            queries,
            snapshot,
            neighbourhood,
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
                    self.neighbourhood
                        .publish(self.overlay.neighbourhood().to_vec());
                }
                Event::PeerAdded(node) => {
                    tracing::debug!(id = %format!("{:032x}", node.id.0), addr = %node.addr, "overlay peer added")
                }
                Event::PeerRemoved { node, reason } => {
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
        let peer = |info: &NodeInfo| OverlayPeer {
            id: format!("{:032x}", info.id.0),
            addr: info.addr.to_string(),
        };
        let mut routing = self.overlay.routing_table();
        routing.sort_by_key(|info| distance(info.id, me.id));
        let document = OverlayReply {
            node: peer(&me),
            routing: routing.iter().map(peer).collect(),
            neighbourhood: self.overlay.neighbourhood().iter().map(peer).collect(),
            responsible: responsible.map(|nodes| nodes.iter().map(peer).collect()),
            stats: match serde_json::to_value(OverlaySnapshot {
                neighbourhood_changes: self.neighbourhood.current().0,
                ..snapshot_of(&self.overlay)
            }) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            },
        };
        self.reply(query, ShardReply::Document(Ok(document.encode())));
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
        if let Ok(mut slot) = self.snapshot.lock() {
            *slot = snapshot_of(&self.overlay);
            slot.neighbourhood_changes = changes;
        }
    }
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
    }
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
}
