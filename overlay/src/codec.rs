//! The overlay's wire format: one message per datagram, little-endian, versioned, checksummed
//! (crc32c) and authenticated (HMAC-SHA256 with the cluster secret). `docs/overlay.md` lists
//! every byte; the offsets below are the source of truth.
//!
//! ```text
//!  0  magic "DSOV"        4  version (2)      5  opcode          6  flags u16
//!  8  sender id u128     24  receiver id u128 (zero unless flag RECEIVER)
//! 40  sequence u64       48  request id u64  56  sender data port u16
//! 58  body length u16    60  body
//! 60+L crc32c of [0, 60+L)                   64+L HMAC-SHA256 of [0, 64+L)
//! ```
//!
//! `decode` checks, in this order and before allocating anything: size, magic, version,
//! lengths, crc, MAC, header fields, body. It is stateless; the replay check needs the
//! per-sender window (`auth::ReplayGuard`) and is done by the overlay right after.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

use crate::auth::{ClusterSecret, Replayed, MAC_BYTES};
use crate::id::{NodeId, NodeInfo};
use crate::limits::{MESSAGE_BYTES_MAX, NODES_PER_MESSAGE_MAX};
use crate::message::{Body, Message, Opcode, RequestId};

pub const MAGIC: [u8; 4] = *b"DSOV";
/// Version 2 added data ports: the sender's in the header, each node's in NODES.
pub const VERSION: u8 = 2;
/// Flag bit: the receiver id field names the receiver.
pub const FLAG_RECEIVER: u16 = 1;
const FLAGS_KNOWN: u16 = FLAG_RECEIVER;

pub const MAGIC_AT: usize = 0;
pub const VERSION_AT: usize = 4;
pub const OPCODE_AT: usize = 5;
pub const FLAGS_AT: usize = 6;
pub const SENDER_AT: usize = 8;
pub const RECEIVER_AT: usize = 24;
pub const SEQUENCE_AT: usize = 40;
pub const REQUEST_AT: usize = 48;
pub const DATA_PORT_AT: usize = 56;
pub const BODY_LENGTH_AT: usize = 58;
/// Bytes before the body.
pub const HEADER_BYTES: usize = 60;
/// Bytes after the body: crc32c and MAC.
pub const TRAILER_BYTES: usize = 4 + MAC_BYTES;
/// The smallest datagram (empty body).
pub const MESSAGE_BYTES_MIN: usize = HEADER_BYTES + TRAILER_BYTES;
/// FIND_NODE body: key and count.
pub const FIND_NODE_BODY_BYTES: usize = 17;
/// A node in a NODES body: id, family, IPv4 or IPv6 address, overlay port, data port.
pub const NODE_V4_BYTES: usize = 16 + 1 + 4 + 2 + 2;
pub const NODE_V6_BYTES: usize = 16 + 1 + 16 + 2 + 2;
/// Room for the nodes of a NODES body in one datagram.
pub const NODES_BODY_BYTES_MAX: usize = MESSAGE_BYTES_MAX - MESSAGE_BYTES_MIN - 1;
/// IPv6 nodes that fit one NODES message: fewer than `NODES_PER_MESSAGE_MAX`, so a list with
/// many IPv6 nodes is cut to what fits (`nodes_fitting`). IPv4 lists are never cut.
pub const NODES_V6_PER_MESSAGE_MAX: usize = NODES_BODY_BYTES_MAX / NODE_V6_BYTES;
const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

const _: () = assert!(BODY_LENGTH_AT + 2 == HEADER_BYTES);
const _: () = assert!(REQUEST_AT + 8 == DATA_PORT_AT);
const _: () = assert!(DATA_PORT_AT + 2 == BODY_LENGTH_AT);
// The largest all-IPv4 NODES message fits a datagram; an all-IPv6 one is cut, but not by much.
const _: () = assert!(NODES_PER_MESSAGE_MAX * NODE_V4_BYTES <= NODES_BODY_BYTES_MAX);
const _: () = assert!(NODES_V6_PER_MESSAGE_MAX >= 16);
const _: () = assert!(MESSAGE_BYTES_MAX - MESSAGE_BYTES_MIN <= u16::MAX as usize);

