//! `ds top`: a live view of a node in the manner of spdk_top. Every interval it reads the stats
//! socket and redraws one frame from the difference between two reports: per-core and per-op
//! rates, busy share, queue depths, connections, and the device table.
//!
//! Rates divide by the change of each core's own clock (`elapsed_seconds`, stamped when the core
//! published), not by the time between two requests, so a core that publishes late does not
//! show a spike. The p99 column is since the core started (reports carry percentiles, not
//! histograms); the mean latency is over the interval, from the exact latency sums.
//! Redrawing is plain ANSI (clear screen, cursor home), and only on a terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use std::fmt::Write as _;

use super::client::fetch_report;
use super::metrics::{Op, OpCounters};
use super::render::{device_table, human_duration};
use super::report::{CoreReport, NodeReport};

/// Clears the screen and moves the cursor home.
pub const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";

/// Rates of one core, or of one op over all cores, between two reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub ops_per_second: f64,
    pub megabytes_per_second: f64,
    pub errors_per_second: f64,
    /// Mean latency of the requests completed in the interval; 0 without any.
    pub mean_latency_us: f64,
}

impl Rates {
    fn between(previous: &OpCounters, current: &OpCounters, seconds: f64) -> Rates {
        let count = current.count.saturating_sub(previous.count);
        let bytes = current.bytes.saturating_sub(previous.bytes);
        let errors = current.errors.saturating_sub(previous.errors);
        let latency = current
            .latency_sum_us
            .saturating_sub(previous.latency_sum_us);
        let per_second = |value: u64| {
            if seconds > 0.0 {
                value as f64 / seconds
            } else {
                0.0
            }
        };
        Rates {
            ops_per_second: per_second(count),
            megabytes_per_second: per_second(bytes) / 1e6,
            errors_per_second: per_second(errors),
            mean_latency_us: if count > 0 {
                latency as f64 / count as f64
            } else {
                0.0
            },
        }
    }
}

/// The previous report of the same core, if there was one.
fn previous_core<'a>(previous: &'a NodeReport, core: &CoreReport) -> Option<&'a CoreReport> {
    previous.cores.iter().find(|other| other.core == core.core)
}

fn core_seconds(previous: Option<&CoreReport>, current: &CoreReport) -> f64 {
    current.elapsed_seconds - previous.map_or(0.0, |core| core.elapsed_seconds)
}

/// Rates of one core between two reports of it.
pub fn core_rates(previous: Option<&CoreReport>, current: &CoreReport) -> Rates {
    let before = previous.map(CoreReport::sum_ops).unwrap_or_default();
    Rates::between(&before, &current.sum_ops(), core_seconds(previous, current))
}

/// Busy share of the core's loop time in the interval.
pub fn core_busy_fraction(previous: Option<&CoreReport>, current: &CoreReport) -> f64 {
    let (busy, idle) = previous.map_or((0.0, 0.0), |core| (core.busy_seconds, core.idle_seconds));
    let busy = current.busy_seconds - busy;
    let total = busy + current.idle_seconds - idle;
    if total > 0.0 {
        busy / total
    } else {
        0.0
    }
}

/// Rates of one op summed over cores; each core's share is divided by its own clock.
pub fn op_rates(previous: &NodeReport, current: &NodeReport, op: Op) -> Rates {
    let mut sum = Rates::default();
    let mut completed = 0.0;
    for core in &current.cores {
        let before = previous_core(previous, core);
        let counters = |report: &CoreReport| {
            report
                .ops
                .get(op.name())
                .map_or(OpCounters::default(), |op| OpCounters {
                    count: op.count,
                    bytes: op.bytes,
                    errors: op.errors,
                    latency_sum_us: op.latency_sum_us,
                })
        };
        let seconds = core_seconds(before, core);
        let rates = Rates::between(
            &before.map(counters).unwrap_or_default(),
            &counters(core),
            seconds,
        );
        sum.ops_per_second += rates.ops_per_second;
        sum.megabytes_per_second += rates.megabytes_per_second;
        sum.errors_per_second += rates.errors_per_second;
        let count = rates.ops_per_second * seconds;
        sum.mean_latency_us += rates.mean_latency_us * count;
        completed += count;
    }
    if completed > 0.0 {
        sum.mean_latency_us /= completed;
    }
    sum
}

/// What the node did as coordinator in the interval, summed over cores (each core's share
/// divided by its own clock).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ClusterRates {
    pub encoded_megabytes_per_second: f64,
    pub decoded_megabytes_per_second: f64,
    /// Codec time per busy loop time in the interval, 0 without busy time.
    pub coding_busy_fraction: f64,
    pub peer_calls_per_second: f64,
    pub peer_errors_per_second: f64,
    pub degraded_reads_per_second: f64,
    pub hedged_requests_per_second: f64,
    /// Calls to peers waiting now.
    pub peer_calls_in_flight: u64,
}

