//! Client connections of one core: bytes in through the frame decoder, one task per request,
//! replies out through the transport with backpressure both ways. A connection with
//! [`REQUESTS_PER_CONN_MAX`] requests running stops being read (its receive buffer is held
//! back), and a reply waits while the connection's send queue is full, so a client can make a
//! node buffer no more than one receive buffer, one frame and its send queue.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ds_net::{ConnId, NetError, RecvBuf};
use ds_proto::{Decoded, FrameDecoder};

use crate::service::ctx::CoreCtx;
use crate::service::payload::RecordPayload;

/// Requests one connection may have running; more wait in the socket (TCP backpressure).
pub const REQUESTS_PER_CONN_MAX: usize = 64;
/// A connection holding part of a frame for this long without sending more is closed, so
/// clients that stall mid-frame cannot hold the node's buffers and connection slots.
pub const FRAME_STALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct ConnState {
    /// Large PUT payloads go straight into store record buffers.
    decoder: FrameDecoder<RecordPayload>,
    /// A receive buffer not fully decoded yet, and how far decoding got.
    parked: Option<(RecvBuf, usize)>,
    running: usize,
    /// Sends handed to the transport and not yet reported sent.
    unsent: usize,
    /// Bumped on every Sent event; a reply waiting for room watches it.
    sent_events: u64,
    waiters: Vec<Waker>,
    /// Close once every queued reply went out (after a reply that ends the connection).
    close_when_flushed: bool,
    closed: bool,
    /// When bytes last arrived.
    last_input: Option<Instant>,
}

#[derive(Default)]
pub struct Conns {
    map: HashMap<ConnId, ConnState>,
    pub accepted: u64,
}

impl Conns {
    pub fn open(&self) -> usize {
        self.map.len()
    }

    /// Requests running over all connections.
    pub fn running(&self) -> usize {
        self.map.values().map(|s| s.running).sum()
    }
}

/// The connection is gone; the reply could not be sent.
#[derive(Debug)]
pub struct Gone;

pub fn accepted(ctx: &CoreCtx, conn: ConnId) {
    if ctx.stopping.get() {
        // A stopping node takes no new clients.
        ctx.net.borrow_mut().close(conn);
        return;
    }
    let mut conns = ctx.conns.borrow_mut();
    conns.map.insert(conn, ConnState::default());
    conns.accepted += 1;
}

/// The node is stopping: read no more requests; close every connection once the replies of
/// its running requests went out.
pub fn drain_all(ctx: &CoreCtx) {
    let mut idle = Vec::new();
    for (conn, state) in ctx.conns.borrow_mut().map.iter_mut() {
        state.close_when_flushed = true;
        if state.running == 0 && state.unsent == 0 {
            idle.push(*conn);
        }
    }
    for conn in idle {
        ctx.net.borrow_mut().close(conn);
    }
}

/// Closes connections stalled in the middle of a frame for [`FRAME_STALL_TIMEOUT`].
pub fn close_stalled(ctx: &CoreCtx, now: Instant) -> usize {
    let stalled: Vec<ConnId> = ctx
        .conns
        .borrow()
        .map
        .iter()
        .filter(|(_, s)| {
            !s.decoder.at_frame_boundary()
                && s.last_input
                    .is_some_and(|at| now.duration_since(at) >= FRAME_STALL_TIMEOUT)
        })
        .map(|(conn, _)| *conn)
        .collect();
    for conn in &stalled {
        tracing::debug!(%conn, "closing a connection stalled mid-frame");
        ctx.net.borrow_mut().close(*conn);
    }
    stalled.len()
}

pub fn closed(ctx: &CoreCtx, conn: ConnId) {
    if let Some(mut state) = ctx.conns.borrow_mut().map.remove(&conn) {
        state.closed = true;
        for waker in state.waiters.drain(..) {
            waker.wake();
        }
    }
}

pub fn sent(ctx: &CoreCtx, conn: ConnId) {
    let close = {
        let mut conns = ctx.conns.borrow_mut();
        let Some(state) = conns.map.get_mut(&conn) else {
            return;
        };
        state.unsent = state.unsent.saturating_sub(1);
        state.sent_events += 1;
        for waker in state.waiters.drain(..) {
            waker.wake();
        }
        state.close_when_flushed && state.unsent == 0 && state.running == 0
    };
    if close {
        ctx.net.borrow_mut().close(conn);
    }
}

