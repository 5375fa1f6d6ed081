//! Opcodes of protocol v1. What each one carries is specified in `docs/protocol.md`.
//!
//! The space is split so later issues can add operations without a version bump: 0x01..0x3f
//! client operations, 0x40..0x7f node-to-node (peer) operations (issue 5: shard reads and
//! writes between nodes), 0x80..0xff reserved. A v1 decoder refuses every value it does not
//! list here, including the peer range.

use std::fmt;
use std::ops::RangeInclusive;

/// Opcode values reserved for node-to-node operations (issue 5).
pub const PEER_OPCODES: RangeInclusive<u8> = 0x40..=0x7f;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Only in error replies to a frame whose opcode the node does not know or could not read
    /// (bad magic, bad version, bad header checksum, unknown opcode). Never in a request.
    Unknown = 0x00,
    /// Liveness check; the reply echoes the payload.
    Ping = 0x01,
    /// Make a new object with the scheme in `aux`; the reply carries its id.
    Create = 0x02,
    /// Write the payload at `offset` of the object.
    Put = 0x03,
    /// Read `length` bytes at `offset`; the reply may span several frames.
    Get = 0x04,
    /// Remove the object.
    Delete = 0x05,
    /// Describe the object: a JSON document in the reply payload.
    Stat = 0x06,
    /// Describe the node's overlay view (routing table, neighbourhood) and, when `length` > 0,
    /// the `length` nodes responsible for `object_id`: a JSON document in the reply payload.
    Overlay = 0x07,
}

impl Opcode {
    /// Every opcode v1 knows, in wire order.
    pub const ALL: [Opcode; 8] = [
        Opcode::Unknown,
        Opcode::Ping,
        Opcode::Create,
        Opcode::Put,
        Opcode::Get,
        Opcode::Delete,
        Opcode::Stat,
        Opcode::Overlay,
    ];

    /// The opcode of a wire byte; `None` for values v1 does not define.
    pub fn from_u8(byte: u8) -> Option<Opcode> {
        Opcode::ALL.into_iter().find(|opcode| *opcode as u8 == byte)
    }

    pub fn to_u8(self) -> u8 {
        self as u8
    }

    /// The name used in `docs/protocol.md` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Unknown => "UNKNOWN",
            Opcode::Ping => "PING",
            Opcode::Create => "CREATE",
            Opcode::Put => "PUT",
            Opcode::Get => "GET",
            Opcode::Delete => "DELETE",
            Opcode::Stat => "STAT",
            Opcode::Overlay => "OVERLAY",
        }
    }
}

/// Whether a wire byte lies in the range reserved for peer operations.
pub fn is_peer_opcode(byte: u8) -> bool {
    PEER_OPCODES.contains(&byte)
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_maps_back_to_itself_or_none() {
        for byte in 0..=u8::MAX {
            match Opcode::from_u8(byte) {
                Some(opcode) => {
                    assert_eq!(opcode.to_u8(), byte);
                    assert!(!is_peer_opcode(byte), "{opcode} sits in the peer range");
                }
                None => assert!(byte > Opcode::Overlay as u8),
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(Opcode::Get.to_string(), "GET");
        assert_eq!(Opcode::Unknown.to_string(), "UNKNOWN");
    }
}
