//! Simulated power loss, many seeds: a random workload of puts (some zero-copy, as the node
//! writes large PUTs) and deletes with many writes in flight, a crash at a random point
//! (unflushed writes kept, dropped, torn per sector, applied out of order), recovery, and a
//! check of every key against a model:
//! - every acknowledged write is intact (or superseded by a later write that was in flight),
//! - nothing older than the last acknowledged version comes back,
//! - nothing torn or corrupt is ever returned.
//!
//! `DS_CRASH_SEED=N` replays one seed; `DS_CRASH_SEEDS=N` sets how many run (default 1000),
//! `DS_CRASH_FIRST=N` the first of them (default 0).

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{sim, value, NODE};
use ds_nvme::sim::SimDevice;
use ds_nvme::Device;
use ds_store::{
    CoreStore, Event, FormatPolicy, GetError, Outcome, PutError, ShardKey, ShardMeta,
    PUT_DATA_OFFSET,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const KEYS: u64 = 24;
const VALUE_BYTES_MAX: usize = 24_000;
const ROUNDS: usize = 4;

#[derive(Default, Clone)]
struct KeyModel {
    /// Last acknowledged (version, live), or what recovery showed.
    acked: Option<(u64, bool)>,
    /// Submitted, not acknowledged: (version, live).
    inflight: Vec<(u64, bool)>,
}

fn key(n: u64) -> ShardKey {
    // Few distinct objects so stripes and shards differ within one object too.
    ShardKey::new(
        u128::from(n / 4) << 64 | 0xfeed,
        (n % 4) as u32,
        (n % 2) as u8,
    )
}

fn open(devices: &[Arc<SimDevice>], policy: FormatPolicy, fua: bool) -> Result<CoreStore, String> {
    let mounted = devices
        .iter()
        .map(|d| {
            let device: Arc<dyn Device> = d.clone();
            let superblock = ds_store::mount(device.as_ref(), policy, &common::options(1))
                .map_err(|e| format!("mount: {e}"))?;
            Ok(ds_store::MountedDevice { device, superblock })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let (mut store, _) = CoreStore::open(0, NODE, mounted).map_err(|e| format!("open: {e}"))?;
    store.set_durability(if fua {
        ds_store::Durability::Fua
    } else {
        ds_store::Durability::Flush
    });
    Ok(store)
}

fn run_seed(seed: u64) -> Result<u64, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let block = if rng.gen_bool(0.5) { 512 } else { 4096 };
    let device_count = if rng.gen_bool(0.3) { 2 } else { 1 };
    let devices: Vec<Arc<SimDevice>> = (0..device_count)
        .map(|d| sim(seed * 8 + d, 12 << 20, block))
        .collect();
    let fua = rng.gen_bool(0.5);
    let mut store = open(&devices, FormatPolicy::IfEmpty, fua)?;
    let mut model: HashMap<u64, KeyModel> = HashMap::new();
    let mut version_next = 1u64;
    let mut tokens: HashMap<u64, (u64, u64, bool)> = HashMap::new();
    let mut token_next = 0u64;
    let mut events: Vec<Event> = Vec::new();
    let mut crashes = 0;
    for round in 0..ROUNDS {
        let steps = rng.gen_range(1..300);
        for _ in 0..steps {
            match rng.gen_range(0..10) {
                0..=5 => {
                    let n = rng.gen_range(0..KEYS);
                    let version = version_next;
                    version_next += 1;
                    let data = value(key(n), version, VALUE_BYTES_MAX);
                    let meta = ShardMeta {
                        version,
                        scheme_k: 2,
                        scheme_m: 1,
                        object_bytes: 9,
                    };
                    token_next += 1;
                    tokens.insert(token_next, (n, version, true));
                    model.entry(n).or_default().inflight.push((version, true));
                    if rng.gen_bool(0.3) {
                        // Zero-copy: the caller's record buffer becomes a batch of its own.
                        let mut buf = store.put_buffer(data.len());
                        buf.as_mut_slice()[PUT_DATA_OFFSET..PUT_DATA_OFFSET + data.len()]
                            .copy_from_slice(&data);
                        store.submit_put_buf(key(n), meta, buf, data.len(), None, token_next);
                    } else {
                        store.submit_put(key(n), meta, &data, token_next);
                    }
                }
                6 => {
                    let n = rng.gen_range(0..KEYS);
                    let version = version_next;
                    version_next += 1;
                    token_next += 1;
                    tokens.insert(token_next, (n, version, false));
                    model.entry(n).or_default().inflight.push((version, false));
                    store.submit_delete(key(n), version, token_next);
                }
                7 if store.is_idle() && rng.gen_bool(0.2) => {
                    store.checkpoint().map_err(|e| format!("checkpoint: {e}"))?;
                }
                _ => {
                    store.poll(&mut events);
                }
            }
            for event in events.drain(..) {
                let (n, version, live) = tokens.remove(&event.token).expect("known token");
                let entry = model.get_mut(&n).expect("model");
                let position = entry
                    .inflight
                    .iter()
                    .position(|&(v, _)| v == version)
                    .unwrap();
                entry.inflight.remove(position);
                match event.outcome {
                    Outcome::Put(Ok(())) | Outcome::Delete(Ok(_)) => {
                        if entry.acked.is_some_and(|(v, _)| v > version) {
                            return Err(format!("key {n}: ack of v{version} after a newer ack"));
                        }
                        entry.acked = Some((version, live));
                    }
                    Outcome::Put(Err(PutError::NoSpace))
                    | Outcome::Delete(Err(PutError::NoSpace)) => {}
                    other => return Err(format!("key {n} v{version}: unexpected {other:?}")),
                }
            }
        }
        // Power loss with whatever is in flight.
        for device in &devices {
            device.crash();
        }
        crashes += 1;
        drop(store);
        tokens.clear();
        store = open(&devices, FormatPolicy::Never, fua)?;
        for n in 0..KEYS {
            let entry = model.entry(n).or_default();
            let acked = entry.acked;
            let floor = acked.map_or(0, |(v, _)| v);
            let newer: Vec<(u64, bool)> = entry
                .inflight
                .iter()
                .copied()
                .filter(|&(v, _)| v > floor)
                .collect();
            let observed = match store.get(key(n)) {
                Ok((header, data)) => {
                    let version = header.meta.version;
                    let allowed =
                        acked == Some((version, true)) || newer.contains(&(version, true));
                    if !allowed {
                        return Err(format!(
                            "round {round} key {n}: got v{version}, acked {acked:?}, in flight {newer:?}"
                        ));
                    }
                    if data != value(key(n), version, VALUE_BYTES_MAX) {
                        return Err(format!("round {round} key {n}: v{version} has wrong bytes"));
                    }
                    (version, true)
                }
                Err(GetError::NotFound) => {
                    let deleted_ok =
                        acked.is_none_or(|(_, live)| !live) || newer.iter().any(|&(_, live)| !live);
                    let never_acked_live_ok = acked.is_none() || acked.is_some_and(|(_, l)| !l);
                    if !(deleted_ok || never_acked_live_ok) {
                        return Err(format!(
                            "round {round} key {n}: lost; acked {acked:?}, in flight {newer:?}"
                        ));
                    }
                    // The newest delete that may have landed bounds what may come back later.
                    let bound = newer.iter().filter(|&&(_, l)| !l).map(|&(v, _)| v).max();
                    (bound.unwrap_or(floor), false)
                }
                Err(error) => {
                    return Err(format!("round {round} key {n}: {error} (acked {acked:?})"));
                }
            };
            entry.acked = if observed.0 == 0 {
                None
            } else {
                Some(observed)
            };
            entry.inflight.clear();
        }
        if rng.gen_bool(0.3) {
            let report = store.scrub().map_err(|e| format!("scrub: {e}"))?;
            if let Some(bad) = report.bad.iter().find(|bad| bad.live) {
                return Err(format!(
                    "round {round}: scrub found a bad live record {bad:?}"
                ));
            }
        }
    }
    Ok(crashes)
}

#[test]
fn acknowledged_writes_survive_simulated_power_loss() {
    if let Ok(seed) = std::env::var("DS_CRASH_SEED") {
        let seed: u64 = seed.parse().expect("DS_CRASH_SEED is a number");
        if let Err(message) = run_seed(seed) {
            panic!("seed {seed}: {message}");
        }
        return;
    }
    let seeds: u64 = std::env::var("DS_CRASH_SEEDS").map_or(1000, |s| s.parse().expect("number"));
    let first: u64 = std::env::var("DS_CRASH_FIRST").map_or(0, |s| s.parse().expect("number"));
    let mut crashes = 0;
    let mut failures = Vec::new();
    for seed in first..first + seeds {
        match std::panic::catch_unwind(|| run_seed(seed)) {
            Ok(Ok(count)) => crashes += count,
            Ok(Err(message)) => failures.push(format!("seed {seed}: {message}")),
            Err(_) => failures.push(format!(
                "seed {seed}: panicked (replay with DS_CRASH_SEED={seed})"
            )),
        }
        if failures.len() >= 5 {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "replay with DS_CRASH_SEED=<seed>:\n{}",
        failures.join("\n")
    );
    println!("{crashes} simulated crashes over {seeds} seeds, all recovered correctly");
}
