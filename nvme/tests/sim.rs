//! Tests of the simulated device through the public device-layer API.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ds_nvme::sim::{SimConfig, SimDevice, SimFaults, SimStats, DEAD_QUEUE_ERROR};
use ds_nvme::{
    run_one, Completion, Device, DmaBuf, IoError, IoKind, IoRequest, Queue, RejectReason,
};
use proptest::prelude::*;

const SIZE: u64 = 1 << 20;

fn device(seed: u64, block_bytes: u32) -> Arc<SimDevice> {
    SimDevice::new(SimConfig {
        size_bytes: SIZE,
        block_bytes,
        seed,
        ..SimConfig::default()
    })
}

/// The content of sector `sector` (device-wide index) as written by write `id`: one 8-byte tag
/// repeated, so that a sector can be traced back to the write that put it there.
fn tag(id: u64, sector: u64) -> u64 {
    (id << 32) | sector
}

/// Data for a write `id` of `sectors` sectors starting at sector `first`.
fn tagged(id: u64, first: u64, sectors: usize, sector_bytes: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(sectors * sector_bytes);
    for s in 0..sectors as u64 {
        for _ in 0..sector_bytes / 8 {
            data.extend_from_slice(&tag(id, first + s).to_le_bytes());
        }
    }
    data
}

/// The tag of every sector of `bytes`; panics if a sector mixes tags (torn inside a sector, or
/// bytes from nowhere).
fn tags_of(bytes: &[u8], sector_bytes: usize) -> Vec<u64> {
    bytes
        .chunks(sector_bytes)
        .map(|sector| {
            // Periodic with period 8 iff equal to itself shifted by 8 (one memcmp).
            assert!(sector[8..] == sector[..sector.len() - 8], "mixed sector");
            u64::from_le_bytes(sector[..8].try_into().unwrap())
        })
        .collect()
}

fn buf_with(data: &[u8]) -> DmaBuf {
    let mut buf = DmaBuf::new(data.len());
    buf.as_mut_slice()[..data.len()].copy_from_slice(data);
    buf
}

fn submit_write(queue: &mut dyn Queue, offset: u64, data: &[u8], token: u64) {
    queue
        .submit(IoRequest::write(buf_with(data), offset, data.len()), token)
        .unwrap();
}

/// Reaps until nothing is in flight; checks that every reap makes progress.
fn drain(queue: &mut dyn Queue) -> Vec<Completion> {
    let mut out = Vec::new();
    while queue.inflight() > 0 {
        assert!(queue.reap(&mut out) > 0, "reap made no progress");
    }
    out
}

fn write_sync(queue: &mut dyn Queue, offset: u64, data: &[u8]) {
    let request = IoRequest::write(buf_with(data), offset, data.len());
    let done = run_one(queue, request, u64::MAX, &mut Vec::new()).unwrap();
    done.result.unwrap();
}

fn read_sync(queue: &mut dyn Queue, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
    let request = IoRequest::read(DmaBuf::new(len), offset, len);
    let done = run_one(queue, request, u64::MAX, &mut Vec::new()).unwrap();
    done.result
        .map(|()| done.buf.unwrap().as_slice()[..len].to_vec())
}

fn flush_sync(queue: &mut dyn Queue) {
    let done = run_one(queue, IoRequest::flush(), u64::MAX, &mut Vec::new()).unwrap();
    done.result.unwrap();
}

