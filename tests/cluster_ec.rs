//! The erasure-coded cluster with real binaries (issue 5): `ds dev-cluster up` starts six
//! `ds-appliance` daemons with default scheme 4+2 on loopback; objects are written and read
//! through every node; nodes are SIGKILLed and restarted with `ds-appliance --config <path>`.
//!
//! What must hold:
//! - every object reads back bit-exact through every node;
//! - with 2 of the 6 nodes killed, every object still reads back bit-exact;
//! - with 3 killed, a read fails with a clear error (a status and a message) or returns exactly
//!   the right bytes, never wrong ones, and every object a stripe of which lost 3 shards fails;
//! - once the 3 are restarted every object reads back again;
//! - an object deleted while a node is down stays deleted when the node returns;
//! - every PUT acknowledged while a node is being killed reads back afterwards;
//! - a scheme wider than the cluster is refused with UNAVAILABLE; 1+2 (three copies)
//!   round-trips; a CREATE without a scheme gets the cluster's default;
//! - a PUT that cannot reach its quorum (5 of 6 shards for 4+2) is refused, and leaves the
//!   object readable.
//!
//! Each test starts its own cluster under `target/tmp` (`ds dev-cluster` picks free ports, so
//! the tests run in parallel). The nodes killed are drawn from a seed printed at the start; set
//! `CLUSTER_EC_SEED` to replay a run.

mod node;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ds::tools::dev_cluster::ClusterFile;
use ds_proto::{Client, ClientError, ObjectId, Scheme, StatReply, Status, LENGTH_TO_END};
use node::{pattern, workdir, PatternCheck, PatternReader, APPLIANCE, DS};
use rand::seq::SliceRandom;
use rand::SeedableRng;

const MIB: u64 = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long restarted nodes get to serve and to be seen by the others again.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// After a restart, how long a read of an object may keep failing (peers reconnecting,
/// placement caches expiring) before the test calls it lost.
const READABLE_AGAIN_TIMEOUT: Duration = Duration::from_secs(30);

fn scheme(text: &str) -> Scheme {
    text.parse().unwrap()
}

