//! The fixed 72-byte frame header: layout, encoding, and the checks a receiver makes before it
//! trusts any field. Specified byte by byte in `docs/protocol.md`.
//!
//! Checks run in an order that matters: magic and version first (bytes 0..6 keep their meaning
//! in every future version, so a v1 node can read a v2 header that far and answer
//! VERSION_MISMATCH), then the header checksum, then the payload length (before any buffer is
//! allocated), then the fields whose bad values still leave the frame's extent known.

use crate::flags::Flags;
use crate::id::ObjectId;
use crate::limits::{HEADER_BYTES, MAX_PAYLOAD, PROTOCOL_VERSION};
use crate::opcode::{is_peer_opcode, Opcode};
use crate::status::Status;

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"DSWP";

// Byte offsets of the fields. Everything is little-endian.
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 4;
const OPCODE_AT: usize = 6;
const FLAGS_AT: usize = 7;
const REQUEST_ID_AT: usize = 8;
const OBJECT_ID_AT: usize = 16;
const OFFSET_AT: usize = 32;
const LENGTH_AT: usize = 40;
const AUX_AT: usize = 48;
const STATUS_AT: usize = 56;
const RESERVED_AT: usize = 58;
const PAYLOAD_BYTES_AT: usize = 60;
const PAYLOAD_CRC_AT: usize = 64;
/// The header crc32c covers bytes 0..HEADER_CRC_AT.
pub const HEADER_CRC_AT: usize = 68;

// Each field starts where the previous ends, and the crc is the last four bytes.
const _: () = assert!(VERSION_AT == MAGIC_AT + 4);
const _: () = assert!(OPCODE_AT == VERSION_AT + 2);
const _: () = assert!(FLAGS_AT == OPCODE_AT + 1);
const _: () = assert!(REQUEST_ID_AT == FLAGS_AT + 1);
const _: () = assert!(OBJECT_ID_AT == REQUEST_ID_AT + 8);
const _: () = assert!(OFFSET_AT == OBJECT_ID_AT + 16);
const _: () = assert!(LENGTH_AT == OFFSET_AT + 8);
const _: () = assert!(AUX_AT == LENGTH_AT + 8);
const _: () = assert!(STATUS_AT == AUX_AT + 8);
const _: () = assert!(RESERVED_AT == STATUS_AT + 2);
const _: () = assert!(PAYLOAD_BYTES_AT == RESERVED_AT + 2);
const _: () = assert!(PAYLOAD_CRC_AT == PAYLOAD_BYTES_AT + 4);
const _: () = assert!(HEADER_CRC_AT == PAYLOAD_CRC_AT + 4);
const _: () = assert!(HEADER_BYTES == HEADER_CRC_AT + 4);

/// A decoded (and therefore checked) header. The version is not a field: a v1 header always
/// carries `PROTOCOL_VERSION`, and decoding refuses any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    pub opcode: Opcode,
    pub flags: Flags,
    /// Chosen by the client, echoed in every frame of the reply. 0 is never a request's id:
    /// a node uses it for replies it cannot tie to a request.
    pub request_id: u64,
    pub object_id: ObjectId,
    pub offset: u64,
    pub length: u64,
    /// Opcode-specific (CREATE: the scheme, see `Scheme::to_aux`); zero elsewhere.
    pub aux: u64,
    pub status: Status,
    /// Bytes of payload after the header, at most `MAX_PAYLOAD`.
    pub payload_bytes: u32,
    /// crc32c of the payload (0 for an empty payload).
    pub payload_crc: u32,
}

/// Why a header is refused. `breaks_framing` says whether the receiver still knows where the
/// next frame starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The first four bytes are not `MAGIC`: not a ds frame, or the stream lost its framing.
    #[error("bad magic {found:02x?}, expected {:02x?} (not a ds frame)", MAGIC)]
    BadMagic { found: [u8; 4] },
    /// The version field is not `PROTOCOL_VERSION`. Nothing past byte 6 is read.
    #[error("unsupported protocol version {0}, this side speaks {ours}", ours = PROTOCOL_VERSION)]
    UnsupportedVersion(u16),
    /// The header crc32c does not match its bytes: damaged in transit.
    #[error("header checksum mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    BadHeaderChecksum { stored: u32, computed: u32 },
    /// The header announces more than `MAX_PAYLOAD` bytes of payload.
    #[error(
        "request {request_id}: payload of {announced} bytes exceeds the limit of {} bytes",
        MAX_PAYLOAD
    )]
    PayloadTooLarge { announced: u32, request_id: u64 },
    /// Bytes 58..60 are not zero.
    #[error("request {request_id}: reserved header bytes are {found:#06x}, must be zero")]
    ReservedNotZero { found: u16, request_id: u64 },
    /// Unknown flag bits, or MORE without REPLY.
    #[error(
        "request {request_id}: bad flags {flags:#04x} (known: REPLY 0x01, MORE 0x02 with REPLY)"
    )]
    BadFlags { flags: u8, request_id: u64 },
    /// An opcode v1 does not define (the peer range 0x40..=0x7f included).
    #[error("request {request_id}: unknown opcode {opcode:#04x}{}", peer_note(*opcode))]
    UnknownOpcode { opcode: u8, request_id: u64 },
    /// A status v1 does not define.
    #[error("request {request_id}: unknown status {status}")]
    UnknownStatus { status: u16, request_id: u64 },
}

