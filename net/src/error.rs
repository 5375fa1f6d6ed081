//! Errors of the transport API. Each variant is an operating error the caller can act on; misuse
//! that can only be a bug in the caller (a buffer from a foreign transport, say) is logged or
//! asserted where it is detected instead.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::ConnId;

/// Why a transport call failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A field of the [`crate::TransportConfig`] is out of bounds.
    #[error("invalid transport config: {field} {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    /// The kernel lacks something the backend cannot do without.
    #[error("the kernel does not support {what}")]
    Unsupported { what: &'static str },
    /// Setting up the backend (the io_uring instance) failed.
    #[error("transport setup failed at {what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// Another socket holds the address without `SO_REUSEPORT`, or a socket of another user
    /// holds it.
    #[error("address {addr} is in use")]
    AddressInUse { addr: SocketAddr },
    /// The address is not one of this machine's.
    #[error("address {addr} is not available on this machine")]
    AddressNotAvailable { addr: SocketAddr },
    /// Creating, binding or listening on a socket failed for another reason.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Creating or configuring the socket of an outgoing connection failed. (A connection that
    /// is refused or times out is reported later, by a `Closed` event.)
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The connection table is full.
    #[error("too many connections: the table holds {max}")]
    TooManyConnections { max: u32 },
    /// The transport already has its most listening sockets.
    #[error("too many listeners: at most {max}")]
    TooManyListeners { max: usize },
    /// The transport already watches its most descriptors.
    #[error("too many watched descriptors: at most {max}")]
    TooManyWatches { max: usize },
    /// A negative descriptor was given to `watch`.
    #[error("{fd} is not a file descriptor")]
    BadFd { fd: i32 },
    /// The id names no connection of this transport: it was closed (its `Closed` event was
    /// emitted) or it was never issued by this transport.
    #[error("{conn} is not an open connection of this transport")]
    UnknownConn { conn: ConnId },
    /// The connection is closing: `close` was called or it failed; its `Closed` event follows.
    #[error("{conn} is closing")]
    ConnClosing { conn: ConnId },
    /// Queuing the buffer would pass the connection's send-queue limit. Nothing was queued; the
    /// buffer is handed back in `buf`. Send it again after `Sent` events made room.
    #[error(
        "send queue of {conn} is full: {queued_bytes} bytes queued, {len} more would pass {max}"
    )]
    SendQueueFull {
        conn: ConnId,
        queued_bytes: usize,
        len: usize,
        max: usize,
        buf: Unsent,
    },
    /// The buffer alone is larger than the send-queue limit, so it can never be queued.
    #[error("a send of {len} bytes is larger than the send-queue limit of {max} bytes")]
    SendTooLarge { len: usize, max: usize },
    /// Waiting for completions failed.
    #[error("waiting for network completions failed: {source}")]
    Wait {
        #[source]
        source: io::Error,
    },
}

impl NetError {
    /// The buffer a failed send hands back, if it does.
    pub fn into_unsent(self) -> Option<Vec<u8>> {
        match self {
            NetError::SendQueueFull { buf, .. } => Some(buf.0),
            _ => None,
        }
    }
}

/// A send buffer handed back unsent. Its `Debug` shows the length, not the bytes.
pub struct Unsent(pub Vec<u8>);

impl fmt::Debug for Unsent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unsent({} bytes)", self.0.len())
    }
}
