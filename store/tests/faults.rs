//! Faults in the middle of compaction, device removal and device addition, staged exactly with a
//! device wrapper that holds chosen requests back. Each test was written against a bug a review
//! found (its first comment says which); all were confirmed failing before the fix.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{key, meta, sim, GatedDevice, NODE};
use ds_nvme::sim::SimDevice;
use ds_nvme::{Device, IoKind, IoRequest};
use ds_store::{
    CoreStore, Durability, Event, FormatPolicy, GetError, MountedDevice, Outcome, ShardKey,
};

// ---------------------------------------------------------------------------------------------

fn mounted(device: Arc<dyn Device>, policy: FormatPolicy) -> MountedDevice {
    common::mounted(device, policy, 1)
}

fn open_on(devices: &[Arc<dyn Device>], policy: FormatPolicy) -> CoreStore {
    let m = devices.iter().map(|d| mounted(d.clone(), policy)).collect();
    let (mut store, _) = CoreStore::open(0, NODE, m).expect("open");
    store.set_durability(Durability::Fua);
    store
}

/// Polls `rounds` times; returns every event.
fn pump(store: &mut CoreStore, rounds: usize) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..rounds {
        store.poll(&mut events);
    }
    events
}

/// Device offset of the first record whose data starts with `needle` (searched in the durable
/// image at block boundaries + 96).
fn find_record(device: &SimDevice, needle: &[u8], block: u64) -> u64 {
    let size = device.info().size_bytes;
    let image = device.read_durable(0, size as usize);
    let mut at = 0u64;
    while at + block <= size {
        let s = (at + 96) as usize;
        if image[s..s + needle.len()] == *needle {
            return at;
        }
        at += block;
    }
    panic!("record not found");
}

