//! The streaming frame decoder: fed byte chunks as a socket delivers them, yields whole,
//! checked frames. Sans-IO: it never reads a socket; the caller hands it bytes.
//!
//! It consumes input only up to the end of the frame it is assembling, so it holds at most
//! one header and one payload (`DECODER_BUFFER_BYTES_MAX`), however large the chunks it is
//! given. The payload buffer is allocated only after the header passed every check, the
//! length limit included.
//!
//! A caller may have chosen payloads assembled in memory of its own instead of a `Vec`
//! ([`FrameDecoder::decode_placing`], [`PayloadBuf`]): a node receives large PUT payloads
//! straight into the store's aligned record buffers, so they are not copied again on their way
//! to the device.

use crate::frame::Frame;
use crate::header::{announced_payload_bytes, Header, HeaderError};
use crate::limits::HEADER_BYTES;
use crate::status::Status;

/// Why the decoder refused a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header failed a check (see `HeaderError`).
    #[error("{0}")]
    Header(#[from] HeaderError),
    /// The payload's crc32c does not match the header: damaged in transit. The frame's bytes
    /// were consumed; the connection can go on.
    #[error(
        "request {}: payload checksum mismatch: header says {stored:#010x}, payload gives {computed:#010x}",
        header.request_id
    )]
    PayloadChecksum {
        header: Header,
        stored: u32,
        computed: u32,
    },
}

impl DecodeError {
    /// True when the stream lost its framing: the decoder refuses everything after it and
    /// the connection must be closed.
    pub fn breaks_framing(&self) -> bool {
        match self {
            DecodeError::Header(error) => error.breaks_framing(),
            DecodeError::PayloadChecksum { .. } => false,
        }
    }

    /// The request id of the refused frame, when its header checksum vouched for it.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            DecodeError::Header(error) => error.request_id(),
            DecodeError::PayloadChecksum { header, .. } => Some(header.request_id),
        }
    }

    /// The status a node answers this error with.
    pub fn reply_status(&self) -> Status {
        match self {
            DecodeError::Header(error) => error.reply_status(),
            DecodeError::PayloadChecksum { .. } => Status::Checksum,
        }
    }

    /// The error reply a node sends for this error. For errors that break framing the node
    /// closes the connection after sending it.
    pub fn reply(&self) -> Frame {
        let message = self.to_string();
        match self {
            DecodeError::PayloadChecksum { header, .. } => {
                Frame::error_reply(header, Status::Checksum, &message)
            }
            DecodeError::Header(error) => {
                let mut frame = Frame::unattributed_error(error.reply_status(), &message);
                frame.header.request_id = error.request_id().unwrap_or(0);
                frame
            }
        }
    }
}

/// Memory a payload is assembled in instead of a fresh `Vec`.
pub trait PayloadBuf {
    /// Where the payload goes: exactly the header's `payload_bytes` long.
    fn payload_mut(&mut self) -> &mut [u8];
}

/// The payload memory of a decoder that assembles every payload in a `Vec` (none is ever made).
#[derive(Debug)]
pub enum InVec {}

impl PayloadBuf for InVec {
    fn payload_mut(&mut self) -> &mut [u8] {
        match *self {}
    }
}

/// What [`FrameDecoder::decode_placing`] yields: a frame, or the header and checked payload of
/// one whose payload went into the caller's memory.
#[derive(Debug)]
pub enum Decoded<P> {
    Frame(Frame),
    Placed { header: Header, payload: P },
}

/// Where a payload is being assembled.
#[derive(Debug)]
enum Body<P> {
    Vec(Vec<u8>),
    /// The caller's memory, `filled` bytes so far.
    Placed {
        payload: P,
        filled: usize,
    },
}

