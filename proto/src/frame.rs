//! Frames (header + payload) and the encoder. Encoding appends to a caller's `Vec`: the header
//! is built on the stack and the payload copied once, so a send is one `write_all`.
//!
//! Also the splitting rule for replies larger than one frame (GET, STAT): `ReplyChunks`.

use crate::header::{Header, PayloadTooLarge};
use crate::id::ObjectId;
use crate::limits::{DATA_CHUNK_BYTES, HEADER_BYTES, MAX_PAYLOAD};
use crate::opcode::Opcode;
use crate::status::Status;

/// One frame. After decoding, `header.payload_bytes` and `header.payload_crc` describe
/// `payload`; when encoding they are computed from `payload` (whatever the header says).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame whose header's payload fields match `payload`.
    pub fn new(mut header: Header, payload: Vec<u8>) -> Result<Frame, PayloadTooLarge> {
        header.seal(&payload)?;
        Ok(Frame { header, payload })
    }

    /// An error reply to `request`: its opcode, request id and object id, the status, and the
    /// message as payload (cut at a character boundary to fit one frame).
    pub fn error_reply(request: &Header, status: Status, message: &str) -> Frame {
        Frame::sealed(request.reply(status), message_bytes(message))
    }

    /// An error reply not tied to a readable request (bad magic, version or header checksum):
    /// opcode UNKNOWN, request id 0. The node closes the connection after sending it.
    pub fn unattributed_error(status: Status, message: &str) -> Frame {
        let header = Header::request(Opcode::Unknown, 0).reply(status);
        Frame::sealed(header, message_bytes(message))
    }

    /// The payload of an error reply as text (lossy: a node's message is for humans).
    pub fn error_message(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// Appends the wire bytes of this frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), PayloadTooLarge> {
        encode_frame(&self.header, &self.payload, out)
    }

    fn sealed(mut header: Header, payload: Vec<u8>) -> Frame {
        // `message_bytes` keeps payloads within the limit, so sealing cannot fail.
        assert!(payload.len() <= MAX_PAYLOAD);
        header.payload_bytes = payload.len() as u32;
        header.payload_crc = crc32c::crc32c(&payload);
        Frame { header, payload }
    }
}

