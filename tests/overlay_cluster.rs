//! Real processes on loopback: five nodes join through one seed, one leaves gracefully, one
//! is killed; every survivor soon gives the same, correct responsible set for 100 random keys.
//! Every node's OVERLAY document shows the data (client) address of every node. A node with
//! another cluster secret cannot join, and its messages are counted as dropped.

mod node;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ds_proto::{Header, ObjectId, Opcode, Status};
use node::{workdir, write_config, NodeProcess};

const SECRET: &str = "overlay-test-secret-0123456789";
/// Failure detection takes a probe interval (10 s) plus two missed replies; the responsible
/// set cache lives 10 s more.
const CONVERGE: Duration = Duration::from_secs(60);

fn start(name: &str, seeds: &[std::net::SocketAddr], secret: &str) -> NodeProcess {
    let dir = workdir(name);
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let extra = format!(
        "[overlay]\nlisten = \"127.0.0.1:0\"\nseeds = [{}]\ncluster_secret = \"{secret}\"\n",
        seeds.join(", ")
    );
    // The [overlay] table must come after the top-level keys and before [[devices]].
    NodeProcess::start(&write_config(&dir, 1, "1G", &extra))
}

fn node_id(node: &NodeProcess) -> u128 {
    let view = node.client().overlay(None).unwrap();
    u128::from_str_radix(&view.node.id, 16).unwrap()
}

fn routing(node: &NodeProcess) -> BTreeSet<String> {
    let view = node.client().overlay(None).unwrap();
    view.routing.into_iter().map(|p| p.id).collect()
}

fn responsible(node: &NodeProcess, key: u128, n: u64) -> Vec<String> {
    let view = node.client().overlay(Some((ObjectId(key), n))).unwrap();
    view.responsible
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect()
}

/// The OVERLAY document as the node sent it (the client's `OverlayReply` keeps only the fields
/// it knows).
fn raw_overlay(node: &NodeProcess) -> serde_json::Value {
    let mut client = node.client();
    let request_id = client.next_request_id();
    client
        .send_request(&Header::request(Opcode::Overlay, request_id), &[])
        .unwrap();
    let mut document = Vec::new();
    loop {
        let frame = client.recv().unwrap();
        assert_eq!(frame.header.request_id, request_id);
        assert_eq!(frame.header.status, Status::Ok);
        document.extend_from_slice(&frame.payload);
        if !frame.header.has_more() {
            break;
        }
    }
    serde_json::from_slice(&document).unwrap()
}

/// Node id (hex) -> data address, for the node itself and every routing table entry, as the
/// node's OVERLAY document shows them.
fn data_addresses(node: &NodeProcess) -> BTreeMap<String, String> {
    let document = raw_overlay(node);
    let mut peers = vec![document["node"].clone()];
    peers.extend(document["routing"].as_array().unwrap().iter().cloned());
    peers
        .iter()
        .map(|peer| {
            let data = peer["data"].as_str().unwrap_or("none").to_string();
            (peer["id"].as_str().unwrap().to_string(), data)
        })
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + CONVERGE;
    while !done() {
        assert!(Instant::now() < deadline, "not within {CONVERGE:?}: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn five_nodes_join_lose_two_and_agree_on_responsible_sets() {
    let seed = start("overlay_seed", &[], SECRET);
    let mut nodes = vec![seed];
    for i in 1..5 {
        let seeds = [nodes[0].overlay];
        nodes.push(start(&format!("overlay_node{i}"), &seeds, SECRET));
    }
    let ids: Vec<u128> = nodes.iter().map(node_id).collect();
    wait_until("every node knows the 4 others", || {
        nodes.iter().all(|n| routing(n).len() == 4)
    });
    // Each node announced the data port its cores bound (the config says port 0), and every
    // node lists every node's client address.
    let truth: BTreeMap<String, String> = nodes
        .iter()
        .zip(&ids)
        .map(|(node, id)| (format!("{id:032x}"), node.addr.to_string()))
        .collect();
    for node in &nodes {
        assert_eq!(data_addresses(node), truth, "node {}", node.addr);
    }

    // An outsider with another secret is refused, and counted.
    let outsider = start(
        "overlay_outsider",
        &[nodes[0].overlay],
        "another-secret-0123456789abc",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(routing(&outsider).is_empty(), "the outsider joined");
    let seed_view = nodes[0].client().overlay(None).unwrap();
    assert!(!seed_view
        .routing
        .iter()
        .any(|p| p.id == format!("{:032x}", node_id(&outsider))));
    let dropped = seed_view.stats["messages_dropped"].as_u64().unwrap();
    assert!(
        dropped > 0,
        "no dropped messages counted: {:?}",
        seed_view.stats
    );
    drop(outsider);

    // Garbage and truncated datagrams are refused and counted too.
    let before = nodes[0].client().overlay(None).unwrap().stats["messages_dropped"]
        .as_u64()
        .unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for len in [0usize, 1, 7, 60, 300, 1400] {
        socket.send_to(&vec![0xA5; len], nodes[0].overlay).unwrap();
    }
    wait_until("six garbage datagrams counted as dropped", || {
        let stats = nodes[0].client().overlay(None).unwrap().stats;
        stats["messages_dropped"].as_u64().unwrap() >= before + 6
    });

    let changes_before = nodes[0].client().overlay(None).unwrap().stats["neighbourhood_changes"]
        .as_u64()
        .unwrap();
    assert!(changes_before > 0, "joins changed the seed's neighbourhood");

    // Node 4 leaves gracefully, node 3 is killed.
    let leaving = nodes.pop().unwrap();
    leaving.stop();
    let killed = nodes.pop().unwrap();
    killed.kill();
    let live: Vec<u128> = ids[..3].to_vec();

    let keys: Vec<u128> = (0..100u128)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) ^ 0x5555)
        .collect();
    let truth = |key: u128| -> Vec<String> {
        let mut by_distance = live.clone();
        by_distance.sort_by_key(|id| id ^ key);
        by_distance.iter().map(|id| format!("{id:032x}")).collect()
    };
    wait_until(
        "every survivor gives the true responsible set for 100 keys",
        || {
            keys.iter().all(|&key| {
                let want = truth(key);
                nodes.iter().all(|n| responsible(n, key, 3) == want)
            })
        },
    );
    // The survivors were told that their neighbourhood changed.
    let changes_after = nodes[0].client().overlay(None).unwrap().stats["neighbourhood_changes"]
        .as_u64()
        .unwrap();
    assert!(
        changes_after > changes_before,
        "no neighbourhood change after two nodes went"
    );
    for node in nodes {
        node.stop();
    }
}
