//! Property tests of the codec: headers and frames round-trip, any chunking of a byte stream
//! decodes to the same frames, and malformed input gets its specific error, never a panic.

use ds_proto::decoder::{DecodeError, FrameDecoder};
use ds_proto::header::HEADER_CRC_AT;
use ds_proto::limits::DECODER_BUFFER_BYTES_MAX;
use ds_proto::{
    encode_frame, Flags, Frame, Header, HeaderError, ObjectId, Opcode, Status, HEADER_BYTES, MAGIC,
    MAX_PAYLOAD, PROTOCOL_VERSION,
};
use proptest::prelude::*;

fn any_opcode() -> impl Strategy<Value = Opcode> {
    prop::sample::select(Opcode::ALL.to_vec())
}

fn any_status() -> impl Strategy<Value = Status> {
    prop::sample::select(Status::ALL.to_vec())
}

fn any_flags() -> impl Strategy<Value = Flags> {
    prop::sample::select(vec![Flags::NONE, Flags::REPLY, Flags::REPLY | Flags::MORE])
}

fn any_header() -> impl Strategy<Value = Header> {
    (
        (any_opcode(), any_flags(), any::<u64>(), any::<u128>()),
        (any::<u64>(), any::<u64>(), any::<u64>(), any_status()),
        (0..=MAX_PAYLOAD as u32, any::<u32>()),
    )
        .prop_map(
            |(
                (opcode, flags, request_id, object_id),
                (offset, length, aux, status),
                (payload_bytes, payload_crc),
            )| Header {
                opcode,
                flags,
                request_id,
                object_id: ObjectId(object_id),
                offset,
                length,
                aux,
                status,
                payload_bytes,
                payload_crc,
            },
        )
}

fn any_frame() -> impl Strategy<Value = Frame> {
    (any_header(), prop::collection::vec(any::<u8>(), 0..3000))
        .prop_map(|(header, payload)| Frame::new(header, payload).unwrap())
}