/// Appends `header` (with the payload length and crc of `payload`) and `payload` to `out`.
/// Nothing is appended if the payload is too large.
pub fn encode_frame(
    header: &Header,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PayloadTooLarge> {
    let mut header = *header;
    header.seal(payload)?;
    out.reserve(HEADER_BYTES + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    Ok(())
}

fn message_bytes(message: &str) -> Vec<u8> {
    let mut end = message.len().min(MAX_PAYLOAD);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.as_bytes()[..end].to_vec()
}

/// One frame's share of a multi-frame reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyChunk {
    /// Where the chunk's bytes sit in the object (GET) or document (STAT): the frame's
    /// `offset` field.
    pub offset: u64,
    /// Where the chunk starts within the reply's bytes.
    pub start: u64,
    /// Payload bytes of this frame, at most `MAX_PAYLOAD`.
    pub bytes: usize,
    /// Bytes of the whole reply: the `length` field of every frame.
    pub total: u64,
    /// More frames follow (flag MORE).
    pub more: bool,
}

impl ReplyChunk {
    /// The header of this chunk's frame in a successful reply to `request`.
    pub fn header(&self, request: &Header) -> Header {
        let mut header = request.reply(Status::Ok);
        header.offset = self.offset;
        header.length = self.total;
        if self.more {
            header.flags = header.flags | crate::flags::Flags::MORE;
        }
        header
    }
}

/// The frames of a reply of `total` bytes starting at `offset`: full `DATA_CHUNK_BYTES` frames and
/// a last, shorter one. An empty reply is one empty frame.
#[derive(Clone, Debug)]
pub struct ReplyChunks {
    offset: u64,
    total: u64,
    start: u64,
    done: bool,
}

impl ReplyChunks {
    /// `None` if `offset + total` overflows u64 (the node answers OUT_OF_RANGE instead).
    pub fn new(offset: u64, total: u64) -> Option<ReplyChunks> {
        offset.checked_add(total)?;
        Some(ReplyChunks {
            offset,
            total,
            start: 0,
            done: false,
        })
    }
}

impl Iterator for ReplyChunks {
    type Item = ReplyChunk;

    fn next(&mut self) -> Option<ReplyChunk> {
        if self.done {
            return None;
        }
        let left = self.total - self.start;
        let bytes = left.min(DATA_CHUNK_BYTES as u64);
        let chunk = ReplyChunk {
            offset: self.offset + self.start,
            start: self.start,
            bytes: bytes as usize,
            total: self.total,
            more: bytes < left,
        };
        self.start += bytes;
        self.done = !chunk.more;
        Some(chunk)
    }
}

/// A request header for `opcode` about `object_id` (the other fields zero).
pub fn object_request(opcode: Opcode, request_id: u64, object_id: ObjectId) -> Header {
    Header {
        object_id,
        ..Header::request(opcode, request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::Flags;

    #[test]
    fn encode_appends_header_and_payload() {
        let mut out = vec![0xaa];
        let header = Header::request(Opcode::Ping, 9);
        encode_frame(&header, b"abc", &mut out).unwrap();
        assert_eq!(out.len(), 1 + HEADER_BYTES + 3);
        assert_eq!(&out[1 + HEADER_BYTES..], b"abc");
        let mut fixed = [0u8; HEADER_BYTES];
        fixed.copy_from_slice(&out[1..1 + HEADER_BYTES]);
        let decoded = Header::decode(&fixed).unwrap();
        assert_eq!(decoded.payload_bytes, 3);
        assert_eq!(decoded.payload_crc, crc32c::crc32c(b"abc"));
    }

    #[test]
    fn oversize_payload_appends_nothing() {
        let mut out = Vec::new();
        let header = Header::request(Opcode::Put, 1);
        let error = encode_frame(&header, &vec![0; MAX_PAYLOAD + 1], &mut out).unwrap_err();
        assert_eq!(error.bytes, MAX_PAYLOAD + 1);
        assert!(out.is_empty());
    }

    #[test]
    fn error_messages_are_cut_to_fit() {
        let request = Header::request(Opcode::Get, 3);
        let long = "é".repeat(MAX_PAYLOAD);
        let frame = Frame::error_reply(&request, Status::Internal, &long);
        assert!(frame.payload.len() <= MAX_PAYLOAD);
        assert!(std::str::from_utf8(&frame.payload).is_ok());
        assert_eq!(frame.header.status, Status::Internal);
        assert_eq!(frame.header.request_id, 3);
        assert_eq!(frame.header.flags, Flags::REPLY);
    }

    #[test]
    fn reply_chunks_cover_the_range() {
        let total = 2 * DATA_CHUNK_BYTES as u64 + 10;
        let chunks: Vec<_> = ReplyChunks::new(100, total).unwrap().collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].offset, 100);
        assert_eq!(chunks[1].offset, 100 + DATA_CHUNK_BYTES as u64);
        assert_eq!(chunks[2].bytes, 10);
        assert_eq!(
            chunks.iter().map(|c| c.more).collect::<Vec<_>>(),
            [true, true, false]
        );
        let request = Header::request(Opcode::Get, 5);
        assert!(chunks[0].header(&request).has_more());
        assert_eq!(chunks[2].header(&request).length, total);

        let empty: Vec<_> = ReplyChunks::new(7, 0).unwrap().collect();
        assert_eq!(empty.len(), 1);
        assert_eq!((empty[0].bytes, empty[0].more), (0, false));

        let exact: Vec<_> = ReplyChunks::new(0, DATA_CHUNK_BYTES as u64)
            .unwrap()
            .collect();
        assert_eq!(exact.len(), 1);
        assert!(ReplyChunks::new(u64::MAX, 1).is_none());
    }
}
