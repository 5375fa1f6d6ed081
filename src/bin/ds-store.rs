//! `ds-store`: offline tool for a node's devices: format, put/get/delete shards, stat, scrub,
//! and the write load and benchmarks used by the tests and `bench/`.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ds::cli::{parse_key, parse_node_id, parse_size};
use ds::local::{LocalStore, OpenSpec};
use ds_store::{FormatOptions, FormatPolicy, GetError, ShardMeta};

#[derive(Parser)]
#[command(name = "ds-store", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DS_GIT_REVISION"), ")"))]
#[command(about = "Offline tool for the shard store on a node's devices")]
struct Cli {
    /// Device files or block devices (repeat for a pool).
    #[arg(long = "device", short = 'd', global = true, value_name = "PATH")]
    devices: Vec<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `ds_store=debug`.
    #[arg(long, global = true, default_value = "warn", env = "DS_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new superblock. Without --force only empty devices are formatted.
    Format {
        /// Create missing files at this size (sparse), e.g. 1G.
        #[arg(long)]
        size: Option<String>,
        /// Data cores: one partition per core on every device.
        #[arg(long, default_value_t = 1)]
        cores: usize,
        /// Segment size, e.g. 64M.
        #[arg(long, default_value = "64M")]
        segment: String,
        /// Node id (hex); random when omitted.
        #[arg(long)]
        node_id: Option<String>,
        /// Overwrite whatever the devices hold.
        #[arg(long)]
        force: bool,
    },
    /// Store a file (or stdin) as shard KEY = OBJECT[/STRIPE[/SHARD]].
    Put {
        key: String,
        file: String,
        /// Version; defaults to the current time in nanoseconds.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Print shard KEY to stdout or to --output.
    Get {
        key: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Delete shard KEY.
    Delete {
        key: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Devices, shards and recovery of every core.
    Stat,
    /// Verify every record; exits 1 when any is bad.
    Scrub,
    /// Write load for crash tests: prints `ACK key version bytes crc32c` per durable put.
    Load(ds::tools::load::LoadArgs),
    /// Benchmark appends or reads against the devices.
    Bench(ds::tools::bench::BenchArgs),
    /// Store many shards; print the index's RAM per shard.
    BenchIndex(ds::tools::capacity::CapacityArgs),
    /// Store many shards; time start-up with and without a checkpoint.
    BenchRecovery(ds::tools::capacity::CapacityArgs),
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("ds-store: {error:#}");
            std::process::exit(2);
        }
    }
}

fn now_version() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(1, |d| d.as_nanos() as u64)
}