#[test]
fn round_trip() {
    for block in [512u32, 4096] {
        for seed in 0..8 {
            let dev = device(seed, block);
            let mut queue = dev.open_queue(8).unwrap();
            let b = block as usize;
            let mut expected = BTreeMap::new();
            for (i, first) in [0u64, 3, 7, 100].into_iter().enumerate() {
                let data = tagged(i as u64 + 1, first, 2, b);
                submit_write(queue.as_mut(), first * u64::from(block), &data, i as u64);
                expected.insert(first, data);
            }
            let done = drain(queue.as_mut());
            assert_eq!(done.len(), 4);
            for c in &done {
                assert_eq!(c.kind, IoKind::Write);
                c.result.clone().unwrap();
                assert!(c.buf.is_some(), "buffer handed back");
            }
            for (first, data) in &expected {
                let offset = first * u64::from(block);
                assert_eq!(
                    &read_sync(queue.as_mut(), offset, data.len()).unwrap(),
                    data
                );
                assert_eq!(&dev.read_volatile(offset, data.len()), data);
                // Nothing flushed: the durable image is still blank.
                assert!(dev.read_durable(offset, data.len()).iter().all(|&x| x == 0));
            }
            assert_eq!(dev.pending_writes().len(), 4);
            assert_eq!(dev.seed(), seed);
            assert_eq!(dev.info().block_bytes, block);
        }
    }
}

#[test]
fn completions_are_reordered_and_always_progress() {
    let mut reordered = 0;
    let mut partial_reaps = 0;
    for seed in 0..20 {
        let dev = device(seed, 4096);
        let mut queue = dev.open_queue(16).unwrap();
        for token in 0..16 {
            submit_write(
                queue.as_mut(),
                token * 4096,
                &tagged(token + 1, token, 1, 4096),
                token,
            );
        }
        let mut order = Vec::new();
        while queue.inflight() > 0 {
            let before = queue.inflight();
            let mut out = Vec::new();
            let n = queue.reap(&mut out);
            assert!(n >= 1 && n == out.len() && queue.inflight() == before - n);
            if n < before {
                partial_reaps += 1;
            }
            order.extend(out.iter().map(|c| c.token));
        }
        assert_eq!(order.iter().copied().collect::<BTreeSet<_>>().len(), 16);
        if order.windows(2).any(|w| w[0] > w[1]) {
            reordered += 1;
        }
        let mut out = Vec::new();
        assert_eq!(
            queue.reap(&mut out),
            0,
            "nothing in flight, nothing completes"
        );
    }
    assert!(
        reordered > 0 && partial_reaps > 0,
        "{reordered} {partial_reaps}"
    );
}

#[test]
fn flushed_writes_survive_a_crash_bit_exact() {
    for seed in 0..50 {
        let dev = device(seed, 512);
        let mut queue = dev.open_queue(8).unwrap();
        let flushed: Vec<(u64, Vec<u8>)> = (0..6u64)
            .map(|i| (i * 8 * 512, tagged(i + 1, i * 8, 1 + (i as usize % 4), 512)))
            .collect();
        for (i, (offset, data)) in flushed.iter().enumerate() {
            submit_write(queue.as_mut(), *offset, data, i as u64);
        }
        drain(queue.as_mut());
        flush_sync(queue.as_mut());
        assert!(dev.pending_writes().is_empty());
        // Unflushed writes elsewhere must not disturb the flushed ones.
        submit_write(queue.as_mut(), 512 * 512, &tagged(99, 512, 4, 512), 100);
        queue.reap(&mut Vec::new());
        dev.crash();
        let mut queue = dev.open_queue(8).unwrap();
        for (offset, data) in &flushed {
            assert_eq!(&dev.read_durable(*offset, data.len()), data);
            assert_eq!(
                &read_sync(queue.as_mut(), *offset, data.len()).unwrap(),
                data
            );
        }
    }
}

