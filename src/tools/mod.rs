//! Work the command-line tools run: the crash-test write load and the store benchmark.

pub mod bench;
pub mod capacity;
pub mod dev_cluster;
pub mod load;
pub mod node_bench;
pub mod repair_sim;
