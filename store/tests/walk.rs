//! The background walk (`CoreStore::submit_walk`): what a pass meets on a quiet store, with
//! damage on the device, and while puts, deletes, compaction and device removal run; and the
//! repair of a shard whose data is corrupt.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use common::{key, meta, sim, value, GatedDevice, NODE};
use ds_nvme::sim::SimDevice;
use ds_nvme::{Device, IoKind};
use ds_store::{
    CoreStore, CorruptReason, Durability, Event, FormatPolicy, GetError, Outcome, PutError,
    RecordKind, ShardKey, WalkCursor, WalkDamageKind, WalkStep, WalkedRecord,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn open_on(devices: &[Arc<SimDevice>], policy: FormatPolicy) -> CoreStore {
    let mounted = devices
        .iter()
        .map(|d| common::mounted(d.clone() as Arc<dyn Device>, policy, 1))
        .collect();
    let (mut store, _) = CoreStore::open(0, NODE, mounted).expect("open");
    store.set_durability(Durability::Fua);
    store
}

/// One whole pass from the start, in steps of `max_bytes`; also checks the pass ends.
fn pass(store: &mut CoreStore, max_bytes: usize) -> (Vec<WalkedRecord>, Vec<WalkStep>) {
    let mut cursor = WalkCursor::default();
    let mut records = Vec::new();
    let mut steps = Vec::new();
    for _ in 0..100_000 {
        let step = store.walk(cursor, max_bytes).expect("walk step");
        records.extend(step.records.iter().copied());
        cursor = step.next;
        let wrapped = step.wrapped;
        steps.push(step);
        if wrapped {
            assert!(cursor.is_start(), "a finished pass starts over: {cursor:?}");
            return (records, steps);
        }
    }
    panic!("the pass did not end");
}

/// Current state of a key as the test wrote it: (version, kind).
type Model = BTreeMap<ShardKey, (u64, RecordKind)>;

/// Writes N keys, overwrites a third, deletes a seventh (across every device of the store).
fn fill(store: &mut CoreStore, n: u64, max_len: usize) -> Model {
    let mut model = Model::new();
    for i in 0..n {
        let k = key(i);
        store.put(k, meta(1), &value(k, 1, max_len)).unwrap();
        model.insert(k, (1, RecordKind::Shard));
    }
    for i in (0..n).step_by(3) {
        let k = key(i);
        store.put(k, meta(2), &value(k, 2, max_len)).unwrap();
        model.insert(k, (2, RecordKind::Shard));
    }
    for i in (0..n).step_by(7) {
        let k = key(i);
        store.delete(k, 3).unwrap();
        model.insert(k, (3, RecordKind::Tombstone));
    }
    model
}

/// Live records of a pass by key; panics if a key is live twice.
fn live_by_key(records: &[WalkedRecord]) -> BTreeMap<ShardKey, WalkedRecord> {
    let mut live = BTreeMap::new();
    for record in records.iter().filter(|r| r.live) {
        if let Some(before) = live.insert(record.key, *record) {
            panic!(
                "key {} live twice in one pass: {before:?} and {record:?}",
                record.key
            );
        }
    }
    live
}

fn check_pass_on_quiet_store(block: u32) {
    let devices = [sim(101, 24 << 20, block), sim(102, 24 << 20, block)];
    let mut store = open_on(&devices, FormatPolicy::IfEmpty);
    let model = fill(&mut store, 300, 30_000);
    assert_eq!(store.len(), model.len());

    // A clean pass: every key live once, at its current version and kind, every record intact.
    let (records, _) = pass(&mut store, 1 << 20);
    let live = live_by_key(&records);
    assert_eq!(live.len(), model.len());
    for (k, (version, kind)) in &model {
        let record = live
            .get(k)
            .unwrap_or_else(|| panic!("key {k} not met live"));
        assert_eq!(
            (record.meta.version, record.kind),
            (*version, *kind),
            "key {k}"
        );
    }
    assert!(records.iter().all(|r| r.data_ok));
    // Overwritten and deleted versions are met too, not live.
    let dead = records.iter().filter(|r| !r.live).count();
    assert_eq!(
        dead,
        100 + 43,
        "versions 1 of overwritten keys, then of deleted keys"
    );
    let places: HashSet<(u8, u64)> = records.iter().map(|r| (r.slot, r.offset)).collect();
    assert_eq!(places.len(), records.len(), "each record once");
    assert!(
        places.iter().any(|p| p.0 == 0) && places.iter().any(|p| p.0 == 1),
        "both devices walked"
    );

    // Damage: the data of one live shard, the header of another.
    let mut shards = live
        .values()
        .filter(|r| r.kind == RecordKind::Shard && r.data_bytes >= 200);
    let bad_data = *shards.next().unwrap();
    let bad_header = *shards.next().unwrap();
    devices[usize::from(bad_data.slot)].corrupt(bad_data.offset + 96 + 150, 1);
    devices[usize::from(bad_header.slot)].corrupt(bad_header.offset + 40, 1);

    // Small steps (records larger than a step are read whole) and whole segments agree.
    let (small, small_steps) = pass(&mut store, 8 << 10);
    let (large, _) = pass(&mut store, 1 << 20);
    assert_eq!(small, large);
    assert!(small_steps.len() > 100, "{} steps", small_steps.len());
    assert!(small_steps[..small_steps.len() - 1]
        .iter()
        .all(|s| !s.wrapped));
    // A step reads at most its budget, plus the one record it cut, read again whole.
    let max_read = small_steps.iter().map(|s| s.bytes_read).max().unwrap();
    let largest_record = (96 + 30_000u64).next_multiple_of(u64::from(block));
    assert!(max_read <= (8 << 10) + largest_record, "{max_read}");
    assert!(max_read > 8 << 10, "some record was larger than a step");

    let live = live_by_key(&small);
    assert_eq!(
        live.len(),
        model.len() - 1,
        "the damaged header's key is not met"
    );
    assert!(!live.contains_key(&bad_header.key));
    for (k, (version, kind)) in model.iter().filter(|(k, _)| **k != bad_header.key) {
        let record = live[k];
        assert_eq!(
            (record.meta.version, record.kind),
            (*version, *kind),
            "key {k}"
        );
        assert_eq!(record.data_ok, *k != bad_data.key, "key {k}");
    }
    let damaged: Vec<_> = small_steps.iter().flat_map(|s| s.damaged.clone()).collect();
    assert!(
        damaged.iter().any(|d| d.slot == bad_header.slot
            && d.offset == bad_header.offset
            && matches!(d.kind, WalkDamageKind::Header(_))),
        "{damaged:?}"
    );
    assert!(matches!(
        store.get(bad_data.key),
        Err(GetError::Corrupt {
            reason: CorruptReason::DataChecksum,
            ..
        })
    ));

    // The node rebuilds the shard and rewrites it at its version; the next pass finds it whole.
    let version = bad_data.meta.version;
    let data = value(bad_data.key, version, 30_000);
    store.repair(bad_data.key, meta(version), &data).unwrap();
    let (records, _) = pass(&mut store, 64 << 10);
    let live = live_by_key(&records);
    let repaired = live[&bad_data.key];
    assert!(repaired.data_ok && repaired.meta.version == version);
    assert_ne!(
        (repaired.slot, repaired.offset),
        (bad_data.slot, bad_data.offset)
    );
    assert!(records
        .iter()
        .any(|r| r.offset == bad_data.offset && r.slot == bad_data.slot && !r.live && !r.data_ok));
    assert_eq!(store.get(bad_data.key).unwrap().1, data);
}

#[test]
fn a_pass_meets_every_live_record_once_and_flags_damage() {
    check_pass_on_quiet_store(4096);
}

#[test]
fn a_pass_meets_every_live_record_once_with_512_byte_blocks() {
    check_pass_on_quiet_store(512);
}

#[test]
fn an_empty_store_wraps_at_once_without_reading() {
    let devices = [sim(103, 16 << 20, 4096)];
    let mut store = open_on(&devices, FormatPolicy::IfEmpty);
    let reads = devices[0].stats().reads;
    let step = store.walk(WalkCursor::default(), 1 << 20).unwrap();
    assert!(step.wrapped && step.records.is_empty() && step.bytes_read == 0);
    assert_eq!(devices[0].stats().reads, reads);
}

#[test]
fn repair_rewrites_a_shard_whose_data_is_corrupt_at_its_version() {
    let devices = [sim(104, 16 << 20, 4096)];
    let mut store = open_on(&devices, FormatPolicy::IfEmpty);
    let k = ShardKey::new(0xabc, 4, 2);
    let original = vec![0x5a; 50_000];
    store.put(k, meta(5), &original).unwrap();
    let intact = ShardKey::new(0xdef, 0, 0);
    store.put(intact, meta(5), &[1; 1000]).unwrap();
    let (records, _) = pass(&mut store, 1 << 20);
    let at = live_by_key(&records)[&k];
    devices[0].corrupt(at.offset + 96 + 20_000, 1);
    assert!(matches!(
        store.get(k),
        Err(GetError::Corrupt {
            reason: CorruptReason::DataChecksum,
            ..
        })
    ));
    // Only a repair, and only at the record's version or above, replaces it.
    assert!(matches!(
        store.put(k, meta(5), &original),
        Err(PutError::Stale { current: 5, .. })
    ));
    assert!(matches!(
        store.repair(k, meta(4), &original),
        Err(PutError::Stale { current: 5, .. })
    ));
    store.repair(k, meta(5), &original).unwrap();
    let (header, data) = store.get(k).unwrap();
    assert_eq!((header.meta.version, data), (5, original.clone()));
    // An intact shard is not rewritten at its own version, repair or not.
    assert!(matches!(
        store.repair(intact, meta(5), &[2; 1000]),
        Err(PutError::Stale { current: 5, .. })
    ));
    // The repaired record wins after a restart too (the damaged one is skipped by replay).
    drop(store);
    let mut store = open_on(&devices, FormatPolicy::Never);
    let (header, data) = store.get(k).unwrap();
    assert_eq!((header.meta.version, data), (5, original));
    assert_eq!(store.get(intact).unwrap().1, vec![1; 1000]);
    let (records, _) = pass(&mut store, 1 << 20);
    let live = live_by_key(&records);
    assert!(live[&k].data_ok && live[&k].offset != at.offset);
}

/// What a test request was.
#[derive(Clone, Copy, Debug)]
enum Sent {
    Put(ShardKey, u64),
    Delete(ShardKey, u64),
    Get(ShardKey),
    Walk,
}

fn check_interleaved(seed: u64) {
    const KEYS: u64 = 150;
    const MAX_LEN: usize = 24_000;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut devices: Vec<Arc<SimDevice>> =
        (0..3).map(|i| sim(seed * 10 + i, 16 << 20, 4096)).collect();
    let mut store = open_on(&devices, FormatPolicy::IfEmpty);
    let mut model = Model::new();
    let mut next_version: HashMap<ShardKey, u64> = HashMap::new();
    let mut sent: HashMap<u64, Sent> = HashMap::new();
    let mut token = 0u64;
    let mut cursor = WalkCursor::default();
    let mut walking = false;
    let mut passes = 0;
    let mut steps = 0u64;
    let mut live_checked = 0u64;
    let mut events: Vec<Event> = Vec::new();
    let mut removed = false;
    let mut detached = false;
    let mut added = false;
    for round in 0..6_000u64 {
        // Keep some client requests in flight.
        while sent.len() < 24 {
            let k = key(rng.gen_range(0..KEYS));
            token += 1;
            match rng.gen_range(0..10) {
                0..=5 => {
                    let v = next_version.entry(k).or_insert(0);
                    *v += 1;
                    store.submit_put(k, meta(*v), &value(k, *v, MAX_LEN), token);
                    sent.insert(token, Sent::Put(k, *v));
                }
                6 => {
                    let v = next_version.entry(k).or_insert(0);
                    *v += 1;
                    store.submit_delete(k, *v, token);
                    sent.insert(token, Sent::Delete(k, *v));
                }
                _ => {
                    store.submit_get(k, token);
                    sent.insert(token, Sent::Get(k));
                }
            }
        }
        if !walking {
            token += 1;
            let max_bytes = [4 << 10, 16 << 10, 64 << 10, 1 << 20][rng.gen_range(0..4)];
            store.submit_walk(cursor, max_bytes, token);
            sent.insert(token, Sent::Walk);
            walking = true;
        }
        if round % 500 == 250 {
            store.request_compaction();
        }
        if round == 1_500 {
            store.remove_device(0).unwrap();
            removed = true;
        }
        if removed && !detached && store.try_detach(0) {
            detached = true;
        }
        if detached && !added && round >= 3_000 {
            let fresh = sim(seed * 10 + 9, 16 << 20, 4096);
            let slot = store
                .add_device(common::mounted(
                    fresh.clone() as Arc<dyn Device>,
                    FormatPolicy::IfEmpty,
                    1,
                ))
                .unwrap();
            assert_eq!(slot, 0);
            devices[0] = fresh;
            added = true;
        }
        store.poll(&mut events);
        // In order: the model is what the index held when each event was emitted.
        for event in events.drain(..) {
            let what = sent.remove(&event.token).expect("known token");
            match (what, event.outcome) {
                (Sent::Put(k, v), Outcome::Put(Ok(()))) => {
                    let old = model.insert(k, (v, RecordKind::Shard));
                    assert!(old.is_none_or(|(o, _)| o < v));
                }
                (Sent::Delete(k, v), Outcome::Delete(Ok(_))) => {
                    let old = model.insert(k, (v, RecordKind::Tombstone));
                    assert!(old.is_none_or(|(o, _)| o < v));
                }
                (Sent::Put(..), Outcome::Put(Err(PutError::NoSpace)))
                | (Sent::Delete(..), Outcome::Delete(Err(PutError::NoSpace))) => {}
                // A get answers with what the index held when it was submitted: that version
                // or an older one than the model's now.
                (Sent::Get(k), Outcome::Get(result)) => match (result, model.get(&k)) {
                    (Ok(done), Some((v, _))) => {
                        let got = done.header.meta.version;
                        assert!(got <= *v, "get {k}: version {got}, newest acknowledged {v}");
                        assert_eq!(done.data(), value(k, got, MAX_LEN).as_slice());
                        store.recycle(done.buf);
                    }
                    (Err(GetError::NotFound), _) => {}
                    (other, expected) => {
                        panic!("get {k}: {other:?}, expected {expected:?}")
                    }
                },
                (Sent::Walk, Outcome::Walk(result)) => {
                    let step = result.expect("walk step");
                    walking = false;
                    steps += 1;
                    for record in step.records.iter().filter(|r| r.live) {
                        live_checked += 1;
                        assert!(record.data_ok, "{record:?}");
                        assert_eq!(
                            model.get(&record.key),
                            Some(&(record.meta.version, record.kind)),
                            "round {round}: a record reported live is not the key's current \
                             version: {record:?}"
                        );
                    }
                    assert!(step.damaged.is_empty(), "{:?}", step.damaged);
                    cursor = step.next;
                    if step.wrapped {
                        passes += 1;
                    }
                }
                (what, outcome) => panic!("{what:?} answered {outcome:?}"),
            }
        }
    }
    // Drain, then a quiet pass meets exactly the model.
    while !sent.is_empty() {
        store.poll(&mut events);
        for event in events.drain(..) {
            match (sent.remove(&event.token).unwrap(), event.outcome) {
                (Sent::Put(k, v), Outcome::Put(Ok(()))) => {
                    model.insert(k, (v, RecordKind::Shard));
                }
                (Sent::Delete(k, v), Outcome::Delete(Ok(_))) => {
                    model.insert(k, (v, RecordKind::Tombstone));
                }
                (_, Outcome::Get(Ok(done))) => store.recycle(done.buf),
                _ => {}
            }
        }
    }
    store.run_until_idle();
    let stats = store.stats().clone();
    eprintln!(
        "seed {seed}: {passes} passes, {steps} steps, {live_checked} live records checked, \
         {} compactions, {} walk bytes",
        stats.compactions, stats.walk_bytes_read
    );
    assert!(detached && added, "removed {removed}, detached {detached}");
    assert!(stats.compactions > 5, "{stats:?}");
    assert!(passes >= 3, "{passes} passes in {steps} steps");
    assert!(live_checked > 1_000);
    let (records, _) = pass(&mut store, 256 << 10);
    let live = live_by_key(&records);
    for (k, (version, kind)) in &model {
        match (live.get(k), kind) {
            (Some(record), _) => {
                assert_eq!((record.meta.version, record.kind), (*version, *kind));
                assert!(record.data_ok);
            }
            // Compaction may have dropped the tombstone.
            (None, RecordKind::Tombstone) => {}
            (None, _) => panic!("live key {k} not met"),
        }
    }
    assert_eq!(live.len(), store.len());
    for (k, (version, kind)) in &model {
        match store.get(*k) {
            Ok((header, data)) => {
                assert_eq!((header.meta.version, *kind), (*version, RecordKind::Shard));
                assert_eq!(data, value(*k, *version, MAX_LEN));
            }
            Err(GetError::NotFound) => assert_eq!(*kind, RecordKind::Tombstone),
            Err(error) => panic!("{k}: {error}"),
        }
    }
}

#[test]
fn a_walk_interleaved_with_writes_compaction_and_device_removal_never_says_dead_is_live() {
    for seed in 1..=4 {
        check_interleaved(seed);
    }
}

fn pump(store: &mut CoreStore, rounds: usize) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..rounds {
        store.poll(&mut events);
    }
    events
}

