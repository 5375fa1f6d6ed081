//! The `ds` CLI and `ds-appliance` options against a real node: objects through files and
//! pipes, `--node` before or after the subcommand and from `DS_NODE`, config checking, the
//! stats socket (`ds stats`, `ds top`), `ds bench`, and the lock that keeps a second node off
//! the devices.

mod node;

use std::io::Write;
use std::process::{Command, Stdio};

use node::{pattern, workdir, write_config, NodeProcess, APPLIANCE, DS};

fn ok(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "exit {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn files_and_pipes_go_in_and_come_out() {
    let dir = workdir("cli_objects");
    let node = NodeProcess::start(&write_config(&dir, 2, "1G", ""));
    let input = dir.join("in.bin");
    let data = pattern(5, 3 * 1024 * 1024 + 11);
    std::fs::write(&input, &data).unwrap();
    let id = ok(&node.ds(&["put", input.to_str().unwrap()]))
        .trim()
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    let output = dir.join("out.bin");
    ok(&node.ds(&["get", &id, "-o", output.to_str().unwrap()]));
    assert_eq!(std::fs::read(&output).unwrap(), data);
    // stdout, a range, and --node after the subcommand.
    let out = Command::new(DS)
        .args([
            "get",
            &id,
            "--offset",
            "1M",
            "--len",
            "100",
            "--node",
            &node.addr.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, data[1 << 20..(1 << 20) + 100]);
    // A pipe into an existing object at an offset, through DS_NODE.
    let mut child = Command::new(DS)
        .env("DS_NODE", node.addr.to_string())
        .args(["put", "--id", &id, "--offset", "10", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"PIPED").unwrap();
    ok(&child.wait_with_output().unwrap());
    let out = node.ds(&["get", &id, "--offset", "8", "--len", "9"]);
    let mut expect = data[8..17].to_vec();
    expect[2..7].copy_from_slice(b"PIPED");
    assert_eq!(out.stdout, expect);
    let stat: serde_json::Value =
        serde_json::from_str(&ok(&node.ds(&["stat", &id, "--json"]))).unwrap();
    assert_eq!(stat["size"], data.len() as u64);
    assert_eq!(stat["scheme"], "1+0");
    assert_eq!(stat["parts"].as_array().unwrap().len(), 4);
    ok(&node.ds(&["delete", &id]));
    let out = node.ds(&["stat", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT_FOUND"));
    assert!(ok(&node.ds(&["ping"])).contains("ok"));
}

#[test]
fn bad_arguments_are_named() {
    let out = Command::new(DS)
        .args(["get", "not-an-id"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not-an-id"), "{err}");
    let out = Command::new(DS)
        .args(["create", "--scheme", "0+2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(DS)
        .args(["--node", "127.0.0.1:1", "ping"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));
}

#[test]
fn check_config_accepts_good_files_and_names_the_bad_key() {
    let dir = workdir("cli_check_config");
    let good = write_config(&dir, 2, "1G", "");
    let out = Command::new(APPLIANCE)
        .arg("--check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(ok(&out).contains("ok"));
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("cores = 2", "cores = 2\ncoers = 3"),
    )
    .unwrap();
    let out = Command::new(APPLIANCE)
        .arg("--check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("coers"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for example in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
        let path = example.unwrap().path();
        let out = Command::new(APPLIANCE)
            .arg("--check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn stats_socket_reports_the_work_done() {
    let dir = workdir("cli_stats");
    let node = NodeProcess::start(&write_config(&dir, 2, "1G", ""));
    let mut client = node.client();
    for i in 0..20 {
        let id = client
            .create(Some(ds_proto::Scheme::new(1, 0).unwrap()))
            .unwrap();
        client.put(id, 0, &pattern(i, 10_000)).unwrap();
        let mut out = Vec::new();
        client.get(id, 0, 10_000, &mut out, &mut |_| {}).unwrap();
    }
    // Cores publish every 250 ms.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let socket = node.stats_socket();
    let socket = socket.to_str().unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&ok(&node.ds(&["stats", "--socket", socket, "--json"]))).unwrap();
    let text = json.to_string();
    assert!(text.contains("\"put\""), "{text}");
    let prom = ok(&node.ds(&["stats", "--socket", socket, "--prom"]));
    let put_total: f64 = prom
        .lines()
        .filter(|l| l.starts_with("ds_ops_total") && l.contains("op=\"put\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(put_total, 20.0, "{prom}");
    // Repair and scrub: backlog, bytes rebuilt, scrub progress and errors (issue 6).
    for family in [
        "ds_repair_repair_backlog",
        "ds_repair_bytes_rebuilt",
        "ds_repair_scrub_progress",
        "ds_repair_scrub_errors",
        "ds_repair_scrub_corrupt",
    ] {
        assert!(
            prom.contains(&format!("\n{family} ")),
            "{family} missing:\n{prom}"
        );
    }
    assert!(json["repair"]["repair_backlog"].is_u64(), "{text}");
    let top = ok(&node.ds(&[
        "top",
        "--socket",
        socket,
        "--iterations",
        "1",
        "--interval",
        "0.2",
    ]));
    assert!(top.contains("core"), "{top}");
}

/// Every `ds bench` operation runs against a real node and reports what it did; the node's
/// stats socket counts the same requests. Figures are not checked (benchmarks, not tests).
#[test]
fn bench_runs_every_operation_and_reports_it() {
    let dir = workdir("cli_bench");
    let node = NodeProcess::start(&write_config(&dir, 2, "1G", ""));
    for op in ["put", "get", "mixed", "ping"] {
        let out = ok(&node.ds(&[
            "bench",
            "--op",
            op,
            "--size",
            "4K",
            "--concurrency",
            "4",
            "--connections",
            "2",
            "--duration",
            "0.3",
            "--json",
        ]));
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["op"], op, "{out}");
        assert_eq!(report["concurrency"], 4, "{out}");
        assert!(report["ops"].as_u64().unwrap() > 0, "{out}");
        assert!(report["latency_us"]["p99"].as_u64().unwrap() > 0, "{out}");
    }
    // Cores publish every 250 ms; the pings went through the node's loop, not around it.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let socket = node.stats_socket();
    let json: serde_json::Value = serde_json::from_str(&ok(&node.ds(&[
        "stats",
        "--socket",
        socket.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    assert!(
        json["totals"]["ops"]["ping"]["count"].as_u64().unwrap() > 0,
        "{json}"
    );
    // A ping payload past the protocol's limit is named, not sent.
    let out = node.ds(&["bench", "--op", "ping", "--size", "2M", "--duration", "0.1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--size of a ping"), "{err}");
}

#[test]
fn a_second_node_on_the_same_data_dir_is_refused() {
    let dir = workdir("cli_lock");
    let config = write_config(&dir, 1, "1G", "");
    let _node = NodeProcess::start(&config);
    let out = Command::new(APPLIANCE)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cli_round_trips_of_every_size_up_to_one_gib() {
    let dir = workdir("cli_sizes");
    let config = write_config(&dir, 2, "4G", "");
    let node = NodeProcess::start(&config);
    let mut stored = Vec::new();
    for (seed, size) in [0usize, 1, 4095, 4096, (1 << 20) + 1, 1 << 30]
        .into_iter()
        .enumerate()
    {
        let input = dir.join(format!("in-{size}"));
        // The 1 GiB file is written in pieces, never held whole in memory.
        let mut file = std::fs::File::create(&input).unwrap();
        let piece = pattern(seed as u64, size.min(8 << 20));
        let mut left = size;
        while left > 0 {
            let n = left.min(piece.len());
            file.write_all(&piece[..n]).unwrap();
            left -= n;
        }
        drop(file);
        let id = ok(&node.ds(&["put", input.to_str().unwrap()]))
            .trim()
            .to_string();
        stored.push((id, input));
    }
    let check = |node: &NodeProcess, stored: &[(String, std::path::PathBuf)]| {
        for (id, input) in stored {
            let output = dir.join("out");
            ok(&node.ds(&["get", id, "-o", output.to_str().unwrap()]));
            let same = Command::new("cmp")
                .arg(input)
                .arg(&output)
                .status()
                .unwrap();
            assert!(
                same.success(),
                "object {id} differs from {}",
                input.display()
            );
        }
    };
    check(&node, &stored);
    node.stop();
    let node = NodeProcess::start(&config);
    check(&node, &stored);
    for (id, input) in &stored {
        ok(&node.ds(&["delete", id]));
        assert!(!node.ds(&["get", id]).status.success());
        std::fs::remove_file(input).unwrap();
    }
}
