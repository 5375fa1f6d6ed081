//! `ds dev-cluster up|down`: a local cluster of real `ds-appliance` daemons on loopback, each
//! with a file-backed device under one directory, seeded to each other. `up` returns once every
//! node has joined and writes `DIR/cluster.json`; a node restarts with
//! `ds-appliance --config <its config>`; `down` stops them all.

use std::fs;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ds_proto::{Client, Scheme};
use serde::{Deserialize, Serialize};

/// Nodes one local cluster may have.
pub const NODES_MAX: usize = 64;
/// How long `up` waits for every node to serve and join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `down` waits for a node to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// A shared secret for the nodes of one local cluster (dev only, written in every config).
const DEV_SECRET_PREFIX: &str = "ds-dev-cluster-";

#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterFile {
    pub nodes: Vec<NodeEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NodeEntry {
    pub id: String,
    pub client_addr: SocketAddr,
    pub overlay_addr: SocketAddr,
    pub pid: u32,
    pub config: PathBuf,
    pub stats_socket: PathBuf,
    pub log: PathBuf,
}

pub struct UpSpec {
    pub nodes: usize,
    pub dir: PathBuf,
    pub scheme: Scheme,
    pub device_size: String,
    pub cores: usize,
}

/// A free TCP port and a free UDP port on loopback, both the same number when possible.
fn free_ports() -> anyhow::Result<(u16, u16)> {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok((port, port));
        }
    }
    bail!("no free port pair on 127.0.0.1")
}

fn appliance_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating the ds binary")?;
    let sibling = me.with_file_name("ds-appliance");
    anyhow::ensure!(
        sibling.exists(),
        "{} not found next to {} (build it: cargo build --release --bin ds-appliance)",
        sibling.display(),
        me.display()
    );
    Ok(sibling)
}

pub fn up(spec: &UpSpec) -> anyhow::Result<ClusterFile> {
    anyhow::ensure!(
        (1..=NODES_MAX).contains(&spec.nodes),
        "--nodes must be between 1 and {NODES_MAX}"
    );
    let cluster_json = spec.dir.join("cluster.json");
    if let Ok(text) = fs::read_to_string(&cluster_json) {
        let existing: ClusterFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} exists but is not a cluster file",
                cluster_json.display()
            )
        })?;
        if existing.nodes.iter().any(|n| is_alive(n.pid)) {
            bail!(
                "{} describes a cluster that is still running; `ds dev-cluster down --dir {}` first",
                cluster_json.display(),
                spec.dir.display()
            );
        }
    }
    fs::create_dir_all(&spec.dir).with_context(|| format!("creating {}", spec.dir.display()))?;
    let dir = spec.dir.canonicalize()?;
    let binary = appliance_binary()?;
    let secret = format!("{DEV_SECRET_PREFIX}{:032x}", rand::random::<u128>());
    let mut overlay_addrs: Vec<SocketAddr> = Vec::new();
    let mut entries = Vec::new();
    for index in 0..spec.nodes {
        let node_dir = dir.join(format!("node{index}"));
        fs::create_dir_all(&node_dir)?;
        let (client_port, overlay_port) = free_ports()?;
        let client_addr: SocketAddr = ([127, 0, 0, 1], client_port).into();
        let overlay_addr: SocketAddr = ([127, 0, 0, 1], overlay_port).into();
        // Every node seeds from the first (and the first from none); more seeds would only
        // matter if the first were down at a restart, so give each a second one too.
        let seeds: Vec<String> = overlay_addrs
            .iter()
            .take(2)
            .map(|a| format!("\"{a}\""))
            .collect();
        let config = node_dir.join("node.toml");
        let text = format!(
            "# Written by `ds dev-cluster up`; restart this node with: ds-appliance --config {config}\n\
             data_dir = {data:?}\nlisten = \"{client_addr}\"\ncores = {cores}\npin_cores = false\n\
             log_level = \"info\"\ndefault_scheme = \"{scheme}\"\n\n[overlay]\nlisten = \"{overlay_addr}\"\n\
             seeds = [{seeds}]\ncluster_secret = \"{secret}\"\n\n[[devices]]\npath = \"dev0.img\"\nsize = {size:?}\n",
            config = config.display(),
            data = node_dir.join("data"),
            cores = spec.cores,
            scheme = spec.scheme,
            seeds = seeds.join(", "),
            size = spec.device_size,
        );
        fs::write(&config, text)?;
        let log = node_dir.join("node.log");
        let log_file = fs::File::create(&log)?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&binary)
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                // Its own process group: a Ctrl-C in the shell that ran `up` does not stop it.
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?
        };
        overlay_addrs.push(overlay_addr);
        entries.push(NodeEntry {
            id: String::new(),
            client_addr,
            overlay_addr,
            pid: child.id(),
            config,
            stats_socket: node_dir.join("data").join("stats.sock"),
            log,
        });
    }
    let mut cluster = ClusterFile { nodes: entries };
    let started = Instant::now();
    for entry in &mut cluster.nodes {
        entry.id = wait_serving(entry, started)?;
    }
    let want = spec.nodes - 1;
    for entry in &cluster.nodes {
        wait_joined(entry, want, started)?;
    }
    fs::write(&cluster_json, serde_json::to_string_pretty(&cluster)?)?;
    Ok(cluster)
}

fn wait_serving(entry: &NodeEntry, started: Instant) -> anyhow::Result<String> {
    loop {
        if let Ok(mut client) = Client::connect(entry.client_addr, Duration::from_millis(200)) {
            if let Ok(view) = client.overlay(None) {
                return Ok(view.node.id);
            }
        }
        if !is_alive(entry.pid) {
            let log = fs::read_to_string(&entry.log).unwrap_or_default();
            bail!("the node of {} exited:\n{log}", entry.config.display());
        }
        if started.elapsed() > JOIN_TIMEOUT {
            bail!(
                "the node of {} did not start within {JOIN_TIMEOUT:?}; see {}",
                entry.config.display(),
                entry.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_joined(entry: &NodeEntry, want: usize, started: Instant) -> anyhow::Result<()> {
    loop {
        let known = Client::connect(entry.client_addr, Duration::from_millis(500))
            .and_then(|mut c| c.overlay(None))
            .map(|view| view.routing.len())
            .unwrap_or(0);
        if known >= want {
            return Ok(());
        }
        if started.elapsed() > JOIN_TIMEOUT {
            bail!(
                "node {} knows {known} of the {want} others after {JOIN_TIMEOUT:?}; see {}",
                entry.client_addr,
                entry.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) has no `State: Z` issue here: `up` does not wait for its
    // children, and after it exits init reaps them.
    match fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

/// Stops every node of the cluster in `dir`: SIGTERM, then SIGKILL after a while.
pub fn down(dir: &Path) -> anyhow::Result<usize> {
    let path = dir.join("cluster.json");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let cluster: ClusterFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a cluster file", path.display()))?;
    let mut stopped = 0;
    for node in &cluster.nodes {
        if !is_alive(node.pid) || !is_appliance(node.pid) {
            continue;
        }
        signal(node.pid, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while is_alive(node.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_alive(node.pid) {
            signal(node.pid, "KILL");
        }
        stopped += 1;
    }
    Ok(stopped)
}

/// Whether `pid` still is a ds-appliance (not a process that reused the number).
fn is_appliance(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "ds-appliance")
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}
