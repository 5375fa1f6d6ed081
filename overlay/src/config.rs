//! Settings of one overlay node. Defaults suit a LAN cluster; the simulator shortens some.

use std::time::Duration;

use thiserror::Error;

use crate::auth::ClusterSecret;
use crate::limits::{ALPHA_MAX, BUCKET_SIZE_MAX, NEIGHBOURHOOD_SIZE_MAX};

#[derive(Clone, Debug)]
pub struct Config {
    /// Bucket size k: nodes kept per distance range, and the width of a lookup.
    pub k: usize,
    /// Lookup parallelism: FIND_NODE requests in flight per lookup.
    pub alpha: usize,
    /// Nodes closest to this one kept exactly (apart from the buckets).
    pub neighbourhood_size: usize,
    /// A request unanswered for this long counts as a miss.
    pub request_timeout: Duration,
    /// A lookup still running after this long ends with what it has (not converged).
    pub lookup_timeout: Duration,
    /// Period of the maintenance tick (refresh, probes, retries).
    pub tick_interval: Duration,
    /// A bucket without a lookup into its range for this long is refreshed.
    pub refresh_interval: Duration,
    /// Period of the self-lookup that keeps the neighbourhood exact.
    pub self_lookup_interval: Duration,
    /// A neighbour not heard from for this long is pinged; a full bucket whose least recently
    /// seen entry was heard from within it turns newcomers away without a ping.
    pub probe_interval: Duration,
    /// Consecutive missed replies after which an entry is suspect (no longer handed out, and
    /// replaceable by a waiting newcomer); one more miss removes it.
    pub suspicion_threshold: u32,
    /// How long a responsible set found by lookup is answered from the cache.
    pub responsible_ttl: Duration,
    /// How long a removed node is not re-learned from other nodes' NODES lists.
    pub removed_memory: Duration,
    /// Wait between bootstrap attempts while no seed answers.
    pub bootstrap_retry: Duration,
    /// The cluster's shared HMAC key; datagrams without its MAC are dropped.
    pub secret: ClusterSecret,
    /// First sequence number of this node's datagrams. A driver sets it from the wall clock
    /// (microseconds since the epoch) so that a restarted node is not taken for a replayer.
    pub sequence_start: u64,
    /// Seed of the node's RNG (refresh targets, tick phase).
    pub seed: u64,
    /// The port of this node's data service (the object protocol), announced in every
    /// message; 0: none (the simulator). It replaces `data_port` of the `NodeInfo` the overlay
    /// is created with.
    pub data_port: u16,
}

impl Config {
    /// Defaults with the given cluster secret.
    pub fn new(secret: ClusterSecret) -> Config {
        Config {
            k: 20,
            alpha: 3,
            neighbourhood_size: 32,
            request_timeout: Duration::from_secs(1),
            lookup_timeout: Duration::from_secs(15),
            tick_interval: Duration::from_secs(1),
            refresh_interval: Duration::from_secs(600),
            self_lookup_interval: Duration::from_secs(60),
            probe_interval: Duration::from_secs(20),
            suspicion_threshold: 2,
            responsible_ttl: Duration::from_secs(10),
            removed_memory: Duration::from_secs(60),
            bootstrap_retry: Duration::from_secs(5),
            secret,
            sequence_start: 0,
            seed: 0,
            data_port: 0,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.k == 0 || self.k > BUCKET_SIZE_MAX {
            return Err(ConfigError::BucketSize { k: self.k });
        }
        if self.alpha == 0 || self.alpha > ALPHA_MAX {
            return Err(ConfigError::Alpha { alpha: self.alpha });
        }
        if self.neighbourhood_size == 0 || self.neighbourhood_size > NEIGHBOURHOOD_SIZE_MAX {
            return Err(ConfigError::NeighbourhoodSize {
                size: self.neighbourhood_size,
            });
        }
        if self.suspicion_threshold == 0 {
            return Err(ConfigError::SuspicionThreshold);
        }
        for (name, value) in [
            ("request_timeout", self.request_timeout),
            ("lookup_timeout", self.lookup_timeout),
            ("tick_interval", self.tick_interval),
            ("refresh_interval", self.refresh_interval),
            ("self_lookup_interval", self.self_lookup_interval),
            ("probe_interval", self.probe_interval),
            ("bootstrap_retry", self.bootstrap_retry),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration { name });
            }
        }
        Ok(())
    }
}

/// A config the overlay cannot run with.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// k must be 1..=`BUCKET_SIZE_MAX`.
    #[error("bucket size k = {k} outside 1..={BUCKET_SIZE_MAX}")]
    BucketSize { k: usize },
    /// alpha must be 1..=`ALPHA_MAX`.
    #[error("alpha = {alpha} outside 1..={ALPHA_MAX}")]
    Alpha { alpha: usize },
    /// The neighbourhood must be 1..=`NEIGHBOURHOOD_SIZE_MAX`.
    #[error("neighbourhood size {size} outside 1..={NEIGHBOURHOOD_SIZE_MAX}")]
    NeighbourhoodSize { size: usize },
    /// A threshold of 0 would suspect every node at once.
    #[error("suspicion threshold must be at least 1")]
    SuspicionThreshold,
    /// The named interval or timeout is zero.
    #[error("{name} must not be zero")]
    ZeroDuration { name: &'static str },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_refused() {
        let secret = ClusterSecret::new(&[1u8; 16]).unwrap();
        let config = Config::new(secret);
        assert_eq!(config.validate(), Ok(()));
        let mut bad = config.clone();
        bad.k = BUCKET_SIZE_MAX + 1;
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::BucketSize { .. })
        ));
        let mut bad = config.clone();
        bad.alpha = 0;
        assert!(matches!(bad.validate(), Err(ConfigError::Alpha { .. })));
        let mut bad = config;
        bad.probe_interval = Duration::ZERO;
        assert_eq!(
            bad.validate(),
            Err(ConfigError::ZeroDuration {
                name: "probe_interval"
            })
        );
    }
}