/// After a crash every sector of an unflushed write holds either its old content or the new one:
/// never bytes from elsewhere, never half a sector. All three fates show up across seeds.
#[test]
fn unflushed_writes_are_old_new_or_torn() {
    for block in [512u32, 4096] {
        let b = block as usize;
        let (mut kept, mut dropped, mut torn) = (0, 0, 0);
        for seed in 0..200 {
            let dev = device(seed, block);
            let mut queue = dev.open_queue(8).unwrap();
            // Old content, made durable.
            let old = tagged(1, 0, 64, b);
            write_sync(queue.as_mut(), 0, &old);
            flush_sync(queue.as_mut());
            // Eight 4-sector writes to distinct places, some completed, some still in flight.
            for i in 0..8u64 {
                submit_write(
                    queue.as_mut(),
                    i * 8 * u64::from(block),
                    &tagged(i + 2, i * 8, 4, b),
                    i,
                );
            }
            queue.reap(&mut Vec::new());
            dev.crash();
            assert_eq!(dev.read_volatile(0, 64 * b), dev.read_durable(0, 64 * b));
            let after = tags_of(&dev.read_durable(0, 64 * b), b);
            for i in 0..8u64 {
                let mut new_sectors = 0;
                for s in i * 8..i * 8 + 4 {
                    let t = after[s as usize];
                    assert!(
                        t == tag(1, s) || t == tag(i + 2, s),
                        "seed {seed} sector {s}"
                    );
                    new_sectors += usize::from(t == tag(i + 2, s));
                }
                for s in i * 8 + 4..i * 8 + 8 {
                    assert_eq!(after[s as usize], tag(1, s), "untouched sector changed");
                }
                match new_sectors {
                    4 => kept += 1,
                    0 => dropped += 1,
                    _ => torn += 1,
                }
            }
        }
        assert!(
            kept > 0 && dropped > 0 && torn > 0,
            "{kept} {dropped} {torn}"
        );
    }
}

/// A write still in flight at a crash may land (whole or torn) or not.
#[test]
fn writes_in_flight_at_a_crash_may_land() {
    let (mut landed, mut lost) = (0, 0);
    for seed in 0..100 {
        let dev = device(seed, 512);
        let mut queue = dev.open_queue(4).unwrap();
        submit_write(queue.as_mut(), 0, &tagged(1, 0, 4, 512), 1);
        dev.crash();
        let after = tags_of(&dev.read_durable(0, 4 * 512), 512);
        for (s, &t) in after.iter().enumerate() {
            assert!(t == 0 || t == tag(1, s as u64), "seed {seed}");
        }
        if after.iter().any(|&t| t != 0) {
            landed += 1;
        } else {
            lost += 1;
        }
    }
    assert!(landed > 0 && lost > 0, "{landed} {lost}");
}

/// Overlapping unflushed writes: each sector holds the old content or that of one of the
/// writes that covered it.
#[test]
fn overlapping_unflushed_writes_keep_sectors_whole() {
    for seed in 0..200 {
        let dev = device(seed, 512);
        let mut queue = dev.open_queue(8).unwrap();
        // Write 2 then write 3, both over sectors 0..8, completed in that order.
        write_sync(queue.as_mut(), 0, &tagged(2, 0, 8, 512));
        write_sync(queue.as_mut(), 0, &tagged(3, 0, 8, 512));
        assert_eq!(tags_of(&dev.read_volatile(0, 8 * 512), 512)[0], tag(3, 0));
        dev.crash();
        let after = tags_of(&dev.read_durable(0, 8 * 512), 512);
        for (s, &t) in after.iter().enumerate() {
            let s = s as u64;
            assert!(t == 0 || t == tag(2, s) || t == tag(3, s), "seed {seed}");
        }
    }
}

/// Unflushed writes land in a random order, not their completion order. Eight one-sector writes
/// to one sector (each lands with probability 1/2): in completion order the newest would be
/// left about half the time; in random order about one time in eight.
#[test]
fn unflushed_writes_land_in_random_order() {
    let (mut newest, mut older) = (0, 0);
    for seed in 0..400 {
        let dev = device(seed, 512);
        let mut queue = dev.open_queue(8).unwrap();
        for id in 1..=8 {
            write_sync(queue.as_mut(), 0, &tagged(id, 0, 1, 512));
        }
        dev.crash();
        match tags_of(&dev.read_durable(0, 512), 512)[0] >> 32 {
            0 => {}
            8 => newest += 1,
            _ => older += 1,
        }
    }
    assert!(
        newest < 100 && older > 200,
        "newest {newest}, older {older}"
    );
}

