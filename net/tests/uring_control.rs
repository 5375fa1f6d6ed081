//! Connecting, watching descriptors, waiting, and the errors of the io_uring transport, with
//! real sockets on loopback and real threads.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{Driver, STEP_LIMIT};
use ds_net::{CloseReason, ConnId, NetError, NetEvent, Transport, TransportConfig, UringTransport};

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

fn transport() -> UringTransport {
    UringTransport::new(TransportConfig::default()).expect("transport")
}

/// Receives on `conn` until `len` bytes arrived, recycling each buffer.
fn receive(driver: &mut Driver, conn: ConnId, len: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < len {
        match driver.next() {
            NetEvent::Received { conn: from, buf } => {
                assert_eq!(from, conn);
                got.extend_from_slice(&buf);
                driver.transport.recycle(conn, buf);
            }
            NetEvent::Sent { .. } => {}
            event => panic!("unexpected {event:?}"),
        }
    }
    got
}

#[test]
fn connect_to_a_listening_port_both_ways() {
    let mut driver = Driver::new(transport());
    let server = driver.transport.listen(addr("127.0.0.3:0")).unwrap();
    let client = driver.transport.connect(server).unwrap();
    // Queued before the connection is up; goes out after it.
    driver.transport.send(client, b"early".to_vec()).unwrap();
    let (mut accepted, mut connected, mut early) = (None, false, Vec::new());
    while accepted.is_none() || !connected || early.len() < 5 {
        match driver.next() {
            NetEvent::Accepted { conn, peer } => {
                assert!(peer.ip().is_loopback());
                accepted = Some(conn);
            }
            NetEvent::Connected { conn } => {
                assert_eq!(conn, client);
                connected = true;
            }
            NetEvent::Received { conn, buf } => {
                assert_eq!(Some(conn), accepted);
                early.extend_from_slice(&buf);
                driver.transport.recycle(conn, buf);
            }
            NetEvent::Sent { conn, buf } => {
                assert_eq!(conn, client);
                assert_eq!(buf, b"early");
            }
            event => panic!("unexpected {event:?}"),
        }
    }
    assert_eq!(early, b"early");
    let accepted = accepted.unwrap();
    assert_ne!(accepted, client);
    driver.transport.send(accepted, b"reply".to_vec()).unwrap();
    assert_eq!(receive(&mut driver, client, 5), b"reply");

    driver.transport.close(client);
    let mut closed = Vec::new();
    while closed.len() < 2 {
        match driver.next() {
            NetEvent::Closed { conn, reason } => closed.push((conn, reason)),
            event => panic!("unexpected {event:?}"),
        }
    }
    closed.sort_by_key(|(conn, _)| *conn != client);
    assert_eq!(
        closed,
        [
            (client, CloseReason::Local),
            (accepted, CloseReason::PeerClosed)
        ]
    );
    let stats = driver.transport.stats();
    assert_eq!(stats.accepted_total, 1);
    assert_eq!(stats.connected_total, 1);
    assert_eq!(stats.closed_total, 2);
    assert_eq!(stats.connections_open, 0);
}

