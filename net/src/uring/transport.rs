//! [`UringTransport`]: the [`Transport`] of the io_uring backend.
//!
//! Ownership while the kernel works: a receive writes into the connection's `recv_buf`, a send
//! reads the front buffer of its `sends`, a connect reads its boxed `connect_addr`. Each stays in
//! the connection, untouched, from the push of the operation until its completion is reaped,
//! and a connection leaves the table only when none of its operations is in flight. Closing
//! cancels what is in flight and waits for those completions; dropping the transport does the
//! same for everything, and leaks what the kernel did not give back in time instead of freeing
//! it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::opcode;
use io_uring::types::Fd;
use socket2::{SockAddr, Socket};

use super::conn::{Conn, ConnTable, Phase};
use super::op::{Op, OpKind};
use super::ring::{Features, Ring};
use super::socket;
use crate::limits::{
    ACCEPT_RETRY_DELAY, DRAIN_LIMIT, LISTENERS_MAX, OPS_PER_CONNECTION_MAX, REAP_BATCH,
    SEND_BUFFERS_PER_OP_MAX, SEND_BYTES_PER_OP_MAX, WATCHES_MAX,
};
use crate::{
    CloseReason, ConnId, NetError, NetEvent, NetStats, RecvBuf, Transport, TransportConfig, Unsent,
};

mod completion;

/// A listening socket and the state of its accept.
struct Listener {
    socket: Socket,
    /// Multishot accept; cleared when the kernel refuses it (before 5.19).
    multishot: bool,
    /// An accept is in flight.
    armed: bool,
    /// An accept succeeded once, so an `EINVAL` is not the kernel refusing multishot.
    accepted_any: bool,
    /// Accepting failed for lack of resources; accept again after this instant.
    rest_until: Option<Instant>,
}

/// A watched descriptor and the state of its poll.
struct Watch {
    fd: RawFd,
    token: u64,
    /// Multishot poll; cleared when the kernel refuses it (before 5.13).
    multishot: bool,
    /// A poll is in flight.
    armed: bool,
    /// A poll completed once, so an `EINVAL` is not the kernel refusing multishot.
    fired_any: bool,
    /// Polling failed for good (a closed descriptor, say); no longer watched.
    failed: bool,
}

/// TCP over io_uring for one core. See the module documentation of [`crate::uring`].
pub struct UringTransport {
    // Dropped first, after `Drop::drop` drained it, so no operation outlives what it points at.
    ring: Ring,
    config: TransportConfig,
    conns: ConnTable,
    listeners: Vec<Listener>,
    watches: Vec<Watch>,
    /// Events not yet handed out by `poll`.
    events: VecDeque<NetEvent>,
    /// Receive buffers of closed connections, for the next ones; at most `connections_max`.
    recv_pool: Vec<RecvBuf>,
    /// Completions copied out of the ring: handling one may push new entries, which needs the
    /// ring borrowed again. Capacity `REAP_BATCH`, reused.
    reaped: Vec<(u64, i32, u32)>,
    /// Operations pushed whose last completion has not been reaped.
    ops_inflight: u32,
    /// Counters; `connections_open` and `ops_inflight` are filled in by `stats()`.
    stats: NetStats,
    /// Some listener rests after running out of resources.
    listeners_resting: bool,
    /// Whether listeners and watches start multishot.
    multishot: bool,
    /// `Drop` is draining: nothing new is started.
    dropping: bool,
}

// Built on one thread and handed to the core that runs it.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<UringTransport>();
};

impl UringTransport {
    /// A transport with its own ring, sized for `config.connections_max` connections.
    pub fn new(config: TransportConfig) -> Result<Self, NetError> {
        Self::with_features(config, Features::ALL)
    }

    /// A transport that uses only the kernel features in `features` (tests run the fallbacks
    /// with this).
    pub(super) fn with_features(
        config: TransportConfig,
        features: Features,
    ) -> Result<Self, NetError> {
        config.validate()?;
        let ops_max = u64::from(config.connections_max) * u64::from(OPS_PER_CONNECTION_MAX)
            + 2 * (LISTENERS_MAX + WATCHES_MAX) as u64;
        let ring = Ring::new(u32::try_from(ops_max).unwrap_or(u32::MAX), features)?;
        Ok(Self {
            ring,
            conns: ConnTable::new(config.connections_max),
            config,
            listeners: Vec::new(),
            watches: Vec::new(),
            events: VecDeque::new(),
            recv_pool: Vec::new(),
            reaped: Vec::with_capacity(REAP_BATCH),
            ops_inflight: 0,
            stats: NetStats::default(),
            listeners_resting: false,
            multishot: features.multishot,
            dropping: false,
        })
    }

    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// Whether the ring runs with `IORING_SETUP_COOP_TASKRUN` (Linux 5.19 and later).
    pub fn is_coop_taskrun(&self) -> bool {
        self.ring.is_coop_taskrun()
    }

