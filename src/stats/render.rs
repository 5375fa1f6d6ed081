//! Text forms of a [`NodeReport`]: JSON, the Prometheus text exposition format (version 0.0.4),
//! and the human table of `ds stats`.

use std::fmt::{Display, Write};

use super::metrics::{ClusterCounters, Op};
use super::report::NodeReport;
use super::snapshot::NodeSnapshot;

/// The Content-Type of [`prometheus`] output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Pretty JSON of the report, newline-terminated.
pub fn json(report: &NodeReport) -> String {
    let mut text = serde_json::to_string_pretty(report).expect("reports serialize");
    text.push('\n');
    text
}

/// JSON straight from a snapshot.
pub fn snapshot_json(node: &NodeSnapshot) -> String {
    json(&NodeReport::new(node))
}

/// Prometheus text straight from a snapshot.
pub fn snapshot_prometheus(node: &NodeSnapshot) -> String {
    prometheus(&NodeReport::new(node))
}

/// Writes samples grouped by family, each family opened by its HELP and TYPE lines.
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        writeln!(self.text, "# HELP {name} {help}").unwrap();
        writeln!(self.text, "# TYPE {name} {kind}").unwrap();
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                write!(self.text, "{label}=\"{}\"", escape_label(value)).unwrap();
            }
            self.text.push('}');
        }
        writeln!(self.text, " {value}").unwrap();
    }

    fn float(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, labels, float(value));
    }
}

fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Rust prints `inf` and `NaN`; the format wants `+Inf`, `-Inf`, `NaN`.
/// Every number of the repair table as `ds_repair_<name>` (scrub ones included).
fn repair_families(out: &mut Exposition, report: &NodeReport) {
    let Some(serde_json::Value::Object(repair)) = &report.repair else {
        return;
    };
    for (name, value) in repair {
        let family = format!("ds_repair_{name}");
        match value {
            serde_json::Value::Number(number) => {
                out.family(&family, "gauge", &format!("Repair: {name}."));
                out.sample(&family, &[], number);
            }
            serde_json::Value::Bool(flag) => {
                out.family(&family, "gauge", &format!("Repair: {name} (1 = yes)."));
                out.sample(&family, &[], u8::from(*flag));
            }
            _ => {}
        }
    }
}

/// Every number of the overlay's counters as `ds_overlay_<name>`; drops by reason as labels.
fn overlay_families(out: &mut Exposition, report: &NodeReport) {
    let Some(serde_json::Value::Object(overlay)) = &report.overlay else {
        return;
    };
    for (name, value) in overlay {
        match value {
            serde_json::Value::Number(number) => {
                let family = format!("ds_overlay_{name}");
                out.family(&family, "gauge", &format!("Overlay: {name}."));
                out.sample(&family, &[], number);
            }
            serde_json::Value::Bool(flag) => {
                let family = format!("ds_overlay_{name}");
                out.family(&family, "gauge", &format!("Overlay: {name} (1 = yes)."));
                out.sample(&family, &[], u8::from(*flag));
            }
            serde_json::Value::Object(by_label) => {
                let family = format!("ds_overlay_{name}");
                out.family(&family, "counter", &format!("Overlay: {name}."));
                for (label, count) in by_label {
                    if let serde_json::Value::Number(count) = count {
                        out.sample(&family, &[("reason", label.as_str())], count);
                    }
                }
            }
            _ => {}
        }
    }
}

fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{value}")
    }
}

/// The Prometheus text exposition format.
pub fn prometheus(report: &NodeReport) -> String {
    let mut out = Exposition {
        text: String::with_capacity(16 << 10),
    };
    out.family("ds_node_info", "gauge", "Node identity; always 1.");
    let node_labels = [
        ("node_id", report.node_id.as_str()),
        ("version", report.version.as_str()),
        ("listen", report.listen.as_str()),
    ];
    out.sample("ds_node_info", &node_labels, 1);
    out.family(
        "ds_node_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
    );
    out.float("ds_node_uptime_seconds", &[], report.uptime_seconds);
    core_op_families(&mut out, report);
    core_families(&mut out, report);
    cluster_families(&mut out, report);
    device_families(&mut out, report);
    overlay_families(&mut out, report);
    repair_families(&mut out, report);
    out.text
}

