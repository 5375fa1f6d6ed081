//! The blocking client against the in-test node of `common`: every operation, pipelined PUTs
//! with replies out of order, multi-frame GET and STAT replies, and the node misbehaving.

mod common;

use std::io::{self, Read};
use std::time::Duration;

use common::{spawn, Fault, Options};
use ds_proto::{
    Client, ClientError, Frame, Header, ObjectId, Opcode, ProtocolError, Scheme, Status,
    DATA_CHUNK_BYTES, LENGTH_TO_END, MAX_PAYLOAD,
};

fn connect(options: Options) -> (Client, std::thread::JoinHandle<Vec<Opcode>>) {
    let (addr, node) = spawn(options);
    let client = Client::connect(addr, Duration::from_secs(5)).expect("connect");
    client
        .set_io_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    (client, node)
}

fn pattern(bytes: usize, seed: u8) -> Vec<u8> {
    (0..bytes)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn get_all(client: &mut Client, id: ObjectId, offset: u64, length: u64) -> Vec<u8> {
    let mut out = Vec::new();
    client
        .get(id, offset, length, &mut out, &mut |_| {})
        .unwrap();
    out
}

#[test]
fn every_operation() {
    let (mut client, node) = connect(Options::default());
    client.ping(b"hello").unwrap();
    client.ping(b"").unwrap();
    let id = client.create(Some("4+2".parse().unwrap())).unwrap();
    client.put(id, 0, b"hello world").unwrap();
    client.put(id, 6, b"WORLD").unwrap();
    assert_eq!(get_all(&mut client, id, 0, LENGTH_TO_END), b"hello WORLD");
    assert_eq!(get_all(&mut client, id, 6, 3), b"WOR");
    assert_eq!(get_all(&mut client, id, 11, LENGTH_TO_END), b"");
    let stat = client.stat(id).unwrap();
    assert_eq!(stat.id, id);
    assert_eq!(stat.size, 11);
    assert_eq!(stat.scheme, Scheme::new(4, 2).unwrap());
    assert_eq!(stat.created_ns, Some(42));
    assert_eq!(stat.parts.len(), 2);
    client.delete(id).unwrap();

    // Error replies carry the status and message and leave the connection usable.
    let error = client.delete(id).unwrap_err();
    assert_eq!(error.status(), Some(Status::NotFound), "{error}");
    assert!(error.to_string().contains("no such object"), "{error}");
    let error = client.get(id, 0, 1, io::sink(), &mut |_| {}).unwrap_err();
    assert_eq!(error.status(), Some(Status::NotFound));
    client.ping(b"still here").unwrap();
    drop(client);
    let seen = node.join().unwrap();
    assert_eq!(seen.first(), Some(&Opcode::Ping));
    assert_eq!(seen.len(), 13);
}

#[test]
fn pipelined_put_with_replies_out_of_order() {
    // 8 full frames; the node answers every 4 in reverse order.
    let (mut client, node) = connect(Options {
        put_reply_batch: 4,
        ..Options::default()
    });
    let id = client.create(Some(Scheme::new(2, 1).unwrap())).unwrap();
    let data = pattern(8 * DATA_CHUNK_BYTES, 1);
    let mut reports = Vec::new();
    let written = client
        .put_from(id, 0, &data[..], &mut |done| reports.push(done))
        .unwrap();
    assert_eq!(written, data.len() as u64);
    assert_eq!(reports.len(), 8);
    assert!(reports.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(reports.last(), Some(&(data.len() as u64)));

    // Read back whole (8 reply frames with MORE) and in a range across frame borders.
    let mut progress = Vec::new();
    let mut out = Vec::new();
    let read = client
        .get(id, 0, LENGTH_TO_END, &mut out, &mut |done| {
            progress.push(done)
        })
        .unwrap();
    assert_eq!(read, data.len() as u64);
    assert!(out == data, "data differs");
    assert_eq!(progress.len(), 8);
    let start = DATA_CHUNK_BYTES + DATA_CHUNK_BYTES / 2;
    let part = get_all(
        &mut client,
        id,
        start as u64,
        2 * DATA_CHUNK_BYTES as u64 + 3,
    );
    assert!(part == data[start..start + 2 * DATA_CHUNK_BYTES + 3]);
    drop(client);
    let seen = node.join().unwrap();
    assert_eq!(seen.iter().filter(|op| **op == Opcode::Put).count(), 8);
}

/// Gives at most `step` bytes per read, as pipes and slow files do.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let take = self.step.min(buffer.len()).min(self.data.len());
        buffer[..take].copy_from_slice(&self.data[..take]);
        self.data = &self.data[take..];
        Ok(take)
    }
}

