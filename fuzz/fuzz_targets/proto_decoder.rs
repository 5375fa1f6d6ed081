//! `ds_proto::FrameDecoder` on arbitrary byte streams in arbitrary chunkings: never panics,
//! never holds more than one header and one payload, decodes the same frames and errors
//! however the stream is cut, re-encodes every frame it yields to exactly the bytes it came
//! from, and after an error that breaks framing refuses everything else without consuming it.
//! The chunked pass also assembles some payloads in caller memory (`decode_placing`, payloads
//! of odd length), which must not change any outcome either.
//!
//! The first 8 bytes of the input seed the chunk sizes; the rest is the stream. Each stream is
//! tried twice: as it is, and with magic, version and checksums forged frame by frame (the
//! payload crc of every fourth frame left alone), so the fuzzer gets behind the header crc to
//! the field checks and to multi-frame streams.
#![no_main]

use ds_proto::header::HEADER_CRC_AT;
use ds_proto::limits::DECODER_BUFFER_BYTES_MAX;
use ds_proto::{
    DecodeError, Decoded, Frame, FrameDecoder, PayloadBuf, HEADER_BYTES, MAGIC, MAX_PAYLOAD,
    PROTOCOL_VERSION,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.len().min(8);
    let mut seed_bytes = [0u8; 8];
    seed_bytes[..split].copy_from_slice(&data[..split]);
    let seed = u64::from_le_bytes(seed_bytes);
    let stream = &data[split..];
    check(stream, seed);
    let forged = forge(stream);
    if forged != stream {
        check(&forged, seed);
    }
});

type Outcome = Result<Frame, DecodeError>;

fn check(stream: &[u8], seed: u64) {
    let whole = decode_whole(stream);
    let chunked = decode_chunked(stream, seed);
    assert_eq!(whole, chunked, "chunking changed the outcome");
}

/// One call per frame over the whole stream; checks each frame against its bytes.
fn decode_whole(stream: &[u8]) -> Vec<Outcome> {
    let mut decoder = FrameDecoder::new();
    let mut outcomes = Vec::new();
    let mut input = stream;
    loop {
        let before = input;
        let result = decoder.decode(&mut input);
        assert!(decoder.buffered_bytes() <= DECODER_BUFFER_BYTES_MAX);
        let consumed = &before[..before.len() - input.len()];
        match result {
            Ok(None) => {
                assert!(input.is_empty());
                return outcomes;
            }
            Ok(Some(frame)) => {
                // The decoder started at a frame boundary, so it consumed exactly this frame.
                let mut encoded = Vec::new();
                frame.encode_into(&mut encoded).expect("a decoded frame encodes");
                assert_eq!(encoded, consumed);
                assert!(frame.payload.len() <= MAX_PAYLOAD);
                outcomes.push(Ok(frame));
            }
            Err(error) => {
                let fatal = error.breaks_framing();
                assert_eq!(error.reply().header.status, error.reply_status());
                outcomes.push(Err(error.clone()));
                if fatal {
                    assert!(decoder.has_failed());
                    let mut rest = input;
                    assert_eq!(decoder.decode(&mut rest), Err(error));
                    assert_eq!(rest.len(), input.len(), "a failed decoder consumed input");
                    return outcomes;
                }
                assert!(decoder.at_frame_boundary());
            }
        }
    }
}

/// Caller memory for a placed payload.
struct Placed(Vec<u8>);

impl PayloadBuf for Placed {
    fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// The same stream cut into pieces of sizes drawn from `seed`; payloads of odd length are
/// assembled in caller memory.
fn decode_chunked(stream: &[u8], mut seed: u64) -> Vec<Outcome> {
    let mut decoder = FrameDecoder::<Placed>::placing();
    let mut place = |header: &ds_proto::Header| {
        (header.payload_bytes % 2 == 1).then(|| Placed(vec![0; header.payload_bytes as usize]))
    };
    let mut outcomes = Vec::new();
    let mut rest = stream;
    // Mostly small pieces, sometimes large ones; the seed picks the scale.
    let scale = 1 + (seed % 300) as usize;
    while !rest.is_empty() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let size = 1 + (seed as usize % scale);
        let take = size.min(rest.len());
        let mut input = &rest[..take];
        rest = &rest[take..];
        loop {
            let result = decoder.decode_placing(&mut input, &mut place);
            assert!(decoder.buffered_bytes() <= DECODER_BUFFER_BYTES_MAX);
            match result {
                Ok(None) => break,
                Ok(Some(Decoded::Frame(frame))) => outcomes.push(Ok(frame)),
                Ok(Some(Decoded::Placed { header, payload })) => outcomes.push(Ok(Frame {
                    header,
                    payload: payload.0,
                })),
                Err(error) => {
                    let fatal = error.breaks_framing();
                    outcomes.push(Err(error));
                    if fatal {
                        return outcomes;
                    }
                }
            }
        }
    }
    outcomes
}

/// Makes each frame's magic, version and header crc valid (and most payload crcs), keeping
/// the opcode, flags, status, reserved bytes and lengths the fuzzer chose.
fn forge(stream: &[u8]) -> Vec<u8> {
    let mut bytes = stream.to_vec();
    let mut at = 0;
    let mut index = 0;
    while at + HEADER_BYTES <= bytes.len() {
        bytes[at..at + 4].copy_from_slice(&MAGIC);
        bytes[at + 4..at + 6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        let mut length = [0u8; 4];
        length.copy_from_slice(&bytes[at + 60..at + 64]);
        let payload_bytes = u32::from_le_bytes(length) as usize;
        let end = at + HEADER_BYTES + payload_bytes;
        let whole = payload_bytes <= MAX_PAYLOAD && end <= bytes.len();
        if whole && index % 4 != 3 {
            let crc = crc32c::crc32c(&bytes[at + HEADER_BYTES..end]);
            bytes[at + 64..at + 68].copy_from_slice(&crc.to_le_bytes());
        }
        let crc = crc32c::crc32c(&bytes[at..at + HEADER_CRC_AT]);
        bytes[at + HEADER_CRC_AT..at + HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        if !whole {
            break;
        }
        at = end;
        index += 1;
    }
    bytes
}
