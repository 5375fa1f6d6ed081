//! The loop of one data core: poll the network, the devices and the inbox, fire timers, run
//! woken tasks; count busy and idle time; block according to the poll mode when idle.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ds_net::{NetEvent, Transport, TransportConfig, UringTransport};
use ds_store::MountedDevice;

use crate::config::PollMode;
use crate::reactor::mailbox::Inbox;
use crate::service::ctx::{CoreCtx, Message};
use crate::service::{conn, peer};
use crate::stats::metrics::Published;
use crate::stats::snapshot::DeviceSnapshot;

/// How often a core copies its counters for the stats socket.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// Longest block, so a stop request or a missed wake costs at most this.
const BLOCK_MAX: Duration = Duration::from_millis(100);
/// Inbox messages handled per turn, so a flood from other cores cannot starve the rest.
const INBOX_PER_TURN_MAX: usize = 256;
/// Watch tokens: the inbox's eventfd, and device queues (any value at or above).
const TOKEN_INBOX: u64 = 0;
const TOKEN_DEVICE: u64 = 1;
/// How often stalled connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often calls to peers are checked for timeouts.
const EXPIRE_EVERY: Duration = Duration::from_millis(100);
/// How long a stopping core waits for requests in flight.
const STOP_DRAIN: Duration = Duration::from_secs(10);

pub struct CoreSetup {
    pub core: usize,
    pub cores: usize,
    pub node_id: u128,
    pub mounted: Vec<MountedDevice>,
    pub inboxes: Vec<Arc<Inbox<Message>>>,
    pub stop: Arc<AtomicBool>,
    pub published: Published,
    pub listen: Arc<Mutex<SocketAddr>>,
    pub poll_mode: PollMode,
    pub spin: Duration,
    pub cpu: Option<usize>,
    pub max_connections: usize,
    pub recv_buffer: usize,
    /// Where OVERLAY requests go (the management thread).
    pub overlay: Option<std::sync::mpsc::SyncSender<crate::service::ctx::OverlayQuery>>,
    /// The nodes known to serve data and their data addresses, kept current by the overlay
    /// (empty, generation 0, until the overlay runs: it starts once every core has bound).
    pub members: Option<Arc<super::overlay::MembersWatch>>,
    /// Default scheme and write quorum of new objects.
    pub policy: crate::config::ObjectsConfig,
    /// The node's repair table, and how this core's walker runs.
    pub repair_board: Arc<crate::repair::board::RepairBoard>,
    pub repair: crate::config::RepairConfig,
    /// The node has overlay seeds: it expects other members.
    pub expect_peers: bool,
}

/// Runs core `setup.core` until the node stops; reports on `ready` once it serves.
pub fn run(
    setup: CoreSetup,
    ready: mpsc::Sender<(usize, anyhow::Result<SocketAddr>)>,
) -> anyhow::Result<()> {
    let core = setup.core;
    let ctx = match start(&setup) {
        Ok(ctx) => ctx,
        Err(error) => {
            let message = format!("{error:#}");
            let _ = ready.send((core, Err(error)));
            anyhow::bail!(message);
        }
    };
    let listen = *setup.listen.lock().expect("listen lock");
    let _ = ready.send((core, Ok(listen)));
    let result = serve(&ctx, &setup);
    let checkpoint = ctx
        .store
        .borrow_mut()
        .checkpoint()
        .with_context(|| format!("checkpointing core {core} at stop"));
    // The core's context is not dropped (its tasks hold it), so the transport is shut down
    // here: its listener must be closed before the process ends, not by the kernel later.
    ctx.net.borrow_mut().shut_down();
    result.and(checkpoint)
}