fn walk_outcome(events: Vec<Event>, token: u64) -> Option<WalkStep> {
    events
        .into_iter()
        .find(|e| e.token == token)
        .map(|e| match e.outcome {
            Outcome::Walk(result) => result.expect("walk step"),
            other => panic!("{other:?}"),
        })
}

#[test]
fn compaction_does_not_free_a_segment_under_a_walk_read_and_its_records_are_not_live_after() {
    let inner = sim(105, 32 << 20, 4096);
    let gated = GatedDevice::new(inner.clone());
    let device: Arc<dyn Device> = gated.clone();
    let mounted = common::mounted(device, FormatPolicy::IfEmpty, 1);
    let segment0 = mounted.superblock.segment_offset(0, 0);
    let (mut store, _) = CoreStore::open(0, NODE, vec![mounted]).expect("open");
    store.set_durability(Durability::Fua);
    // Segment 0: eight shards of 100 kB; four are overwritten (in segment 1), so segment 0 is
    // the one compaction picks.
    let mut model = Model::new();
    for i in 0..8 {
        store.put(key(i), meta(1), &vec![i as u8; 100_000]).unwrap();
        model.insert(key(i), (1, RecordKind::Shard));
    }
    for i in 0..4 {
        store
            .put(key(i), meta(2), &vec![0x80 | i as u8; 100_000])
            .unwrap();
        model.insert(key(i), (2, RecordKind::Shard));
    }
    // The walk's first read of segment 0 is held back.
    let walk_read = segment0 + 4096;
    gated.hold(move |r| r.kind == IoKind::Read && r.offset == walk_read);
    store.submit_walk(WalkCursor::default(), 256 << 10, 1);
    store.request_compaction();
    let events = pump(&mut store, 200);
    assert!(walk_outcome(events, 1).is_none());
    assert_eq!(gated.held().len(), 1, "the walk read is held");
    assert_eq!(
        store.stats().compactions,
        0,
        "segment 0 was freed under a walk read in flight"
    );
    // Everything live in segment 0 has moved: gets answer from the copies meanwhile.
    assert_eq!(store.get(key(5)).unwrap().1, vec![5; 100_000]);
    gated.stop_holding();
    gated.release(|_| true);
    let mut events = pump(&mut store, 50);
    events.retain(|e| e.token == 1);
    let step = walk_outcome(events, 1).expect("walk step done");
    assert!(step.records.len() >= 2, "{:?}", step.records);
    assert!(
        step.records.iter().all(|r| !r.live && r.data_ok),
        "records of a compacted segment reported live: {:?}",
        step.records
    );
    store.run_until_idle();
    assert!(store.stats().compactions >= 1);
    // The rest of the pass meets the copies, each key live once.
    let mut records = step.records;
    let mut cursor = step.next;
    while !cursor.is_start() {
        let step = store.walk(cursor, 256 << 10).unwrap();
        records.extend(step.records);
        cursor = step.next;
    }
    let live = live_by_key(&records);
    assert_eq!(live.len(), model.len());
    for (k, (version, _)) in &model {
        assert_eq!(live[k].meta.version, *version);
    }
}