fn open(cli: &Cli) -> anyhow::Result<LocalStore> {
    LocalStore::open(&OpenSpec {
        paths: cli.devices.clone(),
        create_bytes: None,
        policy: FormatPolicy::Never,
        format: None,
        sqpoll: false,
        durability: Default::default(),
    })
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Format {
            size,
            cores,
            segment,
            node_id,
            force,
        } => {
            let create_bytes = size.as_deref().map(parse_size).transpose()?;
            let node_id = match node_id {
                Some(text) => parse_node_id(text)?,
                None => rand::random::<u128>(),
            };
            let segment_bytes = parse_size(segment)?;
            let policy = if *force {
                FormatPolicy::Always
            } else {
                FormatPolicy::IfEmpty
            };
            let store = LocalStore::open(&OpenSpec {
                paths: cli.devices.clone(),
                create_bytes,
                policy,
                format: Some(FormatOptions {
                    partitions: *cores,
                    segment_bytes,
                    node_id,
                    block_bytes: None,
                }),
                sqpoll: false,
                durability: Default::default(),
            })?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"node_id": format!("{:032x}", store.node_id), "cores": cores})
                );
            } else {
                println!(
                    "node {:032x}: {} device(s), {} core(s)",
                    store.node_id,
                    store.devices.len(),
                    cores
                );
            }
            Ok(0)
        }
        Command::Put { key, file, version } => {
            let key = parse_key(key)?;
            let mut data = Vec::new();
            if file == "-" {
                std::io::stdin()
                    .read_to_end(&mut data)
                    .context("reading stdin")?;
            } else {
                data = std::fs::read(file).with_context(|| format!("reading {file}"))?;
            }
            let mut store = open(&cli)?;
            let meta = ShardMeta {
                version: version.unwrap_or_else(now_version),
                scheme_k: 1,
                scheme_m: 0,
                object_bytes: data.len() as u64,
            };
            store
                .store_for(key)
                .put(key, meta, &data)
                .with_context(|| format!("storing {key}"))?;
            store.store_for(key).checkpoint().context("checkpoint")?;
            Ok(0)
        }
        Command::Get { key, output } => {
            let key = parse_key(key)?;
            let mut store = open(&cli)?;
            let (_, data) = match store.store_for(key).get(key) {
                Ok(found) => found,
                Err(GetError::NotFound) => bail!("shard {key} not found"),
                Err(error) => return Err(error).with_context(|| format!("reading {key}")),
            };
            match output {
                Some(path) => std::fs::write(path, &data)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout()
                    .write_all(&data)
                    .context("writing stdout")?,
            }
            Ok(0)
        }
        Command::Delete { key, version } => {
            let key = parse_key(key)?;
            let mut store = open(&cli)?;
            let version = version.unwrap_or_else(now_version);
            let existed = store
                .store_for(key)
                .delete(key, version)
                .with_context(|| format!("deleting {key}"))?;
            store.store_for(key).checkpoint().context("checkpoint")?;
            if !existed {
                bail!("shard {key} not found (tombstone written anyway)");
            }
            Ok(0)
        }
        Command::Stat => {
            let store = open(&cli)?;
            let cores: Vec<_> = store
                .cores
                .iter()
                .zip(&store.reports)
                .map(|(core, report)| {
                    serde_json::json!({
                        "core": core.core(),
                        "shards": core.len(),
                        "index_heap_bytes": core.index_heap_bytes(),
                        "devices": core.devices().iter().map(|(slot, name, free)| serde_json::json!({
                            "slot": slot, "name": name, "free_bytes": free})).collect::<Vec<_>>(),
                        "recovery": {
                            "checkpoints_loaded": report.checkpoints_loaded,
                            "checkpoint_entries": report.checkpoint_entries,
                            "segments_replayed": report.segments_replayed,
                            "records_replayed": report.records_replayed,
                            "records_skipped": report.records_skipped,
                            "seconds": report.elapsed.as_secs_f64(),
                        },
                    })
                })
                .collect();
            let value =
                serde_json::json!({"node_id": format!("{:032x}", store.node_id), "cores": cores});
            if cli.json {
                println!("{value}");
            } else {
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
            Ok(0)
        }
        Command::Scrub => {
            let mut store = open(&cli)?;
            let mut bad = Vec::new();
            let mut records = 0;
            for core in &mut store.cores {
                let report = core.scrub().context("scrub")?;
                records += report.records;
                bad.extend(report.bad);
            }
            if cli.json {
                let list: Vec<_> = bad
                    .iter()
                    .map(|b| {
                        serde_json::json!({"device": b.device, "offset": b.offset,
                        "key": b.key.map(|k| k.to_string()), "live": b.live, "reason": b.reason})
                    })
                    .collect();
                println!("{}", serde_json::json!({"records": records, "bad": list}));
            } else {
                println!("{records} records checked, {} bad", bad.len());
                for b in &bad {
                    let key = b.key.map_or("?".to_string(), |k| k.to_string());
                    println!(
                        "  {} offset {}: {} (key {key}, live {})",
                        b.device, b.offset, b.reason, b.live
                    );
                }
            }
            Ok(if bad.is_empty() { 0 } else { 1 })
        }
        Command::Load(args) => ds::tools::load::run(open(&cli)?, args),
        Command::Bench(args) => ds::tools::bench::run(&cli.devices, args, cli.json),
        Command::BenchIndex(args) => ds::tools::capacity::run_index(&cli.devices, args),
        Command::BenchRecovery(args) => ds::tools::capacity::run_recovery(&cli.devices, args),
    }
}
