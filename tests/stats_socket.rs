//! The stats socket over a real Unix socket: counters recorded by `CoreMetrics` and published
//! from core threads come out as JSON, Prometheus text and HTTP; bad and slow clients are
//! refused; a live socket is never taken over, a stale one is.

use std::collections::{BTreeMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ds::stats::{
    fetch, fetch_report, published_slot, read_all, ClusterCounters, CoreMetrics, DeviceSnapshot,
    Format, NodeReport, NodeSnapshot, Op, Published, StatsServer,
};

/// Two cores' counters, published the way cores publish them: from their own threads.
fn published_cores() -> Vec<Published> {
    let slots: Vec<Published> = (0..2).map(|_| published_slot()).collect();
    let threads: Vec<_> = slots
        .iter()
        .enumerate()
        .map(|(core, slot)| {
            let slot = Arc::clone(slot);
            std::thread::spawn(move || {
                let mut metrics = CoreMetrics::new(core);
                metrics.connection_opened();
                // Core 0: gets of 1..=1000 µs, one in a hundred failing; core 1: puts of 100 µs.
                for micros in 1..=1000u64 {
                    if core == 0 {
                        let ok = micros % 100 != 0;
                        metrics.record(Op::Get, 4096, Duration::from_micros(micros), ok);
                    } else {
                        metrics.record(Op::Put, 8192, Duration::from_micros(100), true);
                    }
                    if micros % 100 == 0 {
                        metrics.publish(&slot);
                    }
                }
                metrics.add_busy(Duration::from_millis(250));
                metrics.add_idle(Duration::from_millis(750));
                metrics.count_loop();
                metrics.set_queue_depths(1, 2, 3);
                metrics.devices_mut().push(DeviceSnapshot {
                    core,
                    slot: 0,
                    path: "/var/tmp/ds/dev0.img".to_string(),
                    used_bytes: 1 << 30,
                    free_bytes: 3 << 30,
                    write_amplification: 1.25,
                    ..DeviceSnapshot::default()
                });
                // Core 1 coordinated erasure-coded writes: 10 stripes of 1 MiB, 60 peer calls.
                if core == 1 {
                    metrics.set_cluster(ClusterCounters {
                        stripes_encoded: 10,
                        bytes_encoded: 10 << 20,
                        coding_ns: 20_000_000,
                        hedged_requests: 1,
                        failed_writes: 2,
                        peer_calls_total: 60,
                        peer_call_errors: 3,
                        peer_calls_in_flight: 4,
                        ..ClusterCounters::default()
                    });
                }
                while !metrics.publish(&slot) {}
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    slots
}

fn start(path: &Path) -> StatsServer {
    let slots = published_cores();
    StatsServer::start(path, move || {
        NodeSnapshot::new(
            0xfeed,
            "0.1.0-test",
            Duration::from_secs(42),
            "127.0.0.1:7000",
            read_all(&slots),
        )
    })
    .unwrap()
}

fn socket_path(folder: &tempfile::TempDir) -> PathBuf {
    folder.path().join("stats.sock")
}

/// Sends `request` as is and reads the answer to its end.
fn exchange(path: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn json_has_counts_and_percentiles() {
    let folder = tempfile::tempdir().unwrap();
    let path = socket_path(&folder);
    let _server = start(&path);
    let report: NodeReport = serde_json::from_str(&exchange(&path, b"json\n")).unwrap();
    assert_eq!(report.node_id, format!("{:032x}", 0xfeed));
    assert_eq!(report.version, "0.1.0-test");
    assert_eq!(report.uptime_seconds, 42.0);
    assert_eq!(report.cores.len(), 2);

    let get = &report.cores[0].ops["get"];
    assert_eq!((get.count, get.bytes, get.errors), (1000, 4_096_000, 10));
    let latency = &get.latency_us;
    assert_eq!(latency.count, 1000);
    assert_eq!(latency.p50, 500);
    assert_eq!(latency.p90, 900);
    assert_eq!(latency.p99, 990);
    assert_eq!(latency.p999, 999);
    assert_eq!(latency.max, 1000);
    assert!((latency.mean - 500.5).abs() < 0.5);
    assert_eq!(report.cores[0].ops["put"].count, 0);

    let put = &report.cores[1].ops["put"];
    assert_eq!((put.count, put.bytes), (1000, 8_192_000));
    assert_eq!(put.latency_us.p99, 100);

    let core = &report.cores[1];
    assert!((core.busy_fraction - 0.25).abs() < 1e-9);
    assert_eq!((core.loops, core.queues.tasks), (1, 3));
    assert_eq!((core.connections.open, core.connections.total), (1, 1));
    assert!(core.elapsed_seconds > 0.0);

    assert_eq!(report.totals.ops["get"].count, 1000);
    assert_eq!(report.totals.ops["put"].count, 1000);
    assert_eq!(report.totals.latency_us.count, 2000);
    assert_eq!(report.totals.connections.open, 2);
    assert_eq!(report.totals.free_bytes, 6 << 30);
    assert_eq!(report.devices.len(), 2);
    assert_eq!(report.devices[1].core, 1);

    // The cluster counters, per core and summed, with every field named in the JSON.
    let cluster = &report.cores[1].cluster;
    assert_eq!(
        (cluster.stripes_encoded, cluster.bytes_encoded),
        (10, 10 << 20)
    );
    assert_eq!((cluster.coding_ns, cluster.failed_writes), (20_000_000, 2));
    assert_eq!(report.cores[0].cluster, ClusterCounters::default());
    assert_eq!(report.totals.cluster.peer_calls_total, 60);
    assert_eq!(report.totals.cluster.peer_call_errors, 3);
    assert_eq!(report.totals.cluster.peer_calls_in_flight, 4);
    let raw: serde_json::Value = serde_json::from_str(&exchange(&path, b"json\n")).unwrap();
    for field in [
        "stripes_encoded",
        "stripes_decoded",
        "bytes_encoded",
        "bytes_decoded",
        "coding_ns",
        "degraded_reads",
        "hedged_requests",
        "failed_reads",
        "failed_writes",
        "peer_calls_total",
        "peer_call_errors",
        "peer_calls_in_flight",
    ] {
        assert!(raw["totals"]["cluster"][field].is_u64(), "totals {field}");
        assert!(raw["cores"][0]["cluster"][field].is_u64(), "core 0 {field}");
    }
    assert_eq!(raw["cores"][1]["cluster"]["coding_ns"], 20_000_000);

    // The library client reads the same.
    assert_eq!(fetch_report(&path).unwrap(), report);
    let table = fetch(&path, Format::Table).unwrap();
    assert!(
        table.contains("0000000000000000000000000000feed"),
        "{table}"
    );
    assert!(table.contains("/var/tmp/ds/dev0.img"), "{table}");
    assert!(table.contains("encoded 10 stripes (10.0 MiB)"), "{table}");
    assert!(
        table.contains("peer calls 60 errors 3 in flight 4"),
        "{table}"
    );
}

/// One sample of the text format: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses a sample line strictly: `name{label="value",...} value`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let is_name = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut end = None;
        while let Some((at, c)) = chars.next() {
            if c == '}' {
                end = Some(at);
                break;
            }
            let key_start = at;
            let mut key_end = at;
            for (at, c) in chars.by_ref() {
                if c == '=' {
                    key_end = at;
                    break;
                }
            }
            let key = &inner[key_start..key_end];
            if !is_name(key) {
                return Err(format!("bad label name {key:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key.to_string(), value);
            if let Some(&(_, ',')) = chars.peek() {
                chars.next();
            }
        }
        let end = end.ok_or("unterminated labels")?;
        rest = &inner[end + 1..];
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        value => value.parse().map_err(|_| format!("bad value {value:?}"))?,
    };
    Ok((name.to_string(), labels, value))
}

/// Parses a whole exposition, checking HELP/TYPE lines and that samples follow their family.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "empty line in exposition");
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap();
            assert!(
                !types.contains_key(name),
                "HELP after TYPE or twice for {name}"
            );
            continue;
        }
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{line}"
            );
            if let Some(previous) = current.replace(name.to_string()) {
                closed.insert(previous);
            }
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let sample = parse_sample(line).unwrap_or_else(|error| panic!("{error}: {line:?}"));
        let family = current.as_deref().expect("sample before any TYPE");
        let name = &sample.0;
        let belongs = name == family
            || (types[family] == "summary"
                && (name == &format!("{family}_sum") || name == &format!("{family}_count")));
        assert!(belongs, "{name} outside its family ({family})");
        assert!(
            !closed.contains(name.as_str()),
            "{name} after its family closed"
        );
        if name.ends_with("_total") {
            assert_eq!(types[family], "counter", "{line}");
        }
        samples.push(sample);
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(sample, sample_labels, _)| {
            sample == name
                && labels
                    .iter()
                    .all(|(key, value)| sample_labels.get(*key).map(String::as_str) == Some(*value))
        })
        .unwrap_or_else(|| panic!("no {name} {labels:?}"))
        .2
}

#[test]
fn prometheus_parses_line_by_line() {
    let folder = tempfile::tempdir().unwrap();
    let path = socket_path(&folder);
    let _server = start(&path);
    let text = exchange(&path, b"prom\n");
    let samples = parse_exposition(&text);
    assert_eq!(fetch(&path, Format::Prom).unwrap(), text);

    let get = [("core", "0"), ("op", "get")];
    assert_eq!(value(&samples, "ds_ops_total", &get), 1000.0);
    assert_eq!(value(&samples, "ds_op_errors_total", &get), 10.0);
    assert_eq!(value(&samples, "ds_op_bytes_total", &get), 4_096_000.0);
    let p99 = [("core", "0"), ("op", "get"), ("quantile", "0.99")];
    assert_eq!(value(&samples, "ds_op_latency_us", &p99), 990.0);
    assert_eq!(value(&samples, "ds_op_latency_us_count", &get), 1000.0);
    assert_eq!(value(&samples, "ds_op_latency_us_sum", &get), 500_500.0);
    assert_eq!(
        value(&samples, "ds_core_busy_seconds_total", &[("core", "1")]),
        0.25
    );
    assert_eq!(value(&samples, "ds_core_tasks", &[("core", "1")]), 3.0);
    let device = [
        ("core", "1"),
        ("device", "0"),
        ("path", "/var/tmp/ds/dev0.img"),
    ];
    assert_eq!(
        value(&samples, "ds_device_free_bytes", &device),
        (3u64 << 30) as f64
    );
    let core1 = [("core", "1")];
    assert_eq!(
        value(&samples, "ds_coding_stripes_encoded_total", &core1),
        10.0
    );
    assert_eq!(
        value(&samples, "ds_coding_bytes_encoded_total", &core1),
        (10u64 << 20) as f64
    );
    assert_eq!(value(&samples, "ds_coding_seconds_total", &core1), 0.02);
    assert_eq!(
        value(&samples, "ds_coding_hedged_requests_total", &core1),
        1.0
    );
    assert_eq!(
        value(&samples, "ds_coding_failed_writes_total", &core1),
        2.0
    );
    assert_eq!(value(&samples, "ds_peer_calls_total", &core1), 60.0);
    assert_eq!(value(&samples, "ds_peer_call_errors_total", &core1), 3.0);
    assert_eq!(value(&samples, "ds_peer_calls_in_flight", &core1), 4.0);
    for family in [
        "ds_coding_stripes_decoded_total",
        "ds_coding_bytes_decoded_total",
        "ds_coding_degraded_reads_total",
        "ds_coding_failed_reads_total",
    ] {
        assert_eq!(value(&samples, family, &[("core", "0")]), 0.0, "{family}");
    }
    let info = [("node_id", "0000000000000000000000000000feed")];
    assert_eq!(value(&samples, "ds_node_info", &info), 1.0);
    // Every op of every core is there.
    let ops = samples
        .iter()
        .filter(|(name, _, _)| name == "ds_ops_total")
        .count();
    assert_eq!(ops, 2 * Op::ALL.len());
}

#[test]
fn http_metrics_for_curl() {
    let folder = tempfile::tempdir().unwrap();
    let path = socket_path(&folder);
    let _server = start(&path);
    let request =
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n";
    let answer = exchange(&path, request);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
    let headers: Vec<&str> = lines.collect();
    assert!(headers.contains(&"Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    assert!(headers.contains(&format!("Content-Length: {}", body.len()).as_str()));
    parse_exposition(body);
    assert!(body.contains("ds_ops_total{core=\"0\",op=\"get\"} 1000\n"));

    let answer = exchange(&path, b"GET /other HTTP/1.0\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    let answer = exchange(
        &path,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");

    // curl itself, where it is installed.
    let curl = std::process::Command::new("curl")
        .args(["--silent", "--fail", "--max-time", "10", "--unix-socket"])
        .arg(&path)
        .arg("http://localhost/metrics")
        .output();
    match curl {
        Ok(output) => {
            assert!(output.status.success(), "curl: {output:?}");
            let body = String::from_utf8(output.stdout).unwrap();
            assert!(body.contains("ds_op_latency_us{core=\"0\",op=\"get\",quantile=\"0.5\"} 500"));
        }
        Err(error) => eprintln!("curl not run: {error}"),
    }
}

#[test]
fn bad_requests_get_an_error_line() {
    let folder = tempfile::tempdir().unwrap();
    let path = socket_path(&folder);
    let _server = start(&path);
    let answer = exchange(&path, b"stats please\n");
    assert!(
        answer.starts_with("error: unknown request \"stats please\""),
        "{answer}"
    );
    assert_eq!(answer.lines().count(), 1);
    let answer = exchange(&path, b"\n");
    assert!(answer.starts_with("error:"), "{answer}");

    // A line past 1 KiB is refused before its end arrives.
    let mut stream = UnixStream::connect(&path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&[b'a'; 2000]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "error: request longer than 1024 bytes\n");

    // The error reaches the CLI client as an error.
    let error = ds::stats::client::request(&path, "nonsense").unwrap_err();
    assert!(error.to_string().contains("unknown request"), "{error}");
    // And the server still answers, also a request ended by the end of the stream.
    let mut stream = UnixStream::connect(&path).unwrap();
    stream.write_all(b"json").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("\"node_id\""), "{answer}");
}

#[test]
fn slow_client_times_out() {
    let folder = tempfile::tempdir().unwrap();
    let path = socket_path(&folder);
    let _server = start(&path);
    let started = Instant::now();
    let mut stream = UnixStream::connect(&path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"js").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let waited = started.elapsed();
    assert_eq!(answer, "error: timed out after 2s\n");
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    assert!(exchange(&path, b"json\n").contains("\"node_id\""));
}

#[test]
fn live_socket_is_refused_stale_one_replaced() {
    let folder = tempfile::tempdir().unwrap();
    let path = socket_path(&folder);
    let first = start(&path);
    let error = StatsServer::start(&path, || unreachable!()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AddrInUse);
    assert!(exchange(&path, b"json\n").contains("\"node_id\""));
    drop(first);
    assert!(!path.exists(), "the socket file outlived its server");

    // A socket file whose server is gone (a crash): replaced.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let _second = start(&path);
    assert!(exchange(&path, b"json\n").contains("\"node_id\""));

    // Something that is not a socket is never removed.
    let file = folder.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let error = StatsServer::start(&file, || unreachable!()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn client_without_node() {
    let folder = tempfile::tempdir().unwrap();
    let error = fetch(socket_path(&folder), Format::Json).unwrap_err();
    assert!(
        format!("{error:#}").contains("is the node running"),
        "{error:#}"
    );
}

#[test]
fn top_draws_frames() {
    let folder = tempfile::tempdir().unwrap();
    let path = socket_path(&folder);
    let _server = start(&path);
    let mut out = Vec::new();
    ds::stats::top::run_top_into(&mut out, &path, Duration::ZERO, Some(2), false).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("ds top").count(), 2, "{text}");
    assert!(text.contains("/var/tmp/ds/dev0.img"), "{text}");
    assert!(!text.contains(ds::stats::top::CLEAR_SCREEN));
    let mut out = Vec::new();
    ds::stats::top::run_top_into(&mut out, &path, Duration::ZERO, Some(1), true).unwrap();
    assert!(String::from_utf8(out)
        .unwrap()
        .starts_with(ds::stats::top::CLEAR_SCREEN));
}