fn core_op_families(out: &mut Exposition, report: &NodeReport) {
    type Field = fn(&super::report::OpReport) -> u64;
    let counters: [(&str, &str, Field); 3] = [
        (
            "ds_ops_total",
            "Requests completed, failed ones included.",
            |op| op.count,
        ),
        (
            "ds_op_bytes_total",
            "Payload bytes moved by requests.",
            |op| op.bytes,
        ),
        ("ds_op_errors_total", "Requests that failed.", |op| {
            op.errors
        }),
    ];
    for (name, help, field) in counters {
        out.family(name, "counter", help);
        for core in &report.cores {
            let core_label = core.core.to_string();
            for (op_name, op) in ops_in_order(&core.ops) {
                out.sample(name, &[("core", &core_label), ("op", op_name)], field(op));
            }
        }
    }
    let name = "ds_op_latency_us";
    out.family(
        name,
        "summary",
        "Request latency in microseconds since the core started.",
    );
    for core in &report.cores {
        let core_label = core.core.to_string();
        for (op_name, op) in ops_in_order(&core.ops) {
            let latency = &op.latency_us;
            let quantiles = [
                ("0.5", latency.p50),
                ("0.9", latency.p90),
                ("0.99", latency.p99),
                ("0.999", latency.p999),
            ];
            for (quantile, value) in quantiles {
                let labels = [
                    ("core", core_label.as_str()),
                    ("op", op_name),
                    ("quantile", quantile),
                ];
                out.sample(name, &labels, value);
            }
            let labels = [("core", core_label.as_str()), ("op", op_name)];
            out.sample("ds_op_latency_us_sum", &labels, op.latency_sum_us);
            out.sample("ds_op_latency_us_count", &labels, latency.count);
        }
    }
    let name = "ds_op_latency_max_us";
    out.family(
        name,
        "gauge",
        "Highest request latency in microseconds since the core started.",
    );
    for core in &report.cores {
        let core_label = core.core.to_string();
        for (op_name, op) in ops_in_order(&core.ops) {
            out.sample(
                name,
                &[("core", &core_label), ("op", op_name)],
                op.latency_us.max,
            );
        }
    }
}

/// Ops in [`Op::ALL`] order (the report's map is alphabetical), skipping unknown names.
fn ops_in_order(
    ops: &std::collections::BTreeMap<String, super::report::OpReport>,
) -> impl Iterator<Item = (&'static str, &super::report::OpReport)> {
    Op::ALL
        .into_iter()
        .filter_map(move |op| ops.get(op.name()).map(|report| (op.name(), report)))
}

fn core_families(out: &mut Exposition, report: &NodeReport) {
    type Field = fn(&super::report::CoreReport) -> f64;
    let families: [(&str, &str, &str, Field); 8] = [
        (
            "ds_core_busy_seconds_total",
            "counter",
            "Loop time spent on work.",
            |c| c.busy_seconds,
        ),
        (
            "ds_core_idle_seconds_total",
            "counter",
            "Loop time spent with nothing to do.",
            |c| c.idle_seconds,
        ),
        (
            "ds_core_loops_total",
            "counter",
            "Turns of the reactor loop.",
            |c| c.loops as f64,
        ),
        (
            "ds_core_net_inflight",
            "gauge",
            "Network operations in flight.",
            |c| c.queues.net_inflight as f64,
        ),
        (
            "ds_core_device_inflight",
            "gauge",
            "Device operations in flight.",
            |c| c.queues.device_inflight as f64,
        ),
        ("ds_core_tasks", "gauge", "Request tasks alive.", |c| {
            c.queues.tasks as f64
        }),
        (
            "ds_core_connections_open",
            "gauge",
            "Client connections open.",
            |c| c.connections.open as f64,
        ),
        (
            "ds_core_connections_total",
            "counter",
            "Client connections accepted.",
            |c| c.connections.total as f64,
        ),
    ];
    for (name, kind, help, field) in families {
        out.family(name, kind, help);
        for core in &report.cores {
            out.float(name, &[("core", &core.core.to_string())], field(core));
        }
    }
}

