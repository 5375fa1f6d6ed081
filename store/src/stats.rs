//! Counters of one core's store, read by the stats socket and the benchmarks.

/// Monotonic counters; a reader takes differences between two samples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub puts: u64,
    pub put_bytes: u64,
    pub gets: u64,
    pub get_bytes: u64,
    pub deletes: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    /// Records that failed their checksums when read.
    pub corrupt_reads: u64,
    pub compactions: u64,
    /// Compactions of segments nothing live pointed into: freed without reading them.
    pub compactions_unread: u64,
    /// Bytes of live records compaction rewrote (the cost of reclaiming space).
    pub compaction_bytes_copied: u64,
    /// Corrupt records found by compaction and dropped.
    pub compaction_corrupt: u64,
    pub tombstones_dropped: u64,
    pub checkpoints: u64,
    /// Walk steps submitted, and the device bytes they read.
    pub walk_steps: u64,
    pub walk_bytes_read: u64,
}

impl StoreStats {
    /// Device bytes written per client byte: (client + compaction) / client.
    pub fn write_amplification(&self) -> f64 {
        if self.put_bytes == 0 {
            return 1.0;
        }
        (self.put_bytes + self.compaction_bytes_copied) as f64 / self.put_bytes as f64
    }
}