    fn take_recv_buf(&mut self) -> RecvBuf {
        self.recv_pool
            .pop()
            .unwrap_or_else(|| RecvBuf::new(self.config.recv_buffer_bytes))
    }

    fn pool_recv_buf(&mut self, buf: RecvBuf) {
        if buf.capacity() != self.config.recv_buffer_bytes {
            tracing::warn!(
                capacity = buf.capacity(),
                "a receive buffer of another transport was recycled; dropped"
            );
            return;
        }
        if self.recv_pool.len() < self.config.connections_max as usize {
            self.recv_pool.push(buf);
        }
    }

    // --- Starting operations ---

    fn arm_recv(&mut self, id: ConnId) {
        let conn = self
            .conns
            .get_mut(id)
            .expect("arm_recv on a live connection");
        assert_eq!(conn.phase, Phase::Open);
        assert!(!conn.eof);
        assert!(!conn.recv_inflight);
        let fd = Fd(conn.socket.as_raw_fd());
        let buf = conn
            .recv_buf
            .as_mut()
            .expect("arm_recv with the buffer home");
        let entry = opcode::Recv::new(fd, buf.as_mut_ptr(), buf.capacity() as u32)
            .build()
            .user_data(Op::new(OpKind::Recv, id.index(), id.generation()).encode());
        // SAFETY: the entry points at the heap bytes of the connection's receive buffer (moving
        // the `RecvBuf` does not move them). The buffer stays in `conn.recv_buf` while
        // `recv_inflight` is set: it is handed out (`Received`), pooled or dropped only after
        // `handle_recv` took this receive's completion and cleared the flag; `ConnTable::remove`
        // refuses a connection with the flag set; `Drop` leaks the buffer if the kernel keeps it.
        // The descriptor belongs to the connection, and the kernel holds its own reference to
        // the file while the operation runs.
        unsafe { self.ring.push(entry) };
        conn.recv_inflight = true;
        self.ops_inflight += 1;
    }