/// What each core did as coordinator: erasure coding, stripe reads and writes, peer calls.
fn cluster_families(out: &mut Exposition, report: &NodeReport) {
    type Field = fn(&ClusterCounters) -> f64;
    let families: [(&str, &str, &str, Field); 12] = [
        (
            "ds_coding_stripes_encoded_total",
            "counter",
            "Stripes erasure-coded for writes.",
            |c| c.stripes_encoded as f64,
        ),
        (
            "ds_coding_stripes_decoded_total",
            "counter",
            "Stripes restored for reads (copies of whole data shards included).",
            |c| c.stripes_decoded as f64,
        ),
        (
            "ds_coding_bytes_encoded_total",
            "counter",
            "Stripe bytes encoded.",
            |c| c.bytes_encoded as f64,
        ),
        (
            "ds_coding_bytes_decoded_total",
            "counter",
            "Stripe bytes restored.",
            |c| c.bytes_decoded as f64,
        ),
        (
            "ds_coding_seconds_total",
            "counter",
            "Time inside the erasure codec, encoding and decoding.",
            |c| c.coding_seconds(),
        ),
        (
            "ds_coding_degraded_reads_total",
            "counter",
            "Stripes restored with parity because data shards were missing, failed or corrupt.",
            |c| c.degraded_reads as f64,
        ),
        (
            "ds_coding_hedged_requests_total",
            "counter",
            "Extra shard requests sent because an answer was slow.",
            |c| c.hedged_requests as f64,
        ),
        (
            "ds_coding_failed_reads_total",
            "counter",
            "Stripe reads that failed (too few shards of one version).",
            |c| c.failed_reads as f64,
        ),
        (
            "ds_coding_failed_writes_total",
            "counter",
            "Stripe writes that missed their write quorum.",
            |c| c.failed_writes as f64,
        ),
        (
            "ds_peer_calls_total",
            "counter",
            "Calls to other nodes.",
            |c| c.peer_calls_total as f64,
        ),
        (
            "ds_peer_call_errors_total",
            "counter",
            "Calls to other nodes that failed (errors, timeouts, lost connections).",
            |c| c.peer_call_errors as f64,
        ),
        (
            "ds_peer_calls_in_flight",
            "gauge",
            "Calls to other nodes waiting for their answer.",
            |c| c.peer_calls_in_flight as f64,
        ),
    ];
    for (name, kind, help, field) in families {
        out.family(name, kind, help);
        for core in &report.cores {
            out.float(
                name,
                &[("core", &core.core.to_string())],
                field(&core.cluster),
            );
        }
    }
}

fn device_families(out: &mut Exposition, report: &NodeReport) {
    type Field = fn(&super::snapshot::DeviceSnapshot) -> f64;
    let families: [(&str, &str, &str, Field); 9] = [
        (
            "ds_device_used_bytes",
            "gauge",
            "Bytes in use in the core's partition.",
            |d| d.used_bytes as f64,
        ),
        (
            "ds_device_free_bytes",
            "gauge",
            "Bytes free in the core's partition.",
            |d| d.free_bytes as f64,
        ),
        (
            "ds_device_compactions_total",
            "counter",
            "Segments compacted.",
            |d| d.compactions as f64,
        ),
        (
            "ds_device_compactions_unread_total",
            "counter",
            "Segments compaction freed without reading them (nothing in them was live).",
            |d| d.compactions_unread as f64,
        ),
        (
            "ds_device_compaction_bytes_copied_total",
            "counter",
            "Bytes of live records copied by compaction.",
            |d| d.compaction_bytes_copied as f64,
        ),
        (
            "ds_device_write_amplification",
            "gauge",
            "Bytes written to the device per byte written by clients.",
            |d| d.write_amplification,
        ),
        (
            "ds_device_read_errors_total",
            "counter",
            "Device reads that failed.",
            |d| d.read_errors as f64,
        ),
        (
            "ds_device_write_errors_total",
            "counter",
            "Device writes that failed.",
            |d| d.write_errors as f64,
        ),
        (
            "ds_device_corrupt_reads_total",
            "counter",
            "Reads whose checksum did not match.",
            |d| d.corrupt_reads as f64,
        ),
    ];
    for (name, kind, help, field) in families {
        out.family(name, kind, help);
        for device in &report.devices {
            let core = device.core.to_string();
            let slot = device.slot.to_string();
            let labels = [
                ("core", core.as_str()),
                ("device", &slot),
                ("path", &device.path),
            ];
            out.float(name, &labels, field(device));
        }
    }
}

