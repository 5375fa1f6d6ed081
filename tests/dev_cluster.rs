//! `ds dev-cluster up/down` with the real binaries: nodes start, join, serve, a node restarts
//! from the config path in cluster.json (and finds the cluster again through the seeds in its
//! config), and `down` stops them all.

mod node;

use std::process::Command;
use std::time::Duration;

use node::{pattern, workdir, DS};

fn ds(args: &[&str]) -> std::process::Output {
    Command::new(DS).args(args).output().unwrap()
}

fn alive(pid: u64) -> bool {
    node::alive(pid as u32)
}

#[test]
fn a_local_cluster_comes_up_serves_restarts_and_goes_down() {
    let dir = workdir("dev_cluster");
    let dir_arg = dir.to_str().unwrap();
    let out = ds(&[
        "dev-cluster",
        "up",
        "--nodes",
        "3",
        "--dir",
        dir_arg,
        "--device-size",
        "1G",
        "--scheme",
        "1+2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cluster: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    let nodes = cluster["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(cluster["scheme"], "1+2");
    for node in nodes {
        // The config names the default scheme and seeds to other nodes (the first node too, so
        // that it finds the cluster when it restarts).
        let config = ds::config::NodeConfig::load(node["config"].as_str().unwrap()).unwrap();
        assert_eq!(config.objects.default_scheme.to_string(), "1+2");
        assert!(!config.overlay.seeds.is_empty());
        assert!(!config.overlay.seeds.contains(&config.overlay_listen()));
        let addr = node["client_addr"].as_str().unwrap();
        let view = ds_proto::Client::connect(addr, Duration::from_secs(5))
            .unwrap()
            .overlay(None)
            .unwrap();
        assert_eq!(view.node.id, node["id"].as_str().unwrap());
        assert_eq!(view.routing.len(), 2, "every node knows the two others");
        assert!(node["stats_socket"]
            .as_str()
            .unwrap()
            .ends_with("stats.sock"));
    }
    // A second `up` on a running cluster is refused.
    let again = ds(&["dev-cluster", "up", "--nodes", "2", "--dir", dir_arg]);
    assert!(!again.status.success());

    // Objects through one node; then that node restarts from its config and still has them.
    let addr = nodes[0]["client_addr"].as_str().unwrap().to_string();
    let mut client = ds_proto::Client::connect(addr.as_str(), Duration::from_secs(5)).unwrap();
    let id = client
        .create(Some(ds_proto::Scheme::new(1, 0).unwrap()))
        .unwrap();
    client.put(id, 0, &pattern(3, 100_000)).unwrap();
    drop(client);
    let pid = nodes[0]["pid"].as_u64().unwrap();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    while alive(pid) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let config = nodes[0]["config"].as_str().unwrap();
    let mut restarted = Command::new(node::APPLIANCE)
        .args(["--config", config])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut client = loop {
        match ds_proto::Client::connect(addr.as_str(), Duration::from_secs(1)) {
            Ok(client) => break client,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let mut back = Vec::new();
    client.get(id, 0, 100_000, &mut back, &mut |_| {}).unwrap();
    assert_eq!(back, pattern(3, 100_000));
    // It knows the two others again.
    let started = std::time::Instant::now();
    loop {
        let view = client.overlay(None).unwrap();
        let known = [&nodes[1], &nodes[2]].iter().all(|other| {
            view.routing
                .iter()
                .chain(&view.neighbourhood)
                .any(|peer| peer.id == other["id"].as_str().unwrap())
        });
        if known {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the restarted node does not see the others: {view:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    restarted.kill().unwrap();
    restarted.wait().unwrap();

    let out = ds(&["dev-cluster", "down", "--dir", dir_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in nodes {
        let pid = node["pid"].as_u64().unwrap();
        for _ in 0..100 {
            if !alive(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!alive(pid), "node {pid} still runs");
    }
}