/// The seed of the random choices of one test (which nodes die).
fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("CLUSTER_EC_SEED") {
        Ok(text) => text.parse().expect("CLUSTER_EC_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("{test}: CLUSTER_EC_SEED={seed}");
    seed
}

// ----- the cluster -----

struct Node {
    id: String,
    addr: SocketAddr,
    overlay: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    /// The process serving now; `None` while killed.
    pid: Option<u32>,
    /// The process when this test started it (a restart); `dev-cluster up` started the others.
    child: Option<Child>,
}

struct Cluster {
    dir: PathBuf,
    nodes: Vec<Node>,
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

fn is_appliance(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "ds-appliance")
}

fn log_tail(path: &PathBuf) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn ds(args: &[&str]) -> Output {
    Command::new(DS).args(args).output().expect("run ds")
}

impl Cluster {
    /// `ds dev-cluster up --nodes N --dir target/tmp/NAME --scheme SCHEME`.
    fn up(name: &str, nodes: usize, default_scheme: &str) -> Cluster {
        let dir = workdir(name);
        let dir_arg = dir.to_str().unwrap();
        let nodes_arg = nodes.to_string();
        for attempt in 1.. {
            let out = ds(&[
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
            ]);
            if out.status.success() {
                break;
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            // The ports are found free, then bound by the nodes: a test starting a cluster
            // beside this one may take one in between. `up` stops what it started on failure.
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

    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn client(&self, index: usize) -> Client {
        Client::connect(self.nodes[index].addr, CONNECT_TIMEOUT)
            .unwrap_or_else(|error| panic!("node {index}: {error}"))
    }

    fn live(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.nodes[i].pid.is_some())
            .collect()
    }

    /// SIGKILL, and wait until the process is gone (its sockets closed).
    fn kill(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let pid = node.pid.take().expect("the node runs");
        assert!(
            is_appliance(pid),
            "node {index} (pid {pid}) is not running:\n{}",
            log_tail(&node.log)
        );
        // SAFETY: kill(2) on a pid this test knows to be one of its ds-appliance processes.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        assert_eq!(sent, 0, "kill -KILL {pid}");
        match node.child.take() {
            Some(mut child) => {
                child.wait().unwrap();
            }
            None => {
                let deadline = Instant::now() + Duration::from_secs(10);
                while alive(pid) {
                    assert!(Instant::now() < deadline, "pid {pid} outlived SIGKILL");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// `ds-appliance --config <its config path>`, as an operator restarts a node; returns once it
    /// answers.
    fn restart(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        assert!(node.pid.is_none(), "node {index} runs");
        let log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(APPLIANCE)
            .arg("--config")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn ds-appliance");
        node.pid = Some(child.id());
        node.child = Some(child);
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            if let Ok(mut client) = Client::connect(node.addr, Duration::from_millis(500)) {
                if let Ok(view) = client.overlay(None) {
                    assert_eq!(view.node.id, node.id, "node {index} came back as another");
                    return;
                }
            }
            let child = node.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "node {index} exited with {status} after a restart:\n{}",
                    log_tail(&node.log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "node {index} does not answer {CONVERGE_TIMEOUT:?} after a restart:\n{}",
                log_tail(&node.log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every live node has every other live node in its overlay view.
    fn wait_converged(&self) {
        let live = self.live();
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        for &i in &live {
            loop {
                let missing: Vec<usize> = match Client::connect(self.nodes[i].addr, CONNECT_TIMEOUT)
                    .and_then(|mut client| client.overlay(None))
                {
                    Ok(view) => live
                        .iter()
                        .copied()
                        .filter(|&j| j != i)
                        .filter(|&j| {
                            !view
                                .routing
                                .iter()
                                .chain(&view.neighbourhood)
                                .any(|peer| peer.id == self.nodes[j].id)
                        })
                        .collect(),
                    Err(_) => live.clone(),
                };
                if missing.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {i} does not see nodes {missing:?} after {CONVERGE_TIMEOUT:?}:\n{}",
                    log_tail(&self.nodes[i].log)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Every node that should run still does (none crashed).
    fn assert_running(&self) {
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

    /// The index of the node STAT names `name` (its id or one of its addresses).
    fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| {
            node.id.eq_ignore_ascii_case(name)
                || node.addr.to_string() == name
                || node.overlay.to_string() == name
        })
    }

    /// For every stripe of the object, the nodes holding its shards (STAT through `via`).
    /// Panics when a stripe has two shards on one node or names a node not in the cluster.
    fn placement(&self, via: &mut Client, object: &Obj) -> BTreeMap<u32, Vec<usize>> {
        let stat = via
            .stat(object.id)
            .unwrap_or_else(|error| panic!("STAT {}: {error}", object.id));
        assert_eq!(stat.size, object.size, "STAT {}: size", object.id);
        let mut stripes: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for part in &stat.parts {
            let node = self.node_named(&part.node).unwrap_or_else(|| {
                panic!(
                    "STAT {} names node {:?}, not one of the cluster's ids or addresses",
                    object.id, part.node
                )
            });
            let nodes = stripes.entry(part.stripe).or_default();
            assert!(
                !nodes.contains(&node),
                "STAT {}: stripe {} has two shards on node {node}: {:?}",
                object.id,
                part.stripe,
                stat.parts
            );
            nodes.push(node);
        }
        stripes
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(pid) = node.pid.take() {
                if alive(pid) && is_appliance(pid) {
                    // SAFETY: kill(2) on one of this cluster's ds-appliance processes.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
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

// ----- objects -----

/// An object written by the test: its content is `pattern(seed, size)`.
#[derive(Clone, Copy, Debug)]
struct Obj {
    id: ObjectId,
    seed: u64,
    size: u64,
}

fn write_object(
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
fn write_all(cluster: &Cluster, via: &[usize], scheme: Scheme, specs: &[(u64, u64)]) -> Vec<Obj> {
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
enum Outcome {
    /// Exactly the object's bytes.
    Exact,
    /// An error; the bytes that came before it (if any) were right.
    Failed(ClientError),
    /// Wrong bytes, too many or too few: never acceptable.
    Wrong(String),
}

/// A connection to one node, made again after an error that broke it.
struct Via {
    node: usize,
    addr: SocketAddr,
    client: Option<Client>,
}

impl Via {
    fn new(cluster: &Cluster, node: usize) -> Via {
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

    fn read(&mut self, object: &Obj) -> Outcome {
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
fn read_all(
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
fn assert_all_exact(what: &str, objects: &[Obj], outcomes: &[(usize, usize, Outcome)]) {
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

/// Panics on wrong bytes and on errors without a status and message; returns how many reads
/// were exact and how many failed clearly.
fn assert_never_wrong(
    what: &str,
    objects: &[Obj],
    outcomes: &[(usize, usize, Outcome)],
) -> (usize, usize) {
    let (mut exact, mut failed) = (0, 0);
    for (node, index, outcome) in outcomes {
        let object = &objects[*index];
        match outcome {
            Outcome::Exact => exact += 1,
            Outcome::Wrong(problem) => panic!("{what}: {problem}"),
            Outcome::Failed(ClientError::Server { message, .. }) if !message.trim().is_empty() => {
                failed += 1
            }
            Outcome::Failed(error) => panic!(
                "{what}: GET {} through node {node} failed without a clear error: {error:?}",
                object.id
            ),
        }
    }
    (exact, failed)
}

/// Reads every object through the live nodes in turn until it reads exact, for up to
/// `READABLE_AGAIN_TIMEOUT`; wrong bytes fail at once.
fn assert_readable_again(cluster: &Cluster, objects: &[Obj]) {
    let live = cluster.live();
    let mut pending: Vec<usize> = (0..objects.len()).collect();
    let started = Instant::now();
    loop {
        let batch: Vec<Obj> = pending.iter().map(|&i| objects[i]).collect();
        let outcomes = read_all(cluster, &live, &batch, false);
        let mut failed = Vec::new();
        for (node, index, outcome) in outcomes {
            match outcome {
                Outcome::Exact => {}
                Outcome::Wrong(what) => panic!("after the restart: {what}"),
                Outcome::Failed(error) => failed.push((pending[index], node, error)),
            }
        }
        if failed.is_empty() {
            eprintln!(
                "all {} objects read back within {:.1?}",
                objects.len(),
                started.elapsed()
            );
            return;
        }
        if started.elapsed() > READABLE_AGAIN_TIMEOUT {
            let sample: Vec<String> = failed
                .iter()
                .take(12)
                .map(|(index, node, error)| {
                    let object = &objects[*index];
                    format!(
                        "  {} ({} bytes) through node {node}: {error}",
                        object.id, object.size
                    )
                })
                .collect();
            panic!(
                "{} of {} objects still unreadable {READABLE_AGAIN_TIMEOUT:?} after the restart:\n{}",
                failed.len(),
                objects.len(),
                sample.join("\n")
            );
        }
        let mut next: Vec<usize> = failed.iter().map(|(index, _, _)| *index).collect();
        next.sort_unstable();
        next.dedup();
        pending = next;
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// GET and STAT of `object` through `node` answer NOT_FOUND.
fn expect_not_found(cluster: &Cluster, node: usize, object: &Obj, when: &str) {
    let mut client = cluster.client(node);
    let get = client
        .get(object.id, 0, LENGTH_TO_END, std::io::sink(), &mut |_| {})
        .map(|bytes| format!("{bytes} bytes"));
    let stat = client
        .stat(object.id)
        .map(|stat| format!("size {} version {}", stat.size, stat.version));
    for (op, result) in [("GET", get), ("STAT", stat)] {
        match result {
            Err(error) if error.status() == Some(Status::NotFound) => {}
            other => panic!(
                "{when}: {op} of the deleted {} through node {node}: {other:?}",
                object.id
            ),
        }
    }
}

// ----- the tests -----

/// 500 objects of 0, 1, 4096 and 1 MiB + 1 bytes and two of 64 MiB, scheme 4+2 on 6 nodes:
/// through every node; 2 nodes killed; a 3rd killed; the 3 restarted.
#[test]
fn objects_survive_two_lost_nodes_and_never_read_wrong() {
    let seed = test_seed("objects_survive_two_lost_nodes_and_never_read_wrong");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut cluster = Cluster::up("cluster_ec_loss", 6, "4+2");
    let k = 4;
    let all: Vec<usize> = (0..cluster.len()).collect();
    eprintln!("cluster up in {:.1?}", started.elapsed());

    let sizes = [0, 1, 4096, MIB + 1];
    let mut specs: Vec<(u64, u64)> = (0..500u64)
        .map(|i| (1 + i, sizes[i as usize % sizes.len()]))
        .collect();
    specs.push((10_001, 64 * MIB));
    specs.push((10_002, 64 * MIB));
    let phase = Instant::now();
    let objects = write_all(&cluster, &all, scheme("4+2"), &specs);
    eprintln!(
        "{} objects written in {:.1?}",
        objects.len(),
        phase.elapsed()
    );

    let phase = Instant::now();
    let outcomes = read_all(&cluster, &all, &objects, true);
    assert_all_exact("all 6 nodes up", &objects, &outcomes);
    eprintln!(
        "{} reads (every object through every node) in {:.1?}",
        outcomes.len(),
        phase.elapsed()
    );

    // Where the shards are, once every write has landed.
    let mut via = cluster.client(0);
    let placements: Vec<BTreeMap<u32, Vec<usize>>> = objects
        .iter()
        .map(|object| cluster.placement(&mut via, object))
        .collect();
    drop(via);

    let mut victims = all.clone();
    victims.shuffle(&mut rng);
    let victims = &victims[..3];
    eprintln!("killing nodes {:?}, then {}", &victims[..2], victims[2]);
    cluster.kill(victims[0]);
    cluster.kill(victims[1]);
    let survivors = cluster.live();
    let phase = Instant::now();
    let outcomes = read_all(&cluster, &survivors, &objects, false);
    assert_all_exact("2 nodes killed", &objects, &outcomes);
    eprintln!(
        "2 nodes down: every object read through the survivors in {:.1?}",
        phase.elapsed()
    );

    cluster.kill(victims[2]);
    let dead: BTreeSet<usize> = victims.iter().copied().collect();
    let survivors = cluster.live();
    let phase = Instant::now();
    let outcomes = read_all(&cluster, &survivors, &objects, false);
    let (mut exact, mut failed) = (0, 0);
    let mut statuses = BTreeMap::new();
    for (node, index, outcome) in &outcomes {
        let object = &objects[*index];
        let lost_too_much = placements[*index]
            .values()
            .any(|nodes| nodes.iter().filter(|n| !dead.contains(n)).count() < k);
        match outcome {
            Outcome::Wrong(what) => panic!("3 nodes down: {what}"),
            Outcome::Exact => {
                assert!(
                    !lost_too_much,
                    "3 nodes down: {} read back although a stripe has fewer than {k} shards \
                     left ({:?}, dead {dead:?})",
                    object.id, placements[*index]
                );
                exact += 1;
            }
            Outcome::Failed(error) => {
                let ClientError::Server { status, message } = error else {
                    panic!(
                        "3 nodes down: GET {} through node {node} failed without a status: {error}",
                        object.id
                    );
                };
                assert!(
                    !message.trim().is_empty(),
                    "3 nodes down: GET {} through node {node}: {status} without a message",
                    object.id
                );
                statuses
                    .entry(status.to_string())
                    .or_insert_with(|| message.clone());
                failed += 1;
            }
        }
    }
    eprintln!(
        "3 nodes down in {:.1?}: {exact} read exact, {failed} refused; statuses (with a message): \
         {statuses:?}",
        phase.elapsed()
    );
    assert!(failed > 0, "with 3 of 6 nodes down no 4+2 object failed");

    let phase = Instant::now();
    for &victim in victims {
        cluster.restart(victim);
    }
    cluster.wait_converged();
    eprintln!("3 nodes restarted and seen in {:.1?}", phase.elapsed());
    assert_readable_again(&cluster, &objects);
    cluster.assert_running();
    eprintln!("total {:.1?}", started.elapsed());
}

/// DELETE while a node is down stays deleted when it returns; PUTs acknowledged while a node is
/// SIGKILLed all read back.
#[test]
fn deletes_stay_deleted_and_acknowledged_puts_survive_a_kill() {
    let seed = test_seed("deletes_stay_deleted_and_acknowledged_puts_survive_a_kill");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::up("cluster_ec_delete", 6, "4+2");
    let all: Vec<usize> = (0..cluster.len()).collect();
    let four_two = scheme("4+2");

    let sizes = [0, 1, 4096, MIB + 1, 3 * MIB + 5];
    let specs: Vec<(u64, u64)> = (0..15u64)
        .map(|i| (100 + i, sizes[i as usize % sizes.len()]))
        .collect();
    let objects = write_all(&cluster, &all, four_two, &specs);
    assert_all_exact(
        "written",
        &objects,
        &read_all(&cluster, &all, &objects, true),
    );

    // One node down; five objects deleted through another.
    let mut order = all.clone();
    order.shuffle(&mut rng);
    let (down, deleter) = (order[0], order[1]);
    eprintln!("node {down} down while deleting through node {deleter}");
    cluster.kill(down);
    let (deleted, kept) = objects.split_at(5);
    let mut client = cluster.client(deleter);
    for object in deleted {
        client
            .delete(object.id)
            .unwrap_or_else(|error| panic!("DELETE {} with one node down: {error}", object.id));
    }
    drop(client);
    for &node in &cluster.live() {
        for object in deleted {
            expect_not_found(&cluster, node, object, "one node down");
        }
    }
    cluster.restart(down);
    cluster.wait_converged();
    for &node in &all {
        for object in deleted {
            expect_not_found(&cluster, node, object, "the node back");
        }
    }
    assert_all_exact(
        "kept, through the returned node",
        kept,
        &read_all(&cluster, &[down], kept, true),
    );

    // PUTs while a node is SIGKILLed: one writer through the node killed, one through another.
    // Each alternates a PUT into an object created before and a CREATE + PUT of a new one.
    // Once a node is gone a 4+2 CREATE is refused (it needs 6 live nodes of 6), while a PUT into
    // an existing object needs only its quorum, 5 shards.
    let (victim, steady) = (order[2], order[3]);
    eprintln!("writers through nodes {victim} and {steady}; node {victim} killed");
    let mut client = cluster.client(steady);
    let mut pool = |n: usize| -> Vec<ObjectId> {
        (0..n)
            .map(|_| client.create(Some(four_two)).unwrap())
            .collect()
    };
    let (pool_a, pool_b) = (pool(120), pool(120));
    drop(client);
    let stop = AtomicBool::new(false);
    let write_sizes = [1, 4096, MIB + 1, 200_000, 0, 2 * MIB];
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|node| node.addr).collect();
    let writer = |node: usize, pool: Vec<ObjectId>, seed_base: u64| {
        let addr = addrs[node];
        let stop = &stop;
        let mut pool = pool.into_iter();
        move || {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            let mut client: Option<Client> = None;
            for n in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (seed, size) = (seed_base + n, write_sizes[n as usize % write_sizes.len()]);
                if client.is_none() {
                    match Client::connect(addr, Duration::from_millis(500)) {
                        Ok(connected) => client = Some(connected),
                        Err(error) => {
                            failed.push(error.to_string());
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                    }
                }
                let connected = client.as_mut().expect("connected");
                let result = if n % 2 == 0 {
                    let Some(id) = pool.next() else { break };
                    connected
                        .put_from(id, 0, PatternReader::new(seed, size), &mut |_| {})
                        .map(|_| Obj { id, seed, size })
                } else {
                    write_object(connected, Some(four_two), seed, size)
                };
                match result {
                    Ok(object) => acked.push((object, Instant::now())),
                    Err(error) => {
                        if error.status().is_none() {
                            client = None;
                        }
                        failed.push(error.to_string());
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            (acked, failed)
        }
    };
    let (through_victim, through_steady, killed_at) = std::thread::scope(|scope| {
        let a = scope.spawn(writer(victim, pool_a, 1_000_000));
        let b = scope.spawn(writer(steady, pool_b, 2_000_000));
        std::thread::sleep(Duration::from_millis(1500));
        cluster.kill(victim);
        let killed_at = Instant::now();
        std::thread::sleep(Duration::from_millis(2500));
        stop.store(true, Ordering::Relaxed);
        (a.join().unwrap(), b.join().unwrap(), killed_at)
    });
    let after_kill = through_steady
        .0
        .iter()
        .filter(|(_, at)| *at > killed_at)
        .count();
    eprintln!(
        "through the killed node: {} acknowledged, {} failed; through node {steady}: {} \
         acknowledged ({after_kill} after the kill), {} failed (first: {:?})",
        through_victim.0.len(),
        through_victim.1.len(),
        through_steady.0.len(),
        through_steady.1.len(),
        through_steady.1.first()
    );
    assert!(
        after_kill > 0,
        "no PUT acknowledged through node {steady} once node {victim} was down: {:?}",
        through_steady.1.first()
    );
    let acked: Vec<Obj> = through_victim
        .0
        .iter()
        .chain(&through_steady.0)
        .map(|(object, _)| *object)
        .collect();
    let live = cluster.live();
    assert_all_exact(
        "acknowledged during the kill, one node down",
        &acked,
        &read_all(&cluster, &live, &acked, false),
    );
    cluster.restart(victim);
    cluster.wait_converged();
    assert_all_exact(
        "acknowledged during the kill, through the restarted node",
        &acked,
        &read_all(&cluster, &[victim], &acked, true),
    );
    for &node in &all {
        for object in deleted {
            expect_not_found(&cluster, node, object, "at the end");
        }
    }
    cluster.assert_running();
}

/// Schemes: wider than the cluster is UNAVAILABLE; 1+2 is three copies; no scheme is the
/// cluster's default (from `dev-cluster up --scheme`, through the client and the CLI). Then,
/// with two nodes down, a 4+2 PUT (quorum 5) is refused and the object stays readable.
#[test]
fn schemes_on_a_six_node_cluster() {
    let seed = test_seed("schemes_on_a_six_node_cluster");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::up("cluster_ec_schemes", 6, "4+2");
    let all: Vec<usize> = (0..cluster.len()).collect();
    let mut client = cluster.client(0);

    // 8+4 needs 12 nodes.
    let error = client
        .create(Some(scheme("8+4")))
        .expect_err("CREATE 8+4 on 6 nodes");
    let ClientError::Server { status, message } = &error else {
        panic!("CREATE 8+4 on 6 nodes: {error}");
    };
    assert_eq!(*status, Status::Unavailable, "{error}");
    assert!(!message.trim().is_empty(), "UNAVAILABLE without a message");
    eprintln!("CREATE 8+4 on 6 nodes: {error}");
    let node0 = cluster.nodes[0].addr.to_string();
    let out = ds(&["--node", &node0, "create", "--scheme", "8+4"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UNAVAILABLE"), "{stderr}");

    // No scheme: the cluster's default, 4+2.
    let plain = write_object(&mut client, None, 7, 100_000).unwrap();
    assert_eq!(client.stat(plain.id).unwrap().scheme, scheme("4+2"));
    let out = ds(&["--node", &node0, "create"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: ObjectId = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(client.stat(id).unwrap().scheme, scheme("4+2"));
    let file = cluster.dir.join("input.bin");
    fs::write(&file, pattern(8, 300_000)).unwrap();
    let node3 = cluster.nodes[3].addr.to_string();
    let out = ds(&["--node", &node3, "put", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: ObjectId = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let put = Obj {
        id,
        seed: 8,
        size: 300_000,
    };
    let stat: StatReply = client.stat(id).unwrap();
    assert_eq!(stat.scheme, scheme("4+2"));
    assert_eq!(stat.size, 300_000);

    // 1+2: three copies of every stripe on three nodes.
    let replicated: Vec<Obj> = [(9, MIB + 1), (10, 1), (11, 5 * MIB)]
        .iter()
        .map(|&(seed, size)| write_object(&mut client, Some(scheme("1+2")), seed, size).unwrap())
        .collect();
    drop(client);
    let mut everything = replicated.clone();
    everything.push(plain);
    everything.push(put);
    assert_all_exact(
        "1+2 and default-scheme objects",
        &everything,
        &read_all(&cluster, &all, &everything, true),
    );
    let mut via = cluster.client(0);
    for object in &replicated {
        let stat = via.stat(object.id).unwrap();
        assert_eq!(stat.scheme, scheme("1+2"));
        let placement = cluster.placement(&mut via, object);
        assert!(!placement.is_empty());
        for (stripe, nodes) in &placement {
            assert_eq!(
                nodes.len(),
                3,
                "{}: stripe {stripe} on {nodes:?}",
                object.id
            );
        }
    }
    // Two of the three copies gone: still readable.
    let holders = cluster.placement(&mut via, &replicated[0])[&0].clone();
    drop(via);
    let mut doomed = holders.clone();
    doomed.shuffle(&mut rng);
    eprintln!(
        "1+2 object on nodes {holders:?}; killing {:?}",
        &doomed[..2]
    );
    cluster.kill(doomed[0]);
    cluster.kill(doomed[1]);
    let live = cluster.live();
    assert_all_exact(
        "1+2 with two copies' nodes down",
        &replicated,
        &read_all(&cluster, &live, &replicated, true),
    );

    // 4 of 6 nodes are left and a 4+2 write needs K + ceil(M/2) = 5 durable shards. The same
    // bytes are written again, so whichever version a read decodes, the content is the same.
    let mut client = cluster.client(live[0]);
    let refused = client.put(plain.id, 0, &pattern(plain.seed, plain.size as usize));
    match refused {
        Err(ClientError::Server { status, message }) => {
            eprintln!("a PUT without its quorum: {status}: {message}")
        }
        other => panic!("a 4+2 PUT reaching 4 of 6 nodes (quorum 5) answered {other:?}"),
    }
    drop(client);
    // Until the refused write's shards have all landed, a stripe may hold shards of two
    // versions and no K of one: a clear error then, never wrong bytes.
    let four_two = [plain, put];
    let (exact, failed) = assert_never_wrong(
        "4+2 after a refused PUT, two nodes down",
        &four_two,
        &read_all(&cluster, &live, &four_two, true),
    );
    eprintln!("after the refused PUT, two nodes down: {exact} reads exact, {failed} refused");
    cluster.restart(doomed[0]);
    cluster.restart(doomed[1]);
    cluster.wait_converged();
    assert_readable_again(&cluster, &four_two);
    cluster.assert_running();
}

/// A 4+2 PUT refused for want of its quorum (2 of 6 nodes down) while its shard writes to the 4
/// others are still in flight, then a 3rd node crashes: once all 3 return, the object must read
/// again (the refused write was never acknowledged, no device lost anything). The node answers
/// a refused write only after every shard write of it has landed or failed, so the crash that
/// follows the answer cannot split the stripe 3 and 3 between two versions.
#[test]
fn a_refused_put_cut_short_by_a_crash_loses_nothing() {
    let seed = test_seed("a_refused_put_cut_short_by_a_crash_loses_nothing");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::up("cluster_ec_refused", 6, "4+2");
    let all: Vec<usize> = (0..cluster.len()).collect();
    let specs: Vec<(u64, u64)> = (0..40u64)
        .map(|i| (300 + i, [4096, 100_000, MIB + 1][i as usize % 3]))
        .collect();
    let objects = write_all(&cluster, &all, scheme("4+2"), &specs);
    let mut order = all.clone();
    order.shuffle(&mut rng);
    eprintln!(
        "killing nodes {:?}, then {} right after the refused PUTs",
        &order[..2],
        order[2]
    );
    cluster.kill(order[0]);
    cluster.kill(order[1]);
    let mut client = cluster.client(order[3]);
    for object in &objects {
        let refused = client.put(object.id, 0, &pattern(object.seed, object.size as usize));
        assert!(
            refused.is_err(),
            "a PUT reaching 4 of 6 nodes was acknowledged"
        );
    }
    drop(client);
    cluster.kill(order[2]);
    for &node in &order[..3] {
        cluster.restart(node);
    }
    cluster.wait_converged();
    assert_readable_again(&cluster, &objects);
    cluster.assert_running();
}

/// Sum of a Prometheus counter over every node of the cluster (their stats sockets).
fn counter_sum(cluster: &Cluster, metric: &str) -> f64 {
    let text = fs::read_to_string(cluster.dir.join("cluster.json")).unwrap();
    let file: ClusterFile = serde_json::from_str(&text).unwrap();
    let mut sum = 0.0;
    for entry in &file.nodes {
        let out = ds(&[
            "stats",
            "--socket",
            entry.stats_socket.to_str().unwrap(),
            "--prom",
        ]);
        if !out.status.success() {
            continue;
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.starts_with(metric) && !line.starts_with('#') {
                sum += line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
            }
        }
    }
    sum
}

/// A data shard damaged on disk (bytes flipped inside its record): every read through every
/// node still returns the right bytes, rebuilt from parity, and the nodes count degraded
/// reads; the damage is never served.
#[test]
fn a_corrupt_shard_on_disk_is_read_around() {
    use rand::RngCore;
    let seed = test_seed("a_corrupt_shard_on_disk_is_read_around");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let cluster = Cluster::up("cluster_ec_corrupt", 6, "4+2");
    let mut data = vec![0u8; 3 * MIB as usize];
    rng.fill_bytes(&mut data);
    let mut client = cluster.client(0);
    let id = client.create(Some(scheme("4+2"))).unwrap();
    client.put(id, 0, &data).unwrap();
    // Shard 0 of stripe 1 holds object bytes [1 MiB, 1 MiB + 256 KiB).
    let stat: StatReply = client.stat(id).unwrap();
    let part = stat
        .parts
        .iter()
        .find(|p| p.stripe == 1 && p.shard == 0)
        .unwrap_or_else(|| panic!("no shard 0 of stripe 1 in {stat:?}"))
        .clone();
    let needle = &data[MIB as usize..MIB as usize + 64];
    let device = fs::read(&part.device).unwrap();
    let found: Vec<usize> = device
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(at, _)| at)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the shard's bytes appear once in {}",
        part.device
    );
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = fs::OpenOptions::new()
            .write(true)
            .open(&part.device)
            .unwrap();
        let at = found[0] as u64 + 1000;
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&[device[at as usize] ^ 0x5a]).unwrap();
        file.sync_all().unwrap();
    }
    drop(device);
    let before = counter_sum(&cluster, "ds_coding_degraded_reads_total");
    for node in 0..cluster.len() {
        let mut out = Vec::new();
        cluster
            .client(node)
            .get(id, 0, LENGTH_TO_END, &mut out, &mut |_| {})
            .unwrap_or_else(|e| panic!("read through node {node}: {e}"));
        assert!(out == data, "node {node} returned wrong bytes");
    }
    // Counters are published every 250 ms.
    std::thread::sleep(Duration::from_millis(600));
    let after = counter_sum(&cluster, "ds_coding_degraded_reads_total");
    assert!(
        after >= before + cluster.len() as f64,
        "each read of the damaged stripe is degraded: {before} -> {after}"
    );
}
