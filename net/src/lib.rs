//! Transport backends: TCP connections driven by a per-core reactor without blocking.
//!
//! Users see one trait, [`Transport`]: one instance per data core, owned by that core's reactor,
//! which calls [`Transport::poll`] in its loop and [`Transport::wait`] when it has nothing to do.
//! Calls queue work (listen, connect, send, close, recycle); `poll` hands it to the kernel and
//! reports what happened as [`NetEvent`]s. Every operation is bounded by the limits of
//! [`TransportConfig`] and [`limits`]: a fixed connection table, one receive buffer per
//! connection, a send-queue limit per connection.
//!
//! Buffers have one owner at a time. A send buffer belongs to the transport from `send` until its
//! `Sent` event hands it back; a receive buffer belongs to the caller from its `Received` event
//! until `recycle` hands it back, and until then the connection receives nothing more. That is
//! the backpressure: a caller that cannot keep up stops recycling, the kernel's socket buffer
//! fills, and the peer's writes block.
//!
//! Backends: [`uring`] (kernel TCP through io_uring). The trait carries no io_uring type, so a
//! poll-mode backend (DPDK with a userspace TCP stack) can take its place later without the
//! object service changing. This crate knows nothing about frames, requests or objects.

pub mod config;
pub mod error;
pub mod event;
pub mod limits;
pub mod uring;

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

pub use config::TransportConfig;
pub use error::{NetError, Unsent};
pub use event::{CloseReason, ConnId, NetEvent, NetStats, RecvBuf};
pub use uring::UringTransport;

/// TCP for one core.
///
/// Every method returns at once except [`wait`](Transport::wait). Work is queued by the calls and
/// reaches the kernel in the next [`poll`](Transport::poll) or `wait`; their results come back as
/// events from `poll`, in the order they happened for each connection.
///
/// For every id that [`connect`](Transport::connect) returns or an `Accepted` event reports,
/// exactly one `Closed` event follows eventually (a connect is followed by `Connected` or
/// directly by `Closed`). Once its `Closed` is queued the id is dead (a caller still taking
/// the events before it, a `Sent` say, may find so): calls with it fail with
/// [`NetError::UnknownConn`] or do nothing.
pub trait Transport {
    /// Listens on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`, so every core can listen on the
    /// same port and the kernel spreads connections among them. Port 0 picks a free port; the
    /// bound address is returned. Accepted connections arrive as `Accepted` events.
    fn listen(&mut self, addr: SocketAddr) -> Result<SocketAddr, NetError>;

    /// Starts connecting to `addr` without waiting. `Connected` or `Closed` follows. Sends may
    /// be queued before the connection is established; they go out after it.
    fn connect(&mut self, addr: SocketAddr) -> Result<ConnId, NetError>;

    /// Queues `buf` to be sent on `conn`. Bytes of successive sends go out in order; a short
    /// write is continued by the transport. `Sent` hands the buffer back once all of it went to
    /// the kernel. Fails with [`NetError::SendQueueFull`] (handing `buf` back) when the queued
    /// bytes would pass `send_queue_bytes_max`.
    fn send(&mut self, conn: ConnId, buf: Vec<u8>) -> Result<(), NetError>;

    /// Gives back a receive buffer, which lets `conn` receive again. A buffer of a connection
    /// that closed meanwhile is kept for later connections. While the caller holds the buffer
    /// nothing is read from the socket, so the peer's end of stream is noticed only after the
    /// buffer comes back (a failing send still closes the connection).
    fn recycle(&mut self, conn: ConnId, buf: RecvBuf);

    /// Closes `conn`: cancels what it has in flight, drops its queued sends, and emits `Closed`
    /// (reason `Local`) once the kernel let go of its buffers. Does nothing if `conn` is dead or
    /// already closing.
    fn close(&mut self, conn: ConnId);

    /// Reports `Ready { token }` each time `fd` becomes readable (an eventfd written by another
    /// core, a device queue's io_uring descriptor). The caller drains `fd` after `Ready`, keeps
    /// it open as long as the transport lives, and must not watch it twice.
    fn watch(&mut self, fd: RawFd, token: u64) -> Result<(), NetError>;

    /// Hands queued work to the kernel, collects what completed, and appends the events to `out`.
    /// Returns how many it appended. Never blocks.
    fn poll(&mut self, out: &mut Vec<NetEvent>) -> usize;

    /// Blocks until an event is ready for `poll` or `timeout` passed (`None`: no timeout).
    /// Returns at once when events are ready, and also when nothing is in flight that could
    /// ever produce one and there is no timeout.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), NetError>;

    /// Counters of this transport.
    fn stats(&self) -> NetStats;

    /// Closes every connection and listening socket and waits (boundedly) for the kernel to
    /// let go of them: what a stopping node does last, so that no listener of it outlives the
    /// process (the kernel may hold a socket an operation is still in flight on, and a listener
    /// on a shared port takes connections it then resets). Nothing works after it.
    fn shut_down(&mut self) {}
}
