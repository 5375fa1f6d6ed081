use ds_overlay::sim::{SimConfig, Simulation};
use ds_overlay::NodeId;
use std::time::Duration;
fn main() {
    let mut sim = Simulation::new(SimConfig { nodes: 2000, churn: 0.1, ..SimConfig::default() });
    sim.join_all();
    let t = sim.now();
    sim.fail_random(200);
    sim.run_until(t + 60_000_000_000);
    let live = sim.live();
    let mut bad = 0;
    for &i in live.iter().take(300) {
        let o = sim.node(i);
        let truth: Vec<NodeId> = sim.true_closest(o.id(), 33).into_iter().filter(|x| *x != o.id()).take(32).collect();
        let got: Vec<NodeId> = o.neighbourhood().iter().map(|n| n.id).collect();
        if got != truth {
            bad += 1;
            if bad < 4 {
                let missing: Vec<usize> = truth.iter().enumerate().filter(|(_, x)| !got.contains(x)).map(|(r, _)| r).collect();
                let extra: Vec<usize> = got.iter().enumerate().filter(|(_, x)| !truth.contains(x)).map(|(r, _)| r).collect();
                println!("node {i}: got {} truth {} missing ranks {:?} extra ranks {:?}", got.len(), truth.len(), missing, extra);
                for (r, x) in extra.iter().map(|&r| (r, got[r])) { let alive = live.iter().any(|&j| sim.node(j).id() == x); println!("  extra rank {r} alive {alive}"); }
            }
        }
    }
    println!("bad {bad} of 300");
    let _ = Duration::ZERO;
}
