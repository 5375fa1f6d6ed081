//! Plain-data copies of the counters: what one core publishes ([`CoreSnapshot`]), what a core
//! reports of its devices ([`DeviceSnapshot`]), and what the management thread assembles for the
//! whole node ([`NodeSnapshot`]) with totals over cores.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::metrics::{ClusterCounters, Op, OpCounters, QueueDepths};

/// Lowest and highest latency a histogram tells apart, and its precision.
pub const LATENCY_US_LOW: u64 = 1;
pub const LATENCY_US_HIGH: u64 = 60_000_000;
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// An empty latency histogram with the bounds every core uses (so histograms add by memcpy).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LATENCY_US_LOW, LATENCY_US_HIGH, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// One device as one core sees it (its partition). Filled by the core from its store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    pub core: usize,
    /// The device's index in the node's device list.
    pub slot: usize,
    pub path: String,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub compactions: u64,
    /// Compactions that freed a segment without reading it (nothing in it was live).
    #[serde(default)]
    pub compactions_unread: u64,
    pub compaction_bytes_copied: u64,
    /// Bytes written to the device per byte written by clients.
    pub write_amplification: f64,
    pub read_errors: u64,
    pub write_errors: u64,
    /// Reads whose checksum did not match.
    pub corrupt_reads: u64,
}

/// Everything one core counts, copied out of it. Counters are totals since the core started.
#[derive(Clone, Debug)]
pub struct CoreSnapshot {
    pub core: usize,
    /// Time since the core's metrics were created, when this copy was taken: the clock that
    /// rates between two snapshots of this core are computed against.
    pub elapsed: Duration,
    /// Indexed by [`Op::index`].
    pub ops: [OpCounters; Op::COUNT],
    /// Latency in microseconds, indexed by [`Op::index`].
    pub latency_us: [Histogram<u64>; Op::COUNT],
    pub busy: Duration,
    pub idle: Duration,
    pub loops: u64,
    pub queues: QueueDepths,
    pub connections_open: u64,
    pub connections_total: u64,
    pub devices: Vec<DeviceSnapshot>,
    /// Coding, stripe reads and writes, calls to peers, as coordinator.
    pub cluster: ClusterCounters,
}

impl CoreSnapshot {
    /// A core that has counted nothing yet.
    pub fn new(core: usize) -> Self {
        CoreSnapshot {
            core,
            elapsed: Duration::ZERO,
            ops: [OpCounters::default(); Op::COUNT],
            latency_us: std::array::from_fn(|_| latency_histogram()),
            busy: Duration::ZERO,
            idle: Duration::ZERO,
            loops: 0,
            queues: QueueDepths::default(),
            connections_open: 0,
            connections_total: 0,
            devices: Vec::new(),
            cluster: ClusterCounters::default(),
        }
    }

    pub fn op(&self, op: Op) -> &OpCounters {
        &self.ops[op.index()]
    }

    pub fn latency(&self, op: Op) -> &Histogram<u64> {
        &self.latency_us[op.index()]
    }

    /// Busy share of the loop time, 0 when the loop has not run.
    pub fn busy_fraction(&self) -> f64 {
        fraction(self.busy, self.idle)
    }

    /// Overwrites `self` with `source` without allocating once the devices fit: histograms of
    /// equal bounds are reset and added, which copies their counts.
    pub fn copy_from(&mut self, source: &CoreSnapshot) {
        self.core = source.core;
        self.elapsed = source.elapsed;
        self.ops = source.ops;
        for (target, source) in self.latency_us.iter_mut().zip(&source.latency_us) {
            target.reset();
            target
                .add(source)
                .expect("latency histograms share their bounds");
        }
        self.busy = source.busy;
        self.idle = source.idle;
        self.loops = source.loops;
        self.queues = source.queues;
        self.connections_open = source.connections_open;
        self.connections_total = source.connections_total;
        self.devices.clone_from(&source.devices);
        self.cluster = source.cluster;
    }
}

fn fraction(busy: Duration, idle: Duration) -> f64 {
    let total = busy + idle;
    if total.is_zero() {
        0.0
    } else {
        busy.as_secs_f64() / total.as_secs_f64()
    }
}

/// The whole node at one moment, as the stats socket serves it.
#[derive(Clone, Debug)]
pub struct NodeSnapshot {
    /// 32 hex digits.
    pub node_id: String,
    pub version: String,
    pub uptime_seconds: f64,
    pub listen: String,
    pub cores: Vec<CoreSnapshot>,
    /// The overlay's counters (routing table, lookups, hops, drops), when it runs.
    pub overlay: Option<serde_json::Value>,
    /// Repair and scrub (the HEALTH document without its per-core list), when repair runs.
    pub repair: Option<serde_json::Value>,
}

