//! The shard store on the simulated device: round trips, versions, deletes, restart,
//! checkpoints, compaction, a full device, corruption, and a pool of devices.

mod common;

use std::sync::Arc;

use common::{key, open, sim, value};
use ds_nvme::Device;
use ds_store::{FormatPolicy, GetError, Outcome, PutError, ShardMeta};

fn meta(version: u64) -> ShardMeta {
    ShardMeta {
        version,
        scheme_k: 4,
        scheme_m: 2,
        object_bytes: 12345,
    }
}

#[test]
fn round_trip_overwrite_stale_delete() {
    let device: Arc<dyn Device> = sim(1, 64 << 20, 4096);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    for n in 0..200 {
        let data = value(key(n), 1, 9000);
        store.put(key(n), meta(1), &data).unwrap();
    }
    for n in 0..200 {
        let (header, data) = store.get(key(n)).unwrap();
        assert_eq!(data, value(key(n), 1, 9000));
        assert_eq!(header.meta, meta(1));
        assert_eq!(header.key, key(n));
    }
    store.put(key(7), meta(5), b"newer").unwrap();
    assert_eq!(store.get(key(7)).unwrap().1, b"newer");
    let stale = store.put(key(7), meta(5), b"same version").unwrap_err();
    assert_eq!(
        stale,
        PutError::Stale {
            key: key(7),
            current: 5,
            offered: 5
        }
    );
    let stale = store.put(key(7), meta(4), b"older").unwrap_err();
    assert!(matches!(
        stale,
        PutError::Stale {
            current: 5,
            offered: 4,
            ..
        }
    ));
    assert!(store.delete(key(7), 6).unwrap());
    assert_eq!(store.get(key(7)).unwrap_err(), GetError::NotFound);
    assert_eq!(store.get(key(1000)).unwrap_err(), GetError::NotFound);
    // A put older than the delete stays deleted; a newer one brings the shard back.
    assert!(matches!(
        store.put(key(7), meta(6), b"x"),
        Err(PutError::Stale { .. })
    ));
    store.put(key(7), meta(7), b"back").unwrap();
    assert_eq!(store.get(key(7)).unwrap().1, b"back");
    assert_eq!(store.len(), 200);
}

#[test]
fn restart_with_and_without_checkpoint_keeps_everything() {
    let device: Arc<dyn Device> = sim(2, 64 << 20, 512);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    for n in 0..300 {
        store.put(key(n), meta(1), &value(key(n), 1, 5000)).unwrap();
    }
    drop(store);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::Never);
    for n in 0..300 {
        assert_eq!(
            store.get(key(n)).unwrap().1,
            value(key(n), 1, 5000),
            "key {n}"
        );
    }
    store.checkpoint().unwrap();
    for n in 0..100 {
        store.put(key(n), meta(2), &value(key(n), 2, 5000)).unwrap();
    }
    for n in 100..150 {
        store.delete(key(n), 2).unwrap();
    }
    drop(store);
    let device_ref = device.clone();
    let mounted = vec![common::mounted(device_ref, FormatPolicy::Never, 1)];
    let (mut store, report) = ds_store::CoreStore::open(0, common::NODE, mounted).unwrap();
    assert_eq!(report.checkpoints_loaded, 1);
    assert_eq!(report.records_replayed, 150, "{report:?}");
    for n in 0..100 {
        assert_eq!(store.get(key(n)).unwrap().1, value(key(n), 2, 5000));
    }
    for n in 100..150 {
        assert_eq!(store.get(key(n)).unwrap_err(), GetError::NotFound);
    }
    for n in 150..300 {
        assert_eq!(store.get(key(n)).unwrap().1, value(key(n), 1, 5000));
    }
}