#[test]
fn connect_to_a_closed_port_closes_with_an_error() {
    // A port that was free a moment ago and has no listener now.
    let port = TcpListener::bind("127.0.0.9:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut driver = Driver::new(transport());
    let conn = driver.transport.connect(port).unwrap();
    driver.transport.send(conn, b"lost".to_vec()).unwrap();
    match driver.next() {
        NetEvent::Closed { conn: from, reason } => {
            assert_eq!(from, conn);
            assert_eq!(reason, CloseReason::Error(libc::ECONNREFUSED));
        }
        event => panic!("expected Closed, got {event:?}"),
    }
    assert!(driver.next_within(Duration::from_millis(50)).is_none());
    assert!(matches!(
        driver.transport.send(conn, vec![1]),
        Err(NetError::UnknownConn { conn: dead }) if dead == conn
    ));
    let stats = driver.transport.stats();
    assert_eq!(stats.sends_queued, 0);
    assert_eq!(stats.ops_inflight, 0);
}

#[test]
fn accepted_connections_talk_to_std_clients() {
    let mut driver = Driver::new(transport());
    let server = driver.transport.listen(addr("127.0.0.1:0")).unwrap();
    let mut client = TcpStream::connect(server).unwrap();
    client.set_read_timeout(Some(STEP_LIMIT)).unwrap();
    let NetEvent::Accepted { conn, peer } = driver.next() else {
        panic!("expected Accepted");
    };
    assert_eq!(peer, client.local_addr().unwrap());
    client.write_all(b"ping").unwrap();
    assert_eq!(receive(&mut driver, conn, 4), b"ping");
    driver.transport.send(conn, b"pong".to_vec()).unwrap();
    match driver.next() {
        NetEvent::Sent { conn: from, buf } => {
            assert_eq!(from, conn);
            assert_eq!(buf, b"pong");
        }
        event => panic!("expected Sent, got {event:?}"),
    }
    let mut back = [0; 4];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"pong");
    // An empty send completes without the kernel and keeps its place in the order.
    driver.transport.send(conn, Vec::new()).unwrap();
    assert!(matches!(driver.next(), NetEvent::Sent { buf, .. } if buf.is_empty()));
}

#[test]
fn an_idle_polling_core_stays_out_of_the_kernel() {
    let mut driver = Driver::new(transport());
    if !driver.transport.is_coop_taskrun() {
        eprintln!("skipped: no COOP_TASKRUN on this kernel, so every poll must enter it");
        return;
    }
    let server = driver.transport.listen(addr("127.0.0.1:0")).unwrap();
    let mut client = TcpStream::connect(server).unwrap();
    let NetEvent::Accepted { conn, .. } = driver.next() else {
        panic!("expected Accepted");
    };
    // A receive (and the listener's accept) stay in flight while nothing arrives.
    let before = driver.transport.stats();
    assert!(before.ops_inflight > 0);
    let mut events = Vec::new();
    for _ in 0..10_000 {
        driver.transport.poll(&mut events);
    }
    assert!(events.is_empty(), "{events:?}");
    let entered = driver.transport.stats().kernel_entries - before.kernel_entries;
    // The kernel says when it holds completions back; nothing arrived, so nothing to ask for.
    assert!(
        entered < 100,
        "10 000 idle polls entered the kernel {entered} times"
    );
    // And data that does arrive is still seen by polling alone.
    client.write_all(b"ping").unwrap();
    let deadline = std::time::Instant::now() + STEP_LIMIT;
    while events.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "polling never saw the data"
        );
        driver.transport.poll(&mut events);
    }
    assert!(
        matches!(&events[0], NetEvent::Received { conn: from, .. } if *from == conn),
        "{events:?}"
    );
}

