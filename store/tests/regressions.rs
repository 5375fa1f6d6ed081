//! Bugs found by reading the code against docs/disk-format.md, each reproduced on the simulated
//! device before it was fixed. The first comment of each test says what went wrong.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{meta, open, sim};
use ds_nvme::sim::SimFaults;
use ds_nvme::Device;
use ds_store::{FormatPolicy, GetError, Outcome, PutError, ShardKey};

fn key(n: u128) -> ShardKey {
    ShardKey::new(n * 0x1234567 + 99, 0, 0)
}

#[test]
fn reformatted_device_does_not_resurrect_old_records() {
    // Bug: format wrote only the superblock and sequence numbers restarted at 1, so records of
    // the previous format in segment 0 matched the new segment 0's sequence and came back.
    let device: Arc<dyn Device> = sim(1, 64 << 20, 4096);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    for n in 0..20 {
        store.put(key(n), meta(1), &[n as u8; 100]).unwrap();
    }
    drop(store);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::Always);
    assert_eq!(store.len(), 0);
    store.put(key(1000), meta(1), &[1u8; 100]).unwrap();
    drop(store);
    let store = open(std::slice::from_ref(&device), FormatPolicy::Never);
    assert_eq!(store.len(), 1);
}

#[test]
fn sequence_numbers_are_never_reused_after_every_segment_is_freed() {
    // Bug: start-up took the next sequence number only from segments in use, ignoring FREE
    // markers; with every segment freed, segment 0 was reused with sequence 1 and its old
    // records (a deleted key among them) were accepted again.
    let device: Arc<dyn Device> = sim(2, 64 << 20, 4096);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    store.put(key(0), meta(1), &[0u8; 100]).unwrap();
    store.put(key(1), meta(1), b"A version 1").unwrap();
    let mut n = 2;
    for _ in 0..12 {
        store.put(key(n), meta(1), &vec![n as u8; 100_000]).unwrap();
        n += 1;
    }
    for m in 0..n {
        store.delete(key(m), 2).unwrap();
    }
    drop(store);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::Never);
    for _ in 0..20 {
        store.request_compaction();
        store.run_until_idle();
    }
    drop(store);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::Never);
    store.put(key(500), meta(1), &[5u8; 100]).unwrap();
    drop(store);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::Never);
    assert_eq!(store.get(key(1)).unwrap_err(), GetError::NotFound);
    assert_eq!(store.get(key(500)).unwrap().1, vec![5u8; 100]);
}

