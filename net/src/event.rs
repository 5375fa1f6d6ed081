//! What a transport reports, and the ids and buffers it hands out.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;

/// A connection of one transport. The generation tells a connection from an earlier one that had
/// the same table index, so an id kept after its `Closed` event is refused, never taken for its
/// successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    /// Ids are issued by transports only.
    pub(crate) fn new(index: u32, generation: u32) -> Self {
        Self { index, generation }
    }

    /// Index in the transport's connection table, below its `connections_max`: callers may keep
    /// per-connection state in an array of that size. An index is reused after `Closed`.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many connections had this index before this one (wrapping).
    pub fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn {}.{}", self.index, self.generation)
    }
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The peer closed its side: a receive found the end of the stream. Sends queued before
    /// were still sent (or failed because the peer was gone).
    PeerClosed,
    /// A socket operation failed with this `errno`: the connect was refused or timed out, the
    /// peer reset the connection, and so on.
    Error(i32),
    /// `Transport::close` was called, or the transport was dropped.
    Local,
}

impl CloseReason {
    /// The error, for `Error`.
    pub fn io_error(self) -> Option<io::Error> {
        match self {
            CloseReason::Error(errno) => Some(io::Error::from_raw_os_error(errno)),
            CloseReason::PeerClosed | CloseReason::Local => None,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("closed by the peer"),
            CloseReason::Error(errno) => {
                write!(f, "failed: {}", io::Error::from_raw_os_error(*errno))
            }
            CloseReason::Local => f.write_str("closed locally"),
        }
    }
}

/// Something that happened on a transport, reported by `Transport::poll`.
#[derive(Debug)]
pub enum NetEvent {
    /// A listener accepted a connection; receiving on it has started.
    Accepted { conn: ConnId, peer: SocketAddr },
    /// An outgoing connection (from `connect`) is established; receiving on it has started.
    Connected { conn: ConnId },
    /// Bytes arrived. No further receive happens on `conn` until `buf` is given back with
    /// `Transport::recycle`.
    Received { conn: ConnId, buf: RecvBuf },
    /// The whole buffer of one `send` went to the kernel; here it is back for reuse. Buffers come
    /// back in the order they were sent.
    Sent { conn: ConnId, buf: Vec<u8> },
    /// The connection ended, exactly once per id; the id is dead afterwards. Send buffers not yet
    /// reported as `Sent` were dropped; a `RecvBuf` still held by the caller may be recycled.
    Closed { conn: ConnId, reason: CloseReason },
    /// A watched descriptor became readable.
    Ready { token: u64 },
}

/// A receive buffer: fixed capacity, derefs to the bytes received into it.
pub struct RecvBuf {
    bytes: Box<[u8]>,
    len: usize,
}

impl RecvBuf {
    /// An empty buffer of `capacity` bytes (zeroed once here, so the backend never has to hand
    /// the kernel uninitialised memory).
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(capacity > 0);
        Self {
            bytes: vec![0; capacity].into_boxed_slice(),
            len: 0,
        }
    }

    /// Bytes the buffer holds when full.
    pub fn capacity(&self) -> usize {
        self.bytes.len()
    }

    /// The whole buffer, for the kernel to fill. Its address does not change when the
    /// `RecvBuf` moves.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.bytes.as_mut_ptr()
    }

    /// Records that the first `len` bytes were filled.
    pub(crate) fn set_len(&mut self, len: usize) {
        assert!(len <= self.bytes.len());
        self.len = len;
    }
}

impl Deref for RecvBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Debug for RecvBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecvBuf({} of {} bytes)", self.len, self.bytes.len())
    }
}

/// Counters of one transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connections in the table, closing ones included.
    pub connections_open: u32,
    /// Connections accepted since the transport was created.
    pub accepted_total: u64,
    /// Outgoing connections established.
    pub connected_total: u64,
    /// Accepted connections closed at once because the table was full.
    pub refused_total: u64,
    /// `Closed` events emitted.
    pub closed_total: u64,
    /// Bytes received and handed out in `Received` events.
    pub received_bytes: u64,
    /// Bytes the kernel took from send buffers.
    pub sent_bytes: u64,
    /// Buffers queued by `send` and not yet reported as `Sent` (or dropped by a close).
    pub sends_queued: u64,
    /// Bytes of those buffers.
    pub send_queued_bytes: u64,
    /// Operations the kernel may be working on (receives, sends, connects, accepts, polls,
    /// cancellations).
    pub ops_inflight: u32,
    /// Non-blocking system calls into the kernel (submissions, and asks for completions it
    /// holds back); blocking waits are not counted. What a polling core costs while idle.
    pub kernel_entries: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_buf_derefs_to_the_filled_part() {
        let mut buf = RecvBuf::new(8);
        assert!(buf.is_empty());
        assert_eq!(buf.capacity(), 8);
        buf.set_len(3);
        assert_eq!(&*buf, &[0, 0, 0]);
        assert_eq!(format!("{buf:?}"), "RecvBuf(3 of 8 bytes)");
    }

    #[test]
    #[should_panic]
    fn recv_buf_cannot_be_filled_past_capacity() {
        RecvBuf::new(8).set_len(9);
    }

    #[test]
    fn conn_id_displays_index_and_generation() {
        assert_eq!(ConnId::new(5, 2).to_string(), "conn 5.2");
    }

    #[test]
    fn close_reason_names_the_error() {
        let reason = CloseReason::Error(libc::ECONNREFUSED);
        assert_eq!(
            reason.io_error().map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionRefused)
        );
        assert!(reason.to_string().starts_with("failed: "));
    }
}
