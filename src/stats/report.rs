//! The stats report: what the socket's JSON answer holds, built from a [`NodeSnapshot`].
//! The same types parse the answer again in `ds stats` and `ds top`, so the schema lives in one
//! place. Latencies are microseconds; counters are totals since the core started.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::metrics::{ClusterCounters, Op, OpCounters, QueueDepths};
use super::snapshot::{latency_histogram, CoreSnapshot, DeviceSnapshot, NodeSnapshot};

/// Percentiles of one latency histogram, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencyReport {
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return LatencyReport::default();
        }
        LatencyReport {
            count: histogram.len(),
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

/// One kind of request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpReport {
    pub count: u64,
    pub bytes: u64,
    pub errors: u64,
    pub latency_sum_us: u64,
    pub latency_us: LatencyReport,
}

impl OpReport {
    fn new(counters: &OpCounters, latency: &Histogram<u64>) -> Self {
        OpReport {
            count: counters.count,
            bytes: counters.bytes,
            errors: counters.errors,
            latency_sum_us: counters.latency_sum_us,
            latency_us: LatencyReport::from_histogram(latency),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionsReport {
    pub open: u64,
    pub total: u64,
}

/// One data core.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoreReport {
    pub core: usize,
    /// The core's own clock at publication; rates between two reports divide by its change.
    pub elapsed_seconds: f64,
    /// By op name.
    pub ops: BTreeMap<String, OpReport>,
    /// All ops together.
    pub latency_us: LatencyReport,
    pub busy_seconds: f64,
    pub idle_seconds: f64,
    pub busy_fraction: f64,
    pub loops: u64,
    pub queues: QueueDepths,
    pub connections: ConnectionsReport,
    /// Coding, stripe reads and writes, calls to peers, as coordinator.
    #[serde(default)]
    pub cluster: ClusterCounters,
}

/// Sums over all cores and devices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TotalsReport {
    pub ops: BTreeMap<String, OpReport>,
    pub latency_us: LatencyReport,
    pub busy_seconds: f64,
    pub idle_seconds: f64,
    pub busy_fraction: f64,
    pub loops: u64,
    pub queues: QueueDepths,
    pub connections: ConnectionsReport,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub compactions: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub corrupt_reads: u64,
    #[serde(default)]
    pub cluster: ClusterCounters,
}

/// The whole answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: String,
    pub version: String,
    pub uptime_seconds: f64,
    pub listen: String,
    pub totals: TotalsReport,
    pub cores: Vec<CoreReport>,
    /// Every core's devices, in core order.
    pub devices: Vec<DeviceSnapshot>,
    /// The overlay's counters, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<serde_json::Value>,
    /// Repair and scrub counters (`ds admin health` without the per-core list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<serde_json::Value>,
}

fn sum_ops(ops: &BTreeMap<String, OpReport>) -> OpCounters {
    let mut sum = OpCounters::default();
    for op in ops.values() {
        sum.count += op.count;
        sum.bytes += op.bytes;
        sum.errors += op.errors;
        sum.latency_sum_us += op.latency_sum_us;
    }
    sum
}

fn merged(histograms: &[Histogram<u64>]) -> Histogram<u64> {
    let mut all = latency_histogram();
    for histogram in histograms {
        all.add(histogram)
            .expect("latency histograms share their bounds");
    }
    all
}

fn ops_by_name(
    counters: &[OpCounters; Op::COUNT],
    latency: &[Histogram<u64>; Op::COUNT],
) -> BTreeMap<String, OpReport> {
    Op::ALL
        .into_iter()
        .map(|op| {
            let report = OpReport::new(&counters[op.index()], &latency[op.index()]);
            (op.name().to_string(), report)
        })
        .collect()
}

impl CoreReport {
    pub fn new(core: &CoreSnapshot) -> Self {
        CoreReport {
            core: core.core,
            elapsed_seconds: core.elapsed.as_secs_f64(),
            ops: ops_by_name(&core.ops, &core.latency_us),
            latency_us: LatencyReport::from_histogram(&merged(&core.latency_us)),
            busy_seconds: core.busy.as_secs_f64(),
            idle_seconds: core.idle.as_secs_f64(),
            busy_fraction: core.busy_fraction(),
            loops: core.loops,
            queues: core.queues,
            connections: ConnectionsReport {
                open: core.connections_open,
                total: core.connections_total,
            },
            cluster: core.cluster,
        }
    }

    /// Sums over ops.
    pub fn sum_ops(&self) -> OpCounters {
        sum_ops(&self.ops)
    }
}

impl NodeReport {
    pub fn new(node: &NodeSnapshot) -> Self {
        let totals = node.totals();
        NodeReport {
            node_id: node.node_id.clone(),
            version: node.version.clone(),
            uptime_seconds: node.uptime_seconds,
            listen: node.listen.clone(),
            totals: TotalsReport {
                ops: ops_by_name(&totals.ops, &totals.latency_us),
                latency_us: LatencyReport::from_histogram(&merged(&totals.latency_us)),
                busy_seconds: totals.busy.as_secs_f64(),
                idle_seconds: totals.idle.as_secs_f64(),
                busy_fraction: totals.busy_fraction(),
                loops: totals.loops,
                queues: totals.queues,
                connections: ConnectionsReport {
                    open: totals.connections_open,
                    total: totals.connections_total,
                },
                used_bytes: totals.used_bytes,
                free_bytes: totals.free_bytes,
                compactions: totals.compactions,
                read_errors: totals.read_errors,
                write_errors: totals.write_errors,
                corrupt_reads: totals.corrupt_reads,
                cluster: totals.cluster,
            },
            cores: node.cores.iter().map(CoreReport::new).collect(),
            devices: node.devices().cloned().collect(),
            overlay: node.overlay.clone(),
            repair: node.repair.clone(),
        }
    }

    /// Sums over ops of the node.
    pub fn sum_ops(&self) -> OpCounters {
        sum_ops(&self.totals.ops)
    }
}