#[test]
fn compaction_reclaims_overwritten_space() {
    // 24 MiB: about 20 segments of 1 MiB; writing 5x that forces compaction.
    let device: Arc<dyn Device> = sim(3, 24 << 20, 4096);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    for round in 1..=40u64 {
        for n in 0..40 {
            store
                .put(key(n), meta(round), &value(key(n), round, 60_000))
                .unwrap();
        }
        store.run_until_idle();
    }
    let stats = store.stats().clone();
    assert!(stats.compactions > 0, "{stats:?}");
    assert!(stats.write_amplification() >= 1.0);
    for n in 0..40 {
        assert_eq!(store.get(key(n)).unwrap().1, value(key(n), 40, 60_000));
    }
    drop(store);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::Never);
    for n in 0..40 {
        assert_eq!(store.get(key(n)).unwrap().1, value(key(n), 40, 60_000));
    }
}

/// A store on `device` with segments of `segment_bytes`.
fn open_with_segments(device: &Arc<dyn Device>, segment_bytes: u64) -> ds_store::CoreStore {
    let options = ds_store::FormatOptions {
        segment_bytes,
        ..common::options(1)
    };
    let superblock =
        ds_store::mount(device.as_ref(), FormatPolicy::IfEmpty, &options).expect("mount");
    let mounted = ds_store::MountedDevice {
        device: device.clone(),
        superblock,
    };
    ds_store::CoreStore::open(0, common::NODE, vec![mounted])
        .expect("open")
        .0
}

/// A store on a 32 MiB sim where 8 keys of 200 kB were written 10 times: the old segments hold
/// only overwritten records (version `round`, bytes `round + n`).
fn overwritten(
    seed: u64,
) -> (
    Arc<ds_nvme::sim::SimDevice>,
    Arc<dyn Device>,
    ds_store::CoreStore,
) {
    let sim_dev = sim(seed, 32 << 20, 4096);
    let device: Arc<dyn Device> = sim_dev.clone();
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    for round in 1..=10u64 {
        for n in 0..8 {
            store
                .put(key(n), meta(round), &vec![(round + n) as u8; 200_000])
                .unwrap();
        }
    }
    (sim_dev, device, store)
}

#[test]
fn segments_nothing_live_points_into_are_freed_together_without_reading_them() {
    let (sim_dev, device, mut store) = overwritten(21);
    store.run_until_idle();
    let before = sim_dev.stats();
    let reads = before.reads;
    store.request_compaction();
    store.run_until_idle();
    let stats = store.stats().clone();
    assert!(stats.compactions_unread >= 5, "{stats:?}");
    // Freed together: their FREE markers share flushes.
    let flushes = sim_dev.stats().flushes - before.flushes;
    assert!(
        flushes < stats.compactions_unread,
        "{flushes} flushes for {} unread compactions",
        stats.compactions_unread
    );
    // The live records share segments with dead ones, and those are read; the others are not.
    let read_compactions = stats.compactions - stats.compactions_unread;
    assert!(
        sim_dev.stats().reads - reads <= read_compactions,
        "{} reads for {read_compactions} read compactions",
        sim_dev.stats().reads - reads
    );
    for n in 0..8 {
        assert_eq!(store.get(key(n)).unwrap().1, vec![(10 + n) as u8; 200_000]);
    }
    drop(store);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::Never);
    for n in 0..8 {
        assert_eq!(store.get(key(n)).unwrap().1, vec![(10 + n) as u8; 200_000]);
    }
}

#[test]
fn failed_free_markers_leave_every_segment_of_the_group_in_place_until_asked_again() {
    let (sim_dev, device, mut store) = overwritten(23);
    // Small last versions, together in the head segment: every sealed segment is then dead,
    // so compaction has nothing to copy (a copy could open a segment, whose header write the
    // faults below would fail).
    for n in 0..8 {
        store.put(key(n), meta(11), &[n as u8; 100]).unwrap();
    }
    store.run_until_idle();
    let free = |store: &ds_store::CoreStore| store.device_usage()[0].3;
    let free_before = free(&store);
    // Every FREE marker write fails (several in flight at once): nothing may be freed. The
    // segments (1 MiB each) start after the first MiB; their headers are their first block.
    for segment in 1..32u64 {
        sim_dev.fail_writes(segment << 20..(segment << 20) + 4096);
    }
    store.request_compaction();
    store.run_until_idle();
    assert_eq!(store.stats().compactions, 0, "{:?}", store.stats());
    assert_eq!(free(&store), free_before);
    // The failed segments wait for the next request, which frees them.
    sim_dev.clear_faults();
    store.request_compaction();
    store.run_until_idle();
    assert!(store.stats().compactions_unread >= 5, "{:?}", store.stats());
    assert!(free(&store) > free_before);
    for n in 0..8 {
        assert_eq!(store.get(key(n)).unwrap().1, vec![n as u8; 100]);
    }
    drop(store);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::Never);
    for n in 0..8 {
        assert_eq!(store.get(key(n)).unwrap().1, vec![n as u8; 100]);
    }
}

