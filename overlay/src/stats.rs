//! Counters of one overlay node: routing table, lookups, hops, messages and why any were
//! dropped. Plain integers, read with `Overlay::stats`; the stats socket exports them.

use crate::codec::DecodeError;
use crate::limits::HOPS_MAX;

/// Why an incoming message was dropped, or an outgoing one not sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum DropReason {
    TooLarge,
    Truncated,
    BadMagic,
    BadVersion,
    BodyLength,
    BadChecksum,
    BadMac,
    Replayed,
    BadHeader,
    UnknownOpcode,
    BadBody,
    /// Named another receiver, or a reply/LEAVE that named none.
    Misdirected,
    /// A reply to no request of ours (late, or from the wrong node).
    Unsolicited,
    /// Claims our own id.
    SelfId,
    /// Arrived after `leave()`.
    Left,
    /// Outgoing: the transmit queue was full (the driver does not drain it).
    TransmitQueueFull,
    /// Outgoing: too many requests in flight.
    RequestsFull,
    /// Outgoing: too many pings in flight.
    PingsFull,
}

impl DropReason {
    pub const ALL: [DropReason; 18] = [
        DropReason::TooLarge,
        DropReason::Truncated,
        DropReason::BadMagic,
        DropReason::BadVersion,
        DropReason::BodyLength,
        DropReason::BadChecksum,
        DropReason::BadMac,
        DropReason::Replayed,
        DropReason::BadHeader,
        DropReason::UnknownOpcode,
        DropReason::BadBody,
        DropReason::Misdirected,
        DropReason::Unsolicited,
        DropReason::SelfId,
        DropReason::Left,
        DropReason::TransmitQueueFull,
        DropReason::RequestsFull,
        DropReason::PingsFull,
    ];

    /// A short snake_case name for stats output.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::TooLarge => "too_large",
            DropReason::Truncated => "truncated",
            DropReason::BadMagic => "bad_magic",
            DropReason::BadVersion => "bad_version",
            DropReason::BodyLength => "body_length",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::BadMac => "bad_mac",
            DropReason::Replayed => "replayed",
            DropReason::BadHeader => "bad_header",
            DropReason::UnknownOpcode => "unknown_opcode",
            DropReason::BadBody => "bad_body",
            DropReason::Misdirected => "misdirected",
            DropReason::Unsolicited => "unsolicited",
            DropReason::SelfId => "self_id",
            DropReason::Left => "left",
            DropReason::TransmitQueueFull => "transmit_queue_full",
            DropReason::RequestsFull => "requests_full",
            DropReason::PingsFull => "pings_full",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<DecodeError> for DropReason {
    fn from(error: DecodeError) -> DropReason {
        match error {
            DecodeError::TooLarge { .. } => DropReason::TooLarge,
            DecodeError::Truncated => DropReason::Truncated,
            DecodeError::BadMagic => DropReason::BadMagic,
            DecodeError::BadVersion { .. } => DropReason::BadVersion,
            DecodeError::BodyLength => DropReason::BodyLength,
            DecodeError::BadChecksum => DropReason::BadChecksum,
            DecodeError::BadMac => DropReason::BadMac,
            DecodeError::Replayed => DropReason::Replayed,
            DecodeError::BadHeader => DropReason::BadHeader,
            DecodeError::UnknownOpcode { .. } => DropReason::UnknownOpcode,
            DecodeError::BadBody => DropReason::BadBody,
        }
    }
}

/// Dropped messages by reason.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    pub fn add(&mut self, reason: DropReason) {
        self.0[reason.index()] += 1;
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Lookup hop counts, one bucket per count up to `HOPS_MAX` (longer ones in the last).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HopsHistogram([u64; HOPS_MAX + 1]);

impl Default for HopsHistogram {
    fn default() -> HopsHistogram {
        HopsHistogram([0; HOPS_MAX + 1])
    }
}

impl HopsHistogram {
    pub fn record(&mut self, hops: u8) {
        self.0[usize::from(hops).min(HOPS_MAX)] += 1;
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn counts(&self) -> &[u64] {
        &self.0
    }

    pub fn merge(&mut self, other: &HopsHistogram) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine += theirs;
        }
    }

    /// The smallest hop count at or below which `quantile` (0..=1) of the lookups fall; 0 when
    /// empty.
    pub fn percentile(&self, quantile: f64) -> u32 {
        assert!((0.0..=1.0).contains(&quantile));
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((quantile * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (hops, &count) in self.0.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return hops as u32;
            }
        }
        HOPS_MAX as u32
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Stats {
    pub routing_entries: usize,
    pub neighbourhood_entries: usize,
    /// Lookups of every purpose (user, responsible set, refresh, self-lookup).
    pub lookups_started: u64,
    /// Converged with at least one other node's answer.
    pub lookups_succeeded: u64,
    pub lookups_failed: u64,
    /// Hops of the lookups that succeeded (every purpose: user, responsible set, refresh,
    /// self-lookup).
    pub hops: HopsHistogram,
    pub messages_sent: u64,
    /// Messages accepted by the codec (or handed over directly) and looked at.
    pub messages_received: u64,
    pub dropped: DropCounts,
    pub requests_timed_out: u64,
    pub peers_added: u64,
    pub peers_removed: u64,
    /// Live-looking entries replaced by a waiting newcomer after they turned suspect.
    pub evictions: u64,
    /// Newcomers turned away because the entry pinged for them answered.
    pub evictions_refused: u64,
    pub responsible_cache_hits: u64,
    pub responsible_cache_misses: u64,
    /// Events not queued because the driver did not drain them.
    pub events_dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut histogram = HopsHistogram::default();
        assert_eq!(histogram.percentile(0.5), 0);
        for hops in [1, 2, 2, 3, 3, 3, 3, 4, 4, 9] {
            histogram.record(hops);
        }
        assert_eq!(histogram.percentile(0.5), 3);
        assert_eq!(histogram.percentile(0.9), 4);
        assert_eq!(histogram.percentile(0.99), 9);
        assert_eq!(histogram.percentile(1.0), 9);
        histogram.record(200);
        assert_eq!(histogram.percentile(1.0), HOPS_MAX as u32);
    }

    #[test]
    fn every_reason_has_its_own_counter() {
        let mut counts = DropCounts::default();
        for (at, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), at);
            counts.add(*reason);
        }
        assert_eq!(counts.total(), DropReason::ALL.len() as u64);
    }
}
