//! What can go wrong for the client, and whether the connection survives it.

use std::io;

use crate::decoder::DecodeError;
use crate::header::PayloadTooLarge;
use crate::limits::{PROTOCOL_VERSION, STAT_REPLY_BYTES_MAX};
use crate::opcode::Opcode;
use crate::stat::StatDecodeError;
use crate::status::Status;

/// Errors of `Client` operations. After `Io`, `Protocol`, `VersionMismatch` and `Sink` the
/// connection is unusable (later calls return `Broken`); after the others it can be reused.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No address of the node accepted a connection within the timeout.
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// Reading or writing the socket failed (a timeout included).
    #[error("connection to the node failed: {0}")]
    Io(#[source] io::Error),
    /// The node answered the request with an error status and message.
    #[error("node replied {status}: {message}")]
    Server { status: Status, message: String },
    /// The node speaks another protocol version (and closes the connection).
    #[error(
        "the node speaks protocol version {node}, this client {}",
        PROTOCOL_VERSION
    )]
    VersionMismatch { node: u16 },
    /// The node sent something protocol v1 does not allow.
    #[error("protocol violation by the node: {0}")]
    Protocol(#[from] ProtocolError),
    /// Reading the data to put failed; the requests already sent were completed first.
    #[error("reading the data to put: {0}")]
    Source(#[source] io::Error),
    /// Writing the data of a GET reply failed; the rest of the reply was not read.
    #[error("writing the data read: {0}")]
    Sink(#[source] io::Error),
    /// offset + length does not fit in u64.
    #[error("the range of {length} bytes at offset {offset} ends past 2^64")]
    RangeOverflow { offset: u64, length: u64 },
    /// A single-frame payload (PING) above `MAX_PAYLOAD`.
    #[error(transparent)]
    PayloadTooLarge(#[from] PayloadTooLarge),
    /// An earlier error left the connection unusable; connect again.
    #[error("the connection failed earlier; connect again")]
    Broken,
}

impl ClientError {
    /// The node's status for `Server` errors.
    pub fn status(&self) -> Option<Status> {
        match self {
            ClientError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How a node broke the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A frame the decoder refused.
    #[error("{0}")]
    Decode(DecodeError),
    /// The node closed the connection while a reply was due.
    #[error("the node closed the connection{}", if *mid_frame { " in the middle of a frame" } else { "" })]
    Closed { mid_frame: bool },
    /// A frame without the REPLY flag.
    #[error("request {request_id}: the node sent a frame without the REPLY flag")]
    NotAReply { request_id: u64 },
    /// A reply to no request in flight.
    #[error("reply to request {request_id}, which is not in flight")]
    UnexpectedReply { request_id: u64 },
    /// A reply whose opcode is not the request's.
    #[error("request {request_id}: {expected} answered with {found}")]
    WrongOpcode {
        request_id: u64,
        expected: Opcode,
        found: Opcode,
    },
    /// MORE on an error frame or on the reply of a single-frame operation.
    #[error("request {request_id}: flag MORE on a {opcode} reply that must be one frame")]
    UnexpectedMore { request_id: u64, opcode: Opcode },
    /// A reply frame that does not start where the previous one ended.
    #[error("request {request_id}: reply frame at offset {found}, expected {expected}")]
    OffsetGap {
        request_id: u64,
        expected: u64,
        found: u64,
    },
    /// The frames of one reply announce different totals.
    #[error("request {request_id}: reply length changed from {first} to {found}")]
    LengthChanged {
        request_id: u64,
        first: u64,
        found: u64,
    },
    /// A GET reply announcing another length than requested.
    #[error("request {request_id}: asked for {requested} bytes, the reply announces {announced}")]
    WrongLength {
        request_id: u64,
        requested: u64,
        announced: u64,
    },
    /// A reply carrying more bytes than it announced.
    #[error("request {request_id}: the reply announced {announced} bytes and carries more")]
    Overrun { request_id: u64, announced: u64 },
    /// A reply that ended before the bytes it announced.
    #[error(
        "request {request_id}: the reply announced {announced} bytes and ended after {received}"
    )]
    Short {
        request_id: u64,
        announced: u64,
        received: u64,
    },
    /// A STAT document above the client's limit.
    #[error(
        "STAT reply of {bytes} bytes exceeds the limit of {} bytes",
        STAT_REPLY_BYTES_MAX
    )]
    StatTooLarge { bytes: u64 },
    /// A STAT document that does not parse (the connection stays usable).
    #[error(transparent)]
    Stat(#[from] StatDecodeError),
    /// An OVERLAY document that does not parse (the connection stays usable).
    #[error(transparent)]
    Overlay(#[from] crate::overlay::OverlayDecodeError),
    /// A HEALTH or DRAIN document that is not JSON (the connection stays usable).
    #[error("{opcode} reply is not a JSON document: {error}")]
    Document { opcode: &'static str, error: String },
    /// A PING reply whose payload is not the request's.
    #[error("request {request_id}: the PING reply does not echo the payload")]
    PingEcho { request_id: u64 },
}
