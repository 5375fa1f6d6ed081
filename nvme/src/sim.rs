//! The simulated device: in memory, deterministic from a seed, with power-loss semantics. The
//! base of the crash tests, modelled on the storage simulators of TigerBeetle and FoundationDB.
//!
//! # Model
//!
//! The device holds two images. The *durable* image is what survives power loss. The *volatile*
//! view is what reads see: the durable image plus every write that completed and has not been
//! flushed yet. Those pending writes are kept as a list in completion order, so that a crash can
//! decide the fate of each.
//!
//! - **Reordering.** A submitted request does nothing until it completes. Each [`Queue::reap`]
//!   completes a random non-empty subset of the queue's in-flight requests in a random order (so
//!   it always makes progress) and returns them in the order they took effect. A write changes
//!   the volatile view when it completes; a read copies from the volatile view when it completes.
//!   [`Queue::wait`] returns at once: the simulator has no time. Dropping a live queue lets the
//!   device finish its in-flight requests (writes take effect, unflushed) and discards their
//!   completions.
//! - **Flush.** A flush makes durable exactly the writes that had completed when it was
//!   submitted (at the [`Queue::submit`] call). Writes still in flight then are not covered, even
//!   if they complete before the flush does.
//! - **Crash** ([`SimDevice::crash`]). Every pending write and every write still in flight, on any
//!   queue, is independently kept, dropped, or torn (each with probability 1/3). A torn write
//!   lands only a random subset of its sectors (a sector is `block_bytes`; a sector is never torn
//!   within itself). The writes that land do so in a random order, so an older write may
//!   overwrite a newer one. Then the volatile view becomes the durable image and every queue
//!   opened before the crash is dead: its in-flight requests are dropped (their buffers freed,
//!   never completed) and every request later submitted to it is accepted, then completes at the
//!   next reap with [`DEAD_QUEUE_ERROR`] (`ENODEV`: the device went away). Requests that break
//!   the rules are still rejected as invalid. Open a new queue to go on.
//! - **Probabilistic faults** ([`SimFaults`], all off by default). A read may fail with
//!   [`IoError::Injected`]; a write may fail with it and then changes nothing; a successful read
//!   may return its data with one bit flipped (in the buffer only, the media stays intact).
//! - **Targeted faults.** [`SimDevice::fail_reads`] and [`SimDevice::fail_writes`] make requests
//!   overlapping a byte range fail with [`IoError::Injected`] (a failing write range also never
//!   lands in a crash). [`SimDevice::corrupt`] flips bits on the media (both images), as latent
//!   corruption that checksums must catch.
//! - **Determinism.** Everything random comes from [`rand_chacha::ChaCha8Rng`] seeded with
//!   [`SimConfig::seed`]: the same seed and the same sequence of calls give the same completions,
//!   data and crash outcome. Each queue draws from its own stream, so its completion order does
//!   not depend on calls made on other queues; data does, so tests that use queues from several
//!   threads are deterministic only if they order their calls.
//!
//! [`IoError::Injected`]: crate::IoError::Injected
//!
//! # Not modelled
//!
//! Latency, bandwidth and time in general; misdirected writes (data landing at the wrong offset)
//! and writes lost without a crash; tearing within a sector; a read racing a write seeing a mix
//! of both (a request takes effect atomically when it completes); a failed write leaving partial
//! data; failing flushes; short transfers (`IoError::Short`); discard and write-zeroes; any
//! ordering between queues beyond the order in which their reaps are called. Memory is sparse
//! (64 KiB chunks allocated on first write), so large devices cost only what is written.

mod image;
mod queue;
mod state;

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Device, DeviceError, DeviceInfo, DeviceKind, Queue};
use state::State;
pub use state::DEAD_QUEUE_ERROR;

/// Probabilities of faults drawn per request, each in [0, 1]; all 0 by default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimFaults {
    /// A read completes with [`crate::IoError::Injected`].
    pub read_error_probability: f64,
    /// A write completes with [`crate::IoError::Injected`] and changes nothing.
    pub write_error_probability: f64,
    /// A successful read returns its data with one random bit flipped (the media is intact).
    pub bit_flip_probability: f64,
}

impl SimFaults {
    fn check(&self) {
        for (name, p) in [
            ("read_error_probability", self.read_error_probability),
            ("write_error_probability", self.write_error_probability),
            ("bit_flip_probability", self.bit_flip_probability),
        ] {
            assert!(
                (0.0..=1.0).contains(&p),
                "{name} = {p} is not a probability"
            );
        }
    }
}

/// How to build a [`SimDevice`].
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub name: String,
    /// A non-zero multiple of `block_bytes`.
    pub size_bytes: u64,
    /// A power of two, at least 512; also the unit of tearing in a crash.
    pub block_bytes: u32,
    pub seed: u64,
    pub faults: SimFaults,
}

