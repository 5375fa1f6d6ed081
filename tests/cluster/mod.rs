//! A cluster of real `ds-appliance` processes started by `ds dev-cluster up`, and the objects
//! the tests write to it and read back, for the multi-node tests.
#![allow(dead_code)] // each test file uses a different part of this helper

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ds::tools::dev_cluster::ClusterFile;
use ds_proto::{Client, ClientError, ObjectId, Scheme, LENGTH_TO_END};
use serde_json::Value;

use crate::node::{workdir, PatternCheck, PatternReader, APPLIANCE, DS};

pub const MIB: u64 = 1 << 20;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long nodes get to serve and to see each other.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
pub const POLL: Duration = Duration::from_millis(250);

pub fn scheme(text: &str) -> Scheme {
    text.parse().unwrap()
}

/// The seed of the random choices of one test (which nodes die): from the environment
/// variable `var` to replay a run, else new; printed either way.
pub fn test_seed(var: &str, test: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{var} is a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("{test}: {var}={seed}");
    seed
}

/// Calls `check` every [`POLL`] until it answers `Ok`, for up to `timeout`; then panics with
/// the last answer.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(problem) => {
                assert!(
                    started.elapsed() < timeout,
                    "{what}: not so after {timeout:?}:\n{problem}"
                );
            }
        }
        std::thread::sleep(POLL);
    }
}

pub fn ds(args: &[&str]) -> Output {
    Command::new(DS).args(args).output().expect("run ds")
}

pub use crate::node::alive;

pub fn is_appliance(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "ds-appliance")
}

pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Sends `signal` to `pid`, which the caller has checked is one of its cluster's ds-appliance
/// processes; true when it was sent.
fn send_signal(pid: u32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) on a pid this test knows to be one of its ds-appliance processes.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

/// A port free for TCP and UDP on loopback (as `ds dev-cluster up` picks them).
fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on 127.0.0.1");
}

// ----- the cluster -----

pub struct Node {
    pub id: String,
    pub addr: SocketAddr,
    pub overlay: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The process serving now; `None` once killed or stopped.
    pub pid: Option<u32>,
    /// The process when this test started it (a restart or an added node); `dev-cluster up`
    /// started the others.
    pub child: Option<Child>,
}

