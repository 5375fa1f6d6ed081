//! `ds bench`: closed-loop load against a node over the protocol. `concurrency` requests are
//! kept in flight, pipelined over `connections` connections (one thread each); latencies go
//! into one HdrHistogram.
//!
//! `node` may name several nodes, comma-separated (`ds --node A,B,C bench ...`): connection i
//! goes to node i mod their number, so the load (and the coordination of every request it
//! carries) is spread over a cluster. One address is the plain single-node benchmark.
//!
//! Objects: every connection creates [`OBJECTS_PER_WORKER`] objects first. PUT writes `size`
//! bytes at offset 0 of the next one (a whole-object overwrite after the first round); GET
//! reads a whole object back (they are filled before timing starts); mixed alternates. PING
//! sends `size` bytes that the node echoes, and creates no objects: the protocol, the
//! network and the node's loop without the store, as a ceiling for the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ds_proto::{Client, Header, ObjectId, Opcode, Scheme, Status};
use hdrhistogram::Histogram;
use serde::Serialize;

const OBJECTS_PER_WORKER: usize = 16;
/// A PING payload is at most one data chunk (`docs/protocol.md`, PING).
const PING_PAYLOAD_BYTES_MAX: usize = ds_proto::limits::DATA_CHUNK_BYTES;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchOp {
    Put,
    Get,
    Mixed,
    Ping,
}

