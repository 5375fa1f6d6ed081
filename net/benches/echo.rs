//! Loopback benchmark of the io_uring transport, both ends on it, one thread per end:
//! `cargo bench -p ds-net --bench echo -- [SECONDS] [MSG_BYTES] [CONNS] [wait|spin]`.
//!
//! - `pingpong`: CONNS connections, each with one message of MSG_BYTES in flight; the server
//!   echoes, the client sends the next message when the whole echo is back. Reports round trips
//!   per second and their latency.
//! - `stream`: one connection, the client keeps 4 chunks of 1 MiB queued; the server counts and
//!   drops. Reports MB/s measured at the server, to set beside `iperf3 -c 127.0.0.1` (one stream).
//!
//! Prints one JSON object per line. `wait` polls and blocks when idle (the reactor's adaptive
//! mode); `spin` never blocks (busy mode). The same two runs over blocking `std::net` sockets
//! (one thread per end, `"transport":"std"`) follow as the kernel's baseline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ds_net::{ConnId, NetError, NetEvent, Transport, TransportConfig, UringTransport};
use hdrhistogram::Histogram;

const STREAM_CHUNK_BYTES: usize = 1024 * 1024;
const STREAM_CHUNKS_QUEUED: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Wait,
    Spin,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let number = |at: usize, default: u64, what: &str| -> u64 {
        args.get(at).map_or(default, |a| {
            a.parse()
                .unwrap_or_else(|_| fail(&format!("{what} `{a}` is not a number")))
        })
    };
    let seconds = number(0, 3, "SECONDS");
    let msg_bytes = number(1, 64, "MSG_BYTES") as usize;
    let conns = number(2, 1, "CONNS") as usize;
    let mode = match args.get(3).map(String::as_str) {
        None | Some("wait") => Mode::Wait,
        Some("spin") => Mode::Spin,
        Some(other) => fail(&format!("mode `{other}` is not wait or spin")),
    };
    if msg_bytes == 0 || conns == 0 || seconds == 0 {
        fail("SECONDS, MSG_BYTES and CONNS must be at least 1");
    }
    let duration = Duration::from_secs(seconds);
    pingpong(duration, msg_bytes, conns, mode);
    stream(duration, mode);
    pingpong_std(duration, msg_bytes);
    stream_std(duration);
}

fn fail(message: &str) -> ! {
    eprintln!("echo: {message}");
    eprintln!("usage: echo [SECONDS] [MSG_BYTES] [CONNS] [wait|spin]");
    std::process::exit(2);
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Wait => "wait",
        Mode::Spin => "spin",
    }
}

/// Polls once; when idle, blocks briefly in `wait` mode.
fn poll(transport: &mut UringTransport, events: &mut Vec<NetEvent>, mode: Mode) {
    if transport.poll(events) == 0 && mode == Mode::Wait {
        transport
            .wait(Some(Duration::from_millis(1)))
            .unwrap_or_else(|error| fail(&error.to_string()));
    }
}

/// A server thread: echoes (`echo`) or counts and drops what it receives. Returns the bytes
/// received and the time from the first to the last of them.
fn server(echo: bool, mode: Mode, stop: Arc<AtomicBool>) -> (SocketAddr, JoinHandle<(u64, f64)>) {
    let (sender, receiver) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut transport = UringTransport::new(TransportConfig::default())
            .unwrap_or_else(|error| fail(&error.to_string()));
        let addr = transport
            .listen("127.0.0.1:0".parse().expect("address"))
            .unwrap_or_else(|error| fail(&error.to_string()));
        sender.send(addr).expect("report the address");
        let mut events = Vec::new();
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0u64;
        let (mut first, mut last) = (None, Instant::now());
        while !stop.load(Ordering::Relaxed) {
            poll(&mut transport, &mut events, mode);
            for event in events.drain(..) {
                match event {
                    NetEvent::Received { conn, buf } => {
                        bytes += buf.len() as u64;
                        last = Instant::now();
                        first.get_or_insert(last);
                        if echo {
                            let mut copy = spare.pop().unwrap_or_default();
                            copy.clear();
                            copy.extend_from_slice(&buf);
                            // Ping-pong keeps one message per connection in flight, far below
                            // the send-queue limit.
                            transport.send(conn, copy).expect("echo");
                        }
                        transport.recycle(conn, buf);
                    }
                    NetEvent::Sent { buf, .. } => spare.push(buf),
                    _ => {}
                }
            }
        }
        let span = first.map_or(0.0, |first| (last - first).as_secs_f64());
        (bytes, span)
    });
    let addr = receiver.recv().expect("server started");
    (addr, thread)
}