fn peer_note(opcode: u8) -> &'static str {
    if is_peer_opcode(opcode) {
        " (reserved for peer operations between nodes)"
    } else {
        ""
    }
}

impl HeaderError {
    /// True when the receiver no longer knows where the next frame starts (or must not trust
    /// the peer): it answers, if it can, and closes the connection. Otherwise the frame's
    /// payload is skipped and the connection goes on.
    pub fn breaks_framing(&self) -> bool {
        matches!(
            self,
            HeaderError::BadMagic { .. }
                | HeaderError::UnsupportedVersion(_)
                | HeaderError::BadHeaderChecksum { .. }
                | HeaderError::PayloadTooLarge { .. }
        )
    }

    /// The request id of the refused frame, when its header checksum vouched for it.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            HeaderError::BadMagic { .. }
            | HeaderError::UnsupportedVersion(_)
            | HeaderError::BadHeaderChecksum { .. } => None,
            HeaderError::PayloadTooLarge { request_id, .. }
            | HeaderError::ReservedNotZero { request_id, .. }
            | HeaderError::BadFlags { request_id, .. }
            | HeaderError::UnknownOpcode { request_id, .. }
            | HeaderError::UnknownStatus { request_id, .. } => Some(*request_id),
        }
    }

    /// The status a node answers this error with.
    pub fn reply_status(&self) -> Status {
        match self {
            HeaderError::UnsupportedVersion(_) => Status::VersionMismatch,
            HeaderError::BadHeaderChecksum { .. } => Status::Checksum,
            HeaderError::PayloadTooLarge { .. } => Status::TooLarge,
            HeaderError::BadMagic { .. }
            | HeaderError::ReservedNotZero { .. }
            | HeaderError::BadFlags { .. }
            | HeaderError::UnknownOpcode { .. }
            | HeaderError::UnknownStatus { .. } => Status::BadRequest,
        }
    }
}

impl Header {
    /// A request header: every other field zero, no payload.
    pub fn request(opcode: Opcode, request_id: u64) -> Header {
        Header {
            opcode,
            flags: Flags::NONE,
            request_id,
            object_id: ObjectId(0),
            offset: 0,
            length: 0,
            aux: 0,
            status: Status::Ok,
            payload_bytes: 0,
            payload_crc: 0,
        }
    }

    /// The header of a (single-frame) reply to `self`: same opcode, request id and object id,
    /// flag REPLY, the given status, every other field zero.
    pub fn reply(&self, status: Status) -> Header {
        Header {
            flags: Flags::REPLY,
            object_id: self.object_id,
            status,
            ..Header::request(self.opcode, self.request_id)
        }
    }

    pub fn is_reply(&self) -> bool {
        self.flags.is_reply()
    }

    pub fn has_more(&self) -> bool {
        self.flags.has_more()
    }

    /// Sets `payload_bytes` and `payload_crc` from `payload`, for callers that write the
    /// header and the payload separately (a zero-copy send path).
    pub fn seal(&mut self, payload: &[u8]) -> Result<(), PayloadTooLarge> {
        if payload.len() > MAX_PAYLOAD {
            return Err(PayloadTooLarge {
                bytes: payload.len(),
            });
        }
        self.payload_bytes = payload.len() as u32;
        self.payload_crc = crc32c::crc32c(payload);
        Ok(())
    }

