//! The `user_data` of every operation: what it is and whom it belongs to, packed in 64 bits.
//!
//! Layout: bits 56..64 the [`OpKind`], bits 32..56 the index of the connection, listener or
//! watch, bits 0..32 the connection's generation (0 for listeners and watches). A completion is
//! matched to its owner by value, never through a pointer, so a completion that outlived its
//! owner cannot touch freed memory; the generation tells a completion of a connection from one of
//! a later connection that reused the index (which the table prevents, and asserts).

/// What an operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum OpKind {
    /// A receive into the connection's buffer.
    Recv = 1,
    /// A send of the front of the connection's send queue.
    Send = 2,
    /// An outgoing connect.
    Connect = 3,
    /// A cancellation of one of the connection's operations.
    CancelConn = 4,
    /// A (multishot) accept on a listener.
    Accept = 5,
    /// A cancellation of a listener's accept.
    CancelAccept = 6,
    /// A (multishot) poll of a watched descriptor.
    Poll = 7,
    /// A cancellation of a watch's poll.
    CancelPoll = 8,
}

impl OpKind {
    fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => OpKind::Recv,
            2 => OpKind::Send,
            3 => OpKind::Connect,
            4 => OpKind::CancelConn,
            5 => OpKind::Accept,
            6 => OpKind::CancelAccept,
            7 => OpKind::Poll,
            8 => OpKind::CancelPoll,
            _ => return None,
        })
    }
}

/// Bits of the index field.
const INDEX_BITS: u32 = 24;

/// One decoded `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Op {
    pub kind: OpKind,
    pub index: u32,
    pub generation: u32,
}

impl Op {
    pub fn new(kind: OpKind, index: u32, generation: u32) -> Self {
        assert!(index < 1 << INDEX_BITS);
        Self {
            kind,
            index,
            generation,
        }
    }

    pub fn encode(self) -> u64 {
        (u64::from(self.kind as u8) << 56)
            | (u64::from(self.index) << 32)
            | u64::from(self.generation)
    }

    /// `None` for a value no operation of this backend carries.
    pub fn decode(user_data: u64) -> Option<Self> {
        let kind = OpKind::from_u8((user_data >> 56) as u8)?;
        Some(Self {
            kind,
            index: ((user_data >> 32) as u32) & ((1 << INDEX_BITS) - 1),
            generation: user_data as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_the_edges() {
        let kinds = [
            OpKind::Recv,
            OpKind::Send,
            OpKind::Connect,
            OpKind::CancelConn,
            OpKind::Accept,
            OpKind::CancelAccept,
            OpKind::Poll,
            OpKind::CancelPoll,
        ];
        for kind in kinds {
            for index in [0, 1, (1 << INDEX_BITS) - 1] {
                for generation in [0, 1, u32::MAX] {
                    let op = Op::new(kind, index, generation);
                    assert_eq!(Op::decode(op.encode()), Some(op));
                }
            }
        }
    }

    #[test]
    fn foreign_values_are_refused() {
        assert_eq!(Op::decode(0), None);
        assert_eq!(Op::decode(u64::MAX), None);
    }

    #[test]
    #[should_panic]
    fn index_must_fit() {
        Op::new(OpKind::Recv, 1 << INDEX_BITS, 0);
    }
}