pub struct Spec {
    /// One address, or several separated by commas (connections go round-robin over them).
    pub node: String,
    pub op: BenchOp,
    pub size: u64,
    pub concurrency: usize,
    /// Connections (one thread each) the requests in flight are spread over.
    pub connections: usize,
    pub duration: Duration,
    pub progress: bool,
    /// Scheme of the objects written; `None`: the node's default (`[objects] default_scheme`).
    pub scheme: Option<Scheme>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub op: BenchOp,
    pub size: u64,
    /// The scheme asked for; `null`: the node's default.
    pub scheme: Option<Scheme>,
    pub concurrency: usize,
    pub connections: usize,
    /// The nodes the connections went to, round-robin.
    pub nodes: Vec<String>,
    pub seconds: f64,
    pub ops: u64,
    pub ops_per_second: f64,
    pub mb_per_second: f64,
    pub latency_us: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Report {
    pub fn human(&self) -> String {
        format!(
            "{:?} {} B scheme {}, {} in flight on {} connections to {} node(s), {:.1} s: {} ops, {:.0} ops/s, {:.1} MB/s; latency us p50 {} p90 {} p99 {} p99.9 {} max {}",
            self.op,
            self.size,
            self.scheme
                .map_or_else(|| "default".to_string(), |s| s.to_string()),
            self.concurrency,
            self.connections,
            self.nodes.len(),
            self.seconds,
            self.ops,
            self.ops_per_second,
            self.mb_per_second,
            self.latency_us.p50,
            self.latency_us.p90,
            self.latency_us.p99,
            self.latency_us.p999,
            self.latency_us.max
        )
    }
}

pub fn run(spec: &Spec) -> anyhow::Result<Report> {
    let size = usize::try_from(spec.size).context("--size does not fit in memory")?;
    anyhow::ensure!(size > 0, "--size must be at least 1 byte");
    if spec.op == BenchOp::Ping {
        anyhow::ensure!(
            size <= PING_PAYLOAD_BYTES_MAX,
            "--size of a ping is at most {PING_PAYLOAD_BYTES_MAX} bytes (the protocol's limit)"
        );
    }
    // Prepare every connection (objects created, filled for reads) before the clock starts,
    // all connections at once: a CREATE that waits for metadata copies on other nodes takes
    // a while, and a cluster run prepares many connections.
    let connections = spec.connections.clamp(1, spec.concurrency);
    let nodes = node_list(&spec.node)?;
    let prepare = |connection: usize| -> anyhow::Result<(Client, Vec<ObjectId>, Vec<u8>)> {
        let node = nodes[connection % nodes.len()].as_str();
        let mut client = Client::connect(node, CONNECT_TIMEOUT)
            .with_context(|| format!("connecting to {node}"))?;
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        let mut objects = Vec::new();
        let count = if spec.op == BenchOp::Ping {
            0
        } else {
            OBJECTS_PER_WORKER
        };
        for _ in 0..count {
            let id = client.create(spec.scheme)?;
            if spec.op != BenchOp::Put {
                client.put(id, 0, &data)?;
            }
            objects.push(id);
        }
        Ok((client, objects, data))
    };
    let workers = std::thread::scope(|scope| {
        let preparing: Vec<_> = (0..connections)
            .map(|connection| scope.spawn(move || prepare(connection)))
            .collect();
        preparing
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("preparing a bench connection panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for (worker, (client, objects, data)) in workers.into_iter().enumerate() {
        let (stop, done, op) = (stop.clone(), done.clone(), spec.op);
        // The requests in flight, spread evenly over the connections.
        let depth =
            spec.concurrency / connections + usize::from(worker < spec.concurrency % connections);
        handles.push(std::thread::spawn(move || {
            let worker = Worker {
                index: worker,
                client,
                objects,
                data,
                op,
                depth,
            };
            work(worker, &stop, &done)
        }));
    }
    let bar = if spec.progress {
        indicatif::ProgressBar::new(spec.duration.as_secs())
    } else {
        indicatif::ProgressBar::hidden()
    };
    while started.elapsed() < spec.duration {
        std::thread::sleep(Duration::from_millis(100).min(spec.duration));
        bar.set_position(started.elapsed().as_secs());
        bar.set_message(format!("{} ops", done.load(Ordering::Relaxed)));
    }
    stop.store(true, Ordering::Relaxed);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for handle in handles {
        let part = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a bench worker panicked"))??;
        histogram.add(part)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let ops = histogram.len();
    Ok(Report {
        op: spec.op,
        size: spec.size,
        scheme: spec.scheme,
        concurrency: spec.concurrency,
        connections,
        nodes: nodes.into_iter().take(connections).collect(),
        seconds,
        ops,
        ops_per_second: ops as f64 / seconds,
        mb_per_second: ops as f64 * spec.size as f64 / seconds / 1e6,
        latency_us: Percentiles {
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        },
    })
}

/// The addresses of a comma-separated list, blanks trimmed; at least one.
fn node_list(text: &str) -> anyhow::Result<Vec<String>> {
    let nodes: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(str::to_string)
        .collect();
    anyhow::ensure!(
        !nodes.is_empty(),
        "--node names no node (one HOST:PORT, or several separated by commas)"
    );
    Ok(nodes)
}

/// One connection's share of the load.
struct Worker {
    index: usize,
    client: Client,
    objects: Vec<ObjectId>,
    data: Vec<u8>,
    op: BenchOp,
    depth: usize,
}

fn work(worker: Worker, stop: &AtomicBool, done: &AtomicU64) -> anyhow::Result<Histogram<u64>> {
    let Worker {
        index,
        mut client,
        objects,
        data,
        op,
        depth,
    } = worker;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    // Request id -> (start, GET bytes still to come).
    let mut inflight: HashMap<u64, (Instant, u64)> = HashMap::new();
    let mut n = index;
    loop {
        while inflight.len() < depth && !stop.load(Ordering::Relaxed) {
            let opcode = match op {
                BenchOp::Put => Opcode::Put,
                BenchOp::Get => Opcode::Get,
                BenchOp::Mixed if n.is_multiple_of(2) => Opcode::Put,
                BenchOp::Mixed => Opcode::Get,
                BenchOp::Ping => Opcode::Ping,
            };
            let request_id = client.next_request_id();
            let mut header = Header::request(opcode, request_id);
            // A ping names no object (there are none).
            let id = objects
                .get(n % objects.len().max(1))
                .copied()
                .unwrap_or_default();
            header.object_id = id;
            let (payload, expect): (&[u8], u64) = match opcode {
                Opcode::Put => (&data, 0),
                // The reply echoes the payload.
                Opcode::Ping => (&data, data.len() as u64),
                _ => {
                    header.length = data.len() as u64;
                    (&[], data.len() as u64)
                }
            };
            // Queued: written with the next receive that has to wait for the node, together
            // with the requests that answer the other replies already received.
            client
                .queue_request(&header, payload)
                .with_context(|| format!("{opcode} {id}"))?;
            inflight.insert(request_id, (Instant::now(), expect));
            n += 1;
        }
        if inflight.is_empty() {
            return Ok(histogram);
        }
        let frame = client.recv().context("receiving a reply")?;
        let request_id = frame.header.request_id;
        anyhow::ensure!(
            frame.header.status == Status::Ok,
            "{} {} failed: {} {}",
            frame.header.opcode,
            frame.header.object_id,
            frame.header.status,
            frame.error_message()
        );
        let Some((began, left)) = inflight.get_mut(&request_id) else {
            anyhow::bail!("a reply to request {request_id}, which is not in flight");
        };
        *left = left.saturating_sub(frame.payload.len() as u64);
        if frame.header.has_more() || *left > 0 {
            anyhow::ensure!(
                frame.header.has_more(),
                "GET reply of request {request_id} came short"
            );
            continue;
        }
        histogram.record(began.elapsed().as_micros().max(1) as u64)?;
        inflight.remove(&request_id);
        done.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::node_list;

    #[test]
    fn node_lists() {
        assert_eq!(node_list("127.0.0.1:7000").unwrap(), ["127.0.0.1:7000"]);
        assert_eq!(node_list("a:1, b:2,,c:3,").unwrap(), ["a:1", "b:2", "c:3"]);
        assert!(node_list(" , ").is_err());
    }
}
