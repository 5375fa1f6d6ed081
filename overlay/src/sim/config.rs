//! What a simulation runs: network size, churn, latency, loss, the measured workload, and the
//! overlay settings every simulated node starts with.

use std::time::Duration;

use crate::auth::ClusterSecret;
use crate::config::Config;

use super::SIM_SECRET;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    /// Fraction of nodes failing at once (no LEAVE) at the churn instant.
    pub churn: f64,
    /// Fraction of nodes leaving gracefully at the churn instant.
    pub leave: f64,
    /// New nodes joining during the first half of the measured window.
    pub joins: usize,
    /// Nodes that join with a wrong cluster secret at the churn instant (codec mode only).
    pub intruders: usize,
    /// Measured window after the churn instant.
    pub duration: Duration,
    /// Per-message loss probability.
    pub loss: f64,
    pub latency_min: Duration,
    pub latency_max: Duration,
    pub k: usize,
    pub alpha: usize,
    /// Lookups started at random instants of the window, by random live nodes.
    pub lookups: usize,
    /// Responsible-set checks: as many during the window and as many at its end.
    pub accuracy_keys: usize,
    /// N of the responsible set checked.
    pub responsible_n: usize,
    /// Join phase length; nodes join evenly spread over it.
    pub join_time: Duration,
    /// Quiet time between the last join and the churn instant.
    pub settle: Duration,
    /// Send every message through the codec (HMAC, crc, replay window).
    pub codec: bool,
    /// Overlay settings every node starts with (k, alpha and seed are set per node).
    pub overlay: OverlayTuning,
}

/// The overlay settings a simulation may change.
#[derive(Clone, Debug)]
pub struct OverlayTuning {
    pub neighbourhood_size: usize,
    pub request_timeout: Duration,
    pub tick_interval: Duration,
    pub refresh_interval: Duration,
    pub self_lookup_interval: Duration,
    pub probe_interval: Duration,
    pub suspicion_threshold: u32,
    pub lookup_timeout: Duration,
}

impl Default for OverlayTuning {
    fn default() -> OverlayTuning {
        let defaults = Config::new(ClusterSecret::new(SIM_SECRET).expect("valid secret"));
        OverlayTuning {
            neighbourhood_size: defaults.neighbourhood_size,
            request_timeout: defaults.request_timeout,
            tick_interval: defaults.tick_interval,
            refresh_interval: defaults.refresh_interval,
            self_lookup_interval: defaults.self_lookup_interval,
            probe_interval: defaults.probe_interval,
            suspicion_threshold: defaults.suspicion_threshold,
            lookup_timeout: defaults.lookup_timeout,
        }
    }
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            nodes: 1000,
            seed: 1,
            churn: 0.0,
            leave: 0.0,
            joins: 0,
            intruders: 0,
            duration: Duration::from_secs(60),
            loss: 0.0,
            latency_min: Duration::from_millis(5),
            latency_max: Duration::from_millis(50),
            k: 20,
            alpha: 3,
            lookups: 1000,
            accuracy_keys: 500,
            responsible_n: 6,
            join_time: Duration::from_secs(20),
            settle: Duration::from_secs(20),
            codec: false,
            overlay: OverlayTuning::default(),
        }
    }
}
