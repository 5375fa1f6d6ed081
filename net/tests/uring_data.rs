//! Moving data through the io_uring transport over loopback with real sockets and threads:
//! echo under load, several cores on one port, backpressure, and connections that end while
//! data is moving.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{payload, Driver, EchoServer, STEP_LIMIT};
use ds_net::{CloseReason, NetError, NetEvent, Transport, TransportConfig, UringTransport};

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

/// A std client that writes `data` from one thread and reads the echo on another, returning
/// what came back.
fn echo_client(server: SocketAddr, data: Arc<Vec<u8>>, chunk: usize) -> Vec<u8> {
    let stream = TcpStream::connect(server).expect("connect");
    stream.set_read_timeout(Some(STEP_LIMIT)).unwrap();
    stream.set_write_timeout(Some(STEP_LIMIT)).unwrap();
    let mut writer = stream.try_clone().expect("clone");
    let written = data.clone();
    let writing = std::thread::spawn(move || {
        for piece in written.chunks(chunk) {
            writer.write_all(piece).expect("write");
        }
    });
    let mut back = vec![0; data.len()];
    let mut reader = stream;
    reader.read_exact(&mut back).expect("read the echo");
    writing.join().expect("writer");
    back
}

#[test]
fn echo_many_clients_multi_mib_bit_exact() {
    const CLIENTS: usize = 16;
    const BYTES: usize = 3 * 1024 * 1024 + 12_345;
    // A send queue no larger than a receive makes the server hold receive buffers while it
    // waits for room now and then.
    let config = TransportConfig {
        recv_buffer_bytes: 64 * 1024,
        send_queue_bytes_max: 64 * 1024,
        ..TransportConfig::default()
    };
    let server = EchoServer::start(config, addr("127.0.0.1:0"));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let server = server.addr;
            std::thread::spawn(move || {
                let data = Arc::new(payload(index as u64, BYTES));
                // Odd chunk sizes, so writes and receives never line up.
                let back = echo_client(server, data.clone(), 1000 + index * 7919);
                assert!(back == *data, "client {index}: echo differs");
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client");
    }
    // Every client closed its socket; the server stops once it saw all of them go.
    let report = server.stop_after_closed(CLIENTS);
    assert_eq!(report.accepted, CLIENTS);
    assert_eq!(report.closed, CLIENTS);
    assert_eq!(report.stats.received_bytes, (CLIENTS * BYTES) as u64);
    assert_eq!(report.stats.sent_bytes, (CLIENTS * BYTES) as u64);
    assert_eq!(report.stats.connections_open, 0);
    assert_eq!(report.stats.sends_queued, 0);
    assert_eq!(report.stats.send_queued_bytes, 0);
    eprintln!("sends refused for a full queue: {}", report.queue_full);
}

#[test]
fn send_queue_limit_refuses_and_hands_the_buffer_back() {
    const LIMIT: usize = 8 * 1024 * 1024;
    let config = TransportConfig {
        send_queue_bytes_max: LIMIT,
        ..TransportConfig::default()
    };
    let mut driver = Driver::new(UringTransport::new(config).unwrap());
    let server = driver.transport.listen(addr("127.0.0.8:0")).unwrap();
    let mut client = TcpStream::connect(server).expect("connect");
    let NetEvent::Accepted { conn, .. } = driver.next() else {
        panic!("expected Accepted");
    };
    assert!(matches!(
        driver.transport.send(conn, vec![0; LIMIT + 1]),
        Err(NetError::SendTooLarge { len, max: LIMIT }) if len == LIMIT + 1
    ));
    // Fill the queue while the client reads nothing; the sends complete only as far as the
    // socket buffers take them.
    let mut sent = Vec::new();
    let mut sent_events = 0;
    let mut seed = 0;
    let refused = loop {
        match driver.transport.send(conn, payload(seed, 1024 * 1024)) {
            Ok(()) => sent.push(seed),
            Err(NetError::SendQueueFull {
                conn: full,
                queued_bytes,
                len,
                max,
                buf,
            }) => {
                assert_eq!(full, conn);
                assert_eq!(len, 1024 * 1024);
                assert_eq!(max, LIMIT);
                assert!(queued_bytes + len > max);
                break buf.0;
            }
            Err(error) => panic!("send: {error}"),
        }
        seed += 1;
        assert!(seed < 1000, "the queue never filled");
        while let Some(event) = driver.next_within(Duration::ZERO) {
            assert!(matches!(event, NetEvent::Sent { .. }), "{event:?}");
            sent_events += 1;
        }
    };
    assert!(refused == payload(seed, 1024 * 1024));
    // Reading makes room; the refused buffer then goes out after the others.
    let total = (sent.len() + 1) * 1024 * 1024;
    let reader = std::thread::spawn(move || {
        let mut got = vec![0; total];
        client.set_read_timeout(Some(STEP_LIMIT)).unwrap();
        client.read_exact(&mut got).expect("read");
        got
    });
    let mut pending = Some(refused);
    while sent_events < sent.len() + 1 {
        match driver.next() {
            NetEvent::Sent { .. } => sent_events += 1,
            event => panic!("unexpected {event:?}"),
        }
        if let Some(buf) = pending.take() {
            match driver.transport.send(conn, buf) {
                Ok(()) => {}
                Err(error) => pending = error.into_unsent(),
            }
        }
    }
    assert!(pending.is_none());
    let got = reader.join().expect("reader");
    let expected: Vec<u8> = sent
        .iter()
        .chain(std::iter::once(&seed))
        .flat_map(|&seed| payload(seed, 1024 * 1024))
        .collect();
    assert!(got == expected, "bytes arrived out of order or damaged");
}

#[test]
fn two_transports_share_a_port_and_both_accept() {
    const CLIENTS: usize = 64;
    let first = EchoServer::start(TransportConfig::default(), addr("127.0.0.4:0"));
    let second = EchoServer::start(TransportConfig::default(), first.addr);
    assert_eq!(first.addr, second.addr);
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|index| {
            let mut stream = TcpStream::connect(first.addr).expect("connect");
            stream.set_read_timeout(Some(STEP_LIMIT)).unwrap();
            let message = [index as u8; 3];
            stream.write_all(&message).unwrap();
            let mut back = [0; 3];
            stream.read_exact(&mut back).expect("echo");
            assert_eq!(back, message);
            stream
        })
        .collect();
    drop(clients);
    // Each server stops once it saw every connection it accepted close.
    let first_accepted = first.accepted_so_far();
    let second_accepted = second.accepted_so_far();
    assert_eq!(first_accepted + second_accepted, CLIENTS);
    let first = first.stop_after_closed(first_accepted);
    let second = second.stop_after_closed(second_accepted);
    assert_eq!(first.accepted + second.accepted, CLIENTS);
    // The kernel spreads connections by hashing their addresses: with 64 of them, one listener
    // getting all is a 2^-63 chance.
    assert!(first.accepted > 0, "the first transport accepted nothing");
    assert!(second.accepted > 0, "the second transport accepted nothing");
}