impl<P: PayloadBuf> Body<P> {
    fn filled(&self) -> usize {
        match self {
            Body::Vec(payload) => payload.len(),
            Body::Placed { filled, .. } => *filled,
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        match self {
            Body::Vec(payload) => payload.extend_from_slice(bytes),
            Body::Placed { payload, filled } => {
                payload.payload_mut()[*filled..*filled + bytes.len()].copy_from_slice(bytes);
                *filled += bytes.len();
            }
        }
    }

    fn finish(self, header: Header) -> Decoded<P> {
        match self {
            Body::Vec(payload) => Decoded::Frame(Frame { header, payload }),
            Body::Placed { payload, .. } => Decoded::Placed { header, payload },
        }
    }
}

#[derive(Debug)]
enum State<P> {
    /// Filling `FrameDecoder::header` (`header_filled` bytes so far).
    Header,
    /// Header accepted; collecting its payload. `crc` covers the bytes so far: each piece is
    /// checksummed as it is copied, while it is still in cache.
    Payload {
        header: Header,
        body: Body<P>,
        crc: u32,
    },
    /// Header refused without losing framing; skipping its payload, then reporting `error`.
    Skip {
        remaining: usize,
        error: HeaderError,
    },
    /// An error broke framing; every call reports it again.
    Failed(DecodeError),
}

/// `P`: the caller's payload memory ([`InVec`]: none, every payload in a `Vec`).
#[derive(Debug)]
pub struct FrameDecoder<P = InVec> {
    header: [u8; HEADER_BYTES],
    header_filled: usize,
    state: State<P>,
}

impl<P: PayloadBuf> Default for FrameDecoder<P> {
    fn default() -> Self {
        FrameDecoder::placing()
    }
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::placing()
    }

    /// Consumes bytes from the front of `input` (advancing it) until a frame is complete or
    /// the input is used up.
    ///
    /// - `Ok(Some(frame))`: a checked frame; `input` holds what follows it. Call again.
    /// - `Ok(None)`: all of `input` was consumed (buffered); feed more.
    /// - `Err(error)` without `breaks_framing`: that frame's bytes were consumed and refused;
    ///   the decoder is at the next frame. Call again.
    /// - `Err(error)` with `breaks_framing`: nothing more will be decoded; every later call
    ///   returns the same error and consumes nothing.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, DecodeError> {
        let decoded = self.decode_placing(input, &mut |_| None)?;
        Ok(decoded.map(|decoded| match decoded {
            Decoded::Frame(frame) => frame,
            Decoded::Placed { payload, .. } => match payload {},
        }))
    }
}

impl<P: PayloadBuf> FrameDecoder<P> {
    /// A decoder that may assemble payloads in the caller's memory.
    pub fn placing() -> FrameDecoder<P> {
        FrameDecoder {
            header: [0; HEADER_BYTES],
            header_filled: 0,
            state: State::Header,
        }
    }

    /// [`FrameDecoder::decode`], where `place` is asked, once a header passed its checks,
    /// for memory to assemble its payload in: `Some(buf)` (its `payload_mut` exactly the
    /// payload's length) yields [`Decoded::Placed`], `None` a frame with a `Vec`.
    pub fn decode_placing(
        &mut self,
        input: &mut &[u8],
        place: &mut dyn FnMut(&Header) -> Option<P>,
    ) -> Result<Option<Decoded<P>>, DecodeError> {
        loop {
            match std::mem::replace(&mut self.state, State::Header) {
                State::Failed(error) => {
                    self.state = State::Failed(error.clone());
                    return Err(error);
                }
                State::Header => {
                    let take = (HEADER_BYTES - self.header_filled).min(input.len());
                    self.header[self.header_filled..][..take].copy_from_slice(&input[..take]);
                    *input = &input[take..];
                    self.header_filled += take;
                    if self.header_filled < HEADER_BYTES {
                        return Ok(None);
                    }
                    self.header_filled = 0;
                    self.state = self.start_payload(place)?;
                }
                State::Payload {
                    header,
                    mut body,
                    crc,
                } => {
                    let total = header.payload_bytes as usize;
                    let take = (total - body.filled()).min(input.len());
                    body.append(&input[..take]);
                    let crc = crc32c::crc32c_append(crc, &input[..take]);
                    *input = &input[take..];
                    if body.filled() < total {
                        self.state = State::Payload { header, body, crc };
                        return Ok(None);
                    }
                    if crc != header.payload_crc {
                        return Err(DecodeError::PayloadChecksum {
                            header,
                            stored: header.payload_crc,
                            computed: crc,
                        });
                    }
                    return Ok(Some(body.finish(header)));
                }
                State::Skip {
                    mut remaining,
                    error,
                } => {
                    let take = remaining.min(input.len());
                    *input = &input[take..];
                    remaining -= take;
                    if remaining > 0 {
                        self.state = State::Skip { remaining, error };
                        return Ok(None);
                    }
                    return Err(DecodeError::Header(error));
                }
            }
        }
    }

