//! Graceful LEAVE: every node the leaver knew forgets it as soon as the message arrives (long
//! before failure detection could), and within a minute no neighbourhood names it.

use std::time::Duration;

use ds_overlay::sim::{SimConfig, Simulation};
use ds_overlay::NodeId;

#[test]
fn leave_propagates_at_once() {
    let config = SimConfig {
        nodes: 300,
        seed: 31,
        ..SimConfig::default()
    };
    let latency_max = config.latency_max;
    let mut sim = Simulation::new(config);
    sim.join_all();
    let leavers: Vec<usize> = vec![3, 50, 111, 200, 299];
    let mut told: Vec<(NodeId, Vec<usize>)> = Vec::new();
    for &leaver in &leavers {
        let id = sim.node(leaver).id();
        let known: Vec<NodeId> = sim
            .node(leaver)
            .routing_table()
            .iter()
            .chain(sim.node(leaver).neighbourhood())
            .map(|node| node.id)
            .collect();
        let told_nodes: Vec<usize> = (0..sim.node_count())
            .filter(|&i| known.contains(&sim.node(i).id()))
            .collect();
        assert!(told_nodes.len() >= 20);
        told.push((id, told_nodes));
    }
    for &leaver in &leavers {
        sim.leave(leaver);
        assert!(!sim.is_alive(leaver));
    }
    // One network latency later (failure detection needs seconds): every told node forgot.
    let soon = sim.now() + latency_max.as_nanos() as u64 + 1;
    sim.run_until(soon);
    for (id, told_nodes) in &told {
        for &node in told_nodes {
            if sim.is_alive(node) {
                assert!(!sim.node(node).knows(*id), "node {node} still knows {id:?}");
            }
        }
    }
    // A minute later no neighbourhood names a leaver, and every one is exact again.
    sim.run_until(sim.now() + Duration::from_secs(60).as_nanos() as u64);
    for index in sim.live() {
        for (id, _) in &told {
            assert!(!sim
                .node(index)
                .neighbourhood()
                .iter()
                .any(|node| node.id == *id));
        }
    }
    assert_eq!(sim.report().neighbourhood_exact, 1.0);
    let removed: u64 = sim
        .live()
        .iter()
        .map(|&i| sim.node(i).stats().peers_removed)
        .sum();
    assert!(removed > 0);
}