impl Default for SimConfig {
    /// 64 MiB of 4096-byte blocks, seed 0, no faults.
    fn default() -> Self {
        Self {
            name: "sim".to_string(),
            size_bytes: 64 << 20,
            block_bytes: 4096,
            seed: 0,
            faults: SimFaults::default(),
        }
    }
}

/// Counters of what the device did; requests that failed are not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub reads: u64,
    pub bytes_read: u64,
    pub writes: u64,
    pub bytes_written: u64,
    pub flushes: u64,
    pub crashes: u64,
}

/// The simulated device. See the module documentation for its rules.
pub struct SimDevice {
    info: DeviceInfo,
    seed: u64,
    state: Arc<Mutex<State>>,
}

/// Locks the state. A panic while it was held (a failed assertion in a test) does not leave it
/// half-updated in a way that matters for a test device, so poisoning is ignored.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimDevice {
    /// Builds a zero-filled device. Panics on a geometry or probability that breaks the rules.
    pub fn new(config: SimConfig) -> Arc<SimDevice> {
        let SimConfig {
            name,
            size_bytes,
            block_bytes,
            seed,
            faults,
        } = config;
        assert!(
            block_bytes >= 512 && block_bytes.is_power_of_two(),
            "block size {block_bytes} is not a power of two of at least 512"
        );
        assert!(
            size_bytes > 0 && size_bytes.is_multiple_of(u64::from(block_bytes)),
            "size {size_bytes} is not a non-zero multiple of the block size {block_bytes}"
        );
        faults.check();
        let info = DeviceInfo {
            name,
            kind: DeviceKind::Sim,
            size_bytes,
            block_bytes,
            mem_align: 512,
        };
        let state = State::new(seed, block_bytes as usize, faults);
        Arc::new(SimDevice {
            info,
            seed,
            state: Arc::new(Mutex::new(state)),
        })
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of crashes so far.
    pub fn epoch(&self) -> u64 {
        lock(&self.state).epoch
    }

    /// Power loss: decides the fate of every unflushed write and kills every open queue.
    pub fn crash(&self) {
        lock(&self.state).crash();
    }

    /// Flips one random bit in every sector touched by `offset..offset + len` (inside that
    /// range), on the media: reads see it before and after a crash, and flushes do not heal it.
    pub fn corrupt(&self, offset: u64, len: usize) {
        self.check_range(offset, len);
        lock(&self.state).corrupt(offset, len);
    }

    /// From now on, reads overlapping `range` (bytes) fail with
    /// [`crate::IoError::Injected`], until [`SimDevice::clear_faults`].
    pub fn fail_reads(&self, range: Range<u64>) {
        lock(&self.state).fail_reads(range);
    }

    /// From now on, writes overlapping `range` (bytes) fail with [`crate::IoError::Injected`]
    /// and change nothing, until [`SimDevice::clear_faults`].
    pub fn fail_writes(&self, range: Range<u64>) {
        lock(&self.state).fail_writes(range);
    }

    /// Removes every failing range and sets every fault probability to 0.
    pub fn clear_faults(&self) {
        lock(&self.state).clear_faults();
    }

    /// Replaces the fault probabilities (failing ranges stay). Panics if one is not in [0, 1].
    pub fn set_faults(&self, faults: SimFaults) {
        faults.check();
        lock(&self.state).faults = faults;
    }

    pub fn faults(&self) -> SimFaults {
        lock(&self.state).faults.clone()
    }

    /// The durable image: what a crash now could leave at least (before pending writes land).
    /// Panics if the range is outside the device.
    pub fn read_durable(&self, offset: u64, len: usize) -> Vec<u8> {
        self.check_range(offset, len);
        let mut out = vec![0; len];
        lock(&self.state).durable.read(offset, &mut out);
        out
    }

    /// The volatile view, which reads see. Panics if the range is outside the device.
    pub fn read_volatile(&self, offset: u64, len: usize) -> Vec<u8> {
        self.check_range(offset, len);
        let mut out = vec![0; len];
        lock(&self.state).volatile.read(offset, &mut out);
        out
    }

    /// (offset, length) of every completed write not yet flushed, in completion order.
    pub fn pending_writes(&self) -> Vec<(u64, usize)> {
        lock(&self.state).pending_writes()
    }

    pub fn stats(&self) -> SimStats {
        lock(&self.state).stats
    }

    fn check_range(&self, offset: u64, len: usize) {
        let size = self.info.size_bytes;
        assert!(
            offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= size),
            "range {offset}+{len} is outside the device of {size} bytes"
        );
    }
}

impl Device for SimDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Fails only for a depth of 0.
    fn open_queue(&self, depth: u32) -> Result<Box<dyn Queue>, DeviceError> {
        if depth == 0 {
            return Err(DeviceError::Unsupported {
                path: self.info.name.clone(),
                reason: "queue depth 0".to_string(),
            });
        }
        let queue = queue::SimQueue::new(self.info.clone(), depth as usize, self.state.clone());
        Ok(Box::new(queue))
    }
}
