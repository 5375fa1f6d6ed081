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
            let id = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
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

/// Resident memory of a process, from /proc.
/// Writes `data` at the start of `id` and reads it back.
fn put_and_read_back(client: &mut ds_proto::Client, id: ObjectId, data: &[u8]) {
    client.put(id, 0, data).unwrap();
    let mut out = Vec::new();
    client
        .get(id, 0, data.len() as u64, &mut out, &mut |_| {})
        .unwrap();
    assert_eq!(out, data);
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
fn abuse_on_raw_sockets_leaves_other_clients_served_and_memory_bounded() {
    let dir = workdir("proto_abuse");
    let node = NodeProcess::start(&write_config(
        &dir,
        2,
        "1G",
        "max_connections = 8192\nrecv_buffer = \"64K\"",
    ));
    // A well-behaved client keeps working throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let (stop, addr) = (stop.clone(), node.addr);
        std::thread::spawn(move || {
            let mut client = ds_proto::Client::connect(addr, Duration::from_secs(5)).unwrap();
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
                put_and_read_back(&mut client, id, &pattern(rounds, 20_000));
                rounds += 1;
            }
            rounds
        })
    };
    let before = rss_bytes(node.child.id());
    // Every kind of bad frame, each on its own connection.
    let mut valid = Vec::new();
    Frame::new(Header::request(Opcode::Ping, 9), b"x".to_vec())
        .unwrap()
        .encode_into(&mut valid)
        .unwrap();
    let mut unknown_opcode = valid.clone();
    unknown_opcode[6] = 0x3e;
    let crc = crc32c::crc32c(&unknown_opcode[..ds_proto::header::HEADER_CRC_AT]);
    unknown_opcode[ds_proto::header::HEADER_CRC_AT..HEADER_BYTES]
        .copy_from_slice(&crc.to_le_bytes());
    let mut bad_header_crc = valid.clone();
    bad_header_crc[20] ^= 0xff;
    let truncated = valid[..HEADER_BYTES - 5].to_vec();
    for (name, bytes, status) in [
        ("unknown opcode", unknown_opcode, Some(Status::BadRequest)),
        ("bad header crc", bad_header_crc, Some(Status::Checksum)),
        ("truncated then closed", truncated, None),
    ] {
        let mut stream = raw(&node);
        stream.write_all(&bytes).unwrap();
        if status.is_none() {
            drop(stream);
            continue;
        }
        let frame = read_frame(&mut stream, &mut FrameDecoder::new());
        assert_eq!(
            Some(frame.header.status),
            status,
            "{name}: {}",
            frame.error_message()
        );
    }
    // 10,000 connections, each stalled in the middle of a frame header.
    let mut stalled = Vec::new();
    for _ in 0..10_000 {
        match TcpStream::connect(node.addr) {
            Ok(mut stream) => {
                let _ = stream.write_all(&valid[..10]);
                stalled.push(stream);
            }
            Err(_) => break,
        }
    }
    assert!(
        stalled.len() >= 5_000,
        "only {} connections opened",
        stalled.len()
    );
    std::thread::sleep(Duration::from_secs(1));
    let during = rss_bytes(node.child.id());
    // A fresh client is still served while they are all open.
    node.client().ping(b"hi").unwrap();
    drop(stalled);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = worker.join().unwrap();
    assert!(rounds > 10, "the good client made {rounds} rounds");
    // Each connection may hold a 64 KiB receive buffer: bounded by the table, not the abuse.
    assert!(
        during < before + ((10_000u64 * 80) << 10),
        "rss grew from {before} to {during} bytes"
    );
}

#[test]
fn clients_stalled_inside_large_puts_hold_bounded_memory() {
    // A PUT payload of 64 KiB or more is received into a store record buffer, resident from
    // its header on: without a cap, each of these connections would pin 2 MiB (2 GB here).
    let dir = workdir("proto_stalled_puts");
    let node = NodeProcess::start(&write_config(&dir, 1, "1G", ""));
    let id = node
        .client()
        .create(Some(Scheme::new(1, 0).unwrap()))
        .unwrap();
    let mut put = Header::request(Opcode::Put, 1);
    put.object_id = id;
    let mut frame = Vec::new();
    Frame::new(put, vec![7u8; 1 << 20])
        .unwrap()
        .encode_into(&mut frame)
        .unwrap();
    // Connected first: 1 000 stalled connections leave room in the table (1 024) for it.
    let mut client = node.client();
    let before = rss_bytes(node.child.id());
    let mut stalled = Vec::new();
    for _ in 0..1_000 {
        match TcpStream::connect(node.addr) {
            Ok(mut stream) => {
                let _ = stream.write_all(&frame[..HEADER_BYTES + 4096]);
                stalled.push(stream);
            }
            Err(_) => break,
        }
    }
    assert_eq!(stalled.len(), 1_000);
    std::thread::sleep(Duration::from_secs(1));
    let during = rss_bytes(node.child.id());
    // A whole PUT from another client still goes through, and reads back.
    put_and_read_back(&mut client, id, &pattern(5, 1 << 20));
    drop(stalled);
    // Per connection: a receive buffer and the bytes that came (80 KiB), plus at most 64
    // record buffers of 2 MiB on the core.
    let bound = ((1_000u64 * 80) << 10) + (64u64 << 21);
    assert!(
        during < before + bound,
        "rss grew from {before} to {during} bytes (bound {bound})"
    );
}

#[test]
fn a_client_stalled_mid_frame_is_disconnected() {
    let dir = workdir("proto_stall");
    let node = NodeProcess::start(&write_config(&dir, 1, "1G", ""));
    let mut stream = raw(&node);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut bytes = Vec::new();
    Frame::new(Header::request(Opcode::Ping, 1), vec![7; 1000])
        .unwrap()
        .encode_into(&mut bytes)
        .unwrap();
    stream.write_all(&bytes[..500]).unwrap();
    let started = std::time::Instant::now();
    let frames = read_until_closed(&mut stream);
    assert!(frames.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(25),
        "{waited:?}"
    );
}
