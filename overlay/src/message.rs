//! Overlay messages as values. The codec (`codec.rs`) turns them into authenticated datagrams;
//! the simulator may hand them over directly.

use crate::id::{NodeId, NodeInfo};

/// Ties a reply to its request; chosen by the requester, echoed by the replier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RequestId(pub u64);

/// One overlay message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    /// The sender's node id (authenticated by the cluster MAC, not proven by any key pair).
    pub sender: NodeId,
    /// The sender's data port (`NodeInfo::data_port`; 0: none). Its overlay address is the
    /// datagram's source, so only the port travels.
    pub sender_data_port: u16,
    /// The node the message is for; `None` only for PING and FIND_NODE to a seed whose id is
    /// not known yet. Replies and LEAVE always name their receiver, so they cannot be replayed
    /// to another node.
    pub receiver: Option<NodeId>,
    /// For requests a fresh number, for replies the request's; 0 for LEAVE.
    pub request: RequestId,
    pub body: Body,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Body {
    /// Are you alive?
    Ping,
    /// Yes.
    Pong,
    /// Send me the `count` nodes you know closest to `key`.
    FindNode { key: NodeId, count: u8 },
    /// Answer to FIND_NODE, closest first, at most `NODES_PER_MESSAGE_MAX`.
    Nodes { nodes: Vec<NodeInfo> },
    /// The sender leaves the overlay; forget it now.
    Leave,
}

/// The opcode byte of each body on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Opcode {
    Ping = 1,
    Pong = 2,
    FindNode = 3,
    Nodes = 4,
    Leave = 5,
}

impl Opcode {
    pub fn from_byte(byte: u8) -> Option<Opcode> {
        Some(match byte {
            1 => Opcode::Ping,
            2 => Opcode::Pong,
            3 => Opcode::FindNode,
            4 => Opcode::Nodes,
            5 => Opcode::Leave,
            _ => return None,
        })
    }
}

impl Body {
    pub fn opcode(&self) -> Opcode {
        match self {
            Body::Ping => Opcode::Ping,
            Body::Pong => Opcode::Pong,
            Body::FindNode { .. } => Opcode::FindNode,
            Body::Nodes { .. } => Opcode::Nodes,
            Body::Leave => Opcode::Leave,
        }
    }

    /// PING and FIND_NODE ask for a reply; the rest do not.
    pub fn is_request(&self) -> bool {
        matches!(self, Body::Ping | Body::FindNode { .. })
    }
}