/// `1.5 GiB`-style, binary units.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1h02m03s`-style.
pub fn human_duration(seconds: f64) -> String {
    let total = seconds.max(0.0) as u64;
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    if hours > 0 {
        format!("{hours}h{minutes:02}m{seconds:02}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

/// The human form of `ds stats`: node line, ops with latency, cores, devices.
pub fn table(report: &NodeReport) -> String {
    let mut text = String::new();
    let totals = &report.totals;
    writeln!(
        text,
        "node {}  version {}  up {}  listen {}",
        report.node_id,
        report.version,
        human_duration(report.uptime_seconds),
        report.listen
    )
    .unwrap();
    writeln!(
        text,
        "{} cores  busy {:.1}%  connections {} open / {} total  used {} free {}\n",
        report.cores.len(),
        totals.busy_fraction * 100.0,
        totals.connections.open,
        totals.connections.total,
        human_bytes(totals.used_bytes as f64),
        human_bytes(totals.free_bytes as f64),
    )
    .unwrap();
    writeln!(
        text,
        "{:<7} {:>12} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "op", "count", "bytes", "errors", "p50 us", "p90 us", "p99 us", "p999 us", "max us"
    )
    .unwrap();
    for (name, op) in ops_in_order(&totals.ops) {
        let latency = &op.latency_us;
        writeln!(
            text,
            "{:<7} {:>12} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
            name,
            op.count,
            human_bytes(op.bytes as f64),
            op.errors,
            latency.p50,
            latency.p90,
            latency.p99,
            latency.p999,
            latency.max
        )
        .unwrap();
    }
    writeln!(
        text,
        "\n{:<5} {:>12} {:>11} {:>8} {:>6} {:>12} {:>8} {:>5} {:>5} {:>6} {:>11}",
        "core",
        "ops",
        "bytes",
        "errors",
        "busy%",
        "loops",
        "p99 us",
        "net",
        "dev",
        "tasks",
        "conns"
    )
    .unwrap();
    for core in &report.cores {
        let sum = core.sum_ops();
        writeln!(
            text,
            "{:<5} {:>12} {:>11} {:>8} {:>6.1} {:>12} {:>8} {:>5} {:>5} {:>6} {:>11}",
            core.core,
            sum.count,
            human_bytes(sum.bytes as f64),
            sum.errors,
            core.busy_fraction * 100.0,
            core.loops,
            core.latency_us.p99,
            core.queues.net_inflight,
            core.queues.device_inflight,
            core.queues.tasks,
            format!("{}/{}", core.connections.open, core.connections.total),
        )
        .unwrap();
    }
    text.push('\n');
    text.push_str(&cluster_block(report));
    text.push('\n');
    text.push_str(&device_table(report));
    text
}

/// Coding, stripe reads and writes, peer calls of the whole node: two lines of `ds stats`.
pub fn cluster_block(report: &NodeReport) -> String {
    let cluster = &report.totals.cluster;
    let busy = report.totals.busy_seconds;
    let coding_share = if busy > 0.0 {
        cluster.coding_seconds() / busy * 100.0
    } else {
        0.0
    };
    format!(
        "cluster  encoded {} stripes ({})  decoded {} ({})  coding {:.3} s = {:.1}% of busy\n\
         {:<8} degraded reads {}  hedged {}  failed reads {} writes {}  \
         peer calls {} errors {} in flight {}\n",
        cluster.stripes_encoded,
        human_bytes(cluster.bytes_encoded as f64),
        cluster.stripes_decoded,
        human_bytes(cluster.bytes_decoded as f64),
        cluster.coding_seconds(),
        coding_share,
        "",
        cluster.degraded_reads,
        cluster.hedged_requests,
        cluster.failed_reads,
        cluster.failed_writes,
        cluster.peer_calls_total,
        cluster.peer_call_errors,
        cluster.peer_calls_in_flight,
    )
}

/// The device rows shared by `ds stats` and `ds top`.
pub fn device_table(report: &NodeReport) -> String {
    let mut text = String::new();
    if report.devices.is_empty() {
        text.push_str("no devices reported\n");
        return text;
    }
    writeln!(
        text,
        "{:<5} {:<5} {:<28} {:>11} {:>11} {:>5} {:>8} {:>5} {:>7} {:>7} {:>7}",
        "core",
        "slot",
        "path",
        "used",
        "free",
        "use%",
        "compact",
        "wa",
        "rd err",
        "wr err",
        "corrupt"
    )
    .unwrap();
    for device in &report.devices {
        let capacity = device.used_bytes + device.free_bytes;
        let used_percent = if capacity == 0 {
            0.0
        } else {
            device.used_bytes as f64 * 100.0 / capacity as f64
        };
        writeln!(
            text,
            "{:<5} {:<5} {:<28} {:>11} {:>11} {:>5.1} {:>8} {:>5.2} {:>7} {:>7} {:>7}",
            device.core,
            device.slot,
            shorten(&device.path, 28),
            human_bytes(device.used_bytes as f64),
            human_bytes(device.free_bytes as f64),
            used_percent,
            device.compactions,
            device.write_amplification,
            device.read_errors,
            device.write_errors,
            device.corrupt_reads
        )
        .unwrap();
    }
    text
}

/// Keeps the end of a long path, which tells devices apart.
fn shorten(path: &str, width: usize) -> String {
    let chars = path.chars().count();
    if chars <= width {
        return path.to_string();
    }
    let tail: String = path.chars().skip(chars - (width - 1)).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::metrics::CoreMetrics;
    use crate::stats::snapshot::DeviceSnapshot;

    fn report() -> NodeReport {
        let mut metrics = CoreMetrics::new(0);
        for micros in 1..=1000 {
            metrics.record(
                Op::Get,
                100,
                Duration::from_micros(micros),
                micros % 100 != 0,
            );
        }
        metrics.devices_mut().push(DeviceSnapshot {
            path: "/dev/with \"quote\"\\".into(),
            used_bytes: 1 << 20,
            free_bytes: 3 << 20,
            write_amplification: 1.5,
            ..DeviceSnapshot::default()
        });
        metrics.set_cluster(ClusterCounters {
            stripes_encoded: 3,
            bytes_encoded: 3 << 20,
            coding_ns: 1_500_000,
            peer_calls_total: 18,
            ..ClusterCounters::default()
        });
        let core = metrics.snapshot().clone();
        let node = NodeSnapshot::new(
            7,
            "0.1.0",
            Duration::from_secs(3725),
            "[::1]:7000",
            vec![core],
        );
        NodeReport::new(&node)
    }

    #[test]
    fn json_round_trips() {
        let report = report();
        let parsed: NodeReport = serde_json::from_str(&json(&report)).unwrap();
        assert_eq!(parsed, report);
        let get = &parsed.cores[0].ops["get"];
        assert_eq!((get.count, get.bytes, get.errors), (1000, 100_000, 10));
        assert_eq!(get.latency_us.p50, 500);
        assert_eq!(get.latency_us.p99, 990);
        assert_eq!(get.latency_us.max, 1000);
        assert_eq!(parsed.totals.ops["get"].count, 1000);
        assert_eq!(parsed.node_id, format!("{:032x}", 7));
        assert_eq!(parsed.cores[0].cluster.stripes_encoded, 3);
        assert_eq!(parsed.totals.cluster.peer_calls_total, 18);
    }

    #[test]
    fn prometheus_escapes_and_types() {
        let text = prometheus(&report());
        assert!(text.contains("ds_ops_total{core=\"0\",op=\"get\"} 1000\n"));
        assert!(text.contains("ds_op_latency_us{core=\"0\",op=\"get\",quantile=\"0.99\"} 990\n"));
        assert!(text.contains("ds_op_latency_us_count{core=\"0\",op=\"get\"} 1000\n"));
        assert!(text.contains("path=\"/dev/with \\\"quote\\\"\\\\\""));
        assert!(text.contains("# TYPE ds_op_latency_us summary\n"));
        assert!(text.contains("ds_device_write_amplification{core=\"0\",device=\"0\","));
        assert!(text.contains("ds_coding_seconds_total{core=\"0\"} 0.0015\n"));
        assert!(text.contains("ds_peer_calls_total{core=\"0\"} 18\n"));
        assert!(text.contains("# TYPE ds_peer_calls_in_flight gauge\n"));
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(0.25), "0.25");
        // Every family is declared once.
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let declared = types.len();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), declared);
    }

    #[test]
    fn table_has_every_op_and_device() {
        let text = table(&report());
        for op in Op::ALL {
            assert!(text.contains(op.name()), "{text}");
        }
        assert!(text.contains("up 1h02m05s"), "{text}");
        assert!(text.contains("25.0"), "{text}");
        assert!(text.contains("encoded 3 stripes (3.0 MiB)"), "{text}");
        assert!(text.contains("peer calls 18 errors 0"), "{text}");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(10.0), "10 B");
        assert_eq!(shorten("/a/very/long/path", 8), "…ng/path");
    }
}
