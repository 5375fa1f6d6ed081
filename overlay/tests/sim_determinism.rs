//! A simulation replays from its seed: the same seed gives the same report (but the wall
//! clock), another seed another one.

use ds_overlay::sim::{SimConfig, SimReport, Simulation};

fn run(seed: u64) -> SimReport {
    let mut report = Simulation::new(SimConfig {
        nodes: 300,
        seed,
        churn: 0.1,
        leave: 0.05,
        joins: 10,
        loss: 0.01,
        lookups: 300,
        accuracy_keys: 100,
        ..SimConfig::default()
    })
    .run();
    report.wall_seconds = 0.0;
    report
}

#[test]
fn same_seed_same_json() {
    let first = serde_json::to_string(&run(5)).unwrap();
    let second = serde_json::to_string(&run(5)).unwrap();
    assert_eq!(first, second);
    let other = serde_json::to_string(&run(6)).unwrap();
    assert_ne!(first, other);
}