fn start(setup: &CoreSetup) -> anyhow::Result<Rc<CoreCtx>> {
    if let Some(cpu) = setup.cpu {
        if let Err(error) = crate::reactor::pin_to_cpu(cpu) {
            tracing::warn!(core = setup.core, cpu, %error, "cannot pin the core; running unpinned");
        }
    }
    let store = super::open_store(setup.core, setup.node_id, setup.mounted.clone())?;
    let config = TransportConfig {
        connections_max: setup.max_connections as u32,
        recv_buffer_bytes: setup.recv_buffer,
        ..TransportConfig::default()
    };
    let mut net = UringTransport::new(config).context("creating the core's transport")?;
    {
        let mut listen = setup.listen.lock().expect("listen lock");
        let bound = net
            .listen(*listen)
            .with_context(|| format!("listening on {}", *listen))?;
        *listen = bound;
    }
    let inbox = &setup.inboxes[setup.core];
    net.watch(inbox.wake_fd(), TOKEN_INBOX)
        .context("watching the inbox")?;
    for (i, fd) in store.wake_fds().into_iter().enumerate() {
        net.watch(fd, TOKEN_DEVICE + i as u64)
            .context("watching a device queue")?;
    }
    let ctx = CoreCtx::new(
        setup.core,
        setup.cores,
        store,
        setup.inboxes.clone(),
        Box::new(net),
    );
    *ctx.overlay.borrow_mut() = setup.overlay.clone();
    *ctx.members.borrow_mut() = setup.members.clone();
    ctx.expect_peers.set(setup.expect_peers);
    *ctx.policy.borrow_mut() = setup.policy.clone();
    *ctx.repair_board.borrow_mut() = Some(setup.repair_board.clone());
    ctx.executor.spawn(crate::repair::walker::run(
        ctx.clone(),
        setup.repair_board.clone(),
        setup.repair.clone(),
    ));
    Ok(ctx)
}

