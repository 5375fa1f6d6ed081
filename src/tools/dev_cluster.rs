//! `ds dev-cluster up|down`: a local cluster of real `ds-appliance` daemons on loopback, each
//! with a file-backed device under one directory, seeded to each other. `up` returns once every
//! node has joined (knows the others, see [`JOIN_CLOSEST`]) and writes `DIR/cluster.json`; a node
//! restarts with `ds-appliance --config <its config>` (fixed ports, absolute paths, seeds to
//! other nodes of the cluster in the file); `down` stops them all.

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
/// Seeds written in each node's config: the first of the other nodes. More than one, so a
/// node restarted while a seed is down still finds the cluster.
const SEEDS_PER_NODE: usize = 3;
/// A node has joined when it knows every other node, or in a cluster larger than this plus one,
/// the `JOIN_CLOSEST` others closest to it (XOR distance of ids): the overlay's default bucket
/// size k, so that many always fit in its routing table.
pub const JOIN_CLOSEST: usize = 20;

#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterFile {
    /// The nodes' `[objects] default_scheme`: what a CREATE without a scheme gets.
    #[serde(default = "plain_scheme")]
    pub scheme: Scheme,
    pub nodes: Vec<NodeEntry>,
}

fn plain_scheme() -> Scheme {
    Scheme::new(1, 0).expect("1+0 is a scheme")
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
    /// The nodes' `[repair] interval_secs`: seconds between repair passes.
    pub repair_interval: u64,
    /// The nodes' `poll_mode`: busy, adaptive or sleep.
    pub poll_mode: String,
}

/// A port free for TCP and UDP on loopback, with the sockets that hold it: the caller keeps
/// them until every node's port is chosen, so no two nodes of one cluster get the same port.
fn free_port() -> anyhow::Result<(u16, TcpListener, UdpSocket)> {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        let port = tcp.local_addr()?.port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            return Ok((port, tcp, udp));
        }
    }
    bail!("no port free for both TCP and UDP on 127.0.0.1")
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
    // Every port first (the sockets held until all are chosen), so each config can name seeds
    // among all the nodes, not only those before it.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..spec.nodes {
        let (port, tcp, udp) = free_port()?;
        ports.push(port);
        held.push((tcp, udp));
    }
    drop(held);
    let overlay_addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|&port| SocketAddr::from(([127, 0, 0, 1], port)))
        .collect();
    let mut entries = Vec::new();
    // Whatever fails from here on stops the nodes already started: no daemon is left behind
    // without a cluster.json naming it.
    let mut started_pids = KillOnDrop(Vec::new());
    for index in 0..spec.nodes {
        let node_dir = dir.join(format!("node{index}"));
        fs::create_dir_all(&node_dir)?;
        // The client (TCP) and overlay (UDP) ports are the same number.
        let client_addr = overlay_addrs[index];
        let overlay_addr = overlay_addrs[index];
        let seeds: Vec<String> = overlay_addrs
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != index)
            .take(SEEDS_PER_NODE)
            .map(|(_, a)| format!("\"{a}\""))
            .collect();
        let config = node_dir.join("node.toml");
        let text = format!(
            "# Written by `ds dev-cluster up`; restart this node with: ds-appliance --config {config}\n\
             data_dir = {data:?}\nlisten = \"{client_addr}\"\ncores = {cores}\npin_cores = false\n\
             poll_mode = \"{poll_mode}\"\n\
             log_level = \"info\"\n\n[objects]\ndefault_scheme = \"{scheme}\"\n\n\
             [repair]\ninterval_secs = {repair_interval}\n\n\
             [overlay]\nlisten = \"{overlay_addr}\"\nseeds = [{seeds}]\ncluster_secret = \"{secret}\"\n\n\
             [[devices]]\npath = \"dev0.img\"\nsize = {size:?}\n",
            config = config.display(),
            data = node_dir.join("data"),
            cores = spec.cores,
            scheme = spec.scheme,
            repair_interval = spec.repair_interval,
            poll_mode = spec.poll_mode,
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
        started_pids.0.push(child.id());
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
    let mut cluster = ClusterFile {
        scheme: spec.scheme,
        nodes: entries,
    };
    let started = Instant::now();
    for entry in &mut cluster.nodes {
        entry.id = wait_serving(entry, started)?;
    }
    for entry in &cluster.nodes {
        let want = must_know(entry, &cluster.nodes);
        wait_joined(entry, &want, started)?;
    }
    fs::write(&cluster_json, serde_json::to_string_pretty(&cluster)?)?;
    started_pids.0.clear();
    Ok(cluster)
}

/// SIGKILLs the ds-appliance processes it lists when dropped (`up` clears it on success).
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if is_alive(pid) && is_appliance(pid) {
                signal(pid, "KILL");
            }
        }
    }
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

/// The ids `entry` must know before it counts as joined: every other node, or in a large
/// cluster the [`JOIN_CLOSEST`] others closest to it.
fn must_know(entry: &NodeEntry, nodes: &[NodeEntry]) -> Vec<String> {
    let key = |id: &str| u128::from_str_radix(id, 16).unwrap_or(0);
    let me = key(&entry.id);
    let mut others: Vec<&NodeEntry> = nodes.iter().filter(|n| n.id != entry.id).collect();
    others.sort_by_key(|n| key(&n.id) ^ me);
    others.truncate(JOIN_CLOSEST);
    others.into_iter().map(|n| n.id.clone()).collect()
}

/// Waits until the overlay view of `entry` (routing table or neighbourhood) has every id of
/// `want`.
fn wait_joined(entry: &NodeEntry, want: &[String], started: Instant) -> anyhow::Result<()> {
    loop {
        let view = Client::connect(entry.client_addr, Duration::from_millis(500))
            .and_then(|mut c| c.overlay(None));
        let missing: Vec<&String> = match &view {
            Ok(view) => want
                .iter()
                .filter(|id| {
                    !view
                        .routing
                        .iter()
                        .chain(&view.neighbourhood)
                        .any(|peer| &peer.id == *id)
                })
                .collect(),
            Err(_) => want.iter().collect(),
        };
        if missing.is_empty() {
            return Ok(());
        }
        if !is_alive(entry.pid) {
            let log = fs::read_to_string(&entry.log).unwrap_or_default();
            bail!("the node of {} exited:\n{log}", entry.config.display());
        }
        if started.elapsed() > JOIN_TIMEOUT {
            let missing: Vec<&str> = missing.iter().map(|id| id.as_str()).collect();
            bail!(
                "node {} ({}) does not know {} of the {} nodes it should after {JOIN_TIMEOUT:?} \
                 (missing {}); see {}",
                entry.id,
                entry.client_addr,
                missing.len(),
                want.len(),
                missing.join(", "),
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
