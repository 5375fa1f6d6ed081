//! What a simulation measured, as one JSON-serialisable record, and the checks of the end
//! state against the simulator's global view (neighbourhoods, stale entries, intruders).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{Check, NodeState, Simulation, SAMPLE_NODES_MAX};
use crate::id::{IdBuildHasher, NodeId};
use crate::stats::DropReason;

/// What a run measured. `wall_seconds` is the only field that differs between two runs with
/// the same seed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimReport {
    pub nodes: usize,
    pub seed: u64,
    pub k: usize,
    pub alpha: usize,
    pub churn: f64,
    pub leave: f64,
    pub joins: usize,
    pub loss: f64,
    pub codec: bool,
    pub duration_seconds: f64,
    /// Live nodes at the end.
    pub live_nodes: usize,
    pub lookups: usize,
    /// Lookups whose first node was the true closest live node to the key.
    pub lookup_success: f64,
    /// The same for the lookups started in the first 10 s after the churn instant.
    pub lookup_success_first_10s: f64,
    /// Lookups that converged (every one of the width closest answered) in time.
    pub lookup_converged: f64,
    pub lookup_hops_p50: u32,
    pub lookup_hops_p90: u32,
    pub lookup_hops_p99: u32,
    pub lookup_hops_max: u32,
    pub routing_entries_max: usize,
    pub routing_entries_mean: f64,
    /// k * log2(N), the bound the largest table is held to.
    pub routing_entries_bound: f64,
    /// Messages sent per live node per minute during the measured window.
    pub messages_per_node_per_min: f64,
    /// Messages sent per node during the join phase and the settle time.
    pub join_messages_per_node: f64,
    pub responsible_set_n: usize,
    /// Fraction of random keys for which a random live node's responsible set, by a fresh
    /// lookup started at the end of the window, equals the true N closest live nodes.
    pub responsible_set_accuracy: f64,
    /// The same, for checks started at random instants of the window (right after the churn on).
    pub responsible_set_accuracy_during: f64,
    /// Sampled live nodes whose neighbourhood equals the true closest live nodes.
    pub neighbourhood_exact: f64,
    /// Routing entries (per sampled live node) that point at a node that is gone.
    pub stale_routing_entries_mean: f64,
    /// Intruders (wrong secret) that some honest node has in its table or neighbourhood.
    pub intruders_admitted: usize,
    pub messages_total: u64,
    pub messages_lost: u64,
    pub messages_to_dead_nodes: u64,
    /// Messages dropped by the nodes, by reason (summed over nodes).
    pub dropped: BTreeMap<&'static str, u64>,
    pub simulated_seconds: f64,
    pub events: u64,
    pub wall_seconds: f64,
}

