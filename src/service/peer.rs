//! Calls from this core to other nodes: one pipelined connection per peer address, opened on
//! first use through the core's own transport, requests matched to replies by request id. A
//! reply of several frames (MORE) is gathered before the caller sees it. A call fails when the
//! connection cannot be made or closes, or after [`CALL_TIMEOUT`]; the next call reconnects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ds_net::{ConnId, NetError, RecvBuf};
use ds_proto::{Flags, FrameDecoder, Header, Status, HEADER_BYTES};
use thiserror::Error;

use crate::reactor::slots;
use crate::service::ctx::CoreCtx;

/// How long a call waits for its reply.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest reply (all frames of it) a call accepts.
const REPLY_BYTES_MAX: usize = 8 << 20;
/// How long a send waits between tries while the connection's send queue is full.
const SEND_RETRY: Duration = Duration::from_micros(50);

/// A peer's answer: its final header (status, aux) and the whole payload.
#[derive(Debug)]
pub struct PeerReply {
    pub header: Header,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, Error)]
pub enum PeerError {
    #[error("node {addr} is unreachable: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("node {addr} did not answer within {CALL_TIMEOUT:?}")]
    Timeout { addr: SocketAddr },
    #[error("node {addr} sent a bad reply: {reason}")]
    BadReply { addr: SocketAddr, reason: String },
}

pub type CallResult = Result<PeerReply, PeerError>;

struct Conn {
    addr: SocketAddr,
    decoder: FrameDecoder,
}

struct Call {
    conn: ConnId,
    slot: usize,
    deadline: Instant,
    /// Payload of the frames received so far (replies with MORE).
    gathered: Vec<u8>,
}

/// The peer connections and calls in flight of one core.
#[derive(Default)]
pub struct Peers {
    by_addr: HashMap<SocketAddr, ConnId>,
    conns: HashMap<ConnId, Conn>,
    calls: HashMap<u64, Call>,
    next_request: u64,
    pub calls_total: u64,
    pub call_errors: u64,
}