fn serve(ctx: &Rc<CoreCtx>, setup: &CoreSetup) -> anyhow::Result<()> {
    let inbox = setup.inboxes[setup.core].clone();
    let mut net_events = Vec::new();
    let mut store_events = Vec::new();
    let mut idle_since: Option<Instant> = None;
    let mut last_publish = Instant::now();
    let mut last_sweep = Instant::now();
    let mut next_expiry = Instant::now();
    let mut stop_deadline: Option<Instant> = None;
    let mut turn_start = Instant::now();
    loop {
        let mut work = 0;
        work += ctx.net.borrow_mut().poll(&mut net_events);
        for event in net_events.drain(..) {
            handle_net(ctx, event);
        }
        work += ctx.poll_store(&mut store_events);
        for _ in 0..INBOX_PER_TURN_MAX {
            let Some(message) = inbox.pop() else {
                break;
            };
            ctx.deliver(message);
            work += 1;
        }
        // The clock as of the end of the last turn (or the wake-up): a few microseconds old,
        // which no timer minds, and one clock read per turn fewer.
        work += ctx.timers.borrow_mut().fire(turn_start);
        work += ctx.executor.run_ready();

        let now = Instant::now();
        let spent = now - turn_start;
        turn_start = now;
        {
            let mut metrics = ctx.metrics.borrow_mut();
            metrics.count_loop();
            if work > 0 {
                metrics.add_busy(spent);
            } else {
                metrics.add_idle(spent);
            }
        }
        if now - last_publish >= PUBLISH_EVERY {
            publish(ctx, &setup.published);
            last_publish = now;
        }
        if now - last_sweep >= SWEEP_EVERY {
            conn::close_stalled(ctx, now);
            last_sweep = now;
        }
        if now >= next_expiry {
            peer::expire(ctx, now);
            next_expiry = now + EXPIRE_EVERY;
        }
        if setup.stop.load(Ordering::Relaxed) {
            if !ctx.stopping.get() {
                ctx.stopping.set(true);
                conn::drain_all(ctx);
            }
            let deadline = *stop_deadline.get_or_insert(now + STOP_DRAIN);
            let quiet = ctx.reply_slots.borrow().pending() == 0
                && ctx.store_slots.borrow().pending() == 0
                && ctx.executor.ready() == 0
                && ctx.conns.borrow().running() == 0
                && ctx.peers.borrow().in_flight() == 0;
            if quiet || now >= deadline {
                publish(ctx, &setup.published);
                drain_store(ctx);
                return Ok(());
            }
        }
        if work > 0 {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert(now);
        let block = match setup.poll_mode {
            PollMode::Busy => false,
            PollMode::Sleep => true,
            PollMode::Adaptive => now - since >= setup.spin,
        };
        if block && inbox.prepare_sleep() {
            let timeout = ctx
                .timers
                .borrow()
                .next_deadline()
                .map_or(BLOCK_MAX, |at| at.saturating_duration_since(Instant::now()))
                .min(BLOCK_MAX);
            if let Err(error) = ctx.net.borrow_mut().wait(Some(timeout)) {
                tracing::warn!(core = ctx.core, %error, "waiting for the network failed");
            }
            inbox.woke();
            // Time blocked is idle, whatever the turn that follows finds to do.
            let woke = Instant::now();
            ctx.metrics.borrow_mut().add_idle(woke - turn_start);
            turn_start = woke;
        }
    }
}

fn handle_net(ctx: &Rc<CoreCtx>, event: NetEvent) {
    match event {
        NetEvent::Accepted { conn, peer } => {
            tracing::debug!(core = ctx.core, %conn, %peer, "connection accepted");
            conn::accepted(ctx, conn);
            ctx.metrics.borrow_mut().connection_opened();
        }
        NetEvent::Received { conn, buf } if ctx.peers.borrow().owns(conn) => {
            peer::received(ctx, conn, buf)
        }
        NetEvent::Received { conn, buf } => conn::received(ctx, conn, buf),
        NetEvent::Sent { conn, buf } => {
            if !ctx.peers.borrow().owns(conn) {
                conn::sent(ctx, conn);
            }
            ctx.give_send_buf(buf);
        }
        NetEvent::Closed { conn, reason } if ctx.peers.borrow().owns(conn) => {
            tracing::debug!(core = ctx.core, %conn, %reason, "peer connection closed");
            peer::closed(ctx, conn, &reason.to_string());
        }
        NetEvent::Closed { conn, reason } => {
            tracing::debug!(core = ctx.core, %conn, %reason, "connection closed");
            conn::closed(ctx, conn);
            ctx.metrics.borrow_mut().connection_closed();
        }
        // Wakes need no action here: the next turn polls everything.
        NetEvent::Connected { .. } | NetEvent::Ready { .. } => {}
    }
}

/// Lets the store finish what it accepted (group commits in flight) before it checkpoints.
fn drain_store(ctx: &Rc<CoreCtx>) {
    let deadline = Instant::now() + STOP_DRAIN;
    let mut events = Vec::new();
    while !ctx.store.borrow().is_idle() && Instant::now() < deadline {
        ctx.poll_store(&mut events);
        ctx.executor.run_ready();
        ctx.store.borrow_mut().wait(Duration::from_millis(10));
    }
}

fn publish(ctx: &Rc<CoreCtx>, slot: &Published) {
    let net = ctx.net.borrow().stats();
    let store = ctx.store.borrow();
    let stats = store.stats();
    let devices: Vec<DeviceSnapshot> = store
        .device_usage()
        .into_iter()
        .map(|(slot, path, capacity, free_bytes)| DeviceSnapshot {
            core: ctx.core,
            slot: usize::from(slot),
            path,
            used_bytes: capacity.saturating_sub(free_bytes),
            free_bytes,
            compactions: stats.compactions,
            compactions_unread: stats.compactions_unread,
            compaction_bytes_copied: stats.compaction_bytes_copied,
            write_amplification: stats.write_amplification(),
            read_errors: stats.read_errors,
            write_errors: stats.write_errors,
            corrupt_reads: stats.corrupt_reads,
        })
        .collect();
    let inflight = store.inflight() as u64;
    drop(store);
    let mut metrics = ctx.metrics.borrow_mut();
    metrics.set_queue_depths(
        u64::from(net.ops_inflight),
        inflight,
        ctx.executor.ready() as u64,
    );
    *metrics.devices_mut() = devices;
    // The coding counters are the core's own; the peer ones are read off its connections.
    let mut cluster = *ctx.coding.borrow();
    let peers = ctx.peers.borrow();
    cluster.peer_calls_total = peers.calls_total;
    cluster.peer_call_errors = peers.call_errors;
    cluster.peer_calls_in_flight = peers.in_flight() as u64;
    metrics.set_cluster(cluster);
    drop(peers);
    metrics.publish(slot);
}