#[test]
fn put_from_a_slow_reader_fills_whole_frames() {
    let (mut client, _node) = connect(Options::default());
    let id = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
    let data = pattern(3 * DATA_CHUNK_BYTES + 17, 9);
    let mut reports = Vec::new();
    let source = Trickle {
        data: &data,
        step: 10_000,
    };
    let written = client
        .put_from(id, 100, source, &mut |done| reports.push(done))
        .unwrap();
    assert_eq!(written, data.len() as u64);
    assert_eq!(reports.len(), 4, "three full frames and a short one");
    let back = get_all(&mut client, id, 100, data.len() as u64);
    assert!(back == data);
    assert_eq!(get_all(&mut client, id, 0, 100), vec![0; 100]);
}

#[test]
fn empty_put_reaches_the_node() {
    let (mut client, _node) = connect(Options::default());
    let error = client.put(ObjectId(1), 0, b"").unwrap_err();
    assert_eq!(error.status(), Some(Status::NotFound));
    let written = client
        .put_from(ObjectId(1), 0, io::empty(), &mut |_| {})
        .unwrap_err();
    assert_eq!(written.status(), Some(Status::NotFound));
}

#[test]
fn put_error_drains_the_pipeline() {
    let (mut client, _node) = connect(Options::default());
    let data = pattern(5 * DATA_CHUNK_BYTES, 3);
    let error = client.put(ObjectId(7), 0, &data).unwrap_err();
    assert_eq!(error.status(), Some(Status::NotFound));
    // Every reply in flight was read: the next request gets its own reply.
    client.ping(b"after").unwrap();
}

#[test]
fn failing_source_stops_the_put_cleanly() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk gone"));
            }
            let take = self.0.min(buffer.len());
            self.0 -= take;
            buffer[..take].fill(1);
            Ok(take)
        }
    }
    let (mut client, _node) = connect(Options::default());
    let id = client.create(Some(Scheme::new(1, 1).unwrap())).unwrap();
    let error = client
        .put_from(id, 0, Failing(2 * DATA_CHUNK_BYTES), &mut |_| {})
        .unwrap_err();
    assert!(matches!(error, ClientError::Source(_)), "{error}");
    assert_eq!(client.stat(id).unwrap().size, 2 * DATA_CHUNK_BYTES as u64);
}

#[test]
fn range_errors() {
    let (mut client, _node) = connect(Options::default());
    let id = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
    client.put(id, 0, b"0123456789").unwrap();
    let error = client.get(id, 5, 6, io::sink(), &mut |_| {}).unwrap_err();
    assert_eq!(error.status(), Some(Status::OutOfRange));
    let error = client.get(id, 11, 0, io::sink(), &mut |_| {}).unwrap_err();
    assert_eq!(error.status(), Some(Status::OutOfRange));
    let error = client
        .get(id, u64::MAX, 2, io::sink(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(error, ClientError::RangeOverflow { .. }));
    let error = client.put(id, u64::MAX, b"ab").unwrap_err();
    assert!(matches!(error, ClientError::RangeOverflow { .. }));
    let error = client.ping(&vec![0; MAX_PAYLOAD + 1]).unwrap_err();
    assert!(matches!(error, ClientError::PayloadTooLarge(_)));
    client.ping(&vec![0; MAX_PAYLOAD]).unwrap();
}

#[test]
fn stat_reply_spanning_frames() {
    let (mut client, _node) = connect(Options {
        stat_parts: 30_000,
        ..Options::default()
    });
    let id = client.create(Some(Scheme::new(10, 4).unwrap())).unwrap();
    let stat = client.stat(id).unwrap();
    assert_eq!(stat.parts.len(), 30_000);
    assert_eq!(stat.parts[29_999].stripe, 29_999 / 14);
    assert!(
        stat.encode().len() > DATA_CHUNK_BYTES,
        "the test needs several frames"
    );
}

#[test]
fn offset_gap_in_a_get_reply_is_caught() {
    let (mut client, _node) = connect(Options {
        fault: Fault::GetGap,
        ..Options::default()
    });
    let id = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
    client
        .put(id, 0, &pattern(2 * DATA_CHUNK_BYTES, 0))
        .unwrap();
    let error = client
        .get(id, 0, LENGTH_TO_END, io::sink(), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Protocol(ProtocolError::OffsetGap { expected, found, .. })
                if expected == DATA_CHUNK_BYTES as u64 && found == expected + 1
        ),
        "{error}"
    );
    assert!(matches!(client.ping(b""), Err(ClientError::Broken)));
}