#[test]
fn compaction_reads_a_segment_in_chunks_and_keeps_what_is_live() {
    // Segments of 4 MiB: compaction reads each in 1 MiB chunks, never the whole at once.
    let sim_dev = sim(22, 64 << 20, 4096);
    let device: Arc<dyn Device> = sim_dev.clone();
    let mut store = open_with_segments(&device, 4 << 20);
    for n in 0..60 {
        store
            .put(key(n), meta(1), &value(key(n), 1, 150_000))
            .unwrap();
    }
    // Every other key rewritten: each old segment keeps half its records live.
    for n in (0..60).step_by(2) {
        store
            .put(key(n), meta(2), &value(key(n), 2, 150_000))
            .unwrap();
    }
    store.run_until_idle();
    let before = sim_dev.stats();
    store.request_compaction();
    store.run_until_idle();
    let after = sim_dev.stats();
    let stats = store.stats().clone();
    assert!(stats.compaction_bytes_copied > 0, "{stats:?}");
    let reads = after.reads - before.reads;
    let bytes = after.bytes_read - before.bytes_read;
    assert!(
        bytes >= 4 << 20 && reads >= bytes / (1 << 20),
        "{reads} reads of {bytes} bytes: larger than 1 MiB chunks"
    );
    let version = |n: u64| if n.is_multiple_of(2) { 2 } else { 1 };
    for n in 0..60 {
        assert_eq!(
            store.get(key(n)).unwrap().1,
            value(key(n), version(n), 150_000)
        );
    }
    drop(store);
    let mut store = open_with_segments(&device, 4 << 20);
    for n in 0..60 {
        assert_eq!(
            store.get(key(n)).unwrap().1,
            value(key(n), version(n), 150_000)
        );
    }
}