    /// Sends the front of the send queue, and as many buffers after it as one operation
    /// gathers, unless a send is in flight. Empty buffers at the front are reported as sent
    /// without the kernel.
    fn start_send(&mut self, id: ConnId) {
        let conn = self
            .conns
            .get_mut(id)
            .expect("start_send on a live connection");
        if conn.send_inflight || conn.phase != Phase::Open {
            return;
        }
        while conn.sends.front().is_some_and(Vec::is_empty) {
            let buf = conn.sends.pop_front().expect("front checked");
            self.stats.sends_queued -= 1;
            self.events.push_back(NetEvent::Sent { conn: id, buf });
        }
        if conn.sends.is_empty() {
            return;
        }
        let gather = &mut *conn.gather;
        let (mut count, mut bytes) = (0, 0);
        for (n, buf) in conn.sends.iter().enumerate() {
            if count == SEND_BUFFERS_PER_OP_MAX || bytes == SEND_BYTES_PER_OP_MAX {
                break;
            }
            let rest = &buf[if n == 0 { conn.send_offset } else { 0 }..];
            let len = rest.len().min(SEND_BYTES_PER_OP_MAX - bytes);
            if len == 0 {
                continue;
            }
            gather.iov[count] = libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: len,
            };
            count += 1;
            bytes += len;
        }
        assert!(count > 0 && bytes > 0);
        gather.msg.msg_iov = gather.iov.as_mut_ptr();
        gather.msg.msg_iovlen = count;
        // MSG_WAITALL: a kernel that supports it for io_uring sends continues a short send
        // itself instead of completing it early (older ones complete short; see handle_send).
        // MSG_NOSIGNAL: a peer that went away is an EPIPE completion, not a SIGPIPE.
        let entry = opcode::SendMsg::new(Fd(conn.socket.as_raw_fd()), &gather.msg)
            .flags((libc::MSG_NOSIGNAL | libc::MSG_WAITALL) as u32)
            .build()
            .user_data(Op::new(OpKind::Send, id.index(), id.generation()).encode());
        // SAFETY: the entry points at the connection's boxed msghdr, whose iovecs point into the
        // heap bytes of the first `count` buffers of its send queue. None of them is written or
        // moved until this send completes: the buffers are never written, leave the queue only
        // in `handle_send` (after this send's completion cleared `send_inflight`), and are
        // dropped, like the box, only when the connection leaves the table, which
        // `ConnTable::remove` refuses while the flag is set, or leaked by `Drop`. Queuing more
        // buffers moves the `Vec`s, not their bytes, and `start_send` rewrites the box only
        // while no send is in flight.
        unsafe { self.ring.push(entry) };
        conn.send_inflight = true;
        self.ops_inflight += 1;
    }

    fn arm_accept(&mut self, index: usize) {
        let listener = &mut self.listeners[index];
        assert!(!listener.armed);
        let fd = Fd(listener.socket.as_raw_fd());
        let entry = if listener.multishot {
            opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        let entry = entry.user_data(Op::new(OpKind::Accept, index as u32, 0).encode());
        // SAFETY: an accept without an address buffer points at no memory. The listening socket
        // lives as long as the transport, and `Drop` cancels the accept before it goes.
        unsafe { self.ring.push(entry) };
        listener.armed = true;
        self.ops_inflight += 1;
    }

    fn arm_poll(&mut self, index: usize) {
        let watch = &mut self.watches[index];
        assert!(!watch.armed);
        let entry = opcode::PollAdd::new(Fd(watch.fd), libc::POLLIN as u32)
            .multi(watch.multishot)
            .build()
            .user_data(Op::new(OpKind::Poll, index as u32, 0).encode());
        // SAFETY: a poll points at no memory; the kernel holds its own reference to the file,
        // so even a descriptor the caller closes cannot make it touch freed state.
        unsafe { self.ring.push(entry) };
        watch.armed = true;
        self.ops_inflight += 1;
    }

    /// Accepts again on listeners whose rest is over.
    fn wake_listeners(&mut self) {
        let now = Instant::now();
        self.listeners_resting = false;
        for index in 0..self.listeners.len() {
            match self.listeners[index].rest_until {
                Some(until) if until <= now => {
                    self.listeners[index].rest_until = None;
                    self.arm_accept(index);
                }
                Some(_) => self.listeners_resting = true,
                None => {}
            }
        }
    }

    // --- Closing ---

    /// Stops everything on `id` and cancels what is in flight; the connection is freed and
    /// `Closed` emitted when the last completion is in.
    fn begin_close(&mut self, id: ConnId, reason: CloseReason) {
        let conn = self
            .conns
            .get_mut(id)
            .expect("begin_close on a live connection");
        if conn.is_closing() {
            return;
        }
        // An error after the peer's end of stream is a consequence of the peer leaving.
        let reason = match reason {
            CloseReason::Error(_) if conn.eof => CloseReason::PeerClosed,
            reason => reason,
        };
        conn.phase = Phase::Closing(reason);
        let targets = [
            (conn.recv_inflight, OpKind::Recv),
            (conn.send_inflight, OpKind::Send),
            (conn.connect_inflight, OpKind::Connect),
        ];
        for (_, kind) in targets.into_iter().filter(|(inflight, _)| *inflight) {
            let target = Op::new(kind, id.index(), id.generation()).encode();
            let entry = opcode::AsyncCancel::new(target)
                .build()
                .user_data(Op::new(OpKind::CancelConn, id.index(), id.generation()).encode());
            // SAFETY: a cancellation names its target by value and points at no memory. It
            // follows its target through the submission queue and backlog in order, so it never
            // reaches the kernel before the operation it cancels.
            unsafe { self.ring.push(entry) };
            conn.cancels_inflight += 1;
            self.ops_inflight += 1;
        }
        self.finish_close(id);
    }

    /// Frees a closing connection once nothing of it is in flight, and emits `Closed`.
    fn finish_close(&mut self, id: ConnId) {
        let conn = self
            .conns
            .get(id)
            .expect("finish_close on a live connection");
        let Phase::Closing(reason) = conn.phase else {
            return;
        };
        if conn.ops_inflight() > 0 {
            return;
        }
        let conn = self.conns.remove(id);
        self.stats.sends_queued -= conn.sends.len() as u64;
        self.stats.send_queued_bytes -= conn.send_queued_bytes as u64;
        if let Some(buf) = conn.recv_buf {
            self.pool_recv_buf(buf);
        }
        // Dropping the socket closes the descriptor; the kernel has no operation on it left.
        drop(conn.socket);
        self.stats.closed_total += 1;
        self.events.push_back(NetEvent::Closed { conn: id, reason });
    }

    /// Closes a connection whose peer ended the stream once what we queued went out.
    fn close_if_drained(&mut self, id: ConnId) {
        let conn = self
            .conns
            .get(id)
            .expect("close_if_drained on a live connection");
        if conn.eof && conn.sends.is_empty() && !conn.is_closing() {
            self.begin_close(id, CloseReason::PeerClosed);
        }
    }
}