#[test]
fn flush_does_not_cover_writes_in_flight_at_its_submission() {
    for seed in 0..50 {
        let dev = device(seed, 4096);
        let mut queue = dev.open_queue(8).unwrap();
        let a = tagged(1, 0, 1, 4096);
        let b = tagged(2, 1, 1, 4096);
        write_sync(queue.as_mut(), 0, &a); // completed before the flush
        submit_write(queue.as_mut(), 4096, &b, 1); // in flight at the flush
        queue.submit(IoRequest::flush(), 2).unwrap();
        let done = drain(queue.as_mut());
        assert!(done.iter().all(|c| c.result.is_ok()));
        assert_eq!(dev.read_durable(0, 4096), a, "seed {seed}");
        assert_eq!(dev.read_durable(4096, 4096), vec![0; 4096], "seed {seed}");
        assert_eq!(dev.read_volatile(4096, 4096), b);
        assert_eq!(dev.pending_writes(), vec![(4096, 4096)]);
    }
}

#[test]
fn queues_die_in_a_crash() {
    let dev = device(7, 4096);
    let mut queue = dev.open_queue(4).unwrap();
    let mut other = dev.open_queue(4).unwrap();
    submit_write(queue.as_mut(), 0, &tagged(1, 0, 1, 4096), 1);
    queue
        .submit(IoRequest::read(DmaBuf::new(4096), 4096, 4096), 2)
        .unwrap();
    submit_write(other.as_mut(), 8192, &tagged(2, 2, 1, 4096), 3);
    assert_eq!(dev.epoch(), 0);
    dev.crash();
    assert_eq!(dev.epoch(), 1);
    assert_eq!(dev.stats().crashes, 1);
    // In-flight requests are gone, never completed.
    assert_eq!(queue.inflight(), 0);
    assert_eq!(other.inflight(), 0);
    let mut out = Vec::new();
    assert_eq!(queue.reap(&mut out), 0);
    // Later submissions are accepted and fail at the next reap, buffer handed back.
    queue
        .submit(IoRequest::read(DmaBuf::new(4096), 0, 4096), 4)
        .unwrap();
    submit_write(queue.as_mut(), 0, &tagged(3, 0, 1, 4096), 5);
    queue.submit(IoRequest::flush(), 6).unwrap();
    assert_eq!(queue.reap(&mut out), 3);
    for c in &out {
        assert_eq!(c.result, Err(DEAD_QUEUE_ERROR));
        assert_eq!(c.buf.is_some(), c.kind != IoKind::Flush);
    }
    assert_eq!(DEAD_QUEUE_ERROR, IoError::Os(libc::ENODEV));
    // Broken requests are still rejected as such.
    let bad = IoRequest::read(DmaBuf::new(4096), 100, 4096);
    assert!(matches!(
        queue.submit(bad, 7).unwrap_err().reason,
        RejectReason::Invalid(_)
    ));
    // The dead write changed nothing; a new queue works.
    assert_ne!(dev.read_volatile(0, 4096), tagged(3, 0, 1, 4096));
    let mut fresh = dev.open_queue(4).unwrap();
    write_sync(fresh.as_mut(), 0, &tagged(4, 0, 1, 4096));
    assert_eq!(
        read_sync(fresh.as_mut(), 0, 4096).unwrap(),
        tagged(4, 0, 1, 4096)
    );
    // A second crash kills the new queue too.
    dev.crash();
    fresh.submit(IoRequest::flush(), 8).unwrap();
    let mut out = Vec::new();
    fresh.reap(&mut out);
    assert_eq!(out[0].result, Err(DEAD_QUEUE_ERROR));
}

