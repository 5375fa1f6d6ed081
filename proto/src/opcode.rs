//! Opcodes of protocol v1. What each one carries is specified in `docs/protocol.md`.
//!
//! The space is split so later issues can add operations without a version bump: 0x01..0x3f
//! client operations, 0x40..0x7f node-to-node (peer) operations (issue 5: shard reads and
//! writes between nodes), 0x80..0xff reserved. A v1 decoder refuses every value it does not
//! list here.

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
    /// Administrative: the node's repair and scrub state (`ds admin health`): a JSON document.
    Health = 0x08,
    /// Administrative: start moving every shard off the node, then stop it (`ds admin drain`);
    /// the reply is the HEALTH document. Asking again reports progress.
    Drain = 0x09,
    /// Peer: store one shard. The payload is the 64-byte shard header (`docs/protocol.md`,
    /// "Shard header") followed by the shard's bytes.
    ShardWrite = 0x40,
    /// Peer: read shard `aux` of stripe `offset`; the reply payload is its header and bytes.
    ShardRead = 0x41,
    /// Peer: tombstone shard `aux` of stripe `offset` at version `length`.
    ShardDelete = 0x42,
    /// Peer: read the object's metadata record; the reply payload is the record.
    MetaRead = 0x43,
    /// Peer: merge the record in the payload into the node's copy; the reply carries the result.
    MetaMerge = 0x44,
    /// Peer: list the shards the node holds of stripes `offset..offset + length` (JSON).
    ShardList = 0x45,
}

impl Opcode {
    /// Every opcode v1 knows, in wire order.
    pub const ALL: [Opcode; 16] = [
        Opcode::Unknown,
        Opcode::Ping,
        Opcode::Create,
        Opcode::Put,
        Opcode::Get,
        Opcode::Delete,
        Opcode::Stat,
        Opcode::Overlay,
        Opcode::Health,
        Opcode::Drain,
        Opcode::ShardWrite,
        Opcode::ShardRead,
        Opcode::ShardDelete,
        Opcode::MetaRead,
        Opcode::MetaMerge,
        Opcode::ShardList,
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
            Opcode::Health => "HEALTH",
            Opcode::Drain => "DRAIN",
            Opcode::ShardWrite => "SHARD_WRITE",
            Opcode::ShardRead => "SHARD_READ",
            Opcode::ShardDelete => "SHARD_DELETE",
            Opcode::MetaRead => "META_READ",
            Opcode::MetaMerge => "META_MERGE",
            Opcode::ShardList => "SHARD_LIST",
        }
    }

    /// Whether this is a node-to-node operation (a client has no business sending it, though
    /// a node answers it from anyone that can reach its port; see `docs/protocol.md`).
    pub fn is_peer(self) -> bool {
        is_peer_opcode(self as u8)
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
                    assert_eq!(
                        opcode.is_peer(),
                        opcode.name().starts_with("SHARD_") || opcode.name().starts_with("META_")
                    );
                }
                None => assert!(byte > Opcode::Drain as u8 && !(0x40..=0x45).contains(&byte)),
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(Opcode::Get.to_string(), "GET");
        assert_eq!(Opcode::Unknown.to_string(), "UNKNOWN");
    }
}
