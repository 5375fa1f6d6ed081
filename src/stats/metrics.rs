//! The counters one data core keeps ([`CoreMetrics`]) and their publication to the management
//! thread through a [`Published`] slot.
//!
//! Updating is plain arithmetic on memory the core owns: no atomics, locks or allocation on the
//! request path. About every [`PUBLISH_INTERVAL`] the core copies everything into its slot; the
//! copy reuses the slot's memory, and the core only `try_lock`s, so a reader holding the slot
//! delays a publication by one interval but never stalls the core.

use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::snapshot::{CoreSnapshot, DeviceSnapshot};

/// How often a core is expected to call [`CoreMetrics::publish`].
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

/// The requests a core serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Create,
    Put,
    Get,
    Delete,
    Stat,
    Ping,
}

impl Op {
    pub const COUNT: usize = 6;
    pub const ALL: [Op; Op::COUNT] = [Op::Create, Op::Put, Op::Get, Op::Delete, Op::Stat, Op::Ping];

    /// Lower-case name, as in JSON keys and Prometheus labels.
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Put => "put",
            Op::Get => "get",
            Op::Delete => "delete",
            Op::Stat => "stat",
            Op::Ping => "ping",
        }
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

const _: () = assert!(Op::ALL.len() == Op::Ping as usize + 1);

/// Totals of one kind of request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounters {
    /// Requests completed, failed ones included.
    pub count: u64,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Sum of the latencies recorded, in microseconds (exact; for means and Prometheus `_sum`).
    pub latency_sum_us: u64,
}

impl OpCounters {
    pub fn add(&mut self, other: &OpCounters) {
        self.count += other.count;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.latency_sum_us += other.latency_sum_us;
    }
}

/// Work in flight on a core at the last update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepths {
    /// Network operations submitted and not completed.
    pub net_inflight: u64,
    /// Device operations submitted and not completed.
    pub device_inflight: u64,
    /// Request tasks alive.
    pub tasks: u64,
}

impl QueueDepths {
    pub fn add(&mut self, other: &QueueDepths) {
        self.net_inflight += other.net_inflight;
        self.device_inflight += other.device_inflight;
        self.tasks += other.tasks;
    }
}

/// What a core did for the cluster as coordinator of requests: erasure coding, how stripe
/// reads and writes went, and its calls to other nodes. Totals since the core started, but
/// `peer_calls_in_flight`, a gauge. The core copies them in before it publishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterCounters {
    /// Stripes encoded (writes) and restored (reads, copies of whole data shards included).
    pub stripes_encoded: u64,
    pub stripes_decoded: u64,
    /// Stripe bytes encoded and restored.
    pub bytes_encoded: u64,
    pub bytes_decoded: u64,
    /// Time inside the codec, encoding and decoding, in nanoseconds.
    pub coding_ns: u64,
    /// Stripes restored with parity because data shards were missing, failed or corrupt.
    pub degraded_reads: u64,
    /// Extra shard requests sent because an answer was slow.
    pub hedged_requests: u64,
    /// Stripe reads that failed (too few shards of one version).
    pub failed_reads: u64,
    /// Stripe writes that missed their write quorum.
    pub failed_writes: u64,
    /// Calls to other nodes, and those that failed (errors, timeouts, lost connections).
    pub peer_calls_total: u64,
    pub peer_call_errors: u64,
    /// Calls to other nodes waiting for their answer.
    pub peer_calls_in_flight: u64,
}

impl ClusterCounters {
    pub fn add(&mut self, other: &ClusterCounters) {
        self.stripes_encoded += other.stripes_encoded;
        self.stripes_decoded += other.stripes_decoded;
        self.bytes_encoded += other.bytes_encoded;
        self.bytes_decoded += other.bytes_decoded;
        self.coding_ns += other.coding_ns;
        self.degraded_reads += other.degraded_reads;
        self.hedged_requests += other.hedged_requests;
        self.failed_reads += other.failed_reads;
        self.failed_writes += other.failed_writes;
        self.peer_calls_total += other.peer_calls_total;
        self.peer_call_errors += other.peer_call_errors;
        self.peer_calls_in_flight += other.peer_calls_in_flight;
    }