#[test]
fn a_walk_stops_before_records_not_yet_acknowledged() {
    let inner = sim(106, 32 << 20, 4096);
    let gated = GatedDevice::new(inner.clone());
    let device: Arc<dyn Device> = gated.clone();
    let mounted = common::mounted(device, FormatPolicy::IfEmpty, 1);
    let (mut store, _) = CoreStore::open(0, NODE, vec![mounted]).expect("open");
    store.set_durability(Durability::Flush);
    for i in 0..4 {
        store.put(key(i), meta(1), &vec![i as u8; 10_000]).unwrap();
    }
    // Later puts reach the device, but their flush does not: not acknowledged, not in the index.
    gated.hold(|r| r.kind == IoKind::Flush);
    for i in 4..8 {
        store.submit_put(key(i), meta(1), &vec![i as u8; 10_000], 10 + i);
    }
    let events = pump(&mut store, 20);
    assert!(events.is_empty());
    assert!(!inner.pending_writes().is_empty(), "the batch was written");
    let step = store.walk(WalkCursor::default(), 1 << 20).unwrap();
    let keys: Vec<ShardKey> = step.records.iter().map(|r| r.key).collect();
    assert_eq!(keys, (0..4).map(key).collect::<Vec<_>>());
    assert!(step.records.iter().all(|r| r.live));
    assert!(step.wrapped);
    gated.stop_holding();
    gated.release(|_| true);
    let events = pump(&mut store, 20);
    assert_eq!(events.len(), 4);
    let (records, _) = pass(&mut store, 1 << 20);
    assert_eq!(live_by_key(&records).len(), 8);
}