/// Sums over the cores of a [`NodeSnapshot`].
#[derive(Clone, Debug)]
pub struct NodeTotals {
    pub ops: [OpCounters; Op::COUNT],
    /// Merged over cores, indexed by [`Op::index`].
    pub latency_us: [Histogram<u64>; Op::COUNT],
    pub busy: Duration,
    pub idle: Duration,
    pub loops: u64,
    pub queues: QueueDepths,
    pub connections_open: u64,
    pub connections_total: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub compactions: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub corrupt_reads: u64,
    pub cluster: ClusterCounters,
}

impl NodeTotals {
    pub fn busy_fraction(&self) -> f64 {
        fraction(self.busy, self.idle)
    }
}

impl NodeSnapshot {
    pub fn new(
        node_id: u128,
        version: impl Into<String>,
        uptime: Duration,
        listen: impl ToString,
        cores: Vec<CoreSnapshot>,
    ) -> Self {
        NodeSnapshot {
            node_id: format!("{node_id:032x}"),
            version: version.into(),
            uptime_seconds: uptime.as_secs_f64(),
            listen: listen.to_string(),
            cores,
            overlay: None,
            repair: None,
        }
    }

    /// Every device of every core, in core order.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceSnapshot> {
        self.cores.iter().flat_map(|core| &core.devices)
    }

    pub fn totals(&self) -> NodeTotals {
        let mut totals = NodeTotals {
            ops: [OpCounters::default(); Op::COUNT],
            latency_us: std::array::from_fn(|_| latency_histogram()),
            busy: Duration::ZERO,
            idle: Duration::ZERO,
            loops: 0,
            queues: QueueDepths::default(),
            connections_open: 0,
            connections_total: 0,
            used_bytes: 0,
            free_bytes: 0,
            compactions: 0,
            read_errors: 0,
            write_errors: 0,
            corrupt_reads: 0,
            cluster: ClusterCounters::default(),
        };
        for core in &self.cores {
            for op in Op::ALL {
                totals.ops[op.index()].add(core.op(op));
                totals.latency_us[op.index()]
                    .add(core.latency(op))
                    .expect("latency histograms share their bounds");
            }
            totals.busy += core.busy;
            totals.idle += core.idle;
            totals.loops += core.loops;
            totals.queues.add(&core.queues);
            totals.connections_open += core.connections_open;
            totals.connections_total += core.connections_total;
            totals.cluster.add(&core.cluster);
        }
        for device in self.devices() {
            totals.used_bytes += device.used_bytes;
            totals.free_bytes += device.free_bytes;
            totals.compactions += device.compactions;
            totals.read_errors += device.read_errors;
            totals.write_errors += device.write_errors;
            totals.corrupt_reads += device.corrupt_reads;
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_from_matches_clone() {
        let mut source = CoreSnapshot::new(3);
        source.ops[Op::Get.index()].count = 5;
        for value in [10, 20, 30] {
            source.latency_us[Op::Get.index()].record(value).unwrap();
        }
        source.devices.push(DeviceSnapshot {
            path: "/d".into(),
            ..DeviceSnapshot::default()
        });
        source.cluster.stripes_encoded = 9;
        let mut target = CoreSnapshot::new(0);
        target.latency_us[Op::Put.index()].record(99).unwrap();
        target.copy_from(&source);
        assert_eq!(target.core, 3);
        assert_eq!(target.op(Op::Get).count, 5);
        assert_eq!(target.latency(Op::Get).len(), 3);
        assert_eq!(target.latency(Op::Get).max(), 30);
        assert_eq!(target.latency(Op::Put).len(), 0);
        assert_eq!(target.devices, source.devices);
        assert_eq!(target.cluster.stripes_encoded, 9);
    }

    #[test]
    fn totals_add_cores() {
        let mut first = CoreSnapshot::new(0);
        first.ops[Op::Put.index()].count = 2;
        first.latency_us[Op::Put.index()].record(100).unwrap();
        first.busy = Duration::from_secs(1);
        first.cluster.coding_ns = 7;
        first.idle = Duration::from_secs(3);
        first.devices.push(DeviceSnapshot {
            used_bytes: 10,
            free_bytes: 90,
            ..DeviceSnapshot::default()
        });
        let mut second = first.clone();
        second.core = 1;
        second.latency_us[Op::Put.index()].record(300).unwrap();
        let node = NodeSnapshot::new(0xab, "v", Duration::from_secs(4), "a", vec![first, second]);
        assert_eq!(node.node_id.len(), 32);
        let totals = node.totals();
        assert_eq!(totals.ops[Op::Put.index()].count, 4);
        assert_eq!(totals.latency_us[Op::Put.index()].len(), 3);
        assert_eq!(totals.used_bytes, 20);
        assert_eq!(totals.free_bytes, 180);
        assert_eq!(totals.cluster.coding_ns, 14);
        assert!((totals.busy_fraction() - 0.25).abs() < 1e-9);
    }
}