#[test]
fn full_device_says_no_space_and_stays_usable() {
    let device: Arc<dyn Device> = sim(4, 24 << 20, 4096);
    let mut store = open(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    let mut stored = 0;
    let error = loop {
        match store.put(key(stored), meta(1), &vec![stored as u8; 200_000]) {
            Ok(()) => stored += 1,
            Err(error) => break error,
        }
    };
    assert_eq!(error, PutError::NoSpace);
    assert!(stored > 50);
    for n in 0..stored {
        assert_eq!(store.get(key(n)).unwrap().1, vec![n as u8; 200_000]);
    }
    for n in 0..stored / 2 {
        assert!(store.delete(key(n), 2).unwrap());
    }
    store.request_compaction();
    store.run_until_idle();
    assert!(store.stats().compactions > 0);
    for n in 0..10 {
        store
            .put(key(10_000 + n), meta(1), &vec![1; 200_000])
            .unwrap();
    }
    for n in stored / 2..stored {
        assert_eq!(store.get(key(n)).unwrap().1, vec![n as u8; 200_000]);
    }
}

#[test]
fn a_flipped_bit_is_detected_on_read_and_by_scrub() {
    let device = sim(5, 64 << 20, 4096);
    let devices: Vec<Arc<dyn Device>> = vec![device.clone()];
    let mut store = open(&devices, FormatPolicy::IfEmpty);
    for n in 0..20 {
        store.put(key(n), meta(1), &vec![n as u8; 10_000]).unwrap();
    }
    assert!(store.scrub().unwrap().bad.is_empty());
    // Find key 3's record on the device and flip a byte of its data.
    let image = device.read_durable(0, 64 << 20);
    let needle = vec![3u8; 64];
    let at = image
        .windows(64)
        .position(|w| w == needle.as_slice())
        .unwrap();
    device.corrupt(at as u64 + 100, 1);
    match store.get(key(3)) {
        Err(GetError::Corrupt { .. }) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(store.get(key(4)).unwrap().1, vec![4u8; 10_000]);
    let report = store.scrub().unwrap();
    assert_eq!(report.bad.len(), 1, "{report:?}");
    assert_eq!(report.bad[0].key, Some(key(3)));
    assert!(report.bad[0].live);
    assert_eq!(report.records, 20);
}

#[test]
fn pool_spreads_by_free_space_and_survives_device_removal() {
    let first: Arc<dyn Device> = sim(6, 32 << 20, 4096);
    let second: Arc<dyn Device> = sim(7, 32 << 20, 4096);
    let mut store = open(&[first.clone(), second.clone()], FormatPolicy::IfEmpty);
    for n in 0..100 {
        store
            .put(key(n), meta(1), &value(key(n), 1, 50_000))
            .unwrap();
    }
    let free: Vec<u64> = store.devices().iter().map(|d| d.2).collect();
    let spread = free[0].abs_diff(free[1]);
    assert!(
        spread <= 2 << 20,
        "free space should stay balanced: {free:?}"
    );
    // A third device joins at run time; then the first leaves.
    let third: Arc<dyn Device> = sim(8, 32 << 20, 4096);
    let slot = store
        .add_device(common::mounted(third.clone(), FormatPolicy::IfEmpty, 1))
        .unwrap();
    assert_eq!(slot, 2);
    store.remove_device(0).unwrap();
    let mut rounds = 0;
    while !store.try_detach(0) {
        store.run_until_idle();
        rounds += 1;
        assert!(rounds < 1000, "device never drained");
    }
    assert_eq!(store.devices().len(), 2);
    for n in 0..100 {
        assert_eq!(
            store.get(key(n)).unwrap().1,
            value(key(n), 1, 50_000),
            "key {n}"
        );
    }
    drop(store);
    // The removed device is not needed to restart.
    let mut store = open(&[second, third], FormatPolicy::Never);
    for n in 0..100 {
        assert_eq!(
            store.get(key(n)).unwrap().1,
            value(key(n), 1, 50_000),
            "key {n}"
        );
    }
}

#[test]
fn owned_puts_replace_and_lose_to_newer_versions_like_borrowed_ones() {
    // A put of handed-over bytes that must first read the record it replaces keeps them
    // instead of a copy: the bytes stored must still be exactly the caller's.
    let device: Arc<dyn Device> = common::sim(7, 64 << 20, 4096);
    let mut store = common::open(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    let key = common::key(1);
    store.put(key, common::meta(1), &[1u8; 3000]).unwrap();
    let v2: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    store.submit_put_owned(key, common::meta(2), Box::new(v2.clone()), None, 9);
    assert!(matches!(store.wait_for(9), Outcome::Put(Ok(()))));
    assert_eq!(store.get(key).unwrap().1, v2);
    store.submit_put_owned(key, common::meta(1), Box::new(vec![3u8; 10]), None, 10);
    assert!(
        matches!(
            store.wait_for(10),
            Outcome::Put(Err(PutError::Stale { .. }))
        ),
        "an older version must not replace a newer one"
    );
    assert_eq!(store.get(key).unwrap().1, v2);
    // Two owned puts of one key in a row: the second waits for the first, holding its bytes.
    store.submit_put_owned(
        key,
        common::meta(3),
        Box::new(vec![4u8; 100]),
        Some(crc32c::crc32c(&[4u8; 100])),
        11,
    );
    store.submit_put_owned(key, common::meta(4), Box::new(vec![5u8; 200]), None, 12);
    let mut events = Vec::new();
    while events.len() < 2 {
        store.poll(&mut events);
        store.wait(std::time::Duration::from_millis(10));
    }
    for event in &events {
        assert!(matches!(event.outcome, Outcome::Put(Ok(()))), "{event:?}");
    }
    assert_eq!(store.get(key).unwrap().1, vec![5u8; 200]);
}
