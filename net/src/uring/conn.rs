//! The connection table: a fixed array of slots, each with a generation, and the state of the
//! connection in it.
//!
//! A slot is taken by an accept or a connect and freed only when its connection is closing and
//! the kernel has posted the completion of every operation that named it, so a buffer or address
//! the kernel may still use is never dropped while in the table. Freeing bumps the slot's
//! generation, which makes every [`ConnId`] of the old connection stale.

use std::collections::VecDeque;

use socket2::{SockAddr, Socket};

use crate::limits::SEND_BUFFERS_PER_OP_MAX;
use crate::{CloseReason, ConnId, RecvBuf};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Its connect is in flight.
    Connecting,
    /// Established: receiving and sending.
    Open,
    /// Closing for this reason: nothing new is started, what is in flight is being cancelled.
    Closing(CloseReason),
}

/// The `msghdr` and iovecs of a connection's send in flight. Boxed in the connection so the
/// kernel can read them at one place until the send completes, however the `Conn` moves.
pub(super) struct Gather {
    pub msg: libc::msghdr,
    pub iov: [libc::iovec; SEND_BUFFERS_PER_OP_MAX],
}

impl Gather {
    fn new() -> Box<Self> {
        // SAFETY: msghdr and iovec are plain C structs for which all-zero bytes are valid (null
        // pointers, zero lengths).
        Box::new(unsafe { std::mem::zeroed() })
    }
}

// SAFETY: the pointers in a Gather point into the send buffers of the connection that owns it
// (or are stale and unused when no send is in flight); they move with the connection, and only
// the thread that owns the transport reads or writes them.
unsafe impl Send for Gather {}

/// One connection.
pub(super) struct Conn {
    pub socket: Socket,
    pub phase: Phase,
    /// A receive found the end of the stream: no receive is started again, and the connection
    /// closes once its send queue is empty.
    pub eof: bool,
    /// The receive buffer: `Some` while a receive is in flight into it or while it waits to be
    /// used, `None` while the caller holds it (between `Received` and `recycle`).
    pub recv_buf: Option<RecvBuf>,
    pub recv_inflight: bool,
    /// Buffers to send, oldest first; the front one is being sent.
    pub sends: VecDeque<Vec<u8>>,
    /// Bytes of the front buffer the kernel took already.
    pub send_offset: usize,
    pub send_inflight: bool,
    /// What the send in flight points the kernel at.
    pub gather: Box<Gather>,
    /// Total length of the buffers in `sends`.
    pub send_queued_bytes: usize,
    /// The address of the connect in flight. Boxed: the kernel reads it through a pointer until
    /// the connect completes, and the box keeps it at one place while the `Conn` moves.
    pub connect_addr: Option<Box<SockAddr>>,
    pub connect_inflight: bool,
    /// Cancellations in flight.
    pub cancels_inflight: u32,
}

impl Conn {
    pub fn new(socket: Socket, phase: Phase, recv_buf: RecvBuf) -> Self {
        Self {
            socket,
            phase,
            eof: false,
            recv_buf: Some(recv_buf),
            recv_inflight: false,
            sends: VecDeque::new(),
            send_offset: 0,
            send_inflight: false,
            gather: Gather::new(),
            send_queued_bytes: 0,
            connect_addr: None,
            connect_inflight: false,
            cancels_inflight: 0,
        }
    }

    /// Operations of this connection whose completion has not been reaped yet.
    pub fn ops_inflight(&self) -> u32 {
        u32::from(self.recv_inflight)
            + u32::from(self.send_inflight)
            + u32::from(self.connect_inflight)
            + self.cancels_inflight
    }

    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing(_))
    }
}

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// Fixed-size table of connections.
pub(super) struct ConnTable {
    slots: Vec<Slot>,
    /// Indices of the empty slots; the most recently freed is reused first (warm in cache).
    free: Vec<u32>,
}

impl ConnTable {
    pub fn new(capacity: u32) -> Self {
        Self {
            slots: (0..capacity)
                .map(|_| Slot {
                    generation: 0,
                    conn: None,
                })
                .collect(),
            free: (0..capacity).rev().collect(),
        }
    }

    pub fn capacity(&self) -> u32 {
        self.slots.len() as u32
    }

    pub fn len(&self) -> u32 {
        self.capacity() - self.free.len() as u32
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Puts `conn` into a free slot; `None` if the table is full.
    pub fn insert(&mut self, conn: Conn) -> Option<ConnId> {
        let index = self.free.pop()?;
        let slot = &mut self.slots[index as usize];
        assert!(slot.conn.is_none());
        slot.conn = Some(conn);
        Some(ConnId::new(index, slot.generation))
    }

    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        let slot = self.slots.get(id.index() as usize)?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.conn.as_ref()
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(id.index() as usize)?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.conn.as_mut()
    }

    /// Takes the connection out and frees its slot. Only for a connection the kernel no longer
    /// knows about.
    pub fn remove(&mut self, id: ConnId) -> Conn {
        let slot = &mut self.slots[id.index() as usize];
        assert_eq!(slot.generation, id.generation());
        let conn = slot.conn.take().expect("removing an empty slot");
        assert_eq!(conn.ops_inflight(), 0);
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index());
        conn
    }

    /// Ids of every connection in the table.
    pub fn ids(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.conn.is_some())
            .map(|(index, slot)| ConnId::new(index as u32, slot.generation))
            .collect()
    }

    /// Takes out every connection left, whatever it has in flight: for a transport being dropped
    /// after the kernel did not give everything back in time.
    pub fn drain_all(&mut self) -> Vec<Conn> {
        self.slots
            .iter_mut()
            .filter_map(|slot| slot.conn.take())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use socket2::{Domain, Type};

    use super::*;

    fn conn() -> Conn {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        Conn::new(socket, Phase::Open, RecvBuf::new(16))
    }

    #[test]
    fn ids_go_stale_when_their_slot_is_reused() {
        let mut table = ConnTable::new(1);
        let first = table.insert(conn()).unwrap();
        assert!(table.is_full());
        assert!(table.insert(conn()).is_none());
        table.remove(first);
        assert_eq!(table.len(), 0);
        let second = table.insert(conn()).unwrap();
        assert_eq!(first.index(), second.index());
        assert_ne!(first, second);
        assert!(table.get(first).is_none());
        assert!(table.get(second).is_some());
        assert_eq!(table.ids(), vec![second]);
    }

    #[test]
    fn out_of_range_ids_are_unknown() {
        let mut table = ConnTable::new(2);
        assert!(table.get_mut(ConnId::new(7, 0)).is_none());
        assert!(table.get(ConnId::new(0, 0)).is_none());
    }

    #[test]
    #[should_panic]
    fn a_connection_with_ops_in_flight_is_never_freed() {
        let mut table = ConnTable::new(1);
        let id = table.insert(conn()).unwrap();
        table.get_mut(id).unwrap().recv_inflight = true;
        table.remove(id);
    }
}