#[test]
fn compaction_never_copies_a_key_deleted_after_the_walk() {
    // Bug: a key deleted between compaction's read of a segment and the copy of its record was
    // copied anyway: an old version with a new lsn, which let the tombstone be dropped and the
    // old version win after a restart.
    for seed in 0..20u64 {
        let device: Arc<dyn Device> = sim(seed, 64 << 20, 4096);
        let doomed = key(0);
        {
            let mut store = open(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
            store.put(doomed, meta(1), &vec![7u8; 100_000]).unwrap();
            for n in 1..=230 {
                store.put(key(n), meta(1), &[1u8; 4000]).unwrap();
            }
            for n in 1..=230 {
                store.put(key(n), meta(2), &[2u8; 4000]).unwrap();
            }
            store.put(key(999), meta(1), &[3u8; 4000]).unwrap();
            store.submit_delete(doomed, 2, 42);
            store.request_compaction();
            let mut events = Vec::new();
            let mut deleted = false;
            for _ in 0..10_000 {
                store.poll(&mut events);
                for event in events.drain(..) {
                    assert_eq!(event.token, 42);
                    assert!(matches!(event.outcome, Outcome::Delete(Ok(true))));
                    deleted = true;
                }
                if deleted && store.stats().compactions >= 2 {
                    break;
                }
                store.wait(Duration::from_millis(1));
            }
            store.run_until_idle();
        }
        let mut store = open(std::slice::from_ref(&device), FormatPolicy::Never);
        assert_eq!(
            store.get(doomed).unwrap_err(),
            GetError::NotFound,
            "seed {seed}"
        );
    }
}

#[test]
fn an_unreadable_header_never_lets_an_older_version_in() {
    // Bug: a put ignored a candidate whose header read back corrupt, so a flipped bit on that
    // read let an older version through and left two index entries, and the next get panicked.
    let device = sim(3, 64 << 20, 4096);
    let devices: Vec<Arc<dyn Device>> = vec![device.clone()];
    let mut store = open(&devices, FormatPolicy::IfEmpty);
    let shard = ShardKey::new(5, 0, 0);
    store.put(shard, meta(5), b"five").unwrap();
    device.set_faults(SimFaults {
        bit_flip_probability: 1.0,
        ..Default::default()
    });
    for _ in 0..50 {
        match store.put(shard, meta(1), b"one") {
            Err(PutError::Unreadable { .. }) | Err(PutError::Stale { .. }) => {}
            other => panic!("an older version got in: {other:?}"),
        }
        // A flip in the padding harms nothing; anywhere else it is caught.
        match store.get(shard) {
            Err(GetError::Corrupt { .. }) => {}
            Ok((header, data)) => assert_eq!(
                (header.meta.version, data.as_slice()),
                (5, b"five".as_slice())
            ),
            other => panic!("{other:?}"),
        }
    }
    device.clear_faults();
    assert_eq!(store.len(), 1);
    let (header, data) = store.get(shard).unwrap();
    assert_eq!(
        (header.meta.version, data.as_slice()),
        (5, b"five".as_slice())
    );
    // A transient flip is absorbed by the re-read.
    device.set_faults(SimFaults {
        bit_flip_probability: 0.2,
        ..Default::default()
    });
    let mut refused = 0;
    for _ in 0..50 {
        match store.put(shard, meta(1), b"one") {
            Err(PutError::Stale { current: 5, .. }) => refused += 1,
            Err(PutError::Unreadable { .. }) => {}
            other => panic!("an older version got in: {other:?}"),
        }
    }
    device.clear_faults();
    assert!(
        refused >= 40,
        "only {refused} of 50 stale puts were refused as stale"
    );
    // Repair may replace what cannot be read.
    device.corrupt(0, 0);
    store.repair(shard, meta(6), b"six").unwrap();
    assert_eq!(store.get(shard).unwrap().1, b"six");
}

#[test]
fn a_damaged_segment_header_quarantines_the_segment() {
    // Bug: a segment whose header failed its checksum was taken for free: its records were not
    // replayed, it was reused, and scrub never said a word.
    let device = sim(4, 64 << 20, 4096);
    let devices: Vec<Arc<dyn Device>> = vec![device.clone()];
    let mut store = open(&devices, FormatPolicy::IfEmpty);
    for n in 0..10 {
        store.put(key(n), meta(1), &[n as u8; 5000]).unwrap();
    }
    drop(store);
    let sb = ds_store::superblock::Superblock::decode(&device.read_durable(0, 4096)).unwrap();
    let first = sb.segment_offset(0, 0);
    device.corrupt(first + 20, 1);
    let mut store = open(&devices, FormatPolicy::Never);
    let report = store.scrub().unwrap();
    assert!(
        report
            .bad
            .iter()
            .any(|bad| bad.offset == first && bad.reason.contains("quarantined")),
        "{report:?}"
    );
    // New writes go elsewhere; the quarantined segment is not overwritten.
    for n in 100..200 {
        store.put(key(n), meta(1), &[1u8; 5000]).unwrap();
    }
    let report = store.scrub().unwrap();
    assert!(report.bad.iter().any(|bad| bad.offset == first));
}

#[test]
fn a_damaged_marker_is_served_as_corrupt_reported_live_and_repairable() {
    // Bug: compaction dropped the entry of a live record whose data was corrupt, so an older
    // version came back after a restart; then scrub reported the marker that replaced it as not
    // live. A DAMAGED marker now keeps the version, says corrupt, and a repair rewrites it.
    let device = sim(6, 64 << 20, 4096);
    let devices: Vec<Arc<dyn Device>> = vec![device.clone()];
    let mut store = open(&devices, FormatPolicy::IfEmpty);
    let shard = ShardKey::new(0xdada, 1, 2);
    store.put(shard, meta(1), &[0x11; 20_000]).unwrap();
    store.put(shard, meta(2), &[0x22; 20_000]).unwrap();
    for n in 0..40 {
        store.put(key(n), meta(1), &[n as u8; 50_000]).unwrap();
    }
    let image = device.read_durable(0, 64 << 20);
    let at = image.windows(64).position(|w| w == [0x22u8; 64]).unwrap();
    device.corrupt(at as u64 + 5000, 1);
    store.request_compaction();
    store.run_until_idle();
    assert!(store.stats().compaction_corrupt >= 1);
    for _ in 0..2 {
        match store.get(shard) {
            Err(GetError::Corrupt {
                reason: ds_store::CorruptReason::Marked,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let report = store.scrub().unwrap();
        let bad = report
            .bad
            .iter()
            .find(|b| b.key == Some(shard))
            .expect("reported");
        assert!(bad.live && bad.reason.contains("marked damaged"), "{bad:?}");
        assert!(matches!(
            store.put(shard, meta(1), b"older"),
            Err(PutError::Stale { .. })
        ));
        drop(store);
        store = open(&devices, FormatPolicy::Never);
    }
    store.repair(shard, meta(2), &[0x33; 20_000]).unwrap();
    assert_eq!(store.get(shard).unwrap().1, vec![0x33; 20_000]);
}

#[test]
fn a_poll_hands_every_queued_request_to_the_kernel() {
    // Bug: a poll could end having queued a batch write (or its flush) without entering the
    // kernel; a core that then blocked on the store's wake descriptors slept until its timeout
    // (100 ms per metadata write on a node in poll mode "sleep").
    use ds_nvme::uring::{OpenOptions, UringDevice};
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let options = OpenOptions {
        create_bytes: Some(64 << 20),
        ..OpenOptions::default()
    };
    let device: Arc<dyn Device> =
        Arc::new(UringDevice::open(&dir.path().join("dev.img"), &options).unwrap());
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    let fds = store.wake_fds();
    assert!(!fds.is_empty(), "a uring device has a wake descriptor");
    // The first put also makes the segment header durable; the second is the plain case.
    store.put(key(1), meta(1), &[7u8; 100]).unwrap();
    store.submit_put(key(2), meta(1), &[7u8; 100], 42);
    let mut events = Vec::new();
    // Only poll when a descriptor says there is something to reap, as a sleeping core does.
    while !events.iter().any(|e: &ds_store::Event| e.token == 42) {
        store.poll(&mut events);
        if events.iter().any(|e| e.token == 42) {
            break;
        }
        let mut polls: Vec<libc::pollfd> = fds
            .iter()
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `polls` is a live array of `polls.len()` pollfd structs.
        let ready = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, 10_000) };
        assert!(
            ready > 0,
            "the store's queue holds a request the kernel never got (poll returned {ready})"
        );
    }
    let event = events.iter().find(|e| e.token == 42).unwrap();
    assert!(
        matches!(event.outcome, Outcome::Put(Ok(()))),
        "{:?}",
        event.outcome
    );
}
