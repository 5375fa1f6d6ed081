//! One real node (`ds-appliance` on file devices, 2 data cores) through the protocol: objects
//! of many sizes, offsets, holes, errors, restarts, SIGKILL under load, and a 1 GiB object.

mod node;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ds_proto::{ClientError, ObjectId, Scheme, Status, LENGTH_TO_END};
use node::{pattern, workdir, write_config, NodeProcess};

const MIB: usize = 1 << 20;

fn get_all(client: &mut ds_proto::Client, id: ObjectId) -> Vec<u8> {
    let mut out = Vec::new();
    client
        .get(id, 0, LENGTH_TO_END, &mut out, &mut |_| {})
        .expect("get");
    out
}

fn status_of(error: ClientError) -> Status {
    match error {
        ClientError::Server { status, .. } => status,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn objects_of_every_size_read_back_bit_exact_before_and_after_restart() {
    let dir = workdir("node_sizes");
    let config = write_config(&dir, 2, "2G", "");
    let node = NodeProcess::start(&config);
    let mut client = node.client();
    let sizes = [0, 1, 4095, 4096, MIB - 1, MIB, MIB + 1, 5 * MIB + 3];
    let mut objects = Vec::new();
    for (seed, &size) in sizes.iter().enumerate() {
        let data = pattern(seed as u64, size);
        let id = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
        client.put(id, 0, &data).unwrap();
        assert_eq!(get_all(&mut client, id), data, "size {size}");
        let stat = client.stat(id).unwrap();
        assert_eq!(stat.size, size as u64);
        assert_eq!(stat.parts.len(), size.div_ceil(MIB), "one part per stripe");
        objects.push((id, data));
    }
    // Ranges inside and across stripes.
    let (id, data) = &objects[7];
    for (offset, len) in [
        (0, 1),
        (MIB - 3, 7),
        (2 * MIB + 5, 3 * MIB - 2),
        (5 * MIB + 2, 1),
    ] {
        let mut out = Vec::new();
        client
            .get(*id, offset as u64, len as u64, &mut out, &mut |_| {})
            .unwrap();
        assert_eq!(out, data[offset..offset + len], "range {offset}+{len}");
    }
    drop(client);
    node.stop();
    let node = NodeProcess::start(&config);
    let mut client = node.client();
    for (id, data) in &objects {
        assert_eq!(&get_all(&mut client, *id), data);
    }
}

#[test]
fn writes_at_offsets_grow_objects_and_holes_read_as_zeros() {
    let dir = workdir("node_offsets");
    let node = NodeProcess::start(&write_config(&dir, 2, "1G", ""));
    let mut client = node.client();
    let id = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
    let tail = pattern(1, 1000);
    client.put(id, 3 * MIB as u64 + 17, &tail).unwrap();
    let mut expect = vec![0u8; 3 * MIB + 17];
    expect.extend_from_slice(&tail);
    assert_eq!(get_all(&mut client, id), expect);
    // A small write in the middle of a stripe: read-modify-write keeps its neighbours.
    let patch = pattern(2, 10);
    client.put(id, 3 * MIB as u64 + 20, &patch).unwrap();
    expect[3 * MIB + 20..3 * MIB + 30].copy_from_slice(&patch);
    assert_eq!(get_all(&mut client, id), expect);
    // A write across a stripe boundary.
    let across = pattern(3, 300);
    client.put(id, MIB as u64 - 150, &across).unwrap();
    expect[MIB - 150..MIB + 150].copy_from_slice(&across);
    assert_eq!(get_all(&mut client, id), expect);
    // One stripe's worth (one frame) across a boundary: each stripe is assembled with old
    // bytes, as long as the payload (a shard that must not take the frame's checksum).
    let stripe = pattern(4, MIB);
    client.put(id, MIB as u64 / 2, &stripe).unwrap();
    expect[MIB / 2..MIB / 2 + MIB].copy_from_slice(&stripe);
    assert_eq!(get_all(&mut client, id), expect);
    assert_eq!(client.stat(id).unwrap().size, expect.len() as u64);
}

#[test]
fn errors_are_clear_and_deletes_stick_across_restarts() {
    let dir = workdir("node_errors");
    let config = write_config(&dir, 2, "1G", "");
    let node = NodeProcess::start(&config);
    let mut client = node.client();
    let unknown = ObjectId(0x1234);
    assert_eq!(
        status_of(client.put(unknown, 0, b"x").unwrap_err()),
        Status::NotFound
    );
    assert_eq!(
        status_of(client.delete(unknown).unwrap_err()),
        Status::NotFound
    );
    assert_eq!(
        status_of(client.stat(unknown).unwrap_err()),
        Status::NotFound
    );
    let err = client.create(Some(Scheme::new(4, 2).unwrap())).unwrap_err();
    assert_eq!(status_of(err), Status::Unavailable);

    let id = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
    client.put(id, 0, &pattern(9, 100)).unwrap();
    let err = client
        .get(id, 90, 11, &mut Vec::new(), &mut |_| {})
        .unwrap_err();
    match err {
        ClientError::Server { status, message } => {
            assert_eq!(status, Status::OutOfRange);
            assert!(message.contains("100 bytes"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let kept = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
    client.put(kept, 0, &pattern(10, 2 * MIB)).unwrap();
    client.delete(id).unwrap();
    assert_eq!(status_of(client.stat(id).unwrap_err()), Status::NotFound);
    drop(client);
    node.stop();
    let node = NodeProcess::start(&config);
    let mut client = node.client();
    assert_eq!(status_of(client.stat(id).unwrap_err()), Status::NotFound);
    assert_eq!(get_all(&mut client, kept), pattern(10, 2 * MIB));
}

#[test]
fn sigkill_under_put_load_loses_no_acknowledged_object() {
    let dir = workdir("node_sigkill");
    let config = write_config(&dir, 2, "2G", "");
    let node = NodeProcess::start(&config);
    let acked: Arc<Mutex<Vec<(ObjectId, u64, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for worker in 0..4u64 {
        let (acked, stop, addr) = (acked.clone(), stop.clone(), node.addr);
        threads.push(std::thread::spawn(move || {
            let Ok(mut client) = ds_proto::Client::connect(addr, std::time::Duration::from_secs(5))
            else {
                return;
            };
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let seed = worker * 1_000_000 + n;
                let size = [100, 4096, 70_000, MIB + 5][n as usize % 4];
                let Ok(id) = client.create(Some(Scheme::new(1, 0).unwrap())) else {
                    return;
                };
                if client.put(id, 0, &pattern(seed, size)).is_err() {
                    return;
                }
                acked.lock().unwrap().push((id, seed, size));
            }
        }));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    node.kill();
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "only {} puts before the kill",
        acked.len()
    );
    let node = NodeProcess::start(&config);
    let mut client = node.client();
    for (id, seed, size) in &acked {
        assert_eq!(
            get_all(&mut client, *id),
            pattern(*seed, *size),
            "object {id}"
        );
    }
}

/// Bytes of the 1 GiB object, generated as they are read (no 1 GiB buffer in the test).
struct Generated {
    at: u64,
    len: u64,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len - self.at).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let x = self.at + i as u64;
            *b = (x ^ (x >> 11) ^ (x >> 23)) as u8;
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// Checks what it is given against `Generated`.
struct Check {
    at: u64,
}

impl Write for Check {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for (i, &b) in buf.iter().enumerate() {
            let x = self.at + i as u64;
            assert_eq!(b, (x ^ (x >> 11) ^ (x >> 23)) as u8, "byte {x}");
        }
        self.at += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_one_gib_object_streams_in_and_out() {
    const GIB: u64 = 1 << 30;
    let dir = workdir("node_gib");
    let node = NodeProcess::start(&write_config(&dir, 2, "3G", ""));
    let mut client = node.client();
    let id = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
    let written = client
        .put_from(id, 0, Generated { at: 0, len: GIB }, &mut |_| {})
        .unwrap();
    assert_eq!(written, GIB);
    assert_eq!(client.stat(id).unwrap().size, GIB);
    let mut check = Check { at: 0 };
    let read = client
        .get(id, 0, LENGTH_TO_END, &mut check, &mut |_| {})
        .unwrap();
    assert_eq!((read, check.at), (GIB, GIB));
}

#[test]
fn every_poll_mode_serves() {
    for mode in ["busy", "sleep", "adaptive"] {
        let dir = workdir(&format!("node_poll_{mode}"));
        let extra = format!("poll_mode = {mode:?}");
        let config = write_config(&dir, 2, "1G", "").replace_with_mode(&extra);
        let node = NodeProcess::start(&config);
        let mut client = node.client();
        for i in 0..20 {
            let id = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
            let data = pattern(i, 3000 * i as usize);
            client.put(id, 0, &data).unwrap();
            assert_eq!(get_all(&mut client, id), data, "{mode}");
        }
        node.stop();
    }
}

/// Swaps the poll mode line of a written config.
trait ReplaceMode {
    fn replace_with_mode(self, line: &str) -> std::path::PathBuf;
}

impl ReplaceMode for std::path::PathBuf {
    fn replace_with_mode(self, line: &str) -> std::path::PathBuf {
        let text = std::fs::read_to_string(&self).unwrap();
        std::fs::write(&self, text.replace("poll_mode = \"adaptive\"", line)).unwrap();
        self
    }
}

#[test]
fn a_64_gib_object_holds_its_last_byte() {
    const SIZE: u64 = 64 << 30;
    let dir = workdir("node_64g");
    let node = NodeProcess::start(&write_config(&dir, 2, "1G", ""));
    let mut client = node.client();
    let id = client.create(Some(Scheme::new(1, 0).unwrap())).unwrap();
    client.put(id, SIZE - 3, b"end").unwrap();
    client.put(id, 0, b"start").unwrap();
    let stat = client.stat(id).unwrap();
    assert_eq!(stat.size, SIZE);
    assert_eq!(stat.parts.len(), 2, "only the written stripes are stored");
    let mut out = Vec::new();
    client
        .get(id, SIZE - 10, 10, &mut out, &mut |_| {})
        .unwrap();
    assert_eq!(out, b"\0\0\0\0\0\0\0end");
    out.clear();
    client
        .get(id, 32 << 30, 4096, &mut out, &mut |_| {})
        .unwrap();
    assert_eq!(out, vec![0; 4096], "the middle is a hole");
    let err = client.put(id, (1 << 40) - 1, b"xx").unwrap_err();
    assert_eq!(status_of(err), Status::TooLarge);
    client.delete(id).unwrap();
}

#[test]
fn sigterm_under_load_exits_cleanly_and_keeps_every_acknowledged_object() {
    let dir = workdir("node_sigterm");
    let config = write_config(&dir, 2, "2G", "");
    let node = NodeProcess::start(&config);
    let acked: Arc<Mutex<Vec<(ObjectId, u64)>>> = Arc::default();
    let mut threads = Vec::new();
    for worker in 0..3u64 {
        let (acked, addr) = (acked.clone(), node.addr);
        threads.push(std::thread::spawn(move || {
            let Ok(mut client) = ds_proto::Client::connect(addr, std::time::Duration::from_secs(5))
            else {
                return;
            };
            for n in 0..u64::MAX {
                let seed = worker << 32 | n;
                let Ok(id) = client.create(Some(Scheme::new(1, 0).unwrap())) else {
                    return;
                };
                if client.put(id, 0, &pattern(seed, 50_000)).is_err() {
                    return;
                }
                acked.lock().unwrap().push((id, seed));
            }
        }));
    }
    std::thread::sleep(std::time::Duration::from_millis(800));
    node.stop(); // asserts exit status 0
    for thread in threads {
        thread.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    let node = NodeProcess::start(&config);
    let mut client = node.client();
    for (id, seed) in &acked {
        assert_eq!(get_all(&mut client, *id), pattern(*seed, 50_000));
    }
}