    /// Seconds inside the codec.
    pub fn coding_seconds(&self) -> f64 {
        self.coding_ns as f64 / 1e9
    }
}

/// Where a core publishes its counters and the management thread reads them.
pub type Published = Arc<Mutex<Option<CoreSnapshot>>>;

/// An empty slot, for one core.
pub fn published_slot() -> Published {
    Arc::new(Mutex::new(None))
}

/// A copy of what the core published last; `None` before its first publication.
pub fn read_published(slot: &Published) -> Option<CoreSnapshot> {
    // Poisoning is ignored: a panic mid-copy leaves at worst a mix of two publications, still
    // plain counters, and stats must not take the management thread down.
    let guard = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    guard.clone()
}

/// Reads every core's slot; a core that has not published yet shows as empty.
pub fn read_all(slots: &[Published]) -> Vec<CoreSnapshot> {
    slots
        .iter()
        .enumerate()
        .map(|(core, slot)| read_published(slot).unwrap_or_else(|| CoreSnapshot::new(core)))
        .collect()
}

/// The counters of one data core, owned by it.
#[derive(Debug)]
pub struct CoreMetrics {
    live: CoreSnapshot,
    started: Instant,
    publications_skipped: u64,
}

impl CoreMetrics {
    /// Allocates everything the core will need (the histograms: about 140 KB per op).
    pub fn new(core: usize) -> Self {
        CoreMetrics {
            live: CoreSnapshot::new(core),
            started: Instant::now(),
            publications_skipped: 0,
        }
    }

    pub fn core(&self) -> usize {
        self.live.core
    }