impl Transport for UringTransport {
    fn listen(&mut self, addr: SocketAddr) -> Result<SocketAddr, NetError> {
        if self.listeners.len() >= LISTENERS_MAX {
            return Err(NetError::TooManyListeners { max: LISTENERS_MAX });
        }
        let socket = socket::listener(addr, self.config.listen_backlog)?;
        let local = socket::local_addr(&socket, addr)?;
        self.listeners.push(Listener {
            socket,
            multishot: self.multishot,
            armed: false,
            accepted_any: false,
            rest_until: None,
        });
        self.arm_accept(self.listeners.len() - 1);
        Ok(local)
    }

    fn connect(&mut self, addr: SocketAddr) -> Result<ConnId, NetError> {
        if self.conns.is_full() {
            return Err(NetError::TooManyConnections {
                max: self.conns.capacity(),
            });
        }
        let socket = socket::outgoing(addr)?;
        let buf = self.take_recv_buf();
        let mut conn = Conn::new(socket, Phase::Connecting, buf);
        let target = Box::new(SockAddr::from(addr));
        let (target_ptr, target_len) = (target.as_ptr().cast::<libc::sockaddr>(), target.len());
        conn.connect_addr = Some(target);
        let fd = Fd(conn.socket.as_raw_fd());
        let id = self.conns.insert(conn).expect("table checked not full");
        let entry = opcode::Connect::new(fd, target_ptr, target_len)
            .build()
            .user_data(Op::new(OpKind::Connect, id.index(), id.generation()).encode());
        // SAFETY: the entry points at the address in the box held by the connection's
        // `connect_addr` (the box does not move its contents when the connection moves). It is
        // dropped only after this connect's completion (`handle_completion`), the connection
        // does not leave the table while `connect_inflight` is set, and `Drop` leaks it if the
        // kernel keeps it.
        unsafe { self.ring.push(entry) };
        let conn = self.conns.get_mut(id).expect("just inserted");
        conn.connect_inflight = true;
        self.ops_inflight += 1;
        Ok(id)
    }

    fn send(&mut self, conn: ConnId, buf: Vec<u8>) -> Result<(), NetError> {
        let max = self.config.send_queue_bytes_max;
        let Some(state) = self.conns.get_mut(conn) else {
            return Err(NetError::UnknownConn { conn });
        };
        if state.is_closing() {
            return Err(NetError::ConnClosing { conn });
        }
        let len = buf.len();
        if len > max {
            return Err(NetError::SendTooLarge { len, max });
        }
        if state.send_queued_bytes + len > max {
            return Err(NetError::SendQueueFull {
                conn,
                queued_bytes: state.send_queued_bytes,
                len,
                max,
                buf: Unsent(buf),
            });
        }
        state.send_queued_bytes += len;
        state.sends.push_back(buf);
        self.stats.sends_queued += 1;
        self.stats.send_queued_bytes += len as u64;
        self.start_send(conn);
        Ok(())
    }

    fn recycle(&mut self, conn: ConnId, mut buf: RecvBuf) {
        if buf.capacity() != self.config.recv_buffer_bytes {
            return self.pool_recv_buf(buf);
        }
        buf.set_len(0);
        match self.conns.get_mut(conn) {
            Some(state) if state.recv_buf.is_none() => {
                state.recv_buf = Some(buf);
                if state.phase == Phase::Open && !state.eof {
                    self.arm_recv(conn);
                }
            }
            Some(_) => {
                tracing::warn!(%conn, "recycled a buffer the connection did not hand out");
                self.pool_recv_buf(buf);
            }
            // Closed meanwhile: the buffer serves a later connection.
            None => self.pool_recv_buf(buf),
        }
    }

    fn close(&mut self, conn: ConnId) {
        match self.conns.get(conn) {
            Some(state) if !state.is_closing() => self.begin_close(conn, CloseReason::Local),
            Some(_) => {}
            None => tracing::debug!(%conn, "close of a connection not open"),
        }
    }