pub fn cluster_rates(previous: &NodeReport, current: &NodeReport) -> ClusterRates {
    let mut rates = ClusterRates::default();
    let (mut coding, mut busy) = (0.0, 0.0);
    for core in &current.cores {
        let before = previous_core(previous, core);
        let seconds = core_seconds(before, core);
        let was = before.map(|core| core.cluster).unwrap_or_default();
        let now = core.cluster;
        let per_second = |now: u64, was: u64| {
            if seconds > 0.0 {
                now.saturating_sub(was) as f64 / seconds
            } else {
                0.0
            }
        };
        rates.encoded_megabytes_per_second +=
            per_second(now.bytes_encoded, was.bytes_encoded) / 1e6;
        rates.decoded_megabytes_per_second +=
            per_second(now.bytes_decoded, was.bytes_decoded) / 1e6;
        rates.peer_calls_per_second += per_second(now.peer_calls_total, was.peer_calls_total);
        rates.peer_errors_per_second += per_second(now.peer_call_errors, was.peer_call_errors);
        rates.degraded_reads_per_second += per_second(now.degraded_reads, was.degraded_reads);
        rates.hedged_requests_per_second += per_second(now.hedged_requests, was.hedged_requests);
        rates.peer_calls_in_flight += now.peer_calls_in_flight;
        coding += now.coding_ns.saturating_sub(was.coding_ns) as f64 / 1e9;
        busy += core.busy_seconds - before.map_or(0.0, |core| core.busy_seconds);
    }
    if busy > 0.0 {
        rates.coding_busy_fraction = coding / busy;
    }
    rates
}

/// One screen: node line, cores, ops, devices.
pub fn frame(previous: &NodeReport, current: &NodeReport, interval: Duration) -> String {
    let mut text = String::new();
    let mut total = Rates::default();
    let mut rows = String::new();
    for core in &current.cores {
        let before = previous_core(previous, core);
        let rates = core_rates(before, core);
        total.ops_per_second += rates.ops_per_second;
        total.megabytes_per_second += rates.megabytes_per_second;
        writeln!(
            rows,
            "{:>4} {:>11.0} {:>9.1} {:>6.1} {:>8.1} {:>8} {:>5} {:>5} {:>6} {:>6}",
            core.core,
            rates.ops_per_second,
            rates.megabytes_per_second,
            core_busy_fraction(before, core) * 100.0,
            rates.mean_latency_us,
            core.latency_us.p99,
            core.queues.net_inflight,
            core.queues.device_inflight,
            core.queues.tasks,
            core.connections.open,
        )
        .unwrap();
    }
    writeln!(
        text,
        "ds top  node {}  up {}  listen {}  every {:.1}s",
        current.node_id,
        human_duration(current.uptime_seconds),
        current.listen,
        interval.as_secs_f64()
    )
    .unwrap();
    writeln!(
        text,
        "{} cores  {:.0} ops/s  {:.1} MB/s  connections {}\n",
        current.cores.len(),
        total.ops_per_second,
        total.megabytes_per_second,
        current.totals.connections.open
    )
    .unwrap();
    writeln!(
        text,
        "{:>4} {:>11} {:>9} {:>6} {:>8} {:>8} {:>5} {:>5} {:>6} {:>6}",
        "core", "ops/s", "MB/s", "busy%", "avg us", "p99 us", "net", "dev", "tasks", "conns"
    )
    .unwrap();
    text.push_str(&rows);
    writeln!(
        text,
        "\n{:<7} {:>11} {:>9} {:>9} {:>8} {:>8}",
        "op", "ops/s", "MB/s", "errors/s", "avg us", "p99 us"
    )
    .unwrap();
    for op in Op::ALL {
        let rates = op_rates(previous, current, op);
        let p99 = current
            .totals
            .ops
            .get(op.name())
            .map_or(0, |op| op.latency_us.p99);
        writeln!(
            text,
            "{:<7} {:>11.0} {:>9.1} {:>9.1} {:>8.1} {:>8}",
            op.name(),
            rates.ops_per_second,
            rates.megabytes_per_second,
            rates.errors_per_second,
            rates.mean_latency_us,
            p99
        )
        .unwrap();
    }
    text.push_str("(avg: this interval; p99: since start)\n\n");
    let cluster = cluster_rates(previous, current);
    writeln!(
        text,
        "cluster  encode {:.1} MB/s  decode {:.1} MB/s  coding {:.1}% of busy  degraded {:.1}/s  hedged {:.1}/s\n\
         peers    {:.0} calls/s  {:.1} errors/s  {} in flight\n",
        cluster.encoded_megabytes_per_second,
        cluster.decoded_megabytes_per_second,
        cluster.coding_busy_fraction * 100.0,
        cluster.degraded_reads_per_second,
        cluster.hedged_requests_per_second,
        cluster.peer_calls_per_second,
        cluster.peer_errors_per_second,
        cluster.peer_calls_in_flight,
    )
    .unwrap();
    text.push_str(&device_table(current));
    text
}