/// Bytes arrived on `conn`: decode what the running-request budget allows.
pub fn received(ctx: &Rc<CoreCtx>, conn: ConnId, buf: RecvBuf) {
    match ctx.conns.borrow_mut().map.get_mut(&conn) {
        Some(state) => {
            debug_assert!(
                state.parked.is_none(),
                "one receive buffer out per connection"
            );
            state.parked = Some((buf, 0));
            state.last_input = Some(Instant::now());
        }
        None => return ctx.net.borrow_mut().recycle(conn, buf),
    }
    pump(ctx, conn);
}

/// Decodes frames from the parked buffer and starts their requests while the budget lasts;
/// gives the buffer back (re-arming the receive) once it is used up.
fn pump(ctx: &Rc<CoreCtx>, conn: ConnId) {
    loop {
        let (result, used_up) = {
            let mut conns = ctx.conns.borrow_mut();
            let Some(state) = conns.map.get_mut(&conn) else {
                return;
            };
            if state.running >= REQUESTS_PER_CONN_MAX || state.close_when_flushed {
                return;
            }
            let Some((buf, at)) = state.parked.take() else {
                return;
            };
            let mut input = &buf[at..];
            let result = state.decoder.decode_placing(&mut input, &mut |header| {
                RecordPayload::for_request(ctx, header)
            });
            let at = buf.len() - input.len();
            let framing_lost = matches!(&result, Err(e) if e.breaks_framing());
            if let Ok(Some(_)) = result {
                state.running += 1;
            }
            if at < buf.len() && !framing_lost {
                state.parked = Some((buf, at));
                (result, None)
            } else {
                (result, Some(buf))
            }
        };
        if let Some(buf) = used_up {
            ctx.net.borrow_mut().recycle(conn, buf);
        }
        match result {
            Ok(None) => return,
            step => {
                if !dispatch(ctx, conn, step) {
                    return;
                }
            }
        }
    }
}

/// Starts the request of a decoded frame, or answers a refused one. Returns whether decoding
/// may go on.
fn dispatch(
    ctx: &Rc<CoreCtx>,
    conn: ConnId,
    step: Result<Option<Decoded<RecordPayload>>, ds_proto::DecodeError>,
) -> bool {
    match step {
        Ok(Some(decoded)) => {
            let task_ctx = ctx.clone();
            ctx.executor.spawn(async move {
                crate::service::request::handle(&task_ctx, conn, decoded).await;
                finished(&task_ctx, conn);
            });
            true
        }
        Ok(None) => false,
        Err(error) => {
            let ends = error.breaks_framing();
            ctx.protocol_errors.set(ctx.protocol_errors.get() + 1);
            tracing::debug!(%conn, %error, "refused a frame");
            let mut bytes = Vec::new();
            let _ = error.reply().encode_into(&mut bytes);
            if ends {
                if let Some(state) = ctx.conns.borrow_mut().map.get_mut(&conn) {
                    state.close_when_flushed = true;
                }
            }
            let task_ctx = ctx.clone();
            ctx.executor.spawn(async move {
                let _ = send(&task_ctx, conn, bytes).await;
            });
            !ends
        }
    }
}

fn finished(ctx: &Rc<CoreCtx>, conn: ConnId) {
    let close = match ctx.conns.borrow_mut().map.get_mut(&conn) {
        Some(state) => {
            state.running -= 1;
            state.close_when_flushed && state.running == 0 && state.unsent == 0
        }
        None => false,
    };
    if close {
        ctx.net.borrow_mut().close(conn);
        return;
    }
    pump(ctx, conn);
}

/// Queues `bytes` (whole frames) on `conn`, waiting while its send queue is full.
pub async fn send(ctx: &CoreCtx, conn: ConnId, mut bytes: Vec<u8>) -> Result<(), Gone> {
    loop {
        let seen = match ctx.conns.borrow().map.get(&conn) {
            Some(state) if !state.closed => state.sent_events,
            _ => return Err(Gone),
        };
        let result = ctx.net.borrow_mut().send(conn, bytes);
        match result {
            Ok(()) => {
                if let Some(state) = ctx.conns.borrow_mut().map.get_mut(&conn) {
                    state.unsent += 1;
                }
                return Ok(());
            }
            Err(NetError::SendQueueFull { buf, .. }) => {
                bytes = buf.0;
                SentSince { ctx, conn, seen }.await;
            }
            Err(error) => {
                tracing::debug!(%conn, %error, "reply not sent");
                return Err(Gone);
            }
        }
    }
}

/// Completes once `conn` reported a send after `seen`, or closed.
struct SentSince<'a> {
    ctx: &'a CoreCtx,
    conn: ConnId,
    seen: u64,
}

impl Future for SentSince<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut conns = self.ctx.conns.borrow_mut();
        match conns.map.get_mut(&self.conn) {
            Some(state) if !state.closed && state.sent_events == self.seen => {
                state.waiters.push(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}