#[test]
fn unrecycled_buffer_stops_reading_and_nothing_is_lost() {
    const BYTES: usize = 64 * 1024 * 1024;
    let mut driver = Driver::new(UringTransport::new(TransportConfig::default()).unwrap());
    let server = driver.transport.listen(addr("127.0.0.2:0")).unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let client_written = written.clone();
    let client = std::thread::spawn(move || {
        let data = payload(99, BYTES);
        let mut stream = TcpStream::connect(server).expect("connect");
        stream.set_write_timeout(Some(STEP_LIMIT)).unwrap();
        for piece in data.chunks(64 * 1024) {
            stream.write_all(piece).expect("write");
            client_written.fetch_add(piece.len(), Ordering::Relaxed);
        }
        stream.shutdown(Shutdown::Write).unwrap();
        // Keep the socket until the server closed its side.
        let mut rest = Vec::new();
        stream.set_read_timeout(Some(STEP_LIMIT)).unwrap();
        stream.read_to_end(&mut rest).expect("read to the end");
    });

    let NetEvent::Accepted { conn, .. } = driver.next() else {
        panic!("expected Accepted");
    };
    let NetEvent::Received { conn: from, buf } = driver.next() else {
        panic!("expected Received");
    };
    assert_eq!(from, conn);
    let mut received = buf.to_vec();

    // Holding the buffer: nothing more is received, and the client's writes stall.
    let mut last = written.load(Ordering::Relaxed);
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + STEP_LIMIT;
    while stable_since.elapsed() < Duration::from_millis(200) {
        assert!(Instant::now() < deadline, "the client never stalled");
        if let Some(event) = driver.next_within(Duration::from_millis(20)) {
            panic!("event while the buffer is held: {event:?}");
        }
        let now = written.load(Ordering::Relaxed);
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    assert!(
        last < BYTES,
        "the client wrote everything although nobody read"
    );

    // Recycling lets everything through, in order.
    driver.transport.recycle(conn, buf);
    loop {
        match driver.next() {
            NetEvent::Received { conn: from, buf } => {
                assert_eq!(from, conn);
                received.extend_from_slice(&buf);
                driver.transport.recycle(conn, buf);
            }
            NetEvent::Closed { conn: from, reason } => {
                assert_eq!(from, conn);
                assert_eq!(reason, CloseReason::PeerClosed);
                break;
            }
            event => panic!("unexpected {event:?}"),
        }
    }
    client.join().expect("client");
    assert_eq!(received.len(), BYTES);
    assert!(received == payload(99, BYTES), "received bytes differ");
    assert_eq!(driver.transport.stats().received_bytes, BYTES as u64);
    assert_eq!(driver.transport.stats().connections_open, 0);
}

#[test]
fn peer_closing_mid_transfer_closes_once_and_kills_the_id() {
    const CHUNK: usize = 1024 * 1024;
    let mut driver = Driver::new(UringTransport::new(TransportConfig::default()).unwrap());
    let server = driver.transport.listen(addr("127.0.0.5:0")).unwrap();
    let client = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(server).expect("connect");
        stream.set_read_timeout(Some(STEP_LIMIT)).unwrap();
        let mut some = vec![0; 2 * CHUNK];
        stream.read_exact(&mut some).expect("read");
        // Dropping with unread data resets the connection.
    });
    let NetEvent::Accepted { conn, .. } = driver.next() else {
        panic!("expected Accepted");
    };
    for seed in 0..4 {
        driver.transport.send(conn, payload(seed, CHUNK)).unwrap();
    }
    let mut closed = Vec::new();
    let mut held = None;
    let deadline = Instant::now() + STEP_LIMIT;
    // Keep the stream going until the connection ends, then a while longer to catch a second
    // Closed.
    let mut quiet_until = None;
    while quiet_until.is_none_or(|until| Instant::now() < until) {
        assert!(Instant::now() < deadline, "the connection never closed");
        let Some(event) = driver.next_within(Duration::from_millis(20)) else {
            continue;
        };
        match event {
            NetEvent::Sent { conn: from, buf } => {
                assert_eq!(from, conn);
                assert!(closed.is_empty(), "Sent after Closed");
                // Keep sending; the connection may already be failing, or gone: the poll that
                // produced this Sent may also have ended the connection, whose Closed comes
                // next (it must come exactly once: checked below).
                match driver.transport.send(conn, buf) {
                    Ok(()) | Err(NetError::ConnClosing { .. } | NetError::UnknownConn { .. }) => {}
                    Err(error) => panic!("send: {error}"),
                }
            }
            NetEvent::Received { conn: from, buf } => {
                assert_eq!(from, conn);
                held = Some(buf);
            }
            NetEvent::Closed { conn: from, reason } => {
                assert_eq!(from, conn);
                assert_ne!(reason, CloseReason::Local);
                closed.push(reason);
                quiet_until = Some(Instant::now() + Duration::from_millis(200));
            }
            event => panic!("unexpected {event:?}"),
        }
    }
    client.join().expect("client");
    assert_eq!(closed.len(), 1, "Closed events: {closed:?}");
    assert!(matches!(
        driver.transport.send(conn, vec![1]),
        Err(NetError::UnknownConn { .. })
    ));
    driver.transport.close(conn);
    if let Some(buf) = held {
        driver.transport.recycle(conn, buf);
    }
    assert!(driver.next_within(Duration::from_millis(50)).is_none());
    let stats = driver.transport.stats();
    assert_eq!(stats.connections_open, 0);
    assert_eq!(stats.sends_queued, 0);
    assert_eq!(stats.closed_total, 1);
    // Only the listener's accept is left in flight.
    assert_eq!(stats.ops_inflight, 1);
}

