//! The wire protocol against a real node: pipelining, and every kind of bad frame answered
//! with its status (and the connection closed only when framing is lost).

mod node;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ds_proto::{Frame, FrameDecoder, Header, ObjectId, Opcode, Scheme, Status, HEADER_BYTES};
use node::{pattern, workdir, write_config, NodeProcess};

fn raw(node: &NodeProcess) -> TcpStream {
    let stream = TcpStream::connect(node.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads frames until the peer closes; returns them.
fn read_until_closed(stream: &mut TcpStream) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return frames,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return frames,
            Err(e) => panic!("read: {e}"),
        };
        let mut input = &buf[..n];
        while let Some(frame) = decoder.decode(&mut input).unwrap() {
            frames.push(frame);
        }
    }
}

fn read_frame(stream: &mut TcpStream, decoder: &mut FrameDecoder) -> Frame {
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte).unwrap();
        let mut input = &byte[..];
        if let Some(frame) = decoder.decode(&mut input).unwrap() {
            return frame;
        }
    }
}

#[test]
fn pipelined_requests_are_all_answered_by_request_id() {
    let dir = workdir("proto_pipeline");
    let node = NodeProcess::start(&write_config(&dir, 2, "1G", ""));
    let mut client = node.client();
    let ids: Vec<ObjectId> = (0..8)
        .map(|i| {
            let id = client.create(Scheme::new(1, 0).unwrap()).unwrap();
            client.put(id, 0, &pattern(i, 5000 + i as usize)).unwrap();
            id
        })
        .collect();
    let mut stream = raw(&node);
    let mut bytes = Vec::new();
    for n in 0..200u64 {
        let mut header = Header::request(
            if n.is_multiple_of(2) {
                Opcode::Ping
            } else {
                Opcode::Get
            },
            n + 1,
        );
        header.object_id = ids[n as usize % 8];
        header.length = 100;
        let payload = if n.is_multiple_of(2) {
            n.to_le_bytes().to_vec()
        } else {
            Vec::new()
        };
        Frame::new(header, payload)
            .unwrap()
            .encode_into(&mut bytes)
            .unwrap();
    }
    stream.write_all(&bytes).unwrap();
    let mut decoder = FrameDecoder::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let frame = read_frame(&mut stream, &mut decoder);
        let n = frame.header.request_id - 1;
        assert_eq!(frame.header.status, Status::Ok, "{}", frame.error_message());
        if n.is_multiple_of(2) {
            assert_eq!(frame.payload, n.to_le_bytes());
        } else {
            let i = n as usize % 8;
            assert_eq!(frame.payload, pattern(i as u64, 5000 + i)[..100]);
        }
        assert!(seen.insert(n), "two replies to request {}", n + 1);
    }
}

#[test]
fn garbage_gets_bad_request_and_the_connection_closes() {
    let dir = workdir("proto_garbage");
    let node = NodeProcess::start(&write_config(&dir, 1, "1G", ""));
    let mut stream = raw(&node);
    stream.write_all(&[0x55; HEADER_BYTES * 2]).unwrap();
    let frames = read_until_closed(&mut stream);
    assert_eq!(frames.len(), 1, "one error reply, then the close");
    assert_eq!(frames[0].header.status, Status::BadRequest);
    assert!(
        frames[0].error_message().contains("magic"),
        "{}",
        frames[0].error_message()
    );
    // The node still serves everyone else.
    node.client().ping(b"still here").unwrap();
}

#[test]
fn another_protocol_version_gets_version_mismatch() {
    let dir = workdir("proto_version");
    let node = NodeProcess::start(&write_config(&dir, 1, "1G", ""));
    let mut stream = raw(&node);
    let mut bytes = Header::request(Opcode::Ping, 1).encode();
    bytes[4..6].copy_from_slice(&7u16.to_le_bytes());
    // Re-seal the header checksum so only the version is wrong.
    let crc = crc32c::crc32c(&bytes[..ds_proto::header::HEADER_CRC_AT]);
    bytes[ds_proto::header::HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    stream.write_all(&bytes).unwrap();
    let frames = read_until_closed(&mut stream);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.status, Status::VersionMismatch);
    assert!(
        frames[0].error_message().contains('7'),
        "{}",
        frames[0].error_message()
    );
}

#[test]
fn an_oversized_frame_is_refused_from_its_header() {
    let dir = workdir("proto_oversize");
    let node = NodeProcess::start(&write_config(&dir, 1, "1G", ""));
    let mut stream = raw(&node);
    let mut header = Header::request(Opcode::Put, 5);
    header.payload_bytes = u32::MAX;
    // Encode by hand: `seal` would refuse the size.
    let mut bytes = header.encode();
    bytes[60..64].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..ds_proto::header::HEADER_CRC_AT]);
    bytes[ds_proto::header::HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    stream.write_all(&bytes).unwrap();
    let frames = read_until_closed(&mut stream);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.status, Status::TooLarge);
}

#[test]
fn a_damaged_payload_gets_checksum_and_the_connection_goes_on() {
    let dir = workdir("proto_checksum");
    let node = NodeProcess::start(&write_config(&dir, 1, "1G", ""));
    let mut stream = raw(&node);
    let mut bytes = Vec::new();
    Frame::new(Header::request(Opcode::Ping, 1), b"hello".to_vec())
        .unwrap()
        .encode_into(&mut bytes)
        .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    Frame::new(Header::request(Opcode::Ping, 2), b"again".to_vec())
        .unwrap()
        .encode_into(&mut bytes)
        .unwrap();
    stream.write_all(&bytes).unwrap();
    let mut decoder = FrameDecoder::new();
    let mut replies: Vec<Frame> = (0..2)
        .map(|_| read_frame(&mut stream, &mut decoder))
        .collect();
    replies.sort_by_key(|f| f.header.request_id);
    assert_eq!(replies[0].header.status, Status::Checksum);
    assert_eq!(replies[1].header.status, Status::Ok);
    assert_eq!(replies[1].payload, b"again");
}

#[test]
fn requests_that_look_like_replies_are_refused() {
    let dir = workdir("proto_reply_flag");
    let node = NodeProcess::start(&write_config(&dir, 1, "1G", ""));
    let mut stream = raw(&node);
    let mut bytes = Vec::new();
    let reply = Header::request(Opcode::Ping, 3).reply(Status::Ok);
    Frame::new(reply, Vec::new())
        .unwrap()
        .encode_into(&mut bytes)
        .unwrap();
    stream.write_all(&bytes).unwrap();
    let frame = read_frame(&mut stream, &mut FrameDecoder::new());
    assert_eq!(frame.header.request_id, 3);
    assert_eq!(frame.header.status, Status::BadRequest);
}