/// Runs `f` on another thread; Err(()) if it has not finished within `limit` (then `unstick`
/// is called so the thread can finish, and joined).
fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
    unstick: impl FnOnce(),
) -> Result<T, T> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(limit) {
        Ok(()) => Ok(handle.join().unwrap()),
        Err(_) => {
            unstick();
            Err(handle.join().unwrap())
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn eager_compaction_finishes_with_several_segments_of_live_data() {
    // Bug: pick_compaction wants `compact_eagerly && dead > 0`, with dead measured against
    // segment_bytes; the header block and the tail of every sealed segment are never live, so
    // every sealed segment always qualifies and compaction re-copies its own output forever.
    let device: Arc<dyn Device> = sim(11, 64 << 20, 4096);
    let mut store = open_on(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    for n in 0..40 {
        store.put(key(n), meta(1), &vec![n as u8; 100_000]).unwrap();
    }
    store.request_compaction();
    let mut events = Vec::new();
    let mut polls = 0;
    while polls < 5 || (!store.is_idle() && polls < 2_000) {
        store.poll(&mut events);
        polls += 1;
    }
    let stats = store.stats().clone();
    let checkpoint = store.checkpoint();
    assert!(
        store.is_idle(),
        "eager compaction still running after {polls} polls: {} compactions, {} bytes copied \
         (live data is only 4 MB); checkpoint() -> {checkpoint:?}",
        stats.compactions,
        stats.compaction_bytes_copied
    );
}

#[test]
fn a_compaction_read_error_does_not_spin_poll_forever() {
    // Bug: a failed compaction read clears the compaction, and the next step of the same
    // poll loop picks the same segment again; the sim (like a real device) completes the read
    // with the error at once, so `poll` never returns.
    let sim_dev = sim(12, 64 << 20, 4096);
    let device: Arc<dyn Device> = sim_dev.clone();
    let mut store = open_on(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    for n in 0..20 {
        store.put(key(n), meta(1), &vec![n as u8; 100_000]).unwrap();
    }
    for n in 0..10 {
        store.delete(key(n), 2).unwrap();
    }
    // Every read of the data area fails from now on.
    sim_dev.fail_reads(2 << 20..64 << 20);
    let reads_before = sim_dev.stats().reads;
    store.request_compaction();
    let unstick_dev = sim_dev.clone();
    let result = within(
        Duration::from_secs(3),
        move || {
            let mut events = Vec::new();
            store.poll(&mut events); // starts the read
            store.poll(&mut events); // reaps it
            store
        },
        move || unstick_dev.clear_faults(),
    );
    let _ = reads_before;
    let stuck = result.is_err();
    let store = match result {
        Ok(s) | Err(s) => s,
    };
    assert!(
        !stuck,
        "poll did not return within 3 s while compaction reads failed ({} read errors: the same \
         segment was read again and again)",
        store.stats().read_errors
    );
}

#[test]
fn removing_a_device_whose_writes_fail_does_not_spin_poll_forever() {
    // Bug: a device whose writes fail (fail_member) is removed; compaction copies its
    // segments elsewhere and then writes a FREE marker on the failing device, which fails,
    // abandons the compaction, and the same poll restarts it: poll never returns, and the
    // device can never be detached.
    let bad = sim(13, 32 << 20, 4096);
    let good: Arc<dyn Device> = sim(14, 32 << 20, 4096);
    let bad_dyn: Arc<dyn Device> = bad.clone();
    let mut store = open_on(&[bad_dyn, good], FormatPolicy::IfEmpty);
    for n in 0..30 {
        store.put(key(n), meta(1), &vec![n as u8; 50_000]).unwrap();
    }
    bad.fail_writes(0..32 << 20);
    // Some put lands on the bad device and fails it.
    let mut failed = 0;
    for n in 100..140 {
        if store.put(key(n), meta(1), &vec![1; 50_000]).is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0, "no write went to the failing device");
    store.remove_device(0).unwrap();
    let unstick = bad.clone();
    let result = within(
        Duration::from_secs(3),
        move || {
            let mut events = Vec::new();
            for _ in 0..10 {
                store.poll(&mut events);
            }
            store
        },
        move || unstick.clear_faults(),
    );
    let stuck = result.is_err();
    let store = match result {
        Ok(s) | Err(s) => s,
    };
    assert!(
        !stuck,
        "poll did not return within 3 s while draining a device whose writes fail \
         (sim reads of the bad device meanwhile: {}; compactions {})",
        bad.stats().reads,
        store.stats().compactions
    );
}

#[test]
fn removing_the_only_device_is_refused() {
    // Bug: copies from the only device, being removed, found no device (NoDevice); the
    // compaction was abandoned and restarted within the same poll, forever. Removing the last
    // device that takes writes is now refused up front.
    let device: Arc<dyn Device> = sim(15, 32 << 20, 4096);
    let mut store = open_on(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    for n in 0..30 {
        store.put(key(n), meta(1), &vec![n as u8; 50_000]).unwrap();
    }
    assert!(matches!(
        store.remove_device(0),
        Err(ds_store::OpenError::LastDevice { slot: 0 })
    ));
    for n in 0..30 {
        assert_eq!(store.get(key(n)).unwrap().1, vec![n as u8; 50_000]);
    }
}

fn segment0_offset(device: &SimDevice) -> u64 {
    let sb = ds_store::superblock::Superblock::decode(&device.read_durable(0, 4096)).unwrap();
    sb.segment_offset(0, 0)
}

fn is_write(r: &IoRequest) -> bool {
    matches!(r.kind, IoKind::Write | IoKind::WriteFua)
}

fn outcome_of(events: &[Event], token: u64) -> Option<&Outcome> {
    events.iter().find(|e| e.token == token).map(|e| &e.outcome)
}

#[test]
fn compaction_dropping_a_corrupt_record_does_not_panic_a_put_in_flight() {
    // Bug: handle_compaction_read drops index entries whose data checksum fails without
    // looking at `busy`. A put of the same key that already resolved (its `replaces` is that
    // entry) then finds the entry gone in finish_write and hits
    // `assert!(replaced, "index entry of .. vanished while it was locked")`.
    let inner = sim(16, 64 << 20, 4096);
    let gated = GatedDevice::new(inner.clone());
    let device: Arc<dyn Device> = gated.clone();
    let mut store = open_on(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    let k = ShardKey::new(0xdead_beef, 0, 0);
    store.put(k, meta(1), &vec![0xAB; 20_000]).unwrap();
    for n in 0..12 {
        store.put(key(n), meta(1), &vec![n as u8; 100_000]).unwrap();
    }
    let at = find_record(&inner, &[0xAB; 64], 4096);
    inner.corrupt(at + 96 + 1000, 1); // latent damage in K's data, header intact
    gated.hold(is_write);
    store.submit_put(k, meta(2), &[0xCD; 20_000], 7);
    store.request_compaction();
    let mut events = pump(&mut store, 20);
    assert!(!gated.held().is_empty());
    gated.stop_holding();
    gated.release(|_| true);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        events.extend(pump(&mut store, 20));
    }));
    assert!(
        result.is_ok(),
        "finish_write panicked: compaction removed the index entry of a locked key"
    );
    assert!(matches!(outcome_of(&events, 7), Some(Outcome::Put(Ok(())))));
}

#[test]
fn compaction_dropping_a_corrupt_newest_version_does_not_resurrect_an_older_one() {
    // Bug: compaction drops the index entry of a live record whose data checksum fails
    // and frees its segment. The key's older version, still on disk in another segment, is
    // replayed at the next start and served: stale data (and versions went down).
    let inner = sim(17, 64 << 20, 4096);
    let device: Arc<dyn Device> = inner.clone();
    let mut store = open_on(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    let k = ShardKey::new(0xfeed_f00d, 0, 0);
    // Segment 0: K v1 among fillers that stay live.
    store.put(k, meta(1), &vec![0x11; 20_000]).unwrap();
    for n in 0..12 {
        store.put(key(n), meta(1), &vec![n as u8; 100_000]).unwrap();
    }
    // Segment 1 (and on): K v2 among fillers that are overwritten right away (lots of dead).
    store.put(k, meta(2), &vec![0x22; 20_000]).unwrap();
    for n in 100..112 {
        store.put(key(n), meta(1), &vec![n as u8; 100_000]).unwrap();
    }
    for n in 100..112 {
        store.put(key(n), meta(2), &vec![n as u8; 100_000]).unwrap();
    }
    assert_eq!(store.get(k).unwrap().1, vec![0x22; 20_000]);
    let at = find_record(&inner, &[0x22; 64], 4096);
    inner.corrupt(at + 96 + 1000, 1);
    assert!(matches!(store.get(k), Err(GetError::Corrupt { .. })));
    store.request_compaction();
    let mut events = Vec::new();
    for _ in 0..200 {
        store.poll(&mut events);
        if store.stats().compactions >= 1 {
            break;
        }
    }
    assert_eq!(store.stats().compactions, 1);
    assert_eq!(store.stats().compaction_corrupt, 1, "K v2 was dropped");
    let before = store.get(k);
    drop(store);
    let mut store = open_on(std::slice::from_ref(&device), FormatPolicy::Never);
    let after = store.get(k);
    assert!(
        !matches!(after, Ok((ref h, _)) if h.meta.version == 1),
        "before restart: {before:?}; after restart the older version 1 is served again: {:?}",
        after.as_ref().map(|(h, d)| (h.meta.version, d[0]))
    );
}

#[test]
fn a_put_acknowledged_after_a_tombstone_drop_survives_a_crash() {
    // Bug: compaction removes droppable tombstones from the index when it walks the
    // segment, long before the FREE marker is durable (or forever, if the compaction is
    // abandoned). A put the store accepts in that window because the tombstone is gone (its
    // version is below the tombstone's) is acknowledged, and after a crash the segment is
    // replayed, the tombstone wins by version, and the acknowledged put is gone.
    let inner = sim(18, 64 << 20, 4096);
    let gated = GatedDevice::new(inner.clone());
    let device: Arc<dyn Device> = gated.clone();
    let mut store = open_on(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    let k = ShardKey::new(0x7777, 1, 1);
    store.put(k, meta(1), &vec![0x33; 10_000]).unwrap();
    store.delete(k, 5).unwrap();
    for n in 0..12 {
        store.put(key(n), meta(1), &vec![n as u8; 100_000]).unwrap();
    }
    let seg0 = segment0_offset(&inner);
    // Hold back the FREE marker of segment 0.
    gated.hold(move |r| r.kind == IoKind::Write && r.offset == seg0);
    store.request_compaction();
    let _ = pump(&mut store, 50);
    assert_eq!(gated.held().len(), 1, "FREE marker of segment 0 held");
    assert_eq!(
        store.stats().tombstones_dropped,
        0,
        "dropped only once the segment is free"
    );
    // A late write of an older version is refused while the tombstone is on disk: its index
    // entry goes only once the FREE marker is durable.
    let put = store.put(k, meta(3), &vec![0x44; 10_000]);
    assert!(
        matches!(put, Err(ds_store::PutError::Stale { current: 5, .. })),
        "{put:?}"
    );
    assert_eq!(store.get(k).unwrap_err(), GetError::NotFound);
    // Power loss before the FREE marker reaches the media: still deleted, nothing acknowledged
    // was lost.
    drop(store);
    gated.drop_held();
    inner.crash();
    let plain: Arc<dyn Device> = inner.clone();
    let mut store = open_on(std::slice::from_ref(&plain), FormatPolicy::Never);
    assert_eq!(store.get(k).unwrap_err(), GetError::NotFound);
}

#[test]
fn a_repair_in_flight_survives_compaction_dropping_an_unreadable_entry() {
    // Bug: mark_free -> drop_entries_into removes every index entry still pointing into
    // the segment (records whose header the walk could not decode) without looking at `busy`.
    // A repair of that key resolved earlier (`replaces` = the unreadable entry) then panics in
    // finish_write: "index entry .. vanished while it was locked".
    let inner = sim(19, 64 << 20, 4096);
    let gated = GatedDevice::new(inner.clone());
    let device: Arc<dyn Device> = gated.clone();
    let mut store = open_on(std::slice::from_ref(&device), FormatPolicy::IfEmpty);
    let k = ShardKey::new(0x5151, 0, 0);
    store.put(k, meta(1), &vec![0x55; 10_000]).unwrap();
    for n in 0..5 {
        store.put(key(n), meta(1), &vec![n as u8; 10_000]).unwrap();
    }
    for n in 10..22 {
        store.put(key(n), meta(1), &vec![n as u8; 100_000]).unwrap();
    }
    for n in 10..22 {
        store.put(key(n), meta(2), &vec![n as u8; 100_000]).unwrap();
    }
    let at = find_record(&inner, &[0x55; 64], 4096);
    inner.corrupt(at + 40, 1); // K's header no longer decodes
    gated.hold(is_write);
    store.request_compaction();
    let mut events = pump(&mut store, 20);
    assert!(!gated.held().is_empty(), "copies are held");
    store.submit_repair(k, meta(2), &[0x66; 10_000], 9);
    events.extend(pump(&mut store, 20));
    let repair_at = gated.held().iter().map(|h| h.1).max().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..10 {
            gated.release(move |r| r.offset < repair_at);
            events.extend(pump(&mut store, 10));
        }
        gated.stop_holding();
        gated.release(|_| true);
        events.extend(pump(&mut store, 20));
    }));
    assert!(
        result.is_ok(),
        "finish_write panicked: compaction removed the index entry of a key under repair"
    );
    assert!(matches!(outcome_of(&events, 9), Some(Outcome::Put(Ok(())))));
}

#[test]
fn a_read_error_while_adding_a_device_leaves_no_half_recovered_member() {
    // Bug: add_device inserts the member, then recover() merges its records into the
    // index segment by segment; a read error part-way returns Err but leaves the member in the
    // pool and its merged entries in the index, with live bytes never counted (that happens at
    // the very end of recover). The next overwrite of such a key decrements the uncounted live
    // bytes: `assert!(info.live_bytes >= loc.len(), "live bytes of segment .. underflow")`.
    let x = sim(23, 32 << 20, 4096);
    let xd: Arc<dyn Device> = x.clone();
    {
        let mut store = open_on(std::slice::from_ref(&xd), FormatPolicy::IfEmpty);
        for n in 0..30 {
            store.put(key(n), meta(1), &vec![n as u8; 60_000]).unwrap();
        }
    }
    let seg0 = segment0_offset(&x);
    let seg1 = seg0 + (1 << 20);
    x.fail_reads(seg1 + 4096..seg1 + 8192);
    let y: Arc<dyn Device> = sim(24, 32 << 20, 4096);
    let mut store = open_on(std::slice::from_ref(&y), FormatPolicy::IfEmpty);
    let added = store.add_device(mounted(xd.clone(), FormatPolicy::Never));
    assert!(added.is_err(), "the read error is reported: {added:?}");
    x.clear_faults();
    let devices = store.devices().len();
    let len = store.len();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.put(key(0), meta(2), &[1u8; 100])
    }));
    assert!(
        result.is_ok(),
        "overwriting a key merged by the failed add_device panicked (devices in pool after the \
         failed add: {devices}, index entries: {len})"
    );
}