    /// The wire bytes of this header, version `PROTOCOL_VERSION`, header crc computed.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut bytes = [0u8; HEADER_BYTES];
        bytes[MAGIC_AT..][..4].copy_from_slice(&MAGIC);
        bytes[VERSION_AT..][..2].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        bytes[OPCODE_AT] = self.opcode.to_u8();
        bytes[FLAGS_AT] = self.flags.bits();
        bytes[REQUEST_ID_AT..][..8].copy_from_slice(&self.request_id.to_le_bytes());
        bytes[OBJECT_ID_AT..][..16].copy_from_slice(&self.object_id.to_le_bytes());
        bytes[OFFSET_AT..][..8].copy_from_slice(&self.offset.to_le_bytes());
        bytes[LENGTH_AT..][..8].copy_from_slice(&self.length.to_le_bytes());
        bytes[AUX_AT..][..8].copy_from_slice(&self.aux.to_le_bytes());
        bytes[STATUS_AT..][..2].copy_from_slice(&self.status.to_u16().to_le_bytes());
        // RESERVED_AT stays zero.
        bytes[PAYLOAD_BYTES_AT..][..4].copy_from_slice(&self.payload_bytes.to_le_bytes());
        bytes[PAYLOAD_CRC_AT..][..4].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..HEADER_CRC_AT]);
        bytes[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Checks and decodes a header; see the module comment for the order of the checks.
    pub fn decode(bytes: &[u8; HEADER_BYTES]) -> Result<Header, HeaderError> {
        let magic = array::<4>(bytes, MAGIC_AT);
        if magic != MAGIC {
            return Err(HeaderError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes(array(bytes, VERSION_AT));
        if version != PROTOCOL_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let stored = u32::from_le_bytes(array(bytes, HEADER_CRC_AT));
        let computed = crc32c::crc32c(&bytes[..HEADER_CRC_AT]);
        if stored != computed {
            return Err(HeaderError::BadHeaderChecksum { stored, computed });
        }
        let request_id = u64::from_le_bytes(array(bytes, REQUEST_ID_AT));
        let payload_bytes = announced_payload_bytes(bytes);
        if payload_bytes as usize > MAX_PAYLOAD {
            return Err(HeaderError::PayloadTooLarge {
                announced: payload_bytes,
                request_id,
            });
        }
        let reserved = u16::from_le_bytes(array(bytes, RESERVED_AT));
        if reserved != 0 {
            return Err(HeaderError::ReservedNotZero {
                found: reserved,
                request_id,
            });
        }
        let flag_bits = bytes[FLAGS_AT];
        let flags = Flags::from_bits(flag_bits).ok_or(HeaderError::BadFlags {
            flags: flag_bits,
            request_id,
        })?;
        let opcode_byte = bytes[OPCODE_AT];
        let opcode = Opcode::from_u8(opcode_byte).ok_or(HeaderError::UnknownOpcode {
            opcode: opcode_byte,
            request_id,
        })?;
        let status_value = u16::from_le_bytes(array(bytes, STATUS_AT));
        let status = Status::from_u16(status_value).ok_or(HeaderError::UnknownStatus {
            status: status_value,
            request_id,
        })?;
        Ok(Header {
            opcode,
            flags,
            request_id,
            object_id: ObjectId::from_le_bytes(array(bytes, OBJECT_ID_AT)),
            offset: u64::from_le_bytes(array(bytes, OFFSET_AT)),
            length: u64::from_le_bytes(array(bytes, LENGTH_AT)),
            aux: u64::from_le_bytes(array(bytes, AUX_AT)),
            status,
            payload_bytes,
            payload_crc: u32::from_le_bytes(array(bytes, PAYLOAD_CRC_AT)),
        })
    }
}

/// A payload above `MAX_PAYLOAD` handed to the encoder: a caller's bug or a caller that forgot
/// to split (GET and STAT replies go out in several frames).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "payload of {bytes} bytes exceeds the frame limit of {} bytes",
    MAX_PAYLOAD
)]
pub struct PayloadTooLarge {
    pub bytes: usize,
}

/// The payload length field, as sent. Trust it only after `Header::decode` passed the
/// checksum and length checks (it fails later checks with the frame's extent still known).
pub(crate) fn announced_payload_bytes(bytes: &[u8; HEADER_BYTES]) -> u32 {
    u32::from_le_bytes(array(bytes, PAYLOAD_BYTES_AT))
}