/// Runs a fixed workload with a crash and returns everything observable.
fn scripted_run(seed: u64) -> (Vec<Vec<u64>>, Vec<u8>, Vec<u8>, SimStats) {
    let dev = SimDevice::new(SimConfig {
        size_bytes: SIZE,
        block_bytes: 512,
        seed,
        faults: SimFaults {
            read_error_probability: 0.1,
            bit_flip_probability: 0.1,
            ..SimFaults::default()
        },
        ..SimConfig::default()
    });
    let mut queue = dev.open_queue(16).unwrap();
    let mut reaps = Vec::new();
    let mut reads = Vec::new();
    for round in 0..20u64 {
        for i in 0..4 {
            let id = round * 4 + i + 1;
            let first = (id * 3) % 200;
            submit_write(queue.as_mut(), first * 512, &tagged(id, first, 3, 512), id);
        }
        if round % 5 == 4 {
            queue.submit(IoRequest::flush(), 1000 + round).unwrap();
        }
        queue
            .submit(
                IoRequest::read(DmaBuf::new(4096), round * 512, 4096),
                2000 + round,
            )
            .unwrap();
        let mut out = Vec::new();
        queue.reap(&mut out);
        reaps.push(out.iter().map(|c| c.token).collect());
        for c in out {
            if c.kind == IoKind::Read {
                match c.result {
                    Ok(()) => reads.extend_from_slice(&c.buf.unwrap().as_slice()[..4096]),
                    Err(_) => reads.push(0xee),
                }
            }
        }
        if round == 12 {
            dev.corrupt(round * 512, 1024);
        }
        while queue.inflight() > 8 {
            queue.reap(&mut Vec::new());
        }
    }
    dev.crash();
    (reaps, reads, dev.read_durable(0, 256 * 512), dev.stats())
}

#[test]
fn same_seed_same_outcome() {
    for seed in [0, 1, 42, u64::MAX] {
        assert!(
            scripted_run(seed) == scripted_run(seed),
            "seed {seed} is not reproducible"
        );
    }
    assert!(
        scripted_run(1) != scripted_run(2),
        "the seed makes no difference"
    );
}

#[test]
fn injected_read_failures() {
    let dev = device(3, 4096);
    let mut queue = dev.open_queue(4).unwrap();
    let data = tagged(1, 0, 4, 4096);
    write_sync(queue.as_mut(), 0, &data);
    dev.fail_reads(8192..8193);
    assert_eq!(
        read_sync(queue.as_mut(), 8192, 4096),
        Err(IoError::Injected)
    );
    assert_eq!(
        read_sync(queue.as_mut(), 0, 4 * 4096),
        Err(IoError::Injected)
    );
    assert_eq!(read_sync(queue.as_mut(), 0, 8192).unwrap(), data[..8192]);
    assert_eq!(
        read_sync(queue.as_mut(), 12288, 4096).unwrap(),
        data[12288..]
    );
    dev.clear_faults();
    assert_eq!(read_sync(queue.as_mut(), 0, 4 * 4096).unwrap(), data);

    dev.set_faults(SimFaults {
        read_error_probability: 1.0,
        ..SimFaults::default()
    });
    assert_eq!(read_sync(queue.as_mut(), 0, 4096), Err(IoError::Injected));
    dev.set_faults(SimFaults {
        read_error_probability: 0.5,
        ..SimFaults::default()
    });
    let results: Vec<bool> = (0..64)
        .map(|_| read_sync(queue.as_mut(), 0, 4096).is_ok())
        .collect();
    assert!(results.contains(&true) && results.contains(&false));
    dev.clear_faults();
    assert_eq!(dev.faults(), SimFaults::default());
    // Failed reads are not counted.
    let before = dev.stats().reads;
    read_sync(queue.as_mut(), 0, 4096).unwrap();
    assert_eq!(dev.stats().reads, before + 1);
}

#[test]
fn injected_bit_flips_hit_one_bit_of_the_read_only() {
    let dev = device(5, 512);
    let mut queue = dev.open_queue(4).unwrap();
    let data = tagged(1, 0, 8, 512);
    write_sync(queue.as_mut(), 0, &data);
    dev.set_faults(SimFaults {
        bit_flip_probability: 1.0,
        ..SimFaults::default()
    });
    for _ in 0..20 {
        let read = read_sync(queue.as_mut(), 0, data.len()).unwrap();
        let flipped: u32 = read
            .iter()
            .zip(&data)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        assert_eq!(flipped, 1);
    }
    assert_eq!(
        dev.read_volatile(0, data.len()),
        data,
        "the media is intact"
    );
}