#[test]
fn close_with_a_send_in_flight() {
    // Far more than socket buffers hold (Linux's tcp_wmem maximum is 4 MiB by default) while
    // the client reads nothing.
    const BYTES: usize = 48 * 1024 * 1024;
    let config = TransportConfig {
        send_queue_bytes_max: 2 * BYTES,
        ..TransportConfig::default()
    };
    let mut driver = Driver::new(UringTransport::new(config).unwrap());
    let server = driver.transport.listen(addr("127.0.0.6:0")).unwrap();
    let client = TcpStream::connect(server).expect("connect");
    let NetEvent::Accepted { conn, .. } = driver.next() else {
        panic!("expected Accepted");
    };
    driver.transport.send(conn, payload(5, BYTES)).unwrap();
    driver.transport.send(conn, vec![7; 1000]).unwrap();
    // The send goes to the kernel and stays there: the client reads nothing.
    assert!(driver.next_within(Duration::from_millis(100)).is_none());
    let stats = driver.transport.stats();
    assert_eq!(stats.sends_queued, 2);
    // The accept, the receive and the send.
    assert_eq!(stats.ops_inflight, 3);
    driver.transport.close(conn);
    // Closing twice changes nothing.
    driver.transport.close(conn);
    assert!(matches!(
        driver.transport.send(conn, vec![1]),
        Err(NetError::ConnClosing { .. })
    ));
    match driver.next() {
        NetEvent::Closed { conn: from, reason } => {
            assert_eq!(from, conn);
            assert_eq!(reason, CloseReason::Local);
        }
        event => panic!("expected Closed, got {event:?}"),
    }
    assert!(driver.next_within(Duration::from_millis(100)).is_none());
    let stats = driver.transport.stats();
    assert_eq!(stats.sends_queued, 0);
    assert_eq!(stats.send_queued_bytes, 0);
    assert_eq!(stats.connections_open, 0);
    assert_eq!(stats.ops_inflight, 1);
    assert!(matches!(
        driver.transport.send(conn, vec![1]),
        Err(NetError::UnknownConn { .. })
    ));
    // The client sees part of the stream, in order, then the end.
    let mut client = client;
    client.set_read_timeout(Some(STEP_LIMIT)).unwrap();
    let mut got = Vec::new();
    match client.read_to_end(&mut got) {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
        Err(error) => panic!("client read: {error}"),
    }
    assert!(got.len() < BYTES);
    assert!(got[..] == payload(5, BYTES)[..got.len()]);
}