    /// Counts one completed request. Latencies are rounded up to whole microseconds and
    /// clamped to the histogram's range; failed requests are timed too (a timeout is latency).
    #[inline]
    pub fn record(&mut self, op: Op, bytes: u64, latency: Duration, ok: bool) {
        // u64 arithmetic: a u128 division would cost more than the rest of this function.
        let micros = latency
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(latency.subsec_nanos().div_ceil(1000)));
        let counters = &mut self.live.ops[op.index()];
        counters.count += 1;
        counters.bytes += bytes;
        counters.errors += u64::from(!ok);
        counters.latency_sum_us = counters.latency_sum_us.saturating_add(micros);
        self.live.latency_us[op.index()].saturating_record(micros);
    }

    /// Loop time spent on work (some poller returned Busy).
    #[inline]
    pub fn add_busy(&mut self, time: Duration) {
        self.live.busy += time;
    }

    /// Loop time spent spinning or blocked with nothing to do.
    #[inline]
    pub fn add_idle(&mut self, time: Duration) {
        self.live.idle += time;
    }

    /// Counts one turn of the reactor loop.
    #[inline]
    pub fn count_loop(&mut self) {
        self.live.loops += 1;
    }

    #[inline]
    pub fn set_queue_depths(&mut self, net_inflight: u64, device_inflight: u64, tasks: u64) {
        self.live.queues = QueueDepths {
            net_inflight,
            device_inflight,
            tasks,
        };
    }

    #[inline]
    pub fn connection_opened(&mut self) {
        self.live.connections_open += 1;
        self.live.connections_total += 1;
    }

    #[inline]
    pub fn connection_closed(&mut self) {
        assert!(
            self.live.connections_open > 0,
            "closed more connections than opened"
        );
        self.live.connections_open -= 1;
    }

    /// The cluster counters, copied in by the core (they live in its service state).
    #[inline]
    pub fn set_cluster(&mut self, counters: ClusterCounters) {
        self.live.cluster = counters;
    }

    /// The core's devices, refreshed by the core from its store before it publishes.
    pub fn devices_mut(&mut self) -> &mut Vec<DeviceSnapshot> {
        &mut self.live.devices
    }

    /// The live counters, for the core itself and for tests.
    pub fn snapshot(&self) -> &CoreSnapshot {
        &self.live
    }

    /// Publications skipped because a reader held the slot.
    pub fn publications_skipped(&self) -> u64 {
        self.publications_skipped
    }

    /// Copies the counters into `slot`. Returns false, and leaves the slot as it was, when a
    /// reader holds it: the next call publishes. Allocates only on the first publication.
    pub fn publish(&mut self, slot: &Published) -> bool {
        self.live.elapsed = self.started.elapsed();
        let mut guard = match slot.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => {
                self.publications_skipped += 1;
                return false;
            }
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        };
        match guard.as_mut() {
            Some(published) => published.copy_from(&self.live),
            None => *guard = Some(self.live.clone()),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_names_round_trip() {
        for (index, op) in Op::ALL.into_iter().enumerate() {
            assert_eq!(op.index(), index);
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
        assert_eq!(Op::from_name("GET"), None);
    }

    #[test]
    fn records_counts_and_latency() {
        let mut metrics = CoreMetrics::new(2);
        for micros in 1..=100 {
            metrics.record(Op::Get, 4096, Duration::from_micros(micros), true);
        }
        metrics.record(Op::Put, 0, Duration::from_nanos(1500), false);
        metrics.record(Op::Put, 0, Duration::from_secs(3600), false);
        let live = metrics.snapshot();
        assert_eq!(live.op(Op::Get).count, 100);
        assert_eq!(live.op(Op::Get).bytes, 409_600);
        assert_eq!(live.op(Op::Get).errors, 0);
        assert_eq!(live.op(Op::Get).latency_sum_us, 5050);
        assert_eq!(live.latency(Op::Get).value_at_quantile(0.5), 50);
        assert_eq!(live.latency(Op::Get).value_at_quantile(0.99), 99);
        assert_eq!(live.latency(Op::Get).max(), 100);
        assert_eq!(live.op(Op::Put).errors, 2);
        // 1.5 µs rounds up; an hour is clamped to the histogram's top.
        assert_eq!(live.latency(Op::Put).min(), 2);
        assert!(live.latency(Op::Put).max() >= 59_000_000);
        assert!(live.latency(Op::Put).max() <= 60_100_000);
    }

    #[test]
    fn gauges_and_loop_time() {
        let mut metrics = CoreMetrics::new(0);
        metrics.connection_opened();
        metrics.connection_opened();
        metrics.connection_closed();
        metrics.set_queue_depths(3, 7, 11);
        metrics.add_busy(Duration::from_millis(30));
        metrics.add_idle(Duration::from_millis(10));
        metrics.count_loop();
        metrics.set_cluster(ClusterCounters {
            coding_ns: 5,
            peer_calls_in_flight: 2,
            ..ClusterCounters::default()
        });
        let live = metrics.snapshot();
        assert_eq!(live.cluster.coding_ns, 5);
        let mut sum = live.cluster;
        sum.add(&live.cluster);
        assert_eq!((sum.coding_ns, sum.peer_calls_in_flight), (10, 4));
        assert_eq!((live.connections_open, live.connections_total), (1, 2));
        assert_eq!(live.queues.device_inflight, 7);
        assert_eq!(live.loops, 1);
        assert!((live.busy_fraction() - 0.75).abs() < 1e-9);
    }

    #[test]
    #[should_panic(expected = "closed more connections")]
    fn closing_unopened_connection_panics() {
        CoreMetrics::new(0).connection_closed();
    }

    #[test]
    fn publish_copies_and_skips_when_held() {
        let slot = published_slot();
        assert!(read_published(&slot).is_none());
        let mut metrics = CoreMetrics::new(1);
        metrics.record(Op::Ping, 0, Duration::from_micros(5), true);
        assert!(metrics.publish(&slot));
        metrics.record(Op::Ping, 0, Duration::from_micros(7), true);
        assert!(metrics.publish(&slot));
        let published = read_published(&slot).unwrap();
        assert_eq!(published.core, 1);
        assert_eq!(published.op(Op::Ping).count, 2);
        assert_eq!(published.latency(Op::Ping).len(), 2);

        let held = slot.lock().unwrap();
        metrics.record(Op::Ping, 0, Duration::from_micros(9), true);
        assert!(!metrics.publish(&slot));
        drop(held);
        assert_eq!(metrics.publications_skipped(), 1);
        assert_eq!(read_published(&slot).unwrap().op(Op::Ping).count, 2);
        assert!(metrics.publish(&slot));
        assert_eq!(read_published(&slot).unwrap().op(Op::Ping).count, 3);

        let all = read_all(&[slot, published_slot()]);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].core, 1);
        assert_eq!(all[1].op(Op::Ping).count, 0);
    }
}