#[test]
fn injected_write_failures_change_nothing() {
    let dev = device(9, 4096);
    let mut queue = dev.open_queue(4).unwrap();
    dev.fail_writes(4096..8192);
    let request = IoRequest::write(buf_with(&tagged(1, 1, 1, 4096)), 4096, 4096);
    let done = run_one(queue.as_mut(), request, 1, &mut Vec::new()).unwrap();
    assert_eq!(done.result, Err(IoError::Injected));
    assert!(dev.read_volatile(4096, 4096).iter().all(|&x| x == 0));
    assert_eq!(dev.stats().writes, 0);
    assert!(dev.pending_writes().is_empty());
    // Nor does a write into the failing range that is in flight at a crash.
    for seed in 0..30 {
        let dev = device(seed, 4096);
        dev.fail_writes(0..4096);
        let mut queue = dev.open_queue(4).unwrap();
        submit_write(queue.as_mut(), 0, &tagged(1, 0, 2, 4096), 1);
        dev.crash();
        assert!(dev.read_durable(0, 4096).iter().all(|&x| x == 0));
    }
    dev.set_faults(SimFaults {
        write_error_probability: 1.0,
        ..SimFaults::default()
    });
    let request = IoRequest::write(buf_with(&tagged(1, 3, 1, 4096)), 3 * 4096, 4096);
    let done = run_one(queue.as_mut(), request, 1, &mut Vec::new()).unwrap();
    assert_eq!(done.result, Err(IoError::Injected));
}

#[test]
fn corruption_flips_one_bit_per_sector_on_the_media() {
    let dev = device(11, 512);
    let mut queue = dev.open_queue(4).unwrap();
    let flushed = tagged(1, 0, 4, 512);
    write_sync(queue.as_mut(), 0, &flushed);
    flush_sync(queue.as_mut());
    let pending = tagged(2, 4, 4, 512);
    write_sync(queue.as_mut(), 2048, &pending);
    // Sectors 1..6, starting and ending mid-sector.
    dev.corrupt(600, 2600);
    let all: Vec<u8> = flushed.iter().chain(&pending).copied().collect();
    let seen = read_sync(queue.as_mut(), 0, all.len()).unwrap();
    assert_eq!(seen, dev.read_volatile(0, all.len()));
    for (s, (a, b)) in seen.chunks(512).zip(all.chunks(512)).enumerate() {
        let flipped: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
        assert_eq!(flipped, u32::from((1..=6).contains(&s)), "sector {s}");
    }
    assert_ne!(dev.read_durable(512, 512), flushed[512..1024]);
    // A flush does not heal the corruption of a pending write.
    flush_sync(queue.as_mut());
    assert_eq!(dev.read_durable(0, all.len()), seen);
}

#[test]
fn queue_full_and_invalid_requests_are_rejected() {
    let dev = device(0, 4096);
    let mut queue = dev.open_queue(2).unwrap();
    assert_eq!(queue.depth(), 2);
    queue.submit(IoRequest::flush(), 1).unwrap();
    queue.submit(IoRequest::flush(), 2).unwrap();
    let rejected = queue
        .submit(IoRequest::read(DmaBuf::new(4096), 0, 4096), 3)
        .unwrap_err();
    assert!(matches!(rejected.reason, RejectReason::QueueFull));
    assert_eq!(rejected.request.kind, IoKind::Read);
    let beyond = IoRequest::read(DmaBuf::new(4096), SIZE, 4096);
    drain(queue.as_mut());
    assert!(matches!(
        queue.submit(beyond, 4).unwrap_err().reason,
        RejectReason::Invalid(_)
    ));
    assert!(dev.open_queue(0).is_err());
}