/// `ds top --socket PATH`: redraws every `interval` until interrupted, or `iterations` frames.
pub fn run_top(
    path: impl AsRef<Path>,
    interval: Duration,
    iterations: Option<u64>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let clear = stdout.is_terminal();
    run_top_into(
        &mut stdout.lock(),
        path.as_ref(),
        interval,
        iterations,
        clear,
    )
}

/// [`run_top`] writing to `out`; `clear` redraws in place instead of appending frames.
pub fn run_top_into(
    out: &mut dyn Write,
    path: &Path,
    interval: Duration,
    iterations: Option<u64>,
    clear: bool,
) -> anyhow::Result<()> {
    let mut previous = fetch_report(path)?;
    let mut shown = 0u64;
    while iterations.is_none_or(|iterations| shown < iterations) {
        std::thread::sleep(interval);
        let current = fetch_report(path)?;
        if clear {
            out.write_all(CLEAR_SCREEN.as_bytes())?;
        }
        out.write_all(frame(&previous, &current, interval).as_bytes())?;
        out.flush()?;
        previous = current;
        shown += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::metrics::CoreMetrics;
    use crate::stats::snapshot::NodeSnapshot;

    fn report(metrics: &mut CoreMetrics, elapsed: Duration) -> NodeReport {
        let mut core = metrics.snapshot().clone();
        core.elapsed = elapsed;
        NodeReport::new(&NodeSnapshot::new(1, "v", elapsed, "a", vec![core]))
    }

    #[test]
    fn rates_from_two_reports() {
        let mut metrics = CoreMetrics::new(0);
        metrics.record(Op::Get, 1_000_000, Duration::from_micros(10), true);
        metrics.add_busy(Duration::from_millis(100));
        metrics.add_idle(Duration::from_millis(900));
        let before = report(&mut metrics, Duration::from_secs(1));
        for _ in 0..200 {
            metrics.record(Op::Get, 1_000_000, Duration::from_micros(20), true);
        }
        metrics.record(Op::Put, 0, Duration::from_micros(40), false);
        metrics.add_busy(Duration::from_millis(1500));
        metrics.add_idle(Duration::from_millis(500));
        metrics.set_cluster(crate::stats::ClusterCounters {
            bytes_encoded: 4_000_000,
            coding_ns: 150_000_000,
            peer_calls_total: 600,
            peer_calls_in_flight: 5,
            ..Default::default()
        });
        let after = report(&mut metrics, Duration::from_secs(3));

        let rates = core_rates(before.cores.first(), &after.cores[0]);
        assert!((rates.ops_per_second - 100.5).abs() < 1e-9);
        assert!((rates.megabytes_per_second - 100.0).abs() < 1e-9);
        let busy = core_busy_fraction(before.cores.first(), &after.cores[0]);
        assert!((busy - 0.75).abs() < 1e-9);
        let get = op_rates(&before, &after, Op::Get);
        assert!((get.ops_per_second - 100.0).abs() < 1e-9);
        assert!((get.mean_latency_us - 20.0).abs() < 1e-9);
        let put = op_rates(&before, &after, Op::Put);
        assert!((put.errors_per_second - 0.5).abs() < 1e-9);

        let text = frame(&before, &after, Duration::from_secs(1));
        assert!(text.contains("ds top"), "{text}");
        assert!(text.contains(" 100.0 "), "{text}");
        assert!(!text.contains(CLEAR_SCREEN));

        let cluster = cluster_rates(&before, &after);
        assert!((cluster.encoded_megabytes_per_second - 2.0).abs() < 1e-9);
        assert!((cluster.coding_busy_fraction - 0.1).abs() < 1e-9);
        assert!((cluster.peer_calls_per_second - 300.0).abs() < 1e-9);
        assert_eq!(cluster.peer_calls_in_flight, 5);
        assert!(text.contains("coding 10.0% of busy"), "{text}");
        assert!(text.contains("300 calls/s"), "{text}");
    }

    #[test]
    fn no_time_no_rates() {
        let mut metrics = CoreMetrics::new(0);
        metrics.record(Op::Get, 1, Duration::from_micros(1), true);
        let same = report(&mut metrics, Duration::from_secs(1));
        let rates = core_rates(same.cores.first(), &same.cores[0]);
        assert_eq!(rates, Rates::default());
        assert_eq!(core_busy_fraction(same.cores.first(), &same.cores[0]), 0.0);
    }
}