fn array<const N: usize>(bytes: &[u8; HEADER_BYTES], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            opcode: Opcode::Get,
            flags: Flags::REPLY | Flags::MORE,
            request_id: 0x0102_0304_0506_0708,
            object_id: ObjectId(0x1112_1314_1516_1718_191a_1b1c_1d1e_1f20),
            offset: 1 << 40,
            length: 3 << 20,
            aux: 0xdead_beef,
            status: Status::Ok,
            payload_bytes: 5,
            payload_crc: crc32c::crc32c(b"hello"),
        }
    }

    /// Rewrites the header crc so a test reaches the checks after it.
    fn reseal(bytes: &mut [u8; HEADER_BYTES]) {
        let crc = crc32c::crc32c(&bytes[..HEADER_CRC_AT]);
        bytes[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn round_trip() {
        let header = sample();
        assert_eq!(Header::decode(&header.encode()), Ok(header));
    }

    #[test]
    fn fields_sit_where_the_doc_says() {
        let bytes = sample().encode();
        assert_eq!(&bytes[0..4], b"DSWP");
        assert_eq!(&bytes[4..6], &[1, 0]);
        assert_eq!(bytes[6], 0x04);
        assert_eq!(bytes[7], 0x03);
        assert_eq!(&bytes[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(bytes[16], 0x20, "object id low byte first");
        assert_eq!(bytes[31], 0x11);
        assert_eq!(&bytes[32..40], &(1u64 << 40).to_le_bytes());
        assert_eq!(&bytes[40..48], &(3u64 << 20).to_le_bytes());
        assert_eq!(&bytes[48..56], &0xdead_beefu64.to_le_bytes());
        assert_eq!(&bytes[56..58], &[0, 0]);
        assert_eq!(&bytes[58..60], &[0, 0]);
        assert_eq!(&bytes[60..64], &5u32.to_le_bytes());
        assert_eq!(&bytes[64..68], &crc32c::crc32c(b"hello").to_le_bytes());
        assert_eq!(&bytes[68..72], &crc32c::crc32c(&bytes[..68]).to_le_bytes());
    }

    #[test]
    fn each_malformed_field_has_its_error() {
        let good = sample().encode();

        let mut bytes = good;
        bytes[0] = b'X';
        assert_eq!(
            Header::decode(&bytes),
            Err(HeaderError::BadMagic { found: *b"XSWP" })
        );

        // The version is checked before the crc: a v2 header is named as such.
        let mut bytes = good;
        bytes[4..6].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            Header::decode(&bytes),
            Err(HeaderError::UnsupportedVersion(2))
        );

        let mut bytes = good;
        bytes[40] ^= 1;
        assert!(matches!(
            Header::decode(&bytes),
            Err(HeaderError::BadHeaderChecksum { .. })
        ));

        let request_id = sample().request_id;
        let mut bytes = good;
        bytes[60..64].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        reseal(&mut bytes);
        assert_eq!(
            Header::decode(&bytes),
            Err(HeaderError::PayloadTooLarge {
                announced: MAX_PAYLOAD as u32 + 1,
                request_id
            })
        );

        let mut bytes = good;
        bytes[59] = 1;
        reseal(&mut bytes);
        assert_eq!(
            Header::decode(&bytes),
            Err(HeaderError::ReservedNotZero {
                found: 0x100,
                request_id
            })
        );

        let mut bytes = good;
        bytes[7] = 0x02;
        reseal(&mut bytes);
        assert_eq!(
            Header::decode(&bytes),
            Err(HeaderError::BadFlags {
                flags: 0x02,
                request_id
            })
        );

        let mut bytes = good;
        bytes[6] = 0x7f;
        reseal(&mut bytes);
        let error = Header::decode(&bytes).unwrap_err();
        assert_eq!(
            error,
            HeaderError::UnknownOpcode {
                opcode: 0x7f,
                request_id
            }
        );
        assert!(error.to_string().contains("peer"), "{error}");

        let mut bytes = good;
        bytes[56..58].copy_from_slice(&999u16.to_le_bytes());
        reseal(&mut bytes);
        assert_eq!(
            Header::decode(&bytes),
            Err(HeaderError::UnknownStatus {
                status: 999,
                request_id
            })
        );
    }

    #[test]
    fn the_limit_itself_is_accepted() {
        let mut header = sample();
        header.payload_bytes = MAX_PAYLOAD as u32;
        assert_eq!(Header::decode(&header.encode()), Ok(header));
    }

    #[test]
    fn reply_status_and_framing() {
        assert_eq!(
            HeaderError::UnsupportedVersion(9).reply_status(),
            Status::VersionMismatch
        );
        assert!(HeaderError::UnsupportedVersion(9).breaks_framing());
        let unknown = HeaderError::UnknownOpcode {
            opcode: 0x99,
            request_id: 4,
        };
        assert!(!unknown.breaks_framing());
        assert_eq!(unknown.request_id(), Some(4));
        assert_eq!(unknown.reply_status(), Status::BadRequest);
    }

    #[test]
    fn seal_refuses_oversize_payloads() {
        let mut header = Header::request(Opcode::Ping, 1);
        assert!(header.seal(&vec![0; MAX_PAYLOAD]).is_ok());
        assert_eq!(header.payload_bytes as usize, MAX_PAYLOAD);
        assert_eq!(
            header.seal(&vec![0; MAX_PAYLOAD + 1]),
            Err(PayloadTooLarge {
                bytes: MAX_PAYLOAD + 1
            })
        );
    }
}