#[test]
fn dropping_a_queue_finishes_its_writes() {
    let dev = device(13, 4096);
    let mut queue = dev.open_queue(4).unwrap();
    submit_write(queue.as_mut(), 0, &tagged(1, 0, 2, 4096), 1);
    drop(queue);
    assert_eq!(dev.read_volatile(0, 8192), tagged(1, 0, 2, 4096));
    assert_eq!(dev.pending_writes(), vec![(0, 8192)]);
}

#[test]
fn stats_count_successful_requests() {
    let dev = device(0, 4096);
    let mut queue = dev.open_queue(4).unwrap();
    write_sync(queue.as_mut(), 0, &[1; 8192]);
    write_sync(queue.as_mut(), 8192, &[2; 4096]);
    flush_sync(queue.as_mut());
    read_sync(queue.as_mut(), 0, 4096).unwrap();
    let expected = SimStats {
        reads: 1,
        bytes_read: 4096,
        writes: 2,
        bytes_written: 12288,
        flushes: 1,
        crashes: 0,
    };
    assert_eq!(dev.stats(), expected);
}

#[test]
fn usable_as_a_shared_dyn_device() {
    let dev: Arc<dyn Device> = device(0, 512);
    let mut queue = dev.open_queue(1).unwrap();
    write_sync(queue.as_mut(), 512, &[7; 512]);
    assert_eq!(read_sync(queue.as_mut(), 512, 512).unwrap(), vec![7; 512]);
    assert_eq!(dev.info().kind, ds_nvme::DeviceKind::Sim);
}

// Model-based check: random writes, reads, flushes, reaps and crashes against a model of the
// rules in the module documentation.

#[derive(Clone, Debug)]
enum Op {
    Write { first: u64, sectors: usize },
    Read { first: u64, sectors: usize },
    Flush,
    Reap,
    Crash,
}

const MODEL_SECTORS: u64 = 32;

fn op() -> impl Strategy<Value = Op> {
    let span = (0..MODEL_SECTORS)
        .prop_flat_map(|first| (Just(first), 1..=((MODEL_SECTORS - first).min(4) as usize)));
    prop_oneof![
        6 => span.clone().prop_map(|(first, sectors)| Op::Write { first, sectors }),
        3 => span.prop_map(|(first, sectors)| Op::Read { first, sectors }),
        2 => Just(Op::Flush),
        4 => Just(Op::Reap),
        1 => Just(Op::Crash),
    ]
}

enum Submitted {
    Write { id: u64, first: u64, sectors: usize },
    Read { first: u64 },
    Flush { cover: u64 },
}

struct Model {
    durable: Vec<u64>,
    volatile: Vec<u64>,
    /// (completion number, write id, first sector, sectors), in completion order.
    pending: Vec<(u64, u64, u64, usize)>,
    completed_writes: u64,
    inflight: BTreeMap<u64, Submitted>,
}

impl Model {
    fn complete(&mut self, c: Completion, sector_bytes: usize) {
        c.result.clone().unwrap();
        match self.inflight.remove(&c.token).expect("known token") {
            Submitted::Write { id, first, sectors } => {
                for s in first..first + sectors as u64 {
                    self.volatile[s as usize] = tag(id, s);
                }
                self.pending
                    .push((self.completed_writes, id, first, sectors));
                self.completed_writes += 1;
            }
            Submitted::Read { first } => {
                let seen = tags_of(&c.buf.unwrap().as_slice()[..c.len], sector_bytes);
                let start = first as usize;
                assert_eq!(seen, self.volatile[start..start + seen.len()], "read data");
            }
            Submitted::Flush { cover } => {
                let covered = self.pending.iter().take_while(|w| w.0 < cover).count();
                for (_, id, first, sectors) in self.pending.drain(..covered) {
                    for s in first..first + sectors as u64 {
                        self.durable[s as usize] = tag(id, s);
                    }
                }
            }
        }
    }
}