#[test]
fn dropping_with_everything_in_flight_is_prompt() {
    let mut driver = Driver::new(UringTransport::new(TransportConfig::default()).unwrap());
    let server = driver.transport.listen(addr("127.0.0.7:0")).unwrap();
    let _client = TcpStream::connect(server).expect("connect");
    let NetEvent::Accepted { conn, .. } = driver.next() else {
        panic!("expected Accepted");
    };
    driver
        .transport
        .send(conn, payload(1, 16 * 1024 * 1024))
        .unwrap();
    let outgoing = driver.transport.connect(server).unwrap();
    let mut seen = HashSet::new();
    while seen.len() < 2 {
        match driver.next() {
            NetEvent::Accepted { conn, .. } => assert!(seen.insert(conn)),
            NetEvent::Connected { conn } => assert!(seen.insert(conn) && conn == outgoing),
            event => panic!("unexpected {event:?}"),
        }
    }
    // Receives on three connections, a send, and an accept are in flight.
    assert!(driver.transport.stats().ops_inflight >= 5);
    let started = Instant::now();
    drop(driver);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn queued_sends_leave_gathered_and_in_order() {
    // More buffers than one send gathers (64), of odd sizes, some empty, queued before the
    // transport polls: they go out a few sends at a time and must arrive whole and in order,
    // each reported Sent once, in order.
    let mut driver = Driver::new(UringTransport::new(TransportConfig::default()).unwrap());
    let server = driver.transport.listen(addr("127.0.0.1:0")).unwrap();
    let mut client = TcpStream::connect(server).unwrap();
    client.set_read_timeout(Some(STEP_LIMIT)).unwrap();
    let NetEvent::Accepted { conn, .. } = driver.next() else {
        panic!("expected Accepted");
    };
    let buffers: Vec<Vec<u8>> = (0..300u64)
        .map(|n| {
            payload(
                n,
                if n % 37 == 5 {
                    0
                } else {
                    (n as usize * 131) % 9000 + 1
                },
            )
        })
        .collect();
    let expected: Vec<u8> = buffers.concat();
    let reader = std::thread::spawn(move || {
        let mut back = vec![0; expected.len()];
        client.read_exact(&mut back).expect("read everything sent");
        assert!(back == expected, "bytes differ or came out of order");
    });
    for buf in &buffers {
        driver.transport.send(conn, buf.clone()).unwrap();
    }
    for (n, buf) in buffers.iter().enumerate() {
        match driver.next() {
            NetEvent::Sent {
                conn: from,
                buf: back,
            } => {
                assert_eq!(from, conn);
                assert!(back == *buf, "Sent {n} is not the {n}th buffer queued");
            }
            event => panic!("expected Sent {n}, got {event:?}"),
        }
    }
    reader.join().expect("reader");
    assert_eq!(driver.transport.stats().sends_queued, 0);
    assert_eq!(driver.transport.stats().send_queued_bytes, 0);
}
