//! The targets at 1,000 nodes, in deterministic simulation (a few seconds each in
//! release mode): no churn, and 10% of the nodes failing at once.

use ds_overlay::sim::{SimConfig, SimReport, Simulation};

fn run(config: SimConfig) -> SimReport {
    let report = Simulation::new(config).run();
    eprintln!("{}", serde_json::to_string(&report).unwrap());
    report
}

#[test]
fn thousand_nodes_without_churn_meet_the_targets() {
    let report = run(SimConfig {
        nodes: 1000,
        seed: 11,
        ..SimConfig::default()
    });
    assert_eq!(report.live_nodes, 1000);
    assert_eq!(report.lookups, 1000);
    assert_eq!(
        report.lookup_success, 1.0,
        "every lookup finds the closest node"
    );
    assert_eq!(report.lookup_converged, 1.0);
    assert!(
        report.lookup_hops_p99 <= 6,
        "p99 hops {}",
        report.lookup_hops_p99
    );
    let bound = 20.0 * (1000f64).log2();
    assert!(
        report.routing_entries_max as f64 <= bound,
        "routing entries {} above k*log2(N) = {bound}",
        report.routing_entries_max
    );
    assert_eq!(report.responsible_set_accuracy, 1.0);
    assert_eq!(report.responsible_set_accuracy_during, 1.0);
    assert_eq!(report.neighbourhood_exact, 1.0);
    assert_eq!(report.stale_routing_entries_mean, 0.0);
    assert!(report.dropped.is_empty(), "{:?}", report.dropped);
}

#[test]
fn ten_percent_failing_at_once_is_absorbed_within_a_minute() {
    let report = run(SimConfig {
        nodes: 1000,
        seed: 12,
        churn: 0.1,
        ..SimConfig::default()
    });
    assert_eq!(report.live_nodes, 900);
    // Lookups spread over the minute after the failure, the first ones right after it.
    assert!(
        report.lookup_success >= 0.99,
        "lookup success {}",
        report.lookup_success
    );
    // ... and those of the first ten seconds, while the dead nodes are still in the tables.
    assert!(
        report.lookup_success_first_10s >= 0.99,
        "early lookup success {}",
        report.lookup_success_first_10s
    );
    assert!(report.lookup_converged >= 0.99);
    assert!(report.lookup_hops_p99 <= 6);
    // Checks started one simulated minute after the failure.
    assert!(
        report.responsible_set_accuracy >= 0.99,
        "accuracy {}",
        report.responsible_set_accuracy
    );
    assert!(report.responsible_set_accuracy_during >= 0.98);
    // Failure detection cleaned every neighbourhood.
    assert!(
        report.neighbourhood_exact >= 0.99,
        "neighbourhoods {}",
        report.neighbourhood_exact
    );
    assert!(report.messages_to_dead_nodes > 0);
}

#[test]
fn lossy_network_still_finds_the_closest() {
    let report = run(SimConfig {
        nodes: 500,
        seed: 13,
        churn: 0.05,
        loss: 0.01,
        lookups: 500,
        accuracy_keys: 200,
        ..SimConfig::default()
    });
    assert!(report.messages_lost > 0);
    assert!(
        report.lookup_success >= 0.98,
        "lookup success {}",
        report.lookup_success
    );
    assert!(report.responsible_set_accuracy >= 0.97);
}