    fn watch(&mut self, fd: RawFd, token: u64) -> Result<(), NetError> {
        if fd < 0 {
            return Err(NetError::BadFd { fd });
        }
        if self.watches.len() >= WATCHES_MAX {
            return Err(NetError::TooManyWatches { max: WATCHES_MAX });
        }
        self.watches.push(Watch {
            fd,
            token,
            multishot: self.multishot,
            armed: false,
            fired_any: false,
            failed: false,
        });
        self.arm_poll(self.watches.len() - 1);
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<NetEvent>) -> usize {
        if self.listeners_resting {
            self.wake_listeners();
        }
        // With COOP_TASKRUN the kernel posts completions only while this thread is inside it,
        // and raises a flag when it holds some: entering only then keeps a polling core out of
        // the kernel while nothing happens (it entered on every poll before: ~30 system calls per
        // 4 KiB GET). (Events already queued are returned first; the next poll asks.)
        let looks_idle = self.events.is_empty()
            && self.ops_inflight > 0
            && self.ring.cq_is_empty()
            && self.ring.holds_completions();
        if self.ring.has_submissions() || looks_idle {
            self.ring.enter();
        }
        self.reap();
        let count = self.events.len();
        out.extend(self.events.drain(..));
        count
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), NetError> {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        // Each round blocks in the kernel until a completion arrives or the deadline passes, so
        // the loop ends by the deadline or when a completion produced an event.
        loop {
            self.reap();
            if !self.events.is_empty() {
                return Ok(());
            }
            let remaining = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(());
                    }
                    Some(deadline - now)
                }
                // An unbounded wait with nothing in flight would never end.
                None if self.ops_inflight == 0 && !self.listeners_resting => return Ok(()),
                None => None,
            };
            let remaining = if self.listeners_resting {
                Some(remaining.map_or(ACCEPT_RETRY_DELAY, |r| r.min(ACCEPT_RETRY_DELAY)))
            } else {
                remaining
            };
            self.ring
                .wait(remaining)
                .map_err(|source| NetError::Wait { source })?;
            if self.listeners_resting {
                self.wake_listeners();
            }
        }
    }

    fn stats(&self) -> NetStats {
        NetStats {
            connections_open: self.conns.len(),
            ops_inflight: self.ops_inflight,
            kernel_entries: self.ring.entries(),
            ..self.stats
        }
    }

    fn shut_down(&mut self) {
        self.shut_down_now();
    }
}

impl Drop for UringTransport {
    fn drop(&mut self) {
        self.shut_down_now();
    }
}

impl UringTransport {
    /// Cancels everything in flight and waits for the kernel to give every buffer back, then
    /// closes the listening sockets. After [`DRAIN_LIMIT`] the remaining buffers are leaked,
    /// never freed. Runs once.
    fn shut_down_now(&mut self) {
        if self.dropping {
            return;
        }
        self.dropping = true;
        for id in self.conns.ids() {
            self.begin_close(id, CloseReason::Local);
        }
        let listeners = self.listeners.iter().map(|l| l.armed);
        let watches = self.watches.iter().map(|w| w.armed);
        let cancels: Vec<(OpKind, OpKind, usize)> = listeners
            .enumerate()
            .filter(|&(_, armed)| armed)
            .map(|(index, _)| (OpKind::Accept, OpKind::CancelAccept, index))
            .chain(
                watches
                    .enumerate()
                    .filter(|&(_, armed)| armed)
                    .map(|(index, _)| (OpKind::Poll, OpKind::CancelPoll, index)),
            )
            .collect();
        for (target, cancel, index) in cancels {
            let entry = opcode::AsyncCancel::new(Op::new(target, index as u32, 0).encode())
                .build()
                .user_data(Op::new(cancel, index as u32, 0).encode());
            // SAFETY: a cancellation names its target by value and points at no memory.
            unsafe { self.ring.push(entry) };
            self.ops_inflight += 1;
        }
        let deadline = Instant::now() + DRAIN_LIMIT;
        while self.ops_inflight > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let step = (deadline - now).min(Duration::from_millis(100));
            if let Err(error) = self.ring.wait(Some(step)) {
                tracing::warn!(%error, "waiting for cancelled operations failed");
                std::thread::sleep(Duration::from_millis(1));
            }
            self.reap();
        }
        if self.ops_inflight > 0 {
            tracing::error!(
                ops_inflight = self.ops_inflight,
                "io_uring operations still in flight after {DRAIN_LIMIT:?}; leaking their buffers"
            );
            for conn in self.conns.drain_all() {
                if conn.ops_inflight() > 0 {
                    let Conn {
                        recv_buf,
                        sends,
                        connect_addr,
                        ..
                    } = conn;
                    std::mem::forget(recv_buf);
                    std::mem::forget(sends);
                    std::mem::forget(connect_addr);
                }
            }
        } else {
            // Nothing of the kernel's refers to them any more: closing them ends them now.
            self.listeners.clear();
        }
        self.events.clear();
    }
}
