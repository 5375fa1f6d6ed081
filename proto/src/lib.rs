//! Protocol v1 of ds: the frame format, a sans-IO codec, and a blocking client.
//!
//! The codec ([`header`], [`frame`], [`decoder`]) never touches a socket: the node's reactor
//! and the client feed it bytes and send what it encodes. Every byte is specified in
//! `docs/protocol.md`; the bounds are in [`limits`]. The [`client`] is the blocking Rust
//! client the `ds` CLI and tests use.
//!
//! Not here: what a node does with a request (the object service), and peer operations
//! between nodes (opcodes 0x40..=0x7f, reserved for issue 5).

#![forbid(unsafe_code)]

pub mod client;
pub mod crc;
pub mod decoder;
pub mod flags;
pub mod frame;
pub mod header;
pub mod id;
pub mod limits;
pub mod opcode;
pub mod overlay;
pub mod scheme;
pub mod stat;
pub mod status;

pub use client::{Client, ClientError, ProtocolError, LENGTH_TO_END};
pub use decoder::{DecodeError, Decoded, FrameDecoder, InVec, PayloadBuf};
pub use flags::Flags;
pub use frame::{encode_frame, Frame, ReplyChunk, ReplyChunks};
pub use header::{Header, HeaderError, PayloadTooLarge, MAGIC};
pub use id::{ObjectId, ParseObjectIdError};
pub use limits::{DATA_CHUNK_BYTES, HEADER_BYTES, MAX_PAYLOAD, PROTOCOL_VERSION};
pub use opcode::{Opcode, PEER_OPCODES};
pub use overlay::{OverlayDecodeError, OverlayPeer, OverlayReply};
pub use scheme::{Scheme, SchemeError};
pub use stat::{StatDecodeError, StatMissing, StatPart, StatReply};
pub use status::Status;