    /// Decides what follows a complete header. Errors that break framing end the decoder.
    fn start_payload(
        &mut self,
        place: &mut dyn FnMut(&Header) -> Option<P>,
    ) -> Result<State<P>, DecodeError> {
        match Header::decode(&self.header) {
            // Allocated only now: the length was checked against MAX_PAYLOAD.
            Ok(header) => {
                let body = match place(&header) {
                    Some(mut payload) => {
                        assert_eq!(
                            payload.payload_mut().len(),
                            header.payload_bytes as usize,
                            "placed payload memory of the wrong length"
                        );
                        Body::Placed { payload, filled: 0 }
                    }
                    None => Body::Vec(Vec::with_capacity(header.payload_bytes as usize)),
                };
                Ok(State::Payload {
                    header,
                    body,
                    crc: 0,
                })
            }
            Err(error) if error.breaks_framing() => {
                let error = DecodeError::Header(error);
                self.state = State::Failed(error.clone());
                Err(error)
            }
            // The checksum and the length passed, so the frame's extent is known.
            Err(error) => Ok(State::Skip {
                remaining: announced_payload_bytes(&self.header) as usize,
                error,
            }),
        }
    }

    /// Bytes held for the frame being assembled (never above `DECODER_BUFFER_BYTES_MAX`).
    pub fn buffered_bytes(&self) -> usize {
        match &self.state {
            State::Header => self.header_filled,
            State::Payload { body, .. } => HEADER_BYTES + body.filled(),
            State::Skip { .. } | State::Failed(_) => 0,
        }
    }

    /// True between frames: no partial frame is held. A connection that ends elsewhere ended
    /// in the middle of a frame.
    pub fn at_frame_boundary(&self) -> bool {
        matches!(self.state, State::Header) && self.header_filled == 0
    }

    /// True once an error broke framing.
    pub fn has_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_frame;
    use crate::header::HEADER_CRC_AT;
    use crate::limits::MAX_PAYLOAD;
    use crate::opcode::Opcode;

    fn ping(request_id: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(
            &Header::request(Opcode::Ping, request_id),
            payload,
            &mut out,
        )
        .unwrap();
        out
    }

    fn reseal(bytes: &mut [u8]) {
        let crc = crc32c::crc32c(&bytes[..HEADER_CRC_AT]);
        bytes[HEADER_CRC_AT..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn byte_at_a_time() {
        let bytes = ping(7, b"hello");
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for byte in &bytes {
            let mut input: &[u8] = std::slice::from_ref(byte);
            if let Some(frame) = decoder.decode(&mut input).unwrap() {
                frames.push(frame);
            }
            assert!(input.is_empty());
        }
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].payload, b"hello");
        assert_eq!(frames[0].header.request_id, 7);
        assert!(decoder.at_frame_boundary());
    }

    /// Caller memory with a marker before the payload, to see nothing is written outside it.
    #[derive(Debug)]
    struct Held(Vec<u8>);

    impl PayloadBuf for Held {
        fn payload_mut(&mut self) -> &mut [u8] {
            &mut self.0[1..]
        }
    }

    #[test]
    fn placed_payloads_arrive_whole_in_caller_memory_and_others_in_vecs() {
        let big: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut bytes = ping(1, &big);
        bytes.extend(ping(2, b"small"));
        let mut corrupt = ping(3, &big);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        bytes.extend(corrupt);
        bytes.extend(ping(4, &big));
        let mut decoder = FrameDecoder::<Held>::placing();
        let mut place = |header: &Header| {
            (header.payload_bytes >= 1000).then(|| {
                let mut memory = vec![0xAA; 1 + header.payload_bytes as usize];
                memory[0] = 0x55;
                Held(memory)
            })
        };
        let mut seen = Vec::new();
        for chunk in bytes.chunks(333) {
            let mut input = chunk;
            while !input.is_empty() {
                match decoder.decode_placing(&mut input, &mut place) {
                    Ok(Some(Decoded::Placed { header, payload })) => {
                        assert_eq!(payload.0[0], 0x55);
                        assert_eq!(&payload.0[1..], &big[..]);
                        seen.push((header.request_id, "placed"));
                    }
                    Ok(Some(Decoded::Frame(frame))) => {
                        assert_eq!(frame.payload, b"small");
                        seen.push((frame.header.request_id, "vec"));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        assert!(matches!(error, DecodeError::PayloadChecksum { .. }));
                        seen.push((error.request_id().unwrap(), "refused"));
                    }
                }
            }
        }
        assert_eq!(
            seen,
            [(1, "placed"), (2, "vec"), (3, "refused"), (4, "placed")]
        );
        assert!(decoder.at_frame_boundary());
    }