/// Connects `count` connections and waits until all are up.
fn connect_all(
    transport: &mut UringTransport,
    addr: SocketAddr,
    count: usize,
    mode: Mode,
) -> Vec<ConnId> {
    let conns: Vec<ConnId> = (0..count)
        .map(|_| {
            transport
                .connect(addr)
                .unwrap_or_else(|error| fail(&error.to_string()))
        })
        .collect();
    let mut events = Vec::new();
    let mut up = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while up < count {
        if Instant::now() > deadline {
            fail("connections did not come up");
        }
        poll(transport, &mut events, mode);
        for event in events.drain(..) {
            match event {
                NetEvent::Connected { .. } => up += 1,
                NetEvent::Closed { reason, .. } => fail(&format!("connect: {reason}")),
                _ => {}
            }
        }
    }
    conns
}

fn pingpong(duration: Duration, msg_bytes: usize, conns: usize, mode: Mode) {
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, server) = server(true, mode, stop.clone());
    let mut client = UringTransport::new(TransportConfig::default())
        .unwrap_or_else(|error| fail(&error.to_string()));
    let ids = connect_all(&mut client, addr, conns, mode);
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    // Per connection (by table index): bytes of the echo still missing, and when it was sent.
    let slots = client.config().connections_max as usize;
    let mut missing = vec![0usize; slots];
    let mut sent_at = vec![Instant::now(); slots];
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let message = vec![0x5a; msg_bytes];
    for &conn in &ids {
        client.send(conn, message.clone()).expect("send");
        missing[conn.index() as usize] = msg_bytes;
        sent_at[conn.index() as usize] = Instant::now();
    }
    let mut events = Vec::new();
    let mut round_trips = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        poll(&mut client, &mut events, mode);
        for event in events.drain(..) {
            match event {
                NetEvent::Received { conn, buf } => {
                    let index = conn.index() as usize;
                    missing[index] -= buf.len();
                    client.recycle(conn, buf);
                    if missing[index] == 0 {
                        let now = Instant::now();
                        let micros = (now - sent_at[index]).as_micros() as u64;
                        latency.saturating_record(micros.max(1));
                        round_trips += 1;
                        let mut next = spare.pop().unwrap_or_default();
                        next.clear();
                        next.extend_from_slice(&message);
                        client.send(conn, next).expect("send");
                        missing[index] = msg_bytes;
                        sent_at[index] = now;
                    }
                }
                NetEvent::Sent { buf, .. } => spare.push(buf),
                NetEvent::Closed { reason, .. } => fail(&format!("connection closed: {reason}")),
                _ => {}
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    server.join().expect("server");
    println!(
        "{{\"bench\":\"pingpong\",\"transport\":\"uring\",\"mode\":\"{}\",\"conns\":{conns},\
         \"msg_bytes\":{msg_bytes},\"seconds\":{elapsed:.3},\"round_trips\":{round_trips},\
         \"ops_per_sec\":{:.0},\"latency_us_p50\":{},\"latency_us_p99\":{},\
         \"latency_us_p999\":{},\"latency_us_max\":{}}}",
        mode_name(mode),
        round_trips as f64 / elapsed,
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        latency.max(),
    );
}

fn stream(duration: Duration, mode: Mode) {
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, server) = server(false, mode, stop.clone());
    let mut client = UringTransport::new(TransportConfig::default())
        .unwrap_or_else(|error| fail(&error.to_string()));
    let conn = connect_all(&mut client, addr, 1, mode)[0];
    let mut spare: Vec<Vec<u8>> = (0..STREAM_CHUNKS_QUEUED)
        .map(|seed| vec![seed as u8; STREAM_CHUNK_BYTES])
        .collect();
    let mut events = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        while let Some(buf) = spare.pop() {
            match client.send(conn, buf) {
                Ok(()) => {}
                Err(NetError::SendQueueFull { buf, .. }) => {
                    spare.push(buf.0);
                    break;
                }
                Err(error) => fail(&error.to_string()),
            }
        }
        poll(&mut client, &mut events, mode);
        for event in events.drain(..) {
            match event {
                NetEvent::Sent { buf, .. } => spare.push(buf),
                NetEvent::Closed { reason, .. } => fail(&format!("connection closed: {reason}")),
                _ => {}
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (bytes, span) = server.join().expect("server");
    let megabytes_per_sec = if span > 0.0 {
        bytes as f64 / span / 1e6
    } else {
        0.0
    };
    println!(
        "{{\"bench\":\"stream\",\"transport\":\"uring\",\"mode\":\"{}\",\"conns\":1,\
         \"chunk_bytes\":{STREAM_CHUNK_BYTES},\"seconds\":{span:.3},\"bytes\":{bytes},\
         \"mb_per_sec\":{megabytes_per_sec:.1},\"gbit_per_sec\":{:.2}}}",
        mode_name(mode),
        megabytes_per_sec * 8.0 / 1e3,
    );
}

/// Ping-pong over blocking std sockets, one connection: the kernel's round trip without
/// io_uring.
fn pingpong_std(duration: Duration, msg_bytes: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut buf = vec![0; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(len) => {
                    if stream.write_all(&buf[..len]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    let message = vec![0x5a; msg_bytes];
    let mut back = vec![0; msg_bytes];
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    let mut round_trips = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        let sent_at = Instant::now();
        client.write_all(&message).expect("write");
        client.read_exact(&mut back).expect("read");
        latency.saturating_record((sent_at.elapsed().as_micros() as u64).max(1));
        round_trips += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(client);
    server.join().expect("server");
    println!(
        "{{\"bench\":\"pingpong\",\"transport\":\"std\",\"mode\":\"blocking\",\"conns\":1,\
         \"msg_bytes\":{msg_bytes},\"seconds\":{elapsed:.3},\"round_trips\":{round_trips},\
         \"ops_per_sec\":{:.0},\"latency_us_p50\":{},\"latency_us_p99\":{},\
         \"latency_us_p999\":{},\"latency_us_max\":{}}}",
        round_trips as f64 / elapsed,
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        latency.max(),
    );
}

/// Streaming over blocking std sockets, one connection, measured at the receiver.
fn stream_std(duration: Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = vec![0; 256 * 1024];
        let mut bytes = 0u64;
        let (mut first, mut last) = (None, Instant::now());
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(len) => {
                    bytes += len as u64;
                    last = Instant::now();
                    first.get_or_insert(last);
                }
            }
        }
        (
            bytes,
            first.map_or(0.0, |first| (last - first).as_secs_f64()),
        )
    });
    let mut client = TcpStream::connect(addr).expect("connect");
    let chunk = vec![7u8; STREAM_CHUNK_BYTES];
    let started = Instant::now();
    while started.elapsed() < duration {
        client.write_all(&chunk).expect("write");
    }
    drop(client);
    let (bytes, span) = server.join().expect("server");
    let megabytes_per_sec = if span > 0.0 {
        bytes as f64 / span / 1e6
    } else {
        0.0
    };
    println!(
        "{{\"bench\":\"stream\",\"transport\":\"std\",\"mode\":\"blocking\",\"conns\":1,\
         \"chunk_bytes\":{STREAM_CHUNK_BYTES},\"seconds\":{span:.3},\"bytes\":{bytes},\
         \"mb_per_sec\":{megabytes_per_sec:.1},\"gbit_per_sec\":{:.2}}}",
        megabytes_per_sec * 8.0 / 1e3,
    );
}
