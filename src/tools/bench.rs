//! `ds-store bench`: appends or reads of fixed-size shard records against one core's store on a
//! freshly formatted device, with a fixed number of requests in flight. Prints ops/s, MB/s and
//! latency percentiles (hdrhistogram). `bench/store.sh` runs it beside fio.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use ds_store::{CoreStore, Event, FormatOptions, FormatPolicy, Outcome, ShardKey, ShardMeta};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};

use crate::local::{LocalStore, OpenSpec};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BenchOp {
    /// Puts of new shards (sequential appends to the log).
    Append,
    /// Random gets of shards written first.
    Read,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(long, value_enum)]
    pub op: BenchOp,
    /// Shard size, e.g. 4K or 1M.
    #[arg(long, default_value = "4K")]
    pub size: String,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    pub depth: usize,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Create the device file at this size when missing.
    #[arg(long, default_value = "4G")]
    pub create: String,
    /// For reads: bytes of shards written first (default: half the device).
    #[arg(long)]
    pub fill: Option<String>,
    /// Record alignment in bytes (512 or 4096); default: the device's logical block.
    #[arg(long)]
    pub block: Option<u32>,
    /// Use io_uring SQPOLL.
    #[arg(long)]
    pub sqpoll: bool,
    /// `busy` polls without ever blocking (SPDK-style, a full core); `adaptive` spins 50 µs,
    /// then blocks on the device; `sleep` blocks as soon as a poll finds nothing.
    #[arg(long, value_enum, default_value = "adaptive")]
    pub poll: PollMode,
    /// Use the shards a previous read benchmark left on the device instead of formatting and
    /// filling (reads then run on a device that is not busy writing back the fill).
    #[arg(long)]
    pub keep: bool,
    /// How batches become durable.
    #[arg(long, value_enum, default_value = "auto")]
    pub durability: DurabilityArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PollMode {
    Busy,
    Adaptive,
    Sleep,
}