/// Why a datagram was refused. Each variant is a drop reason counted in `Stats`.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Longer than `MESSAGE_BYTES_MAX`; refused before looking at it.
    #[error("datagram of {bytes} bytes exceeds {MESSAGE_BYTES_MAX}")]
    TooLarge { bytes: usize },
    /// Shorter than its header and trailer, or than its declared body.
    #[error("datagram truncated")]
    Truncated,
    /// Does not start with "DSOV": not an overlay datagram.
    #[error("bad magic")]
    BadMagic,
    /// A protocol version this node does not speak.
    #[error("unsupported version {version}")]
    BadVersion { version: u8 },
    /// Bytes follow the declared body.
    #[error("trailing bytes after the declared body")]
    BodyLength,
    /// crc32c mismatch: damaged in transit.
    #[error("bad checksum")]
    BadChecksum,
    /// MAC mismatch: forged, or made with another cluster secret.
    #[error("bad MAC (forged or wrong cluster secret)")]
    BadMac,
    /// Seen before from this sender, or older than its replay window.
    #[error("replayed or too old")]
    Replayed,
    /// Unknown flag bits, or a receiver id without the receiver flag.
    #[error("bad header flags")]
    BadHeader,
    /// An opcode this version does not define.
    #[error("unknown opcode {opcode}")]
    UnknownOpcode { opcode: u8 },
    /// The body does not parse for its opcode (length, count, address family).
    #[error("malformed body")]
    BadBody,
}

impl From<Replayed> for DecodeError {
    fn from(_: Replayed) -> DecodeError {
        DecodeError::Replayed
    }
}

/// A datagram that passed every stateless check.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Decoded {
    pub message: Message,
    pub sequence: u64,
}

/// How many of `nodes` (a prefix) one NODES message carries: at most `NODES_PER_MESSAGE_MAX`,
/// and no more than fit `MESSAGE_BYTES_MAX` (only lists with more than
/// `NODES_V6_PER_MESSAGE_MAX` IPv6 nodes are cut by size).
pub fn nodes_fitting(nodes: &[NodeInfo]) -> usize {
    let mut bytes = 0;
    for (at, node) in nodes.iter().take(NODES_PER_MESSAGE_MAX).enumerate() {
        bytes += node_bytes(node);
        if bytes > NODES_BODY_BYTES_MAX {
            return at;
        }
    }
    nodes.len().min(NODES_PER_MESSAGE_MAX)
}

fn node_bytes(node: &NodeInfo) -> usize {
    match node.addr {
        SocketAddr::V4(_) => NODE_V4_BYTES,
        SocketAddr::V6(_) => NODE_V6_BYTES,
    }
}

/// Encodes `message` numbered `sequence` into `out` (cleared first).
///
/// Panics on a NODES list longer than `nodes_fitting` allows or a FIND_NODE count outside
/// 1..=`NODES_PER_MESSAGE_MAX`: the overlay never builds those.
pub fn encode(message: &Message, sequence: u64, secret: &ClusterSecret, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(message.body.opcode() as u8);
    let flags = if message.receiver.is_some() {
        FLAG_RECEIVER
    } else {
        0
    };
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&message.sender.0.to_le_bytes());
    out.extend_from_slice(&message.receiver.map_or(0, |id| id.0).to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&message.request.0.to_le_bytes());
    out.extend_from_slice(&message.sender_data_port.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    assert_eq!(out.len(), HEADER_BYTES);
    match &message.body {
        Body::Ping | Body::Pong | Body::Leave => {}
        Body::FindNode { key, count } => {
            assert!(*count > 0);
            assert!(usize::from(*count) <= NODES_PER_MESSAGE_MAX);
            out.extend_from_slice(&key.0.to_le_bytes());
            out.push(*count);
        }
        Body::Nodes { nodes } => {
            assert!(nodes.len() <= NODES_PER_MESSAGE_MAX);
            assert_eq!(nodes_fitting(nodes), nodes.len(), "NODES list too long");
            out.push(nodes.len() as u8);
            for node in nodes {
                encode_node(node, out);
            }
        }
    }
    let body_bytes = out.len() - HEADER_BYTES;
    out[BODY_LENGTH_AT..HEADER_BYTES].copy_from_slice(&(body_bytes as u16).to_le_bytes());
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(&crc.to_le_bytes());
    let tag = secret.tag(out);
    out.extend_from_slice(&tag);
    assert!(out.len() <= MESSAGE_BYTES_MAX);
}

