//! What the repair walkers of a node's cores report, and what they are asked to do (drain, a
//! pass now): one small shared table off the data path, read by ADMIN_HEALTH, ADMIN_DRAIN and
//! the stats socket.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

/// One core's repair and scrub state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CoreRepair {
    /// Repair passes finished.
    pub passes: u64,
    pub in_pass: bool,
    /// From the last finished pass, over the objects this core repaired or checked.
    pub objects: u64,
    pub stripes: u64,
    pub full: u64,
    pub degraded: u64,
    pub lost: u64,
    /// Shards known missing and not rebuilt yet (the pass in progress counts down).
    pub repair_backlog: u64,
    /// Totals since start.
    pub shards_rebuilt: u64,
    pub bytes_rebuilt: u64,
    pub objects_moved: u64,
    pub repair_errors: u64,
    /// Scrub: walk passes over the core's records, what they read and found.
    pub scrub_passes: u64,
    pub scrub_bytes: u64,
    pub scrub_records: u64,
    /// Live records whose data failed its checksum (each one is then repaired).
    pub scrub_corrupt: u64,
    /// Damaged record or segment headers met.
    pub scrub_damaged: u64,
    pub scrub_errors: u64,
    /// Fraction of the current scrub pass done.
    pub scrub_progress: f64,
    /// Devices of this core failing or being taken out, and devices detached so far.
    pub devices_failing: u64,
    pub devices_retired: u64,
    /// While draining: objects with shards still on this core at the last walk.
    pub drain_remaining: u64,
    /// A drain pass found nothing of this core's left to move.
    pub drained: bool,
}

/// The node's table.
#[derive(Default)]
pub struct RepairBoard {
    cores: Mutex<Vec<CoreRepair>>,
    /// Move everything off this node, then stop it.
    pub draining: AtomicBool,
    /// Bumped to start a pass on every core at once.
    pub kick: AtomicU64,
}

/// The node's sums, as `ds admin health` shows them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Health {
    pub stripes: u64,
    pub full: u64,
    pub degraded: u64,
    pub lost: u64,
    pub repair_backlog: u64,
    pub objects: u64,
    pub passes: u64,
    pub shards_rebuilt: u64,
    pub bytes_rebuilt: u64,
    pub objects_moved: u64,
    pub repair_errors: u64,
    pub scrub_passes: u64,
    pub scrub_bytes: u64,
    pub scrub_records: u64,
    pub scrub_corrupt: u64,
    pub scrub_damaged: u64,
    pub scrub_errors: u64,
    pub scrub_progress: f64,
    pub devices_failing: u64,
    pub devices_retired: u64,
    pub draining: bool,
    pub drain_remaining: u64,
    pub drained: bool,
    pub cores: Vec<CoreRepair>,
}

impl RepairBoard {
    pub fn new(cores: usize) -> Self {
        Self {
            cores: Mutex::new(vec![CoreRepair::default(); cores]),
            ..Self::default()
        }
    }

    /// Changes core `core`'s entry.
    pub fn update(&self, core: usize, change: impl FnOnce(&mut CoreRepair)) {
        if let Ok(mut cores) = self.cores.lock() {
            if let Some(entry) = cores.get_mut(core) {
                change(entry);
            }
        }
    }

    pub fn health(&self) -> Health {
        let cores = self.cores.lock().map(|c| c.clone()).unwrap_or_default();
        let mut health = Health {
            draining: self.draining.load(Ordering::Relaxed),
            drained: !cores.is_empty(),
            ..Health::default()
        };
        for core in &cores {
            health.stripes += core.stripes;
            health.full += core.full;
            health.degraded += core.degraded;
            health.lost += core.lost;
            health.repair_backlog += core.repair_backlog;
            health.objects += core.objects;
            health.passes = if health.passes == 0 {
                core.passes
            } else {
                health.passes.min(core.passes)
            };
            health.shards_rebuilt += core.shards_rebuilt;
            health.bytes_rebuilt += core.bytes_rebuilt;
            health.objects_moved += core.objects_moved;
            health.repair_errors += core.repair_errors;
            health.scrub_passes += core.scrub_passes;
            health.scrub_bytes += core.scrub_bytes;
            health.scrub_records += core.scrub_records;
            health.scrub_corrupt += core.scrub_corrupt;
            health.scrub_damaged += core.scrub_damaged;
            health.scrub_errors += core.scrub_errors;
            health.scrub_progress += core.scrub_progress / cores.len() as f64;
            health.drain_remaining += core.drain_remaining;
            health.devices_failing += core.devices_failing;
            health.devices_retired += core.devices_retired;
            health.drained &= core.drained && health.draining;
        }
        health.cores = cores;
        health
    }

    /// Every core found nothing left to move: the node may leave.
    pub fn drained(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
            && self
                .cores
                .lock()
                .map(|c| !c.is_empty() && c.iter().all(|core| core.drained))
                .unwrap_or(false)
    }
}