fn reseal(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[..HEADER_CRC_AT]);
    bytes[HEADER_CRC_AT..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes `bytes` fed in pieces of the given sizes (cycled), until the stream ends or an
/// error breaks framing. Checks the buffer bound after every call.
fn decode_chunked(bytes: &[u8], sizes: &[usize]) -> Vec<Result<Frame, DecodeError>> {
    let mut decoder = FrameDecoder::new();
    let mut results = Vec::new();
    let mut rest = bytes;
    let mut size = sizes.iter().copied().cycle();
    while !rest.is_empty() {
        let take = size.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let mut input = &rest[..take];
        rest = &rest[take..];
        loop {
            let result = decoder.decode(&mut input);
            assert!(decoder.buffered_bytes() <= DECODER_BUFFER_BYTES_MAX);
            match result {
                Ok(None) => {
                    assert!(input.is_empty());
                    break;
                }
                Ok(Some(frame)) => results.push(Ok(frame)),
                Err(error) => {
                    let fatal = error.breaks_framing();
                    results.push(Err(error));
                    if fatal {
                        return results;
                    }
                }
            }
        }
    }
    results
}

proptest! {
    #[test]
    fn header_round_trip(header in any_header()) {
        prop_assert_eq!(Header::decode(&header.encode()), Ok(header));
    }

    #[test]
    fn frames_survive_any_chunking(
        frames in prop::collection::vec(any_frame(), 0..8),
        sizes in prop::collection::vec(1usize..400, 1..20),
    ) {
        let mut bytes = Vec::new();
        for frame in &frames {
            frame.encode_into(&mut bytes).unwrap();
        }
        let decoded = decode_chunked(&bytes, &sizes);
        let expected: Vec<_> = frames.into_iter().map(Ok).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn arbitrary_headers_never_panic(bytes in prop::array::uniform32(any::<u8>()),
                                     more in prop::array::uniform32(any::<u8>()),
                                     tail in prop::array::uniform8(any::<u8>())) {
        let mut header = [0u8; HEADER_BYTES];
        header[..32].copy_from_slice(&bytes);
        header[32..64].copy_from_slice(&more);
        header[64..].copy_from_slice(&tail);
        let _ = Header::decode(&header);
        // The same bytes with a valid magic, version and crc reach the later checks.
        header[..4].copy_from_slice(&MAGIC);
        header[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        reseal(&mut header);
        let result = Header::decode(&header);
        // Each check is the first to fail in the documented order.
        let payload_bytes = u32::from_le_bytes(header[60..64].try_into().unwrap());
        let reserved = u16::from_le_bytes(header[58..60].try_into().unwrap());
        let expected_error = if payload_bytes as usize > MAX_PAYLOAD {
            Some("too large")
        } else if reserved != 0 {
            Some("reserved")
        } else if Flags::from_bits(header[7]).is_none() {
            Some("flags")
        } else if Opcode::from_u8(header[6]).is_none() {
            Some("opcode")
        } else if Status::from_u16(u16::from_le_bytes([header[56], header[57]])).is_none() {
            Some("status")
        } else {
            None
        };
        let found = match &result {
            Ok(decoded) => {
                prop_assert_eq!(decoded.encode(), header);
                None
            }
            Err(HeaderError::PayloadTooLarge { .. }) => Some("too large"),
            Err(HeaderError::ReservedNotZero { .. }) => Some("reserved"),
            Err(HeaderError::BadFlags { .. }) => Some("flags"),
            Err(HeaderError::UnknownOpcode { .. }) => Some("opcode"),
            Err(HeaderError::UnknownStatus { .. }) => Some("status"),
            Err(other) => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
        };
        prop_assert_eq!(found, expected_error);
    }

    #[test]
    fn every_bit_flip_is_caught(header in any_header(), bit in 0usize..HEADER_BYTES * 8) {
        let mut bytes = header.encode();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let result = Header::decode(&bytes);
        match bit / 8 {
            0..=3 => prop_assert!(
                matches!(result, Err(HeaderError::BadMagic { .. })), "{:?}", result
            ),
            4..=5 => prop_assert!(
                matches!(result, Err(HeaderError::UnsupportedVersion(_))), "{:?}", result
            ),
            _ => prop_assert!(
                matches!(result, Err(HeaderError::BadHeaderChecksum { .. })),
                "{:?}", result
            ),
        }
    }

    #[test]
    fn corrupted_payloads_are_caught_and_framing_kept(
        frame in any_frame().prop_filter("payload", |f| !f.payload.is_empty()),
        position: prop::sample::Index,
        next in any_frame(),
        sizes in prop::collection::vec(1usize..200, 1..10),
    ) {
        let mut bytes = Vec::new();
        frame.encode_into(&mut bytes).unwrap();
        let at = HEADER_BYTES + position.index(frame.payload.len());
        bytes[at] ^= 0x10;
        next.encode_into(&mut bytes).unwrap();
        let decoded = decode_chunked(&bytes, &sizes);
        prop_assert_eq!(decoded.len(), 2);
        prop_assert!(matches!(
            &decoded[0],
            Err(DecodeError::PayloadChecksum { header, .. }) if header.request_id == frame.header.request_id
        ), "{:?}", decoded[0]);
        prop_assert_eq!(&decoded[1], &Ok(next));
    }

    #[test]
    fn garbage_streams_decode_the_same_in_any_chunking(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        sizes in prop::collection::vec(1usize..100, 1..10),
    ) {
        let whole = decode_chunked(&bytes, &[bytes.len().max(1)]);
        let chunked = decode_chunked(&bytes, &sizes);
        prop_assert_eq!(whole, chunked);
    }
}

#[test]
fn largest_frame_in_tiny_chunks() {
    let payload: Vec<u8> = (0..MAX_PAYLOAD).map(|i| (i * 7) as u8).collect();
    let frame = Frame::new(Header::request(Opcode::Put, 77), payload).unwrap();
    let mut bytes = Vec::new();
    frame.encode_into(&mut bytes).unwrap();
    let decoded = decode_chunked(&bytes, &[4093, 1, 65536]);
    assert_eq!(decoded, vec![Ok(frame)]);
}

#[test]
fn oversize_announcement_is_refused_before_its_payload() {
    for announced in [MAX_PAYLOAD as u32 + 1, u32::MAX] {
        let mut bytes = Vec::new();
        encode_frame(&Header::request(Opcode::Put, 3), b"", &mut bytes).unwrap();
        bytes[60..64].copy_from_slice(&announced.to_le_bytes());
        reseal(&mut bytes);
        let mut decoder = FrameDecoder::new();
        // The header alone is enough to refuse it: no payload byte is ever fed.
        let mut input = &bytes[..];
        let error = decoder.decode(&mut input).unwrap_err();
        assert_eq!(
            error,
            DecodeError::Header(HeaderError::PayloadTooLarge {
                announced,
                request_id: 3
            })
        );
        assert!(input.is_empty());
        assert_eq!(decoder.buffered_bytes(), 0);
        assert_eq!(error.reply_status(), Status::TooLarge);
    }
}

/// The worked example of `docs/protocol.md` §8: a PING, request id 1, payload "ping".
#[test]
fn protocol_doc_ping_example() {
    const DOC_HEX: &str = "
        44 53 57 50 01 00 01 00 01 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 04 00 00 00
        e5 26 fa a7 c3 1a 11 a1 70 69 6e 67";
    let expected: Vec<u8> = DOC_HEX
        .split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect();
    let mut bytes = Vec::new();
    encode_frame(&Header::request(Opcode::Ping, 1), b"ping", &mut bytes).unwrap();
    assert_eq!(bytes, expected);
    assert_eq!(crc32c::crc32c(b"ping"), 0xa7fa_26e5);
    assert_eq!(crc32c::crc32c(&bytes[..68]), 0xa111_1ac3);
    // The standard crc32c check value, so an implementer can test their crc first.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
}