#[test]
fn a_read_error_is_reported_with_a_cursor_past_it() {
    let devices = [sim(107, 16 << 20, 4096)];
    let mut store = open_on(&devices, FormatPolicy::IfEmpty);
    let model = fill(&mut store, 60, 30_000);
    let (records, _) = pass(&mut store, 1 << 20);
    let victim = live_by_key(&records)
        .into_values()
        .find(|r| r.kind == RecordKind::Shard && r.data_bytes > 1000)
        .unwrap();
    devices[0].fail_reads(victim.offset + 4096..victim.offset + 8192);
    let mut cursor = WalkCursor::default();
    let mut errors = 0;
    let mut met = Vec::new();
    loop {
        match store.walk(cursor, 64 << 10) {
            Ok(step) => {
                met.extend(step.records);
                cursor = step.next;
                if step.wrapped {
                    break;
                }
            }
            Err(ds_store::WalkError::Io {
                slot, offset, skip, ..
            }) => {
                errors += 1;
                assert_eq!(slot, 0);
                assert!(offset <= victim.offset + 4096);
                assert!(skip != cursor);
                cursor = skip;
            }
            Err(other) => panic!("{other}"),
        }
        assert!(errors < 10);
    }
    assert!(errors >= 1);
    assert!(store.stats().read_errors >= 1);
    let live = live_by_key(&met);
    assert!(!live.contains_key(&victim.key));
    assert!(live.len() < model.len() && live.len() > model.len() / 2);
    devices[0].clear_faults();
    let (records, _) = pass(&mut store, 64 << 10);
    assert_eq!(live_by_key(&records).len(), model.len());
}