    #[test]
    fn stops_at_the_end_of_a_frame() {
        let mut bytes = ping(1, b"a");
        bytes.extend(ping(2, b""));
        let mut decoder = FrameDecoder::new();
        let mut input = &bytes[..];
        let first = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!(first.header.request_id, 1);
        assert_eq!(input.len(), HEADER_BYTES);
        let second = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!(second.header.request_id, 2);
        assert!(input.is_empty());
        assert_eq!(decoder.decode(&mut input), Ok(None));
    }

    #[test]
    fn payload_checksum_is_reported_and_skipped() {
        let mut bytes = ping(3, b"abc");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        bytes.extend(ping(4, b"ok"));
        let mut decoder = FrameDecoder::new();
        let mut input = &bytes[..];
        let error = decoder.decode(&mut input).unwrap_err();
        assert!(matches!(error, DecodeError::PayloadChecksum { .. }));
        assert!(!error.breaks_framing());
        assert_eq!(error.request_id(), Some(3));
        let reply = error.reply();
        assert_eq!(reply.header.status, Status::Checksum);
        assert_eq!(reply.header.request_id, 3);
        let next = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!(next.payload, b"ok");
    }

    #[test]
    fn unknown_opcode_skips_the_payload() {
        let mut bytes = ping(5, b"xyz");
        bytes[6] = 0x7e;
        reseal(&mut bytes);
        bytes.extend(ping(6, b""));
        let mut decoder = FrameDecoder::new();
        let mut input = &bytes[..];
        let error = decoder.decode(&mut input).unwrap_err();
        assert_eq!(
            error,
            DecodeError::Header(HeaderError::UnknownOpcode {
                opcode: 0x7e,
                request_id: 5
            })
        );
        let reply = error.reply();
        assert_eq!(reply.header.opcode, Opcode::Unknown);
        assert_eq!(reply.header.request_id, 5);
        assert_eq!(reply.header.status, Status::BadRequest);
        assert_eq!(
            decoder
                .decode(&mut input)
                .unwrap()
                .unwrap()
                .header
                .request_id,
            6
        );
    }

    #[test]
    fn oversize_is_refused_from_the_header_alone() {
        let mut bytes = ping(8, b"");
        bytes[60..64].copy_from_slice(&u32::MAX.to_le_bytes());
        reseal(&mut bytes);
        // Followed by plenty of would-be payload: none of it is consumed or buffered.
        bytes.extend(std::iter::repeat_n(0u8, 4096));
        let mut decoder = FrameDecoder::new();
        let mut input = &bytes[..];
        let error = decoder.decode(&mut input).unwrap_err();
        assert_eq!(
            error,
            DecodeError::Header(HeaderError::PayloadTooLarge {
                announced: u32::MAX,
                request_id: 8
            })
        );
        assert_eq!(input.len(), 4096, "only the header was consumed");
        assert_eq!(decoder.buffered_bytes(), 0);
        assert!(decoder.has_failed());
        assert_eq!(error.reply().header.status, Status::TooLarge);
        // Failed for good, consuming nothing more.
        assert_eq!(decoder.decode(&mut input), Err(error));
        assert_eq!(input.len(), 4096);
    }

    #[test]
    fn bad_magic_fails_for_good() {
        let mut bytes = ping(1, b"");
        bytes[0] = 0;
        bytes.extend(ping(2, b""));
        let mut decoder = FrameDecoder::new();
        let mut input = &bytes[..];
        let error = decoder.decode(&mut input).unwrap_err();
        assert!(error.breaks_framing());
        assert_eq!(error.request_id(), None);
        assert_eq!(error.reply().header.request_id, 0);
        assert_eq!(decoder.decode(&mut input), Err(error));
    }

    #[test]
    fn buffer_holds_at_most_one_frame() {
        let payload = vec![7u8; MAX_PAYLOAD];
        let mut bytes = ping(1, &payload);
        bytes.extend(ping(2, &payload));
        let mut decoder = FrameDecoder::new();
        let mut input = &bytes[..bytes.len() - 1];
        let first = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!(first.payload.len(), MAX_PAYLOAD);
        assert_eq!(decoder.decode(&mut input), Ok(None));
        assert_eq!(
            decoder.buffered_bytes(),
            crate::limits::DECODER_BUFFER_BYTES_MAX - 1
        );
        let mut last: &[u8] = &bytes[bytes.len() - 1..];
        assert!(decoder.decode(&mut last).unwrap().is_some());
    }
}
