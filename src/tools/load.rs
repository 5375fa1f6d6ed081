//! A write load for crash tests: every core writes fresh shards with deterministic content and
//! prints one `ACK` line per durable put, so a test can kill the process at any moment and check
//! afterwards that everything printed reads back bit-exact.

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use ds_store::{CoreStore, Event, Outcome, ShardKey, ShardMeta};

use crate::local::{core_of, LocalStore};

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Stop after this many seconds (0: run until killed).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
    /// Largest shard written; sizes vary from 0 to this.
    #[arg(long, default_value = "64K")]
    pub size: String,
    /// Puts in flight per core.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seed of the keys (different runs on one device must differ).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Content of the shard `key`: its length and bytes follow from the key alone.
pub fn payload(key: ShardKey, max_bytes: usize) -> Vec<u8> {
    let mut state = (key.object as u64) ^ ((key.object >> 64) as u64).rotate_left(7);
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u32
    };
    let len = next() as usize % (max_bytes + 1);
    (0..len).map(|_| next() as u8).collect()
}

pub fn run(store: LocalStore, args: &LoadArgs) -> anyhow::Result<i32> {
    let max_bytes = crate::cli::parse_size(&args.size)? as usize;
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let cores = store.cores.len();
    let (acks, printed) = mpsc::channel::<String>();
    let deadline = (args.seconds > 0).then(|| Instant::now() + Duration::from_secs(args.seconds));
    let mut threads = Vec::new();
    for core in store.cores {
        let acks = acks.clone();
        let args = args.clone();
        threads.push(std::thread::spawn(move || {
            drive(core, cores, &args, max_bytes, deadline, acks)
        }));
    }
    drop(acks);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in printed {
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
    }
    Ok(0)
}

fn drive(
    mut store: CoreStore,
    cores: usize,
    args: &LoadArgs,
    max_bytes: usize,
    deadline: Option<Instant>,
    acks: mpsc::Sender<String>,
) -> anyhow::Result<()> {
    store.rebind_queues()?;
    let core = store.core();
    let mut counter = 0u64;
    let mut inflight = std::collections::HashMap::new();
    let mut events: Vec<Event> = Vec::new();
    loop {
        let running = deadline.is_none_or(|d| Instant::now() < d);
        while running && inflight.len() < args.concurrency {
            // Keys this core owns: try counters until one hashes here.
            let key = loop {
                counter += 1;
                let object = u128::from(args.seed) << 96
                    | u128::from(core as u64) << 64
                    | u128::from(counter);
                let key = ShardKey::new(object, 0, 0);
                if core_of(key, cores) == core {
                    break key;
                }
            };
            let data = payload(key, max_bytes);
            let meta = ShardMeta {
                version: 1,
                scheme_k: 1,
                scheme_m: 0,
                object_bytes: data.len() as u64,
            };
            store.submit_put(key, meta, &data, counter);
            inflight.insert(counter, (key, data.len(), crc32c::crc32c(&data)));
        }
        if !running && inflight.is_empty() {
            return Ok(());
        }
        store.poll(&mut events);
        for event in events.drain(..) {
            let (key, len, crc) = inflight.remove(&event.token).expect("known token");
            match event.outcome {
                Outcome::Put(Ok(())) => {
                    let _ = acks.send(format!("ACK {key} 1 {len} {crc:08x}"));
                }
                Outcome::Put(Err(error)) => anyhow::bail!("put {key} failed: {error}"),
                other => anyhow::bail!("unexpected outcome {other:?}"),
            }
        }
        store.wait(Duration::from_millis(1));
    }
}