/// An eventfd, as another core would use to wake this one.
fn eventfd() -> OwnedFd {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just created and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn eventfd_write(fd: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live local array to a descriptor we own.
    let written = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    assert_eq!(written, 8);
}

fn eventfd_drain(fd: &OwnedFd) -> u64 {
    let mut count = [0u8; 8];
    // SAFETY: reads 8 bytes into a live local array from a descriptor we own.
    let read = unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    assert_eq!(read, 8);
    u64::from_ne_bytes(count)
}

#[test]
fn watched_eventfd_written_by_another_thread_wakes_wait() {
    let fd = std::sync::Arc::new(eventfd());
    let mut transport = transport();
    transport.watch(fd.as_raw_fd(), 42).unwrap();
    let mut events = Vec::new();
    for round in 0..3 {
        assert_eq!(transport.poll(&mut events), 0);
        let writer_fd = fd.clone();
        let writer = std::thread::spawn(move || {
            // Give the main thread time to block in `wait`.
            std::thread::sleep(Duration::from_millis(30));
            eventfd_write(&writer_fd);
        });
        let started = Instant::now();
        transport.wait(None).unwrap();
        assert!(started.elapsed() < STEP_LIMIT);
        writer.join().unwrap();
        let deadline = Instant::now() + STEP_LIMIT;
        while events.is_empty() {
            assert!(Instant::now() < deadline, "round {round}: no Ready");
            transport.poll(&mut events);
        }
        assert!(
            events
                .drain(..)
                .all(|event| matches!(event, NetEvent::Ready { token: 42 })),
            "round {round}"
        );
        assert_eq!(eventfd_drain(&fd), 1);
    }
}

#[test]
fn timed_wait_with_nothing_happening_returns() {
    let mut idle = transport();
    let started = Instant::now();
    idle.wait(Some(Duration::from_millis(10))).unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(9), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    // With nothing in flight an unbounded wait could never end, so it does not start.
    idle.wait(None).unwrap();

    let mut listening = transport();
    listening.listen(addr("127.0.0.1:0")).unwrap();
    let mut events = Vec::new();
    assert_eq!(listening.poll(&mut events), 0);
    let started = Instant::now();
    listening.wait(Some(Duration::from_millis(10))).unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(9), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(listening.poll(&mut events), 0);
}

#[test]
fn listen_errors_are_typed() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut transport = transport();
    let addr_taken = taken.local_addr().unwrap();
    assert!(matches!(
        transport.listen(addr_taken),
        Err(NetError::AddressInUse { addr }) if addr == addr_taken
    ));
    // TEST-NET-1 is never an address of this machine.
    assert!(matches!(
        transport.listen(addr("192.0.2.1:0")),
        Err(NetError::AddressNotAvailable { .. })
    ));
    // Port 0 picks a port, and listening again on it is fine (SO_REUSEPORT).
    let bound = transport.listen(addr("127.0.0.1:0")).unwrap();
    assert_ne!(bound.port(), 0);
    assert_eq!(transport.listen(bound).unwrap(), bound);
}

#[test]
fn connection_table_limit_is_enforced() {
    let config = TransportConfig {
        connections_max: 1,
        ..TransportConfig::default()
    };
    let mut driver = Driver::new(UringTransport::new(config).unwrap());
    let server = driver.transport.listen(addr("127.0.0.1:0")).unwrap();
    // The outgoing connection takes the only slot; its accepted end is refused.
    let conn = driver.transport.connect(server).unwrap();
    assert!(matches!(
        driver.transport.connect(server),
        Err(NetError::TooManyConnections { max: 1 })
    ));
    let mut connected = false;
    let deadline = Instant::now() + STEP_LIMIT;
    while !connected || driver.transport.stats().refused_total == 0 {
        assert!(Instant::now() < deadline, "no refusal");
        match driver.next_within(Duration::from_millis(20)) {
            Some(NetEvent::Connected { conn: from }) => {
                assert_eq!(from, conn);
                connected = true;
            }
            // The refused end closes at once, so our side may see the end of stream.
            Some(NetEvent::Closed { conn: from, .. }) => {
                assert_eq!(from, conn);
                connected = true;
            }
            None => {}
            Some(event) => panic!("unexpected {event:?}"),
        }
    }
    assert_eq!(driver.transport.stats().accepted_total, 0);
}

#[test]
fn bad_arguments_are_refused() {
    let mut transport = transport();
    assert!(matches!(
        transport.watch(-1, 0),
        Err(NetError::BadFd { fd: -1 })
    ));
    let config = TransportConfig {
        recv_buffer_bytes: 0,
        ..TransportConfig::default()
    };
    assert!(matches!(
        UringTransport::new(config),
        Err(NetError::InvalidConfig {
            field: "recv_buffer_bytes",
            ..
        })
    ));
    // Ids of another transport are unknown here.
    let mut other = Driver::new(UringTransport::new(TransportConfig::default()).unwrap());
    let server = other.transport.listen(addr("127.0.0.1:0")).unwrap();
    // A fresh transport has every slot empty, so the id names nothing in it.
    let foreign = other.transport.connect(server).unwrap();
    assert!(matches!(
        transport.send(foreign, vec![1]),
        Err(NetError::UnknownConn { .. })
    ));
    transport.close(foreign);
    let mut events = Vec::new();
    transport.poll(&mut events);
    assert!(events.is_empty());
}
