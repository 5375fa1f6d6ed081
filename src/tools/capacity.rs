//! `ds-store bench-index` and `ds-store bench-recovery`: what the index costs in RAM per stored
//! shard, and how long start-up takes to rebuild it, with and without a checkpoint.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use ds_store::{FormatOptions, FormatPolicy};

use super::bench::{drive, key, progress, Load, Request, ADAPTIVE_SPIN};
use crate::local::{LocalStore, OpenSpec};

#[derive(Args, Debug, Clone)]
pub struct CapacityArgs {
    /// Shards to store, e.g. 10M.
    #[arg(long, default_value = "1M")]
    pub count: String,
    /// Data bytes per shard.
    #[arg(long, default_value = "0")]
    pub size: String,
    /// Puts in flight.
    #[arg(long, default_value_t = 256)]
    pub depth: usize,
    /// Create the device file at this size.
    #[arg(long, default_value = "24G")]
    pub create: String,
    /// Record alignment in bytes; default: the device's logical block.
    #[arg(long)]
    pub block: Option<u32>,
}

fn fill(devices: &[PathBuf], args: &CapacityArgs) -> anyhow::Result<(LocalStore, u64, f64)> {
    let count = crate::cli::parse_size(&args.count)?;
    let size = crate::cli::parse_size(&args.size)? as usize;
    let mut store = LocalStore::open(&OpenSpec {
        paths: devices.to_vec(),
        create_bytes: Some(crate::cli::parse_size(&args.create)?),
        policy: FormatPolicy::Always,
        format: Some(FormatOptions {
            block_bytes: args.block,
            ..FormatOptions::new(1, rand::random())
        }),
        sqpoll: false,
        durability: Default::default(),
    })?;
    let data = vec![0x5a_u8; size];
    let bar = progress(count, "storing");
    let started = Instant::now();
    let core = &mut store.cores[0];
    let load = Load {
        depth: args.depth,
        count: Some(count),
        deadline: None,
        spin: ADAPTIVE_SPIN,
    };
    let (done, _) = drive(
        core,
        load,
        |n| Request::Put(key(n)),
        &data,
        |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    Ok((store, done, started.elapsed().as_secs_f64()))
}

/// Stores `--count` shards and prints the index's heap bytes per shard.
pub fn run_index(devices: &[PathBuf], args: &CapacityArgs) -> anyhow::Result<i32> {
    let (store, done, seconds) = fill(devices, args)?;
    let core = &store.cores[0];
    anyhow::ensure!(
        core.len() as u64 == done,
        "index holds {} of {done} shards",
        core.len()
    );
    let heap = core.index_heap_bytes();
    println!(
        "{}",
        serde_json::json!({
            "shards": done,
            "index_heap_bytes": heap,
            "bytes_per_shard": heap as f64 / done as f64,
            "puts_per_second": done as f64 / seconds,
        })
    );
    Ok(0)
}

/// Stores `--count` shards, then times start-up: full log replay, checkpoint only, and
/// checkpoint plus replay of a tail of 10% more shards.
pub fn run_recovery(devices: &[PathBuf], args: &CapacityArgs) -> anyhow::Result<i32> {
    let (store, done, _) = fill(devices, args)?;
    drop(store);
    let reopen = || -> anyhow::Result<(LocalStore, f64)> {
        let started = Instant::now();
        let store = LocalStore::open(&OpenSpec {
            paths: devices.to_vec(),
            create_bytes: None,
            policy: FormatPolicy::Never,
            format: None,
            sqpoll: false,
            durability: Default::default(),
        })?;
        Ok((store, started.elapsed().as_secs_f64()))
    };
    let (mut store, replay_seconds) = reopen()?;
    anyhow::ensure!(store.cores[0].len() as u64 == done, "replay lost shards");
    let replay = store.reports[0].clone();
    store.cores[0].checkpoint()?;
    drop(store);
    let (mut store, checkpoint_seconds) = reopen()?;
    anyhow::ensure!(
        store.cores[0].len() as u64 == done,
        "checkpoint lost shards"
    );
    let tail = done / 10;
    let data = vec![0x5a_u8; crate::cli::parse_size(&args.size)? as usize];
    let core = &mut store.cores[0];
    let load = Load {
        depth: args.depth,
        count: Some(tail),
        deadline: None,
        spin: ADAPTIVE_SPIN,
    };
    drive(
        core,
        load,
        |n| Request::Put(key(1 << 40 | n)),
        &data,
        |_| {},
    )?;
    drop(store);
    let (store, tail_seconds) = reopen()?;
    anyhow::ensure!(
        store.cores[0].len() as u64 == done + tail,
        "tail replay lost shards"
    );
    println!(
        "{}",
        serde_json::json!({
            "records": done,
            "full_replay_seconds": replay_seconds,
            "full_replay_records": replay.records_replayed,
            "full_replay_segments": replay.segments_replayed,
            "checkpoint_only_seconds": checkpoint_seconds,
            "checkpoint_plus_tail_seconds": tail_seconds,
            "tail_records": tail,
        })
    );
    Ok(0)
}