fn run_model(seed: u64, block_bytes: u32, ops: Vec<Op>) {
    let b = block_bytes as usize;
    let dev = SimDevice::new(SimConfig {
        size_bytes: MODEL_SECTORS * u64::from(block_bytes),
        block_bytes,
        seed,
        ..SimConfig::default()
    });
    let n = MODEL_SECTORS as usize;
    let mut model = Model {
        durable: vec![0; n],
        volatile: vec![0; n],
        pending: Vec::new(),
        completed_writes: 0,
        inflight: BTreeMap::new(),
    };
    let mut queue = dev.open_queue(6).unwrap();
    for (token, op) in (1u64..).zip(ops) {
        if !matches!(op, Op::Reap | Op::Crash) && queue.inflight() == queue.depth() {
            let mut out = Vec::new();
            queue.reap(&mut out);
            out.into_iter().for_each(|c| model.complete(c, b));
        }
        match op {
            Op::Write { first, sectors } => {
                let data = tagged(token, first, sectors, b);
                submit_write(queue.as_mut(), first * u64::from(block_bytes), &data, token);
                model.inflight.insert(
                    token,
                    Submitted::Write {
                        id: token,
                        first,
                        sectors,
                    },
                );
            }
            Op::Read { first, sectors } => {
                let len = sectors * b;
                let request =
                    IoRequest::read(DmaBuf::new(len), first * u64::from(block_bytes), len);
                queue.submit(request, token).unwrap();
                model.inflight.insert(token, Submitted::Read { first });
            }
            Op::Flush => {
                queue.submit(IoRequest::flush(), token).unwrap();
                model.inflight.insert(
                    token,
                    Submitted::Flush {
                        cover: model.completed_writes,
                    },
                );
            }
            Op::Reap => {
                let mut out = Vec::new();
                queue.reap(&mut out);
                out.into_iter().for_each(|c| model.complete(c, b));
            }
            Op::Crash => {
                // Each sector may end up old, or as any unflushed or in-flight write over it.
                let mut allowed: Vec<BTreeSet<u64>> =
                    model.durable.iter().map(|&t| BTreeSet::from([t])).collect();
                let mut unflushed: Vec<(u64, u64, usize)> = model
                    .pending
                    .iter()
                    .map(|&(_, id, first, n)| (id, first, n))
                    .collect();
                for submitted in model.inflight.values() {
                    if let Submitted::Write { id, first, sectors } = *submitted {
                        unflushed.push((id, first, sectors));
                    }
                }
                for (id, first, sectors) in unflushed {
                    for s in first..first + sectors as u64 {
                        allowed[s as usize].insert(tag(id, s));
                    }
                }
                dev.crash();
                let after = tags_of(&dev.read_durable(0, n * b), b);
                for (s, t) in after.iter().enumerate() {
                    assert!(allowed[s].contains(t), "sector {s} holds {t:#x}");
                }
                model.durable = after.clone();
                model.volatile = after;
                model.pending.clear();
                model.inflight.clear();
                queue = dev.open_queue(6).unwrap();
            }
        }
        assert_eq!(tags_of(&dev.read_volatile(0, n * b), b), model.volatile);
        assert_eq!(tags_of(&dev.read_durable(0, n * b), b), model.durable);
        let pending: Vec<(u64, usize)> = model
            .pending
            .iter()
            .map(|&(_, _, first, sectors)| (first * u64::from(block_bytes), sectors * b))
            .collect();
        assert_eq!(dev.pending_writes(), pending);
    }
    let leftover = drain(queue.as_mut());
    leftover.into_iter().for_each(|c| model.complete(c, b));
    assert_eq!(tags_of(&dev.read_volatile(0, n * b), b), model.volatile);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn behaves_like_the_model(
        seed in any::<u64>(),
        block_bytes in prop_oneof![Just(512u32), Just(4096u32)],
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run_model(seed, block_bytes, ops);
    }
}
