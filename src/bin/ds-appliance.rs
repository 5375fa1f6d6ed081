//! `ds-appliance --config node.toml`: one ds node. `--check-config FILE` validates a config
//! and exits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ds::config::NodeConfig;
use ds::node::Node;

#[derive(Parser)]
#[command(name = "ds-appliance", version = ds::GIT_REVISION, about = "A ds storage node")]
struct Args {
    /// The node's config file (TOML; see config/ for examples).
    #[arg(long, value_name = "FILE", required_unless_present = "check_config")]
    config: Option<PathBuf>,
    /// Validate FILE and exit: 0 when it is good, 1 with the offending key named otherwise.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if let Err(error) = ds::allocator::keep_freed_memory() {
        eprintln!("ds-appliance: warning: {error}; freed memory goes back to the kernel");
    }
    if let Err(error) = run(args) {
        eprintln!("ds-appliance: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = args.check_config {
        let config = NodeConfig::load(&path)?;
        config.validate()?;
        println!("{}: ok", path.display());
        return Ok(());
    }
    let path = args.config.expect("clap requires --config");
    let config = NodeConfig::load(&path)?;
    config.validate()?;
    init_logs(&config.log_level)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let node =
        Node::start(&config).with_context(|| format!("starting the node of {}", path.display()))?;
    println!(
        "ds-appliance: node {:032x} serving on {} (overlay {}, {} cores)",
        node.node_id, node.listen, node.overlay_addr, config.cores
    );
    while !stop.load(Ordering::Relaxed) {
        if node.repair_board.drained() {
            tracing::info!("drained: every shard of this node has moved; leaving the cluster");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("stopping");
    node.stop()
}

fn init_logs(level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .context("log_level")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