impl Peers {
    pub fn owns(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    pub fn in_flight(&self) -> usize {
        self.calls.len()
    }
}

/// Sends `header` with a payload of `parts`, in order, to the node at `addr` and waits for its
/// reply. The request id and checksums are filled in here. The parts are copied once, into the
/// buffer the frame is sent from.
pub async fn call(
    ctx: &Rc<CoreCtx>,
    addr: SocketAddr,
    mut header: Header,
    parts: &[&[u8]],
) -> CallResult {
    let conn = match connection(ctx, addr) {
        Ok(conn) => conn,
        Err(reason) => return Err(PeerError::Unreachable { addr, reason }),
    };
    let request_id = {
        let mut peers = ctx.peers.borrow_mut();
        peers.next_request += 1;
        peers.calls_total += 1;
        peers.next_request
    };
    header.request_id = request_id;
    let payload_bytes: usize = parts.iter().map(|p| p.len()).sum();
    let mut bytes = ctx.take_send_buf(HEADER_BYTES + payload_bytes);
    bytes.resize(HEADER_BYTES, 0);
    for part in parts {
        bytes.extend_from_slice(part);
    }
    if let Err(error) = header.seal(&bytes[HEADER_BYTES..]) {
        ctx.give_send_buf(bytes);
        return Err(PeerError::BadReply {
            addr,
            reason: format!("request not encodable: {error}"),
        });
    }
    bytes[..HEADER_BYTES].copy_from_slice(&header.encode());
    let slot = ctx.peer_slots.borrow_mut().open();
    let deadline = Instant::now() + CALL_TIMEOUT;
    ctx.peers.borrow_mut().calls.insert(
        request_id,
        Call {
            conn,
            slot,
            deadline,
            gathered: Vec::new(),
        },
    );
    loop {
        let result = ctx.net.borrow_mut().send(conn, bytes);
        match result {
            Ok(()) => break,
            Err(NetError::SendQueueFull { buf, .. }) if Instant::now() < deadline => {
                bytes = buf.0;
                ctx.sleep(SEND_RETRY).await;
                if !ctx.peers.borrow().calls.contains_key(&request_id) {
                    // The connection closed meanwhile and failed the call.
                    break;
                }
            }
            Err(error) => {
                fail(
                    ctx,
                    request_id,
                    PeerError::Unreachable {
                        addr,
                        reason: error.to_string(),
                    },
                );
                break;
            }
        }
    }
    let result = slots::wait(ctx.peer_slots.clone(), slot).await;
    if result.is_err() {
        ctx.peers.borrow_mut().call_errors += 1;
    }
    result
}

/// The open connection to `addr`, or a new one (sends queue until it is established).
fn connection(ctx: &CoreCtx, addr: SocketAddr) -> Result<ConnId, String> {
    if let Some(conn) = ctx.peers.borrow().by_addr.get(&addr) {
        return Ok(*conn);
    }
    let conn = ctx
        .net
        .borrow_mut()
        .connect(addr)
        .map_err(|e| e.to_string())?;
    let mut peers = ctx.peers.borrow_mut();
    peers.by_addr.insert(addr, conn);
    peers.conns.insert(
        conn,
        Conn {
            addr,
            decoder: FrameDecoder::new(),
        },
    );
    Ok(conn)
}

fn fail(ctx: &CoreCtx, request_id: u64, error: PeerError) {
    let call = ctx.peers.borrow_mut().calls.remove(&request_id);
    if let Some(call) = call {
        ctx.peer_slots.borrow_mut().complete(call.slot, Err(error));
    }
}

/// Bytes arrived on a peer connection: hand every complete reply to its caller.
pub fn received(ctx: &CoreCtx, conn: ConnId, buf: RecvBuf) {
    let mut input: &[u8] = &buf;
    let mut broken = None;
    loop {
        let decoded = {
            let mut peers = ctx.peers.borrow_mut();
            let Some(state) = peers.conns.get_mut(&conn) else {
                break;
            };
            state.decoder.decode(&mut input)
        };
        match decoded {
            Ok(Some(frame)) => deliver(ctx, conn, frame),
            Ok(None) => break,
            Err(error) => {
                broken = Some(error.to_string());
                break;
            }
        }
    }
    ctx.net.borrow_mut().recycle(conn, buf);
    if let Some(reason) = broken {
        tracing::warn!(%conn, %reason, "closing a peer connection that sent a bad frame");
        ctx.net.borrow_mut().close(conn);
    }
}

fn deliver(ctx: &CoreCtx, conn: ConnId, frame: ds_proto::Frame) {
    let header = frame.header;
    let mut peers = ctx.peers.borrow_mut();
    let addr = peers.conns.get(&conn).map(|c| c.addr);
    let Some(call) = peers.calls.get_mut(&header.request_id) else {
        // The call timed out already; its late reply is dropped.
        return;
    };
    if call.conn != conn || !header.is_reply() {
        return;
    }
    if call.gathered.len() + frame.payload.len() > REPLY_BYTES_MAX {
        let call = peers.calls.remove(&header.request_id).expect("present");
        drop(peers);
        let addr = addr.expect("a call's connection is known");
        let reason = format!("reply longer than {REPLY_BYTES_MAX} bytes");
        ctx.peer_slots
            .borrow_mut()
            .complete(call.slot, Err(PeerError::BadReply { addr, reason }));
        return;
    }
    if call.gathered.is_empty() {
        call.gathered = frame.payload;
    } else {
        call.gathered.extend_from_slice(&frame.payload);
    }
    if header.flags.contains(Flags::MORE) && header.status == Status::Ok {
        return;
    }
    let call = peers.calls.remove(&header.request_id).expect("present");
    drop(peers);
    ctx.peer_slots.borrow_mut().complete(
        call.slot,
        Ok(PeerReply {
            header,
            payload: call.gathered,
        }),
    );
}

/// A peer connection closed: fail its calls; the next call to that address reconnects.
pub fn closed(ctx: &CoreCtx, conn: ConnId, reason: &str) {
    let failed: Vec<(u64, SocketAddr)> = {
        let mut peers = ctx.peers.borrow_mut();
        let Some(state) = peers.conns.remove(&conn) else {
            return;
        };
        if peers.by_addr.get(&state.addr) == Some(&conn) {
            peers.by_addr.remove(&state.addr);
        }
        peers
            .calls
            .iter()
            .filter(|(_, call)| call.conn == conn)
            .map(|(id, _)| (*id, state.addr))
            .collect()
    };
    for (request_id, addr) in failed {
        fail(
            ctx,
            request_id,
            PeerError::Unreachable {
                addr,
                reason: reason.to_string(),
            },
        );
    }
}

/// Fails calls past their deadline. Their connection stays: it may only be slow.
pub fn expire(ctx: &CoreCtx, now: Instant) {
    let late: Vec<(u64, ConnId)> = ctx
        .peers
        .borrow()
        .calls
        .iter()
        .filter(|(_, call)| call.deadline <= now)
        .map(|(id, call)| (*id, call.conn))
        .collect();
    for (request_id, conn) in late {
        let addr = ctx.peers.borrow().conns.get(&conn).map(|c| c.addr);
        match addr {
            Some(addr) => fail(ctx, request_id, PeerError::Timeout { addr }),
            None => fail(
                ctx,
                request_id,
                PeerError::Unreachable {
                    addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                    reason: "connection gone".into(),
                },
            ),
        }
    }
}