impl Simulation {
    /// The figures so far (`wall_seconds` left at 0).
    pub fn report(&self) -> SimReport {
        let config = &self.config;
        let live = self.live();
        let honest_live: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| !self.nodes[i].intruder)
            .collect();
        let routing: Vec<usize> = honest_live
            .iter()
            .map(|&i| self.nodes[i].overlay.routing_entries())
            .collect();
        let routing_entries_max = routing.iter().copied().max().unwrap_or(0);
        let routing_entries_mean =
            routing.iter().sum::<usize>() as f64 / routing.len().max(1) as f64;
        let network = config.nodes.max(2) as f64;
        let (window_minutes, window_nodes) = match self.window {
            Some((start, end)) => ((end - start) as f64 / 60e9, honest_live.len().max(1)),
            None => (0.0, 1),
        };
        let mut by_reason = BTreeMap::new();
        for node in &self.nodes {
            let stats = node.overlay.stats();
            for reason in DropReason::ALL {
                let count = stats.dropped.get(reason);
                if count > 0 {
                    *by_reason.entry(reason.name()).or_insert(0) += count;
                }
            }
        }
        let (exact, stale) = self.check_sample(&honest_live);
        let intruders_admitted = self.intruders_admitted(&honest_live);
        SimReport {
            nodes: config.nodes,
            seed: config.seed,
            k: config.k,
            alpha: config.alpha,
            churn: config.churn,
            leave: config.leave,
            joins: config.joins,
            loss: config.loss,
            codec: config.codec,
            duration_seconds: config.duration.as_secs_f64(),
            live_nodes: honest_live.len(),
            lookups: self.lookups_started,
            lookup_success: fraction_of(self.lookup_success.good, self.lookups_started),
            lookup_success_first_10s: fraction_of(
                self.lookup_success_early.good,
                self.lookup_success_early.done,
            ),
            lookup_converged: fraction_of(self.lookup_converged.good, self.lookups_started),
            lookup_hops_p50: self.hops.percentile(0.5),
            lookup_hops_p90: self.hops.percentile(0.9),
            lookup_hops_p99: self.hops.percentile(0.99),
            lookup_hops_max: self.hops.percentile(1.0),
            routing_entries_max,
            routing_entries_mean: round3(routing_entries_mean),
            routing_entries_bound: round3(config.k as f64 * network.log2()),
            messages_per_node_per_min: if window_minutes > 0.0 {
                round3(self.messages_in_window as f64 / window_nodes as f64 / window_minutes)
            } else {
                0.0
            },
            join_messages_per_node: round3(self.messages_join as f64 / config.nodes as f64),
            responsible_set_n: config.responsible_n,
            responsible_set_accuracy: fraction_of(
                self.accuracy_final.good,
                self.started_checks[Check::AccuracyFinal as usize],
            ),
            responsible_set_accuracy_during: fraction_of(
                self.accuracy_during.good,
                self.started_checks[Check::AccuracyDuring as usize],
            ),
            neighbourhood_exact: round3(exact),
            stale_routing_entries_mean: round3(stale),
            intruders_admitted,
            messages_total: self.messages_total,
            messages_lost: self.messages_lost,
            messages_to_dead_nodes: self.messages_to_dead,
            dropped: by_reason,
            simulated_seconds: round3(self.now as f64 / 1e9),
            events: self.events,
            wall_seconds: 0.0,
        }
    }

    /// Over a sample of live nodes: the fraction whose neighbourhood is exactly the true
    /// closest live nodes, and the mean count of routing entries pointing at gone nodes.
    fn check_sample(&self, live: &[usize]) -> (f64, f64) {
        if live.is_empty() {
            return (0.0, 0.0);
        }
        let step = (live.len() / SAMPLE_NODES_MAX).max(1);
        let alive: HashMap<NodeId, bool, IdBuildHasher> = self
            .nodes
            .iter()
            .map(|node| (node.overlay.id(), node.state == NodeState::Alive))
            .collect();
        let mut exact = 0;
        let mut stale = 0;
        let mut sampled = 0;
        for &index in live.iter().step_by(step) {
            sampled += 1;
            let overlay = &self.nodes[index].overlay;
            let want = overlay.config().neighbourhood_size.min(live.len() - 1);
            let truth = self.true_closest(overlay.id(), want + 1);
            let truth: Vec<NodeId> = truth
                .into_iter()
                .filter(|id| *id != overlay.id())
                .take(want)
                .collect();
            let got: Vec<NodeId> = overlay.neighbourhood().iter().map(|node| node.id).collect();
            exact += usize::from(got == truth);
            stale += overlay
                .routing_table()
                .iter()
                .filter(|node| !alive.get(&node.id).copied().unwrap_or(false))
                .count();
        }
        (exact as f64 / sampled as f64, stale as f64 / sampled as f64)
    }

    fn intruders_admitted(&self, live: &[usize]) -> usize {
        let intruders: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|node| node.intruder)
            .map(|node| node.overlay.id())
            .collect();
        intruders
            .iter()
            .filter(|&&id| live.iter().any(|&i| self.nodes[i].overlay.knows(id)))
            .count()
    }
}

fn fraction_of(good: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        (good as f64 / total as f64 * 1e6).round() / 1e6
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
