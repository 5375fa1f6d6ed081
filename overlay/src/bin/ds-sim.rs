//! `ds-sim`: runs the overlay of many nodes in one process on simulated time and prints what it
//! measured (see `ds_overlay::sim`). Same seed, same result (but `wall_seconds`).
//!
//!   ds-sim --nodes 10000 --churn 0.1 --seed 1 --duration 60 --json

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ds_overlay::limits::{ALPHA_MAX, BUCKET_SIZE_MAX, NEIGHBOURHOOD_SIZE_MAX, RESPONSIBLE_SET_MAX};
use ds_overlay::sim::{OverlayTuning, SimConfig, Simulation, SIM_NODES_MAX};

#[derive(Parser, Debug)]
#[command(
    name = "ds-sim",
    about = "Simulate the ds overlay with many nodes in one process"
)]
struct Args {
    /// Nodes that join before the churn instant.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Fraction of the nodes that fail at once (no LEAVE) after the network settled.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Fraction of the nodes that leave gracefully at the same instant.
    #[arg(long, default_value_t = 0.0)]
    leave: f64,
    /// New nodes joining during the first half of the measured window.
    #[arg(long, default_value_t = 0)]
    joins: usize,
    /// Nodes joining with a wrong cluster secret (needs --codec).
    #[arg(long, default_value_t = 0)]
    intruders: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds measured after the churn instant.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Per-message loss probability.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Smallest one-way latency, milliseconds.
    #[arg(long, default_value_t = 5.0)]
    latency_min_ms: f64,
    /// Largest one-way latency, milliseconds.
    #[arg(long, default_value_t = 50.0)]
    latency_max_ms: f64,
    /// Bucket size.
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Lookup parallelism.
    #[arg(long, default_value_t = 3)]
    alpha: usize,
    /// Lookups measured during the window.
    #[arg(long, default_value_t = 1000)]
    lookups: usize,
    /// Responsible-set checks during the window, and as many at its end.
    #[arg(long, default_value_t = 500)]
    accuracy_keys: usize,
    /// N of the responsible set.
    #[arg(long, default_value_t = 6)]
    responsible_n: usize,
    /// Simulated seconds over which the nodes join (default: 20, or nodes/1000 if larger).
    #[arg(long)]
    join_seconds: Option<f64>,
    /// Simulated seconds of quiet between the last join and the churn instant.
    #[arg(long, default_value_t = 20.0)]
    settle_seconds: f64,
    /// Overlay: seconds without a message after which a neighbour is pinged.
    #[arg(long)]
    probe_seconds: Option<f64>,
    /// Overlay: seconds between self-lookups (neighbourhood refresh).
    #[arg(long)]
    self_lookup_seconds: Option<f64>,
    /// Overlay: seconds between refreshes of a bucket nobody looked into.
    #[arg(long)]
    refresh_seconds: Option<f64>,
    /// Overlay: size of the exact neighbourhood.
    #[arg(long)]
    neighbourhood: Option<usize>,
    /// Send every message through the wire codec (HMAC, crc32c, replay window).
    #[arg(long)]
    codec: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    if !value.is_finite() || !(0.0..=1e6).contains(&value) {
        return Err(format!(
            "--{name} {value} is not a number of seconds in 0..=1e6"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

fn positive(name: &str, value: f64) -> Result<Duration, String> {
    let duration = seconds(name, value)?;
    if duration.is_zero() {
        return Err(format!("--{name} must be above 0"));
    }
    Ok(duration)
}

fn config(args: &Args) -> Result<SimConfig, String> {
    if args.nodes == 0 || args.nodes + args.joins + args.intruders > SIM_NODES_MAX {
        return Err(format!(
            "--nodes must be 1..={SIM_NODES_MAX} (with joins and intruders)"
        ));
    }
    for (name, value) in [
        ("churn", args.churn),
        ("leave", args.leave),
        ("loss", args.loss),
    ] {
        if !(0.0..1.0).contains(&value) {
            return Err(format!("--{name} {value} is not a fraction in 0..1"));
        }
    }
    if args.churn + args.leave >= 1.0 {
        return Err("--churn plus --leave must stay below 1".into());
    }
    if args.k == 0 || args.k > BUCKET_SIZE_MAX {
        return Err(format!("--k must be 1..={BUCKET_SIZE_MAX}"));
    }
    if args.alpha == 0 || args.alpha > ALPHA_MAX {
        return Err(format!("--alpha must be 1..={ALPHA_MAX}"));
    }
    if args.responsible_n == 0 || args.responsible_n > RESPONSIBLE_SET_MAX {
        return Err(format!("--responsible-n must be 1..={RESPONSIBLE_SET_MAX}"));
    }
    if args.intruders > 0 && !args.codec {
        return Err("--intruders needs --codec (they are refused by their MAC)".into());
    }
    let latency_min = seconds("latency-min-ms", args.latency_min_ms / 1000.0)?;
    let latency_max = seconds("latency-max-ms", args.latency_max_ms / 1000.0)?;
    if latency_min > latency_max {
        return Err("--latency-min-ms must not exceed --latency-max-ms".into());
    }
    let mut overlay = OverlayTuning::default();
    if let Some(value) = args.probe_seconds {
        overlay.probe_interval = positive("probe-seconds", value)?;
    }
    if let Some(value) = args.self_lookup_seconds {
        overlay.self_lookup_interval = positive("self-lookup-seconds", value)?;
    }
    if let Some(value) = args.refresh_seconds {
        overlay.refresh_interval = positive("refresh-seconds", value)?;
    }
    if let Some(size) = args.neighbourhood {
        if size == 0 || size > NEIGHBOURHOOD_SIZE_MAX {
            return Err(format!(
                "--neighbourhood must be 1..={NEIGHBOURHOOD_SIZE_MAX}"
            ));
        }
        overlay.neighbourhood_size = size;
    }
    let join_seconds = args
        .join_seconds
        .unwrap_or_else(|| (args.nodes as f64 / 1000.0).max(20.0));
    Ok(SimConfig {
        nodes: args.nodes,
        seed: args.seed,
        churn: args.churn,
        leave: args.leave,
        joins: args.joins,
        intruders: args.intruders,
        duration: seconds("duration", args.duration)?,
        loss: args.loss,
        latency_min,
        latency_max,
        k: args.k,
        alpha: args.alpha,
        lookups: args.lookups,
        accuracy_keys: args.accuracy_keys,
        responsible_n: args.responsible_n,
        join_time: seconds("join-seconds", join_seconds)?,
        settle: seconds("settle-seconds", args.settle_seconds)?,
        codec: args.codec,
        overlay,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match config(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ds-sim: {message}");
            return ExitCode::from(2);
        }
    };
    let report = Simulation::new(config).run();
    let text = if args.json {
        serde_json::to_string(&report)
    } else {
        serde_json::to_string_pretty(&report)
    }
    .expect("report serializes");
    // A closed pipe (`ds-sim | head`) is not an error worth a panic.
    let _ = writeln!(std::io::stdout().lock(), "{text}");
    ExitCode::SUCCESS
}
