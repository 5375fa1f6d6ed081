//! Helpers shared by the transport tests: a driver that pulls events with a deadline, an echo
//! server loop, and deterministic payloads.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ds_net::{ConnId, NetError, NetEvent, NetStats, RecvBuf, Transport, UringTransport};

/// Longest any single step of a test may take before it counts as hung.
pub const STEP_LIMIT: Duration = Duration::from_secs(30);

/// Pulls events one at a time from a transport, waiting at most a given time for each.
pub struct Driver {
    pub transport: UringTransport,
    batch: Vec<NetEvent>,
    queue: VecDeque<NetEvent>,
}

impl Driver {
    pub fn new(transport: UringTransport) -> Self {
        Self {
            transport,
            batch: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    /// The next event, or `None` if none comes within `within`.
    pub fn next_within(&mut self, within: Duration) -> Option<NetEvent> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            self.transport.poll(&mut self.batch);
            self.queue.extend(self.batch.drain(..));
            if !self.queue.is_empty() {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.transport
                .wait(Some((deadline - now).min(Duration::from_millis(50))))
                .expect("wait");
        }
    }

    /// The next event; panics if none comes within [`STEP_LIMIT`].
    pub fn next(&mut self) -> NetEvent {
        self.next_within(STEP_LIMIT)
            .expect("no event within the step limit")
    }
}

/// `len` bytes of a deterministic stream named by `seed` (xorshift64*).
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Per-connection state of the echo server: a received buffer waiting for room in the send
/// queue, with its copy.
#[derive(Default)]
struct EchoConn {
    held: Option<(RecvBuf, Vec<u8>)>,
}

/// What an echo server saw.
#[derive(Debug, Default)]
pub struct EchoReport {
    pub stats: NetStats,
    pub accepted: usize,
    pub closed: usize,
    /// Sends refused for a full queue (the backpressure path was taken).
    pub queue_full: usize,
}

/// Value of an echo server's stop target while it should run on.
pub const RUN: usize = usize::MAX;

/// Shared between an echo server and its test.
pub struct EchoControl {
    /// The server stops once it saw this many connections close.
    pub stop_at_closed: AtomicUsize,
    /// Connections accepted so far.
    pub accepted: AtomicUsize,
}

impl Default for EchoControl {
    fn default() -> Self {
        Self {
            stop_at_closed: AtomicUsize::new(RUN),
            accepted: AtomicUsize::new(0),
        }
    }
}

/// Echoes every byte back on the connection it came from until it has seen
/// `control.stop_at_closed` connections close, checking that each connection is closed exactly
/// once and never mentioned after.
pub fn run_echo(transport: &mut UringTransport, control: &EchoControl) -> EchoReport {
    let stop_at_closed = &control.stop_at_closed;
    let mut conns: HashMap<ConnId, EchoConn> = HashMap::new();
    let mut dead: HashSet<ConnId> = HashSet::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut events = Vec::new();
    let mut report = EchoReport::default();
    let mut deadline = None;
    while report.closed < stop_at_closed.load(Ordering::Relaxed) {
        if stop_at_closed.load(Ordering::Relaxed) != RUN {
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + STEP_LIMIT);
            assert!(Instant::now() < deadline, "connections never closed");
        }
        if transport.poll(&mut events) == 0 {
            transport
                .wait(Some(Duration::from_millis(5)))
                .expect("wait");
            continue;
        }
        for event in events.drain(..) {
            match event {
                NetEvent::Accepted { conn, .. } => {
                    assert!(!dead.contains(&conn));
                    assert!(conns.insert(conn, EchoConn::default()).is_none());
                    report.accepted += 1;
                    control.accepted.fetch_add(1, Ordering::Relaxed);
                }
                NetEvent::Received { conn, buf } => {
                    assert!(!dead.contains(&conn), "{conn} received after Closed");
                    let mut copy = spare.pop().unwrap_or_default();
                    copy.clear();
                    copy.extend_from_slice(&buf);
                    let state = conns.get_mut(&conn).expect("known connection");
                    assert!(state.held.is_none(), "a second receive before recycling");
                    echo(transport, conn, state, buf, copy, &mut report);
                }
                NetEvent::Sent { conn, buf } => {
                    assert!(!dead.contains(&conn), "{conn} sent after Closed");
                    spare.push(buf);
                    let state = conns.get_mut(&conn).expect("known connection");
                    if let Some((held, copy)) = state.held.take() {
                        echo(transport, conn, state, held, copy, &mut report);
                    }
                }
                NetEvent::Closed { conn, .. } => {
                    assert!(dead.insert(conn), "{conn} closed twice");
                    let state = conns.remove(&conn).expect("known connection");
                    if let Some((held, _)) = state.held {
                        transport.recycle(conn, held);
                    }
                    report.closed += 1;
                }
                NetEvent::Connected { .. } | NetEvent::Ready { .. } => {
                    unreachable!("the echo server neither connects nor watches")
                }
            }
        }
    }
    report.stats = transport.stats();
    report
}

fn echo(
    transport: &mut UringTransport,
    conn: ConnId,
    state: &mut EchoConn,
    buf: RecvBuf,
    copy: Vec<u8>,
    report: &mut EchoReport,
) {
    match transport.send(conn, copy) {
        Ok(()) => transport.recycle(conn, buf),
        Err(NetError::SendQueueFull { buf: unsent, .. }) => {
            // Hold the receive buffer: the connection stops receiving until the queue drains.
            report.queue_full += 1;
            state.held = Some((buf, unsent.0));
        }
        Err(error) => panic!("send failed: {error}"),
    }
}

/// Runs an echo server on its own thread, with a transport built there.
pub struct EchoServer {
    pub addr: std::net::SocketAddr,
    control: Arc<EchoControl>,
    thread: Option<std::thread::JoinHandle<EchoReport>>,
}

impl EchoServer {
    pub fn start(config: ds_net::TransportConfig, addr: std::net::SocketAddr) -> Self {
        let control = Arc::new(EchoControl::default());
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread_control = control.clone();
        let thread = std::thread::spawn(move || {
            let mut transport = UringTransport::new(config).expect("transport");
            let bound = transport.listen(addr).expect("listen");
            sender.send(bound).expect("report the address");
            run_echo(&mut transport, &thread_control)
        });
        let addr = receiver.recv().expect("server started");
        Self {
            addr,
            control,
            thread: Some(thread),
        }
    }

    pub fn accepted_so_far(&self) -> usize {
        self.control.accepted.load(Ordering::Relaxed)
    }

    /// Stops the server once it has seen `closed` connections close in all, and reports.
    pub fn stop_after_closed(mut self, closed: usize) -> EchoReport {
        self.control.stop_at_closed.store(closed, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("echo server panicked")
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.control.stop_at_closed.store(0, Ordering::Relaxed);
    }
}
