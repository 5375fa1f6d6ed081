//! `ds`: the client of a ds node. `--node HOST:PORT` (or `DS_NODE`) names the node.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ds::cli::parse_size;
use ds::tools::node_bench::{self, BenchOp};
use ds_proto::{Client, ObjectId, Scheme, LENGTH_TO_END};
use indicatif::{ProgressBar, ProgressStyle};

/// Files larger than this show a progress bar (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 16 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(name = "ds", version = ds::GIT_REVISION, about = "Client of a ds object store node")]
struct Args {
    /// The node to talk to.
    #[arg(long, global = true, env = "DS_NODE", default_value = "127.0.0.1:7000")]
    node: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an empty object and print its id.
    Create {
        /// Erasure coding: K data shards + M parity shards (default: the node's
        /// `[objects] default_scheme`).
        #[arg(long)]
        scheme: Option<Scheme>,
    },
    /// Write a file (or stdin, `-`) into an object; without --id a new object is created and
    /// its id printed.
    Put {
        /// The file to write, or `-` for stdin.
        file: String,
        #[arg(long)]
        id: Option<ObjectId>,
        /// Byte offset in the object (with --id).
        #[arg(long, default_value = "0", value_parser = size_arg, requires = "id")]
        offset: u64,
        /// Scheme of a new object (default: the node's `[objects] default_scheme`).
        #[arg(long, conflicts_with = "id")]
        scheme: Option<Scheme>,
    },
    /// Read an object (to stdout unless -o).
    Get {
        id: ObjectId,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[arg(long, default_value = "0", value_parser = size_arg)]
        offset: u64,
        /// Bytes to read (default: to the end).
        #[arg(long, value_parser = size_arg)]
        len: Option<u64>,
    },
    /// Delete an object.
    Delete { id: ObjectId },
    /// Size, scheme, version and where the parts of an object live.
    Stat {
        id: ObjectId,
        #[arg(long)]
        json: bool,
    },
    /// Check that the node answers.
    Ping,
    /// The node's view of the overlay: routing table, neighbourhood, counters; with --key, the
    /// nodes responsible for that id.
    Overlay {
        #[arg(long)]
        key: Option<ObjectId>,
        /// How many responsible nodes to ask for (with --key).
        #[arg(long, default_value = "6", requires = "key")]
        n: u64,
        #[arg(long)]
        json: bool,
    },
    /// The node's performance counters, from its stats socket.
    Stats {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, conflicts_with = "prom")]
        json: bool,
        #[arg(long)]
        prom: bool,
    },
    /// A live per-core view of a node (like spdk_top).
    Top {
        #[arg(long)]
        socket: PathBuf,
        /// Seconds between refreshes.
        #[arg(long, default_value = "1")]
        interval: f64,
        /// Stop after this many refreshes.
        #[arg(long)]
        iterations: Option<u64>,
    },
    /// A local cluster of daemons on loopback with file-backed devices.
    #[command(name = "dev-cluster", subcommand)]
    DevCluster(DevCluster),
    /// Administration of a node: its repair state, draining it.
    #[command(subcommand)]
    Admin(Admin),
    /// Simulate repair under churn (no sockets): thousands of nodes, seeded, deterministic;
    /// objects lost, shards rebuilt and moved, repair traffic per node.
    #[command(name = "repair-sim")]
    RepairSim(ds::tools::repair_sim::RepairSimArgs),
    /// Load the node and report ops/s, MB/s and latency percentiles.
    Bench {
        #[arg(long, value_enum, default_value = "put")]
        op: OpArg,
        /// Object size.
        #[arg(long, default_value = "4K", value_parser = size_arg)]
        size: u64,
        /// Requests kept in flight.
        #[arg(long, default_value = "4")]
        concurrency: usize,
        /// Connections the requests are pipelined over (at most --concurrency).
        #[arg(long, default_value = "2")]
        connections: usize,
        #[arg(long, default_value = "10")]
        duration: f64,
        /// Scheme of the objects written (default: the node's `[objects] default_scheme`).
        #[arg(long)]
        scheme: Option<Scheme>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Admin {
    /// The node's repair and scrub state: stripes, full, degraded, lost, repair_backlog, ...
    Health {
        #[arg(long)]
        json: bool,
    },
    /// Move every shard off the node, then stop it (it leaves the cluster). Waits until the
    /// node has stopped unless --no-wait.
    Drain {
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum DevCluster {
    /// Start N nodes under DIR, seeded to each other; returns once all have joined and writes
    /// DIR/cluster.json.
    Up {
        #[arg(long)]
        nodes: usize,
        #[arg(long)]
        dir: PathBuf,
        /// Default scheme of the nodes' new objects (`[objects] default_scheme` in each config).
        #[arg(long, default_value = "1+0")]
        scheme: Scheme,
        /// Size of each node's device file (created sparse).
        #[arg(long, default_value = "2G")]
        device_size: String,
        /// Data cores per node.
        #[arg(long, default_value = "1")]
        cores: usize,
        /// Seconds between the nodes' repair passes (`[repair] interval_secs`).
        #[arg(long, default_value = "10")]
        repair_interval: u64,
        /// How the nodes' data cores wait for work (`poll_mode` in each config). Sleep by
        /// default: the nodes share this machine's CPUs, and a spinning core takes them from
        /// the others.
        #[arg(long, default_value = "sleep", value_parser = ["busy", "adaptive", "sleep"])]
        poll_mode: String,
    },
    /// Stop the nodes listed in DIR/cluster.json.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OpArg {
    Put,
    Get,
    Mixed,
    /// Echo `--size` bytes: the protocol and network alone, no storage.
    Ping,
}

fn size_arg(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|e| e.to_string())
}

fn main() {
    let args = Args::parse();
    // `ds bench` moves gigabytes through 1 MiB buffers; the other commands do not mind.
    if let Err(error) = ds::allocator::keep_freed_memory() {
        eprintln!("ds: warning: {error}; freed memory goes back to the kernel");
    }
    if let Err(error) = run(args) {
        eprintln!("ds: {error:#}");
        std::process::exit(1);
    }
}

fn print_health(health: &serde_json::Value) {
    for key in [
        "stripes",
        "full",
        "degraded",
        "lost",
        "repair_backlog",
        "objects",
        "passes",
        "shards_rebuilt",
        "bytes_rebuilt",
        "objects_moved",
        "repair_errors",
        "scrub_passes",
        "scrub_bytes",
        "scrub_records",
        "scrub_corrupt",
        "scrub_damaged",
        "scrub_progress",
        "draining",
        "drain_remaining",
    ] {
        println!("{key:<16} {}", health[key]);
    }
}

fn connect(node: &str) -> anyhow::Result<Client> {
    Client::connect(node, CONNECT_TIMEOUT).with_context(|| format!("connecting to {node}"))
}

fn run(args: Args) -> anyhow::Result<()> {
    let node = args.node.as_str();
    match args.command {
        Command::Create { scheme } => {
            let id = connect(node)?.create(scheme).context("create")?;
            println!("{id}");
        }
        Command::Put {
            file,
            id,
            offset,
            scheme,
        } => {
            let mut client = connect(node)?;
            let (reader, size): (Box<dyn Read>, Option<u64>) = if file == "-" {
                (Box::new(io::stdin().lock()), None)
            } else {
                let f = File::open(&file).with_context(|| format!("opening {file}"))?;
                let size = f.metadata().ok().map(|m| m.len());
                (Box::new(f), size)
            };
            let (id, created) = match id {
                Some(id) => (id, false),
                None => (client.create(scheme).context("create")?, true),
            };
            let bar = progress(size);
            let written = client
                .put_from(id, offset, reader, &mut |done| bar.set_position(done))
                .with_context(|| format!("writing {file} into {id}"))?;
            bar.finish_and_clear();
            if created {
                println!("{id}");
            } else {
                eprintln!("wrote {written} bytes at {offset} of {id}");
            }
        }
        Command::Get {
            id,
            output,
            offset,
            len,
        } => {
            let mut client = connect(node)?;
            let length = len.unwrap_or(LENGTH_TO_END);
            let total = match len {
                Some(len) => Some(len),
                None if output.is_some() => Some(client.stat(id)?.size.saturating_sub(offset)),
                None => None,
            };
            let bar = progress(total.filter(|_| output.is_some()));
            let sink: Box<dyn Write> = match &output {
                Some(path) => Box::new(
                    File::create(path).with_context(|| format!("creating {}", path.display()))?,
                ),
                None => Box::new(io::stdout().lock()),
            };
            let mut sink = BufWriter::with_capacity(1 << 20, sink);
            client
                .get(id, offset, length, &mut sink, &mut |done| {
                    bar.set_position(done)
                })
                .with_context(|| format!("reading {id}"))?;
            sink.flush().context("writing the output")?;
            bar.finish_and_clear();
        }
        Command::Delete { id } => connect(node)?
            .delete(id)
            .with_context(|| format!("deleting {id}"))?,
        Command::Stat { id, json } => {
            let stat = connect(node)?
                .stat(id)
                .with_context(|| format!("stat {id}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stat)?);
            } else {
                println!("id:       {}", stat.id);
                println!("size:     {}", stat.size);
                println!("scheme:   {}", stat.scheme);
                println!("version:  {}", stat.version);
                let stripes: std::collections::BTreeSet<u32> =
                    stat.parts.iter().map(|p| p.stripe).collect();
                println!("stripes:  {} stored", stripes.len());
                for part in stat.parts.iter().take(16) {
                    println!(
                        "  stripe {} shard {} on node {} device {}",
                        part.stripe, part.shard, part.node, part.device
                    );
                }
                if stat.parts.len() > 16 {
                    println!(
                        "  ... {} parts in all (--json lists them)",
                        stat.parts.len()
                    );
                }
                println!("missing:  {} shards", stat.missing.len());
                for gap in stat.missing.iter().take(16) {
                    println!(
                        "  stripe {} shard {} should be on node {}: {}",
                        gap.stripe, gap.shard, gap.node, gap.reason
                    );
                }
                if stat.stripes_listed < stat.stripes {
                    println!(
                        "  (the first {} of {} stripes listed)",
                        stat.stripes_listed, stat.stripes
                    );
                }
            }
        }
        Command::Ping => {
            let started = std::time::Instant::now();
            connect(node)?.ping(b"ds ping").context("ping")?;
            println!(
                "{node}: ok in {:.3} ms",
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        Command::Overlay { key, n, json } => {
            anyhow::ensure!((1..=64).contains(&n), "--n must be between 1 and 64");
            let view = connect(node)?
                .overlay(key.map(|key| (key, n)))
                .context("overlay")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                let data = |peer: &ds_proto::OverlayPeer| {
                    peer.data
                        .as_ref()
                        .map_or(String::new(), |data| format!(" data {data}"))
                };
                println!(
                    "node {} at {}{}",
                    view.node.id,
                    view.node.addr,
                    data(&view.node)
                );
                if let Some(responsible) = &view.responsible {
                    println!("responsible for {}:", key.expect("asked"));
                    for peer in responsible {
                        println!("  {} {}{}", peer.id, peer.addr, data(peer));
                    }
                }
                println!("neighbourhood ({}):", view.neighbourhood.len());
                for peer in &view.neighbourhood {
                    println!("  {} {}{}", peer.id, peer.addr, data(peer));
                }
                println!("routing table: {} entries", view.routing.len());
                for (name, value) in &view.stats {
                    if !value.is_object() {
                        println!("  {name}: {value}");
                    }
                }
            }
        }
        Command::DevCluster(DevCluster::Up {
            nodes,
            dir,
            scheme,
            device_size,
            cores,
            repair_interval,
            poll_mode,
        }) => {
            parse_size(&device_size).context("--device-size")?;
            let spec = ds::tools::dev_cluster::UpSpec {
                nodes,
                dir: dir.clone(),
                scheme,
                device_size,
                cores,
                repair_interval,
                poll_mode,
            };
            let cluster = ds::tools::dev_cluster::up(&spec)?;
            for node in &cluster.nodes {
                println!(
                    "node {} client {} overlay {} pid {}",
                    node.id, node.client_addr, node.overlay_addr, node.pid
                );
            }
            println!(
                "{} nodes up, default scheme {}; {} lists them",
                cluster.nodes.len(),
                cluster.scheme,
                dir.join("cluster.json").display()
            );
        }
        Command::Admin(Admin::Health { json }) => {
            let health = connect(node)?.health().context("health")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&health)?);
            } else {
                print_health(&health);
            }
        }
        Command::Admin(Admin::Drain { no_wait, timeout }) => {
            let health = connect(node)?.drain().context("drain")?;
            if no_wait {
                print_health(&health);
                return Ok(());
            }
            let bar = indicatif::ProgressBar::new_spinner();
            let started = Instant::now();
            loop {
                std::thread::sleep(Duration::from_millis(500));
                // The node stops once drained: a refused connection is the end.
                let health =
                    match Client::connect(node, CONNECT_TIMEOUT).and_then(|mut c| c.health()) {
                        Ok(health) => health,
                        Err(_) => break,
                    };
                bar.set_message(format!(
                    "draining {node}: {} objects with shards left, {} shards moved",
                    health["drain_remaining"], health["shards_rebuilt"]
                ));
                bar.tick();
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(timeout),
                    "{node} is still draining after {timeout} s"
                );
            }
            bar.finish_and_clear();
            println!("{node} drained and stopped");
        }
        Command::RepairSim(args) => ds::tools::repair_sim::main(&args)?,
        Command::DevCluster(DevCluster::Down { dir }) => {
            let stopped = ds::tools::dev_cluster::down(&dir)?;
            println!("{stopped} nodes stopped");
        }
        Command::Stats { socket, json, prom } => {
            let format = if json {
                ds::stats::client::Format::Json
            } else if prom {
                ds::stats::client::Format::Prom
            } else {
                ds::stats::client::Format::Table
            };
            ds::stats::client::print_stats(&socket, format)?;
        }
        Command::Top {
            socket,
            interval,
            iterations,
        } => {
            anyhow::ensure!(interval > 0.0, "--interval must be above 0");
            ds::stats::top::run_top(&socket, Duration::from_secs_f64(interval), iterations)?;
        }
        Command::Bench {
            op,
            size,
            concurrency,
            connections,
            duration,
            scheme,
            json,
        } => {
            anyhow::ensure!(concurrency >= 1, "--concurrency must be at least 1");
            anyhow::ensure!(duration > 0.0, "--duration must be above 0");
            let op = match op {
                OpArg::Put => BenchOp::Put,
                OpArg::Get => BenchOp::Get,
                OpArg::Mixed => BenchOp::Mixed,
                OpArg::Ping => BenchOp::Ping,
            };
            let spec = node_bench::Spec {
                node: node.to_string(),
                op,
                size,
                concurrency,
                connections,
                duration: Duration::from_secs_f64(duration),
                progress: !json,
                scheme,
            };
            let report = node_bench::run(&spec)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", report.human());
            }
        }
    }
    Ok(())
}

fn progress(total: Option<u64>) -> ProgressBar {
    match total {
        Some(total) if total >= PROGRESS_MIN_BYTES => {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("template"),
            );
            bar
        }
        _ => ProgressBar::hidden(),
    }
}
