//! The paths older kernels take, run on this one by turning features off: a ring without
//! `COOP_TASKRUN`, timed waits without `EXT_ARG`, single accepts and polls re-armed each time.
//! The full behaviour is tested in `net/tests/` with every feature on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::ring::Features;
use super::UringTransport;
use crate::{CloseReason, NetEvent, Transport, TransportConfig};

const STEP_LIMIT: Duration = Duration::from_secs(30);

/// The next event within the step limit.
fn next(transport: &mut UringTransport, pending: &mut Vec<NetEvent>) -> NetEvent {
    let deadline = Instant::now() + STEP_LIMIT;
    while pending.is_empty() {
        assert!(Instant::now() < deadline, "no event within the step limit");
        if transport.poll(pending) == 0 {
            transport.wait(Some(Duration::from_millis(20))).unwrap();
        }
    }
    pending.remove(0)
}

fn exercise(features: Features) {
    let mut transport =
        UringTransport::with_features(TransportConfig::default(), features).expect("transport");
    assert_eq!(transport.is_coop_taskrun(), features.coop_taskrun);
    let mut pending = Vec::new();

    // A timed wait with nothing happening.
    let started = Instant::now();
    transport.wait(Some(Duration::from_millis(10))).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(9));

    // Several accepts in a row, so a single accept is re-armed.
    let server = transport.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    for round in 0..3u8 {
        let mut client = TcpStream::connect(server).unwrap();
        client.set_read_timeout(Some(STEP_LIMIT)).unwrap();
        let NetEvent::Accepted { conn, .. } = next(&mut transport, &mut pending) else {
            panic!("expected Accepted");
        };
        client.write_all(&[round; 100]).unwrap();
        let mut got = Vec::new();
        while got.len() < 100 {
            match next(&mut transport, &mut pending) {
                NetEvent::Received { conn: from, buf } => {
                    assert_eq!(from, conn);
                    got.extend_from_slice(&buf);
                    transport.recycle(conn, buf);
                }
                event => panic!("unexpected {event:?}"),
            }
        }
        assert_eq!(got, [round; 100]);
        transport.send(conn, got).unwrap();
        assert!(matches!(
            next(&mut transport, &mut pending),
            NetEvent::Sent { .. }
        ));
        let mut back = [0; 100];
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, [round; 100]);
        drop(client);
        assert!(matches!(
            next(&mut transport, &mut pending),
            NetEvent::Closed {
                reason: CloseReason::PeerClosed,
                ..
            }
        ));
    }

    // Several wake-ups of a watched eventfd, so a single poll is re-armed.
    // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: `fd` was just created and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    transport.watch(fd.as_raw_fd(), 9).unwrap();
    for _ in 0..3 {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local array to a descriptor we own.
        let written = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), 8) };
        assert_eq!(written, 8);
        assert!(matches!(
            next(&mut transport, &mut pending),
            NetEvent::Ready { token: 9 }
        ));
        let mut count = [0u8; 8];
        // SAFETY: reads 8 bytes into a live local array from a descriptor we own.
        let read = unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        assert_eq!(read, 8);
    }
    transport.poll(&mut pending);
    assert!(pending.is_empty(), "{pending:?}");
    // The listener's accept and the watch's poll.
    assert_eq!(transport.stats().ops_inflight, 2);
}

#[test]
fn without_coop_taskrun() {
    exercise(Features {
        coop_taskrun: false,
        ..Features::ALL
    });
}

#[test]
fn without_ext_arg() {
    exercise(Features {
        ext_arg: false,
        ..Features::ALL
    });
}

#[test]
fn without_multishot() {
    exercise(Features {
        multishot: false,
        ..Features::ALL
    });
}

#[test]
fn with_every_feature() {
    exercise(Features::ALL);
}

#[test]
fn without_any_feature() {
    exercise(Features {
        coop_taskrun: false,
        ext_arg: false,
        multishot: false,
    });
}