impl Node {
    pub fn id_number(&self) -> u128 {
        u128::from_str_radix(&self.id, 16).unwrap_or_else(|_| panic!("node id {:?}", self.id))
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// `ds dev-cluster up --nodes N --dir target/tmp/NAME --scheme SCHEME`, with
    /// `--repair-interval SECS` when given (else the nodes repair at dev-cluster's default).
    pub fn up(
        name: &str,
        nodes: usize,
        default_scheme: &str,
        repair_interval: Option<u64>,
    ) -> Cluster {
        let dir = workdir(name);
        let dir_arg = dir.to_str().unwrap();
        let nodes_arg = nodes.to_string();
        let interval = repair_interval.map(|secs| secs.to_string());
        let mut args = vec![
            "dev-cluster",
            "up",
            "--nodes",
            &nodes_arg,
            "--dir",
            dir_arg,
            "--scheme",
            default_scheme,
            "--device-size",
            "1G",
        ];
        if let Some(interval) = &interval {
            args.extend(["--repair-interval", interval]);
        }
        for attempt in 1.. {
            let out = ds(&args);
            if out.status.success() {
                break;
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            // The ports are found free, then bound by the nodes: another process may take one
            // in between. `up` stops what it started on failure.
            if attempt < 3 && stderr.contains("in use") {
                eprintln!("{name}: dev-cluster up lost a port race, again:\n{stderr}");
                continue;
            }
            panic!("ds dev-cluster up failed:\n{stderr}");
        }
        let text = fs::read_to_string(dir.join("cluster.json")).unwrap();
        let file: ClusterFile = serde_json::from_str(&text).unwrap();
        assert_eq!(file.scheme, scheme(default_scheme), "cluster.json: {text}");
        assert_eq!(file.nodes.len(), nodes);
        let nodes = file
            .nodes
            .into_iter()
            .map(|entry| Node {
                id: entry.id,
                addr: entry.client_addr,
                overlay: entry.overlay_addr,
                config: entry.config,
                log: entry.log,
                pid: Some(entry.pid),
                child: None,
            })
            .collect();
        Cluster { dir, nodes }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn client(&self, index: usize) -> Client {
        Client::connect(self.nodes[index].addr, CONNECT_TIMEOUT).unwrap_or_else(|error| {
            panic!(
                "node {index}: {error}\n{}",
                log_tail(&self.nodes[index].log)
            )
        })
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.nodes[i].pid.is_some())
            .collect()
    }

    /// SIGKILL, and wait until the process is gone (its sockets closed).
    pub fn kill(&mut self, index: usize) {
        self.signal_and_wait(index, libc::SIGKILL, Duration::from_secs(10));
    }

    /// SIGTERM (a clean shutdown), and wait until the process is gone.
    pub fn stop(&mut self, index: usize) {
        self.signal_and_wait(index, libc::SIGTERM, Duration::from_secs(20));
    }

    /// SIGSTOP: the process keeps its sockets open and answers nothing (a hung node).
    pub fn pause(&self, index: usize) {
        let pid = self.nodes[index].pid.expect("the node runs");
        assert!(send_signal(pid, libc::SIGSTOP), "kill -STOP {pid}");
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&self, index: usize) {
        let pid = self.nodes[index].pid.expect("the node runs");
        assert!(send_signal(pid, libc::SIGCONT), "kill -CONT {pid}");
    }

    fn signal_and_wait(&mut self, index: usize, signal: libc::c_int, grace: Duration) {
        let node = &mut self.nodes[index];
        let pid = node.pid.take().expect("the node runs");
        assert!(
            is_appliance(pid),
            "node {index} (pid {pid}) is not running:\n{}",
            log_tail(&node.log)
        );
        assert!(send_signal(pid, signal), "kill -{signal} {pid}");
        match node.child.take() {
            Some(mut child) => {
                child.wait().unwrap();
            }
            None => {
                let deadline = Instant::now() + grace;
                while alive(pid) {
                    assert!(
                        Instant::now() < deadline,
                        "pid {pid} outlived signal {signal}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// `ds-appliance --config <its config path>`, as an operator restarts a node; returns once it
    /// answers.
    pub fn restart(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        assert!(node.pid.is_none(), "node {index} runs");
        let log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&node.log)
            .unwrap();
        let child = spawn_appliance(&node.config, log);
        node.pid = Some(child.id());
        node.child = Some(child);
        let id = self.wait_answering(index, &format!("node {index}, restarted,"));
        assert_eq!(
            id, self.nodes[index].id,
            "node {index} came back as another"
        );
    }

    /// Starts one more node, configured as `ds dev-cluster up` configures its nodes (node 0's
    /// config with its own ports and data directory: the same cluster secret, scheme and
    /// repair interval), seeded to three live nodes; returns its index once it serves.
    pub fn add_node(&mut self) -> usize {
        let index = self.len();
        let node_dir = self.dir.join(format!("node{index}"));
        fs::create_dir_all(&node_dir).unwrap();
        let template = fs::read_to_string(&self.nodes[0].config).unwrap();
        let mut config: toml::Table = template
            .parse()
            .unwrap_or_else(|error| panic!("node 0's config: {error}\n{template}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let seeds: Vec<toml::Value> = self
            .live()
            .into_iter()
            .take(3)
            .map(|i| toml::Value::String(self.nodes[i].overlay.to_string()))
            .collect();
        config.insert(
            "data_dir".into(),
            toml::Value::String(node_dir.join("data").to_str().unwrap().into()),
        );
        config.insert("listen".into(), toml::Value::String(addr.to_string()));
        let overlay = config
            .get_mut("overlay")
            .and_then(toml::Value::as_table_mut)
            .unwrap_or_else(|| panic!("no [overlay] in node 0's config:\n{template}"));
        assert!(
            overlay.contains_key("cluster_secret"),
            "no cluster_secret in node 0's config:\n{template}"
        );
        overlay.insert("listen".into(), toml::Value::String(addr.to_string()));
        overlay.insert("seeds".into(), toml::Value::Array(seeds));
        let config_path = node_dir.join("node.toml");
        fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
        let log = node_dir.join("node.log");
        let child = spawn_appliance(&config_path, fs::File::create(&log).unwrap());
        self.nodes.push(Node {
            id: String::new(),
            addr,
            overlay: addr,
            config: config_path,
            log,
            pid: Some(child.id()),
            child: Some(child),
        });
        self.nodes[index].id = self.wait_answering(index, &format!("the added node {index}"));
        index
    }

    /// Waits until node `index` (started by this test) answers OVERLAY; returns its id.
    fn wait_answering(&mut self, index: usize, who: &str) -> String {
        let node = &mut self.nodes[index];
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            if let Ok(mut client) = Client::connect(node.addr, Duration::from_millis(500)) {
                if let Ok(view) = client.overlay(None) {
                    return view.node.id;
                }
            }
            if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{who} exited with {status}:\n{}", log_tail(&node.log));
            }
            assert!(
                Instant::now() < deadline,
                "{who} does not answer after {CONVERGE_TIMEOUT:?}:\n{}",
                log_tail(&node.log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The ids in node `index`'s overlay view (routing table and neighbourhood).
    pub fn view(&self, index: usize) -> Result<BTreeSet<String>, String> {
        let view = Client::connect(self.nodes[index].addr, CONNECT_TIMEOUT)
            .and_then(|mut client| client.overlay(None))
            .map_err(|error| format!("node {index}: OVERLAY: {error}"))?;
        Ok(view
            .routing
            .iter()
            .chain(&view.neighbourhood)
            .map(|peer| peer.id.clone())
            .collect())
    }

    /// Waits until every live node has every other live node in its overlay view.
    pub fn wait_converged(&self) {
        let live = self.live();
        for &i in &live {
            wait_until(
                &format!("node {i} sees every live node"),
                CONVERGE_TIMEOUT,
                || {
                    let view = self.view(i)?;
                    let missing: Vec<usize> = live
                        .iter()
                        .copied()
                        .filter(|&j| j != i && !view.contains(&self.nodes[j].id))
                        .collect();
                    if missing.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "node {i} misses nodes {missing:?}\n{}",
                            log_tail(&self.nodes[i].log)
                        ))
                    }
                },
            );
        }
    }

    /// Every node that should run still does (none crashed).
    pub fn assert_running(&self) {
        for (index, node) in self.nodes.iter().enumerate() {
            if let Some(pid) = node.pid {
                assert!(
                    alive(pid) && is_appliance(pid),
                    "node {index} (pid {pid}) died:\n{}",
                    log_tail(&node.log)
                );
            }
        }
    }

    /// HEALTH of node `index` (checked for every documented field).
    pub fn health(&self, index: usize) -> Result<Value, String> {
        let health = Client::connect(self.nodes[index].addr, CONNECT_TIMEOUT)
            .and_then(|mut client| client.health())
            .map_err(|error| format!("node {index}: HEALTH: {error}"))?;
        assert_health_fields(&format!("node {index}"), &health);
        Ok(health)
    }

    /// Sum of one health counter over the live nodes.
    pub fn health_sum(&self, field: &str) -> Result<u64, String> {
        let mut sum = 0;
        for i in self.live() {
            sum += self.health(i)?[field].as_u64().unwrap_or(0);
        }
        Ok(sum)
    }

    /// Sum of a Prometheus counter over the live nodes (their stats sockets).
    pub fn counter_sum(&self, metric: &str) -> f64 {
        let mut sum = 0.0;
        for i in self.live() {
            let socket = self.nodes[i]
                .config
                .parent()
                .unwrap()
                .join("data/stats.sock");
            let out = ds(&["stats", "--socket", socket.to_str().unwrap(), "--prom"]);
            assert!(
                out.status.success(),
                "ds stats of node {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let mut found = false;
            for line in text.lines() {
                if line.starts_with(metric) && !line.starts_with('#') {
                    sum += line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
                    found = true;
                }
            }
            assert!(found, "node {i} does not report {metric}:\n{text}");
        }
        sum
    }

    /// The index of the node STAT names `name` (its id or one of its addresses).
    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| {
            node.id.eq_ignore_ascii_case(name)
                || node.addr.to_string() == name
                || node.overlay.to_string() == name
        })
    }

    /// Where STAT (through `via`) says the object's shards are: per stripe, the node of each
    /// shard index; and the shards it lists missing. Err on a failed STAT, a node named twice
    /// in a stripe, or a node that is not in the cluster.
    pub fn placement(&self, via: &mut Client, object: &Obj) -> Result<Placement, String> {
        let stat = via
            .stat(object.id)
            .map_err(|error| format!("STAT {}: {error}", object.id))?;
        if stat.size != object.size {
            return Err(format!(
                "STAT {}: size {}, written {}",
                object.id, stat.size, object.size
            ));
        }
        let mut stripes: BTreeMap<u32, BTreeMap<u8, usize>> = BTreeMap::new();
        for part in &stat.parts {
            let node = self.node_named(&part.node).ok_or_else(|| {
                format!(
                    "STAT {} names node {:?}, not one of the cluster's",
                    object.id, part.node
                )
            })?;
            let shards = stripes.entry(part.stripe).or_default();
            if shards.values().any(|&n| n == node) || shards.insert(part.shard, node).is_some() {
                return Err(format!(
                    "STAT {}: stripe {} has two shards on node {node} or a shard twice: {:?}",
                    object.id, part.stripe, stat.parts
                ));
            }
        }
        let missing = stat
            .missing
            .iter()
            .map(|m| {
                let node = self.node_named(&m.node);
                format!(
                    "stripe {} shard {} on {:?} ({node:?})",
                    m.stripe, m.shard, m.node
                )
            })
            .collect();
        Ok(Placement { stripes, missing })
    }

    /// For every stripe of the object, the nodes holding its shards in shard order; panics
    /// where [`Cluster::placement`] errs.
    pub fn stripe_nodes(&self, via: &mut Client, object: &Obj) -> BTreeMap<u32, Vec<usize>> {
        let placement = self
            .placement(via, object)
            .unwrap_or_else(|problem| panic!("{problem}"));
        placement
            .stripes
            .into_iter()
            .map(|(stripe, shards)| (stripe, shards.into_values().collect()))
            .collect()
    }
}

fn spawn_appliance(config: &Path, log: fs::File) -> Child {
    Command::new(APPLIANCE)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn ds-appliance")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(pid) = node.pid.take() {
                if alive(pid) && is_appliance(pid) {
                    send_signal(pid, libc::SIGKILL);
                }
            }
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// What STAT says of an object.
pub struct Placement {
    /// Per stripe: shard index -> node index.
    pub stripes: BTreeMap<u32, BTreeMap<u8, usize>>,
    pub missing: Vec<String>,
}

impl Placement {
    pub fn nodes(&self) -> BTreeSet<usize> {
        self.stripes
            .values()
            .flat_map(|shards| shards.values().copied())
            .collect()
    }
}

// ----- health -----

/// The node-level fields of HEALTH and what they hold.
pub const HEALTH_COUNTERS: [&str; 17] = [
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
    "drain_remaining",
];
const HEALTH_FLAGS: [&str; 2] = ["draining", "drained"];

/// Panics unless `health` has every documented field with a value of its kind, the node's and
/// each core's.
pub fn assert_health_fields(who: &str, health: &Value) {
    let check = |what: &str, object: &Value, flags: &[&str]| {
        for field in HEALTH_COUNTERS {
            assert!(
                object[field].is_u64(),
                "{who}: HEALTH{what} has no counter {field:?}: {object}"
            );
        }
        for &field in flags {
            assert!(
                object[field].is_boolean(),
                "{who}: HEALTH{what} has no flag {field:?}: {object}"
            );
        }
        let progress = object["scrub_progress"].as_f64();
        assert!(
            progress.is_some_and(|p| (0.0..=1.0 + 1e-9).contains(&p)),
            "{who}: HEALTH{what}: scrub_progress {progress:?} is not a fraction: {object}"
        );
    };
    check("", health, &HEALTH_FLAGS);
    let cores = health["cores"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: HEALTH has no cores array: {health}"));
    assert!(!cores.is_empty(), "{who}: HEALTH lists no cores: {health}");
    for (core, entry) in cores.iter().enumerate() {
        check(&format!(" core {core}"), entry, &["drained"]);
    }
}

// ----- objects -----

/// An object written by the test: its content is `pattern(seed, size)`.
#[derive(Clone, Copy, Debug)]
pub struct Obj {
    pub id: ObjectId,
    pub seed: u64,
    pub size: u64,
}

pub fn write_object(
    client: &mut Client,
    scheme: Option<Scheme>,
    seed: u64,
    size: u64,
) -> Result<Obj, ClientError> {
    let id = client.create(scheme)?;
    let written = client.put_from(id, 0, PatternReader::new(seed, size), &mut |_| {})?;
    assert_eq!(
        written, size,
        "PUT {id} acknowledged {written} of {size} bytes"
    );
    Ok(Obj { id, seed, size })
}

/// Writes `pattern(seed, size)` objects for every (seed, size) of `specs`, spread over the
/// nodes `via` (one thread each); panics when one fails.
pub fn write_all(
    cluster: &Cluster,
    via: &[usize],
    scheme: Scheme,
    specs: &[(u64, u64)],
) -> Vec<Obj> {
    let mut written: Vec<Option<Obj>> = vec![None; specs.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = via
            .iter()
            .enumerate()
            .map(|(t, &node)| {
                let mut client = cluster.client(node);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for (index, &(seed, size)) in specs.iter().enumerate() {
                        if index % via.len() == t {
                            let object = write_object(&mut client, Some(scheme), seed, size)
                                .unwrap_or_else(|error| {
                                    panic!("writing {size} bytes through node {node}: {error}")
                                });
                            out.push((index, object));
                        }
                    }
                    out
                })
            })
            .collect();
        for handle in handles {
            for (index, object) in handle.join().unwrap() {
                written[index] = Some(object);
            }
        }
    });
    written.into_iter().map(Option::unwrap).collect()
}

/// How one GET went.
#[derive(Debug)]
pub enum Outcome {
    /// Exactly the object's bytes.
    Exact,
    /// An error; the bytes that came before it (if any) were right.
    Failed(ClientError),
    /// Wrong bytes, too many or too few: never acceptable.
    Wrong(String),
}

/// A connection to one node, made again after an error that broke it.
pub struct Via {
    pub node: usize,
    addr: SocketAddr,
    client: Option<Client>,
}

impl Via {
    pub fn new(cluster: &Cluster, node: usize) -> Via {
        Via {
            node,
            addr: cluster.nodes[node].addr,
            client: None,
        }
    }

    fn client(&mut self) -> Result<&mut Client, ClientError> {
        if self.client.is_none() {
            self.client = Some(Client::connect(self.addr, CONNECT_TIMEOUT)?);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    pub fn read(&mut self, object: &Obj) -> Outcome {
        let client = match self.client() {
            Ok(client) => client,
            Err(error) => return Outcome::Failed(error),
        };
        let mut check = PatternCheck::new(object.seed);
        let result = client.get(object.id, 0, LENGTH_TO_END, &mut check, &mut |_| {});
        if let Some(at) = check.first_mismatch {
            return Outcome::Wrong(format!(
                "GET {} ({} bytes) through node {}: wrong byte at {at} ({result:?})",
                object.id, object.size, self.node
            ));
        }
        match result {
            Ok(_) if check.seen == object.size => Outcome::Exact,
            Ok(_) => Outcome::Wrong(format!(
                "GET {} through node {}: {} bytes, the object has {}",
                object.id, self.node, check.seen, object.size
            )),
            Err(_) if check.seen > object.size => Outcome::Wrong(format!(
                "GET {} through node {}: {} bytes before an error, the object has {}",
                object.id, self.node, check.seen, object.size
            )),
            Err(error) => {
                if error.status().is_none() {
                    self.client = None;
                }
                Outcome::Failed(error)
            }
        }
    }
}

/// Reads objects through the nodes `via`, one thread per node: each node reads every object
/// (`all`), or node `via[t]` reads the objects whose index is t modulo `via.len()`. Returns
/// (node, object index, outcome) for every read.
pub fn read_all(
    cluster: &Cluster,
    via: &[usize],
    objects: &[Obj],
    all: bool,
) -> Vec<(usize, usize, Outcome)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = via
            .iter()
            .enumerate()
            .map(|(t, &node)| {
                let mut reader = Via::new(cluster, node);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for (index, object) in objects.iter().enumerate() {
                        if all || index % via.len() == t {
                            out.push((node, index, reader.read(object)));
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    })
}

/// Panics unless every outcome is `Exact`, naming the first few that are not.
pub fn assert_outcomes_exact(what: &str, objects: &[Obj], outcomes: &[(usize, usize, Outcome)]) {
    let bad: Vec<String> = outcomes
        .iter()
        .filter(|(_, _, outcome)| !matches!(outcome, Outcome::Exact))
        .map(|(node, index, outcome)| {
            let object = &objects[*index];
            format!(
                "  {} ({} bytes) through node {node}: {outcome:?}",
                object.id, object.size
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} reads not exact:\n{}",
        bad.len(),
        outcomes.len(),
        bad[..bad.len().min(12)].join("\n")
    );
}

/// Reads every object through every node of `via`; panics unless every read is exact.
pub fn assert_all_exact(cluster: &Cluster, via: &[usize], objects: &[Obj], what: &str) {
    let started = Instant::now();
    let outcomes = read_all(cluster, via, objects, true);
    assert_outcomes_exact(what, objects, &outcomes);
    eprintln!(
        "{what}: {} reads exact ({} objects through nodes {via:?}) in {:.1?}",
        outcomes.len(),
        objects.len(),
        started.elapsed()
    );
}