fn encode_node(node: &NodeInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(&node.id.0.to_le_bytes());
    match node.addr.ip() {
        IpAddr::V4(ip) => {
            out.push(FAMILY_V4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(FAMILY_V6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&node.addr.port().to_le_bytes());
    out.extend_from_slice(&node.data_port.to_le_bytes());
}

/// Recomputes the crc32c and the MAC of a datagram in place, from its length (the trailer is
/// its last `TRAILER_BYTES`), whatever the header says. For tests and fuzzing: it makes edited
/// datagrams reach the checks behind the MAC. Panics below `MESSAGE_BYTES_MIN` bytes.
pub fn reseal(datagram: &mut [u8], secret: &ClusterSecret) {
    assert!(datagram.len() >= MESSAGE_BYTES_MIN);
    let crc_at = datagram.len() - TRAILER_BYTES;
    let crc = crc32c::crc32c(&datagram[..crc_at]);
    datagram[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    let mac_at = crc_at + 4;
    let tag = secret.tag(&datagram[..mac_at]);
    datagram[mac_at..].copy_from_slice(&tag);
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u128_at(bytes: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(bytes[at..at + 16].try_into().expect("16 bytes"))
}

/// Decodes and authenticates one datagram. Never panics; allocates only for a NODES list whose
/// count was checked against `NODES_PER_MESSAGE_MAX` and the datagram's length.
pub fn decode(bytes: &[u8], secret: &ClusterSecret) -> Result<Decoded, DecodeError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(DecodeError::TooLarge { bytes: bytes.len() });
    }
    if bytes.len() < MESSAGE_BYTES_MIN {
        // A short datagram of another protocol is still told apart by its magic.
        if bytes.len() >= 4 && bytes[MAGIC_AT..MAGIC_AT + 4] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        return Err(DecodeError::Truncated);
    }
    if bytes[MAGIC_AT..MAGIC_AT + 4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if bytes[VERSION_AT] != VERSION {
        return Err(DecodeError::BadVersion {
            version: bytes[VERSION_AT],
        });
    }
    let body_bytes = usize::from(u16_at(bytes, BODY_LENGTH_AT));
    let crc_at = HEADER_BYTES + body_bytes;
    let total = crc_at + TRAILER_BYTES;
    if bytes.len() < total {
        return Err(DecodeError::Truncated);
    }
    if bytes.len() > total {
        return Err(DecodeError::BodyLength);
    }
    let crc = u32::from_le_bytes(bytes[crc_at..crc_at + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..crc_at]) != crc {
        return Err(DecodeError::BadChecksum);
    }
    let mac_at = crc_at + 4;
    if !secret.verify(&bytes[..mac_at], &bytes[mac_at..]) {
        return Err(DecodeError::BadMac);
    }
    let flags = u16_at(bytes, FLAGS_AT);
    if flags & !FLAGS_KNOWN != 0 {
        return Err(DecodeError::BadHeader);
    }
    let receiver = u128_at(bytes, RECEIVER_AT);
    let receiver = if flags & FLAG_RECEIVER != 0 {
        Some(NodeId(receiver))
    } else if receiver == 0 {
        None
    } else {
        return Err(DecodeError::BadHeader);
    };
    let opcode = bytes[OPCODE_AT];
    let opcode = Opcode::from_byte(opcode).ok_or(DecodeError::UnknownOpcode { opcode })?;
    let body = decode_body(opcode, &bytes[HEADER_BYTES..crc_at])?;
    Ok(Decoded {
        message: Message {
            sender: NodeId(u128_at(bytes, SENDER_AT)),
            sender_data_port: u16_at(bytes, DATA_PORT_AT),
            receiver,
            request: RequestId(u64_at(bytes, REQUEST_AT)),
            body,
        },
        sequence: u64_at(bytes, SEQUENCE_AT),
    })
}

fn decode_body(opcode: Opcode, body: &[u8]) -> Result<Body, DecodeError> {
    match opcode {
        Opcode::Ping | Opcode::Pong | Opcode::Leave => {
            if !body.is_empty() {
                return Err(DecodeError::BadBody);
            }
            Ok(match opcode {
                Opcode::Ping => Body::Ping,
                Opcode::Pong => Body::Pong,
                _ => Body::Leave,
            })
        }
        Opcode::FindNode => {
            if body.len() != FIND_NODE_BODY_BYTES {
                return Err(DecodeError::BadBody);
            }
            let count = body[16];
            if count == 0 || usize::from(count) > NODES_PER_MESSAGE_MAX {
                return Err(DecodeError::BadBody);
            }
            Ok(Body::FindNode {
                key: NodeId(u128_at(body, 0)),
                count,
            })
        }
        Opcode::Nodes => {
            let (&count, mut rest) = body.split_first().ok_or(DecodeError::BadBody)?;
            let count = usize::from(count);
            if count > NODES_PER_MESSAGE_MAX || rest.len() < count * NODE_V4_BYTES {
                return Err(DecodeError::BadBody);
            }
            let mut nodes = Vec::with_capacity(count);
            for _ in 0..count {
                let (node, after) = decode_node(rest)?;
                nodes.push(node);
                rest = after;
            }
            if !rest.is_empty() {
                return Err(DecodeError::BadBody);
            }
            Ok(Body::Nodes { nodes })
        }
    }
}

fn decode_node(bytes: &[u8]) -> Result<(NodeInfo, &[u8]), DecodeError> {
    if bytes.len() < NODE_V4_BYTES {
        return Err(DecodeError::BadBody);
    }
    let id = NodeId(u128_at(bytes, 0));
    let (ip, length) = match bytes[16] {
        FAMILY_V4 => {
            let octets: [u8; 4] = bytes[17..21].try_into().expect("4 bytes");
            (IpAddr::V4(Ipv4Addr::from(octets)), NODE_V4_BYTES)
        }
        FAMILY_V6 => {
            if bytes.len() < NODE_V6_BYTES {
                return Err(DecodeError::BadBody);
            }
            let octets: [u8; 16] = bytes[17..33].try_into().expect("16 bytes");
            (IpAddr::V6(Ipv6Addr::from(octets)), NODE_V6_BYTES)
        }
        _ => return Err(DecodeError::BadBody),
    };
    let port = u16_at(bytes, length - 4);
    let node = NodeInfo {
        id,
        addr: SocketAddr::new(ip, port),
        data_port: u16_at(bytes, length - 2),
    };
    Ok((node, &bytes[length..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ClusterSecret {
        ClusterSecret::new(b"unit-test-cluster-secret").unwrap()
    }

    fn sample() -> Message {
        Message {
            sender: NodeId(0xabcdef),
            sender_data_port: 7100,
            receiver: Some(NodeId(42)),
            request: RequestId(7),
            body: Body::Nodes {
                nodes: vec![
                    NodeInfo {
                        id: NodeId(1),
                        addr: "10.1.2.3:4000".parse().unwrap(),
                        data_port: 7000,
                    },
                    NodeInfo {
                        id: NodeId(u128::MAX),
                        addr: "[2001:db8::1]:65535".parse().unwrap(),
                        data_port: 0,
                    },
                ],
            },
        }
    }

    #[test]
    fn roundtrip_keeps_everything() {
        let mut bytes = Vec::new();
        encode(&sample(), 99, &secret(), &mut bytes);
        assert_eq!(
            bytes.len(),
            MESSAGE_BYTES_MIN + 1 + NODE_V4_BYTES + NODE_V6_BYTES
        );
        let decoded = decode(&bytes, &secret()).unwrap();
        assert_eq!(decoded.message, sample());
        assert_eq!(decoded.sequence, 99);
        assert_eq!(decoded.message.sender_data_port, 7100);
        let Body::Nodes { nodes } = &decoded.message.body else {
            panic!("not NODES");
        };
        assert_eq!(nodes[0].data_port, 7000);
        assert_eq!(nodes[0].data_addr(), Some("10.1.2.3:7000".parse().unwrap()));
        assert_eq!(nodes[1].data_addr(), None);
    }

    #[test]
    fn node_layout_is_as_documented() {
        let mut bytes = Vec::new();
        encode(&sample(), 1, &secret(), &mut bytes);
        let node = &bytes[HEADER_BYTES + 1..];
        assert_eq!(u128_at(node, 0), 1);
        assert_eq!(node[16], FAMILY_V4);
        assert_eq!(&node[17..21], &[10, 1, 2, 3]);
        assert_eq!(u16_at(node, 21), 4000);
        assert_eq!(u16_at(node, 23), 7000);
        let node = &node[NODE_V4_BYTES..];
        assert_eq!(node[16], FAMILY_V6);
        assert_eq!(u16_at(node, 33), 65535);
        assert_eq!(u16_at(node, 35), 0);
    }

    #[test]
    fn long_ipv6_lists_are_cut_to_fit() {
        let v6 = |id: u128| NodeInfo {
            id: NodeId(id),
            addr: SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1),
            data_port: 2,
        };
        let v4 = |id: u128| NodeInfo {
            id: NodeId(id),
            addr: "10.0.0.1:1".parse().unwrap(),
            data_port: 2,
        };
        let all_v4: Vec<NodeInfo> = (0..40).map(v4).collect();
        assert_eq!(nodes_fitting(&all_v4), NODES_PER_MESSAGE_MAX);
        let all_v6: Vec<NodeInfo> = (0..40).map(v6).collect();
        assert_eq!(nodes_fitting(&all_v6), NODES_V6_PER_MESSAGE_MAX);
        assert_eq!(nodes_fitting(&all_v6[..3]), 3);
        let mut mixed: Vec<NodeInfo> = (0..NODES_PER_MESSAGE_MAX as u128).map(v6).collect();
        for node in mixed.iter_mut().step_by(4) {
            *node = v4(node.id.0);
        }
        let fit = nodes_fitting(&mixed);
        assert!(fit > NODES_V6_PER_MESSAGE_MAX && fit <= NODES_PER_MESSAGE_MAX);
        for nodes in [&all_v6[..NODES_V6_PER_MESSAGE_MAX], &mixed[..fit]] {
            let message = Message {
                sender: NodeId(1),
                sender_data_port: 0,
                receiver: Some(NodeId(2)),
                request: RequestId(3),
                body: Body::Nodes {
                    nodes: nodes.to_vec(),
                },
            };
            let mut bytes = Vec::new();
            encode(&message, 1, &secret(), &mut bytes);
            assert!(bytes.len() <= MESSAGE_BYTES_MAX);
            assert_eq!(decode(&bytes, &secret()).unwrap().message, message);
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let mut bytes = Vec::new();
        let message = Message {
            sender: NodeId(1),
            sender_data_port: 0x1234,
            receiver: None,
            request: RequestId(2),
            body: Body::Ping,
        };
        encode(&message, 3, &secret(), &mut bytes);
        assert_eq!(&bytes[..4], b"DSOV");
        assert_eq!(bytes[VERSION_AT], 2);
        assert_eq!(bytes[OPCODE_AT], 1);
        assert_eq!(u16_at(&bytes, FLAGS_AT), 0);
        assert_eq!(u128_at(&bytes, SENDER_AT), 1);
        assert_eq!(u64_at(&bytes, SEQUENCE_AT), 3);
        assert_eq!(u64_at(&bytes, REQUEST_AT), 2);
        assert_eq!(&bytes[56..58], &[0x34, 0x12]);
        assert_eq!(u16_at(&bytes, BODY_LENGTH_AT), 0);
        assert_eq!((DATA_PORT_AT, BODY_LENGTH_AT, HEADER_BYTES), (56, 58, 60));
        assert_eq!(bytes.len(), MESSAGE_BYTES_MIN);
    }

    #[test]
    fn wrong_secret_is_bad_mac() {
        let mut bytes = Vec::new();
        encode(&sample(), 1, &secret(), &mut bytes);
        let other = ClusterSecret::new(b"another-cluster-secret!").unwrap();
        assert_eq!(decode(&bytes, &other), Err(DecodeError::BadMac));
    }
}