impl PollMode {
    fn spin(self) -> Duration {
        match self {
            PollMode::Busy => Duration::MAX,
            PollMode::Adaptive => ADAPTIVE_SPIN,
            PollMode::Sleep => Duration::ZERO,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DurabilityArg {
    Auto,
    Fua,
    Flush,
}

impl From<DurabilityArg> for ds_store::Durability {
    fn from(arg: DurabilityArg) -> Self {
        match arg {
            DurabilityArg::Auto => Self::Auto,
            DurabilityArg::Fua => Self::Fua,
            DurabilityArg::Flush => Self::Flush,
        }
    }
}

pub fn run(devices: &[PathBuf], args: &BenchArgs, json: bool) -> anyhow::Result<i32> {
    let size = crate::cli::parse_size(&args.size)? as usize;
    anyhow::ensure!(args.depth > 0, "--depth must be at least 1");
    let mut store = LocalStore::open(&OpenSpec {
        paths: devices.to_vec(),
        create_bytes: Some(crate::cli::parse_size(&args.create)?),
        policy: if args.keep {
            FormatPolicy::Never
        } else {
            FormatPolicy::Always
        },
        format: (!args.keep).then(|| FormatOptions {
            block_bytes: args.block,
            ..FormatOptions::new(1, rand::random())
        }),
        sqpoll: args.sqpoll,
        durability: args.durability.into(),
    })?;
    let core = &mut store.cores[0];
    let spin = args.poll.spin();
    let data: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
    let device_bytes: u64 = store.devices.iter().map(|d| d.info().size_bytes).sum();
    let mut written = 0u64;
    if args.keep {
        // Shards of an earlier `--op read` run: its keys are 0..len.
        written = core.len() as u64;
        anyhow::ensure!(
            written > 0,
            "--keep: the device holds no shards; run once without it"
        );
    } else if let BenchOp::Read = args.op {
        let fill = match &args.fill {
            Some(text) => crate::cli::parse_size(text)?,
            None => device_bytes / 2,
        };
        let count = (fill / size.max(1) as u64).max(1);
        let bar = progress(count, "filling");
        let make = |n| Request::Put(key(n));
        let tick = |done| bar.set_position(done);
        let load = Load {
            depth: args.depth,
            count: Some(count),
            deadline: None,
            spin,
        };
        written = drive(core, load, make, &data, tick)?.0;
        bar.finish_and_clear();
    }
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let bar = progress(args.seconds, "measuring");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let started = Instant::now();
    // Appends stop at 70% of the devices, before compaction would start to cost.
    let append_max = device_bytes * 7 / 10 / size.max(1) as u64;
    let (ops, histogram) = match args.op {
        BenchOp::Append => drive(
            core,
            Load {
                depth: args.depth,
                count: Some(append_max),
                deadline: Some(deadline),
                spin,
            },
            |n| Request::Put(key(1 << 40 | n)),
            &data,
            |_| bar.set_position(started.elapsed().as_secs()),
        )?,
        BenchOp::Read => drive(
            core,
            Load {
                depth: args.depth,
                count: None,
                deadline: Some(deadline),
                spin,
            },
            |_| Request::Get(key(rng.gen_range(0..written))),
            &data,
            |_| bar.set_position(started.elapsed().as_secs()),
        )?,
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let report = serde_json::json!({
        "op": format!("{:?}", args.op).to_lowercase(),
        "size_bytes": size,
        "depth": args.depth,
        "seconds": seconds,
        "ops": ops,
        "ops_per_second": ops as f64 / seconds,
        "mb_per_second": ops as f64 * size as f64 / seconds / 1e6,
        "latency_us": {
            "p50": histogram.value_at_quantile(0.5),
            "p90": histogram.value_at_quantile(0.9),
            "p99": histogram.value_at_quantile(0.99),
            "p999": histogram.value_at_quantile(0.999),
        },
        "write_amplification": core.stats().write_amplification(),
        "poll": format!("{:?}", args.poll).to_lowercase(),
    });
    if json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(0)
}

/// How long a core polls without completions before it blocks, in the adaptive mode.
pub(crate) const ADAPTIVE_SPIN: Duration = Duration::from_micros(50);

pub(crate) enum Request {
    Put(ShardKey),
    Get(ShardKey),
}

pub(crate) fn key(n: u64) -> ShardKey {
    ShardKey::new(
        u128::from(n).wrapping_mul(0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15) | 1,
        0,
        0,
    )
}

pub(crate) fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template("{msg} {bar:40} {pos}/{len}").expect("template"));
    bar.set_message(what.to_string());
    bar
}

/// Keeps `depth` requests in flight until `count` are done or `deadline` passes.
/// How hard and how long [`drive`] pushes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    /// Requests in flight.
    pub depth: usize,
    /// Stop after this many requests.
    pub count: Option<u64>,
    pub deadline: Option<Instant>,
    /// Polling without completions this long blocks on the devices.
    pub spin: Duration,
}

pub(crate) fn drive(
    core: &mut CoreStore,
    load: Load,
    mut make: impl FnMut(u64) -> Request,
    data: &[u8],
    mut tick: impl FnMut(u64),
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let Load {
        depth,
        count,
        deadline,
        spin,
    } = load;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut started: HashMap<u64, Instant> = HashMap::new();
    let mut events: Vec<Event> = Vec::new();
    let mut issued = 0u64;
    let mut done = 0u64;
    let mut spare: Vec<ds_nvme::DmaBuf> = Vec::new();
    let mut idle_since: Option<Instant> = None;
    loop {
        let open = count.is_none_or(|c| issued < c) && deadline.is_none_or(|d| Instant::now() < d);
        while open && started.len() < depth && count.is_none_or(|c| issued < c) {
            let meta = ShardMeta {
                version: 1,
                scheme_k: 1,
                scheme_m: 0,
                object_bytes: data.len() as u64,
            };
            match make(issued) {
                // Zero copy, as a network layer receiving into the record buffer would.
                Request::Put(key) => {
                    let buf = spare.pop().unwrap_or_else(|| {
                        let mut buf = core.put_buffer(data.len());
                        let at = ds_store::PUT_DATA_OFFSET;
                        buf.as_mut_slice()[at..at + data.len()].copy_from_slice(data);
                        buf
                    });
                    core.submit_put_buf(key, meta, buf, data.len(), None, issued)
                }
                Request::Get(key) => core.submit_get(key, issued),
            }
            started.insert(issued, Instant::now());
            issued += 1;
        }
        if !open && started.is_empty() {
            return Ok((done, histogram));
        }
        let got = core.poll(&mut events);
        for mut event in events.drain(..) {
            if let Some(buf) = event.buf.take() {
                spare.push(buf);
            }
            let began = started.remove(&event.token).expect("known token");
            histogram.record(began.elapsed().as_micros().max(1) as u64)?;
            done += 1;
            match event.outcome {
                Outcome::Put(Ok(())) => {}
                Outcome::Get(Ok(found)) => core.recycle(found.buf),
                other => anyhow::bail!("request failed: {other:?}"),
            }
        }
        if done.is_multiple_of(1024) {
            tick(done);
        }
        // Adaptive polling: spin a little before blocking, as the reactor's default mode does.
        if got > 0 {
            idle_since = None;
        } else if idle_since.is_none() {
            idle_since = Some(Instant::now());
        }
        if idle_since.is_some_and(|since| since.elapsed() >= spin) {
            core.wait(Duration::from_micros(200));
        }
    }
}