#[test]
fn version_mismatch_names_the_node_version() {
    let (mut client, _node) = connect(Options {
        fault: Fault::Version(2),
        ..Options::default()
    });
    let error = client.ping(b"").unwrap_err();
    assert!(
        matches!(error, ClientError::VersionMismatch { node: 2 }),
        "{error}"
    );
    assert!(matches!(client.ping(b""), Err(ClientError::Broken)));
}

#[test]
fn replies_to_unknown_requests_are_refused() {
    let (mut client, _node) = connect(Options {
        fault: Fault::WrongRequestId,
        ..Options::default()
    });
    let error = client.ping(b"x").unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Protocol(ProtocolError::UnexpectedReply { .. })
        ),
        "{error}"
    );
}

#[test]
fn unattributed_errors_end_the_connection() {
    let (mut client, _node) = connect(Options {
        fault: Fault::Unattributed,
        ..Options::default()
    });
    let error = client.delete(ObjectId(1)).unwrap_err();
    assert_eq!(error.status(), Some(Status::Busy));
    assert!(matches!(client.ping(b""), Err(ClientError::Broken)));
}

#[test]
fn low_level_send_and_recv() {
    let (mut client, _node) = connect(Options::default());
    let first = Frame::new(Header::request(Opcode::Ping, 42), b"a".to_vec()).unwrap();
    let second = Frame::new(Header::request(Opcode::Ping, 43), b"b".to_vec()).unwrap();
    client.send(&first).unwrap();
    client.send(&second).unwrap();
    let replies = [client.recv().unwrap(), client.recv().unwrap()];
    assert_eq!(replies[0].header.request_id, 42);
    assert_eq!(replies[1].payload, b"b");
    assert!(replies.iter().all(|frame| frame.header.is_reply()));

    // A request the node must refuse: it carries the REPLY flag.
    let bogus = Frame::new(
        Header::request(Opcode::Ping, 44).reply(Status::Ok),
        Vec::new(),
    )
    .unwrap();
    client.send(&bogus).unwrap();
    let reply = client.recv().unwrap();
    assert_eq!(reply.header.status, Status::BadRequest);
    assert_eq!(reply.header.request_id, 44);
}

#[test]
fn connect_reports_the_address() {
    // A port nothing listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = Client::connect(("127.0.0.1", port), Duration::from_secs(2)).unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
    assert!(error.to_string().contains(&port.to_string()), "{error}");
}

#[test]
fn queued_requests_wait_for_a_flush_or_a_receive() {
    // A raw listener shows what reaches the socket: nothing until the flush.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client =
        Client::connect(listener.local_addr().unwrap(), Duration::from_secs(5)).expect("connect");
    let (mut server, _) = listener.accept().unwrap();
    for _ in 0..3 {
        let header = Header::request(Opcode::Ping, client.next_request_id());
        client.queue_request(&header, b"").unwrap();
    }
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = server.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)),
        "a queued request reached the socket before any flush: {early:?}"
    );
    client.flush().unwrap();
    let mut frames = vec![0u8; 3 * ds_proto::HEADER_BYTES];
    server.read_exact(&mut frames).unwrap();

    // Against a node: replies come back to requests that only a receive flushed.
    let (mut client, node) = connect(Options::default());
    let ids: Vec<u64> = (0..5)
        .map(|_| {
            let id = client.next_request_id();
            client
                .queue_request(&Header::request(Opcode::Ping, id), b"")
                .unwrap();
            id
        })
        .collect();
    for id in ids {
        let reply = client.recv().expect("a reply to a queued PING");
        assert_eq!(reply.header.request_id, id);
        assert_eq!(reply.header.status, Status::Ok);
    }
    drop(client);
    node.join().unwrap();
}
