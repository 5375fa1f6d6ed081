//! Shared set-up for the store's integration tests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ds_nvme::sim::{SimConfig, SimDevice};
use ds_nvme::{
    Completion, Device, DeviceError, DeviceInfo, IoError, IoKind, IoRequest, Queue, Rejected,
};
use ds_store::{mount, CoreStore, FormatOptions, FormatPolicy, MountedDevice, ShardKey, ShardMeta};

pub const NODE: u128 = 0x0123_4567_89ab_cdef;

pub fn sim(seed: u64, size_bytes: u64, block_bytes: u32) -> Arc<SimDevice> {
    SimDevice::new(SimConfig {
        name: format!("sim-{seed}"),
        size_bytes,
        block_bytes,
        seed,
        ..Default::default()
    })
}

pub fn options(partitions: usize) -> FormatOptions {
    FormatOptions {
        partitions,
        segment_bytes: 1 << 20,
        node_id: NODE,
        block_bytes: None,
    }
}

pub fn mounted(device: Arc<dyn Device>, policy: FormatPolicy, partitions: usize) -> MountedDevice {
    let superblock = mount(device.as_ref(), policy, &options(partitions)).expect("mount");
    MountedDevice { device, superblock }
}

pub fn open(devices: &[Arc<dyn Device>], policy: FormatPolicy) -> CoreStore {
    let mounted = devices
        .iter()
        .map(|d| mounted(d.clone(), policy, 1))
        .collect();
    CoreStore::open(0, NODE, mounted).expect("open").0
}

/// Deterministic content of `key` at `version`: length and bytes follow from both.
pub fn value(key: ShardKey, version: u64, max_len: usize) -> Vec<u8> {
    let mut state = (key.object as u64) ^ version.rotate_left(17) ^ u64::from(key.stripe) << 40;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let len = next() as usize % (max_len + 1);
    (0..len).map(|_| next() as u8).collect()
}

pub fn key(n: u64) -> ShardKey {
    ShardKey::new(
        u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
        (n % 3) as u32,
        (n % 5) as u8,
    )
}

/// Metadata of a single-copy shard at `version`.
pub fn meta(version: u64) -> ShardMeta {
    ShardMeta {
        version,
        scheme_k: 1,
        scheme_m: 0,
        object_bytes: 1,
    }
}

// ---------------------------------------------------------------------------------------------
// A device wrapper that can hold requests back (never handing them to the simulator) until the
// test releases them: deterministic interleavings inside the store's state machine.

// A device wrapper that can hold requests back (never handing them to the simulator) until the
// test releases them: deterministic interleavings inside the store's state machine.

pub type Pred = Box<dyn Fn(&IoRequest) -> bool + Send>;

#[derive(Default)]
pub struct Gate {
    hold: Option<Pred>,
    /// Held requests of every queue: (queue id, request, token).
    held: Vec<(usize, IoRequest, u64)>,
    /// Requests to hand to the device at the next reap of their queue.
    released: Vec<(usize, IoRequest, u64)>,
    queues: usize,
}

pub struct GatedDevice {
    inner: Arc<SimDevice>,
    gate: Arc<Mutex<Gate>>,
}

impl GatedDevice {
    pub fn new(inner: Arc<SimDevice>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gate: Arc::new(Mutex::new(Gate::default())),
        })
    }
    pub fn hold(&self, pred: impl Fn(&IoRequest) -> bool + Send + 'static) {
        self.gate.lock().unwrap().hold = Some(Box::new(pred));
    }
    pub fn stop_holding(&self) {
        self.gate.lock().unwrap().hold = None;
    }
    pub fn held(&self) -> Vec<(IoKind, u64, usize)> {
        let g = self.gate.lock().unwrap();
        g.held
            .iter()
            .map(|(_, r, _)| (r.kind, r.offset, r.len))
            .collect()
    }
    /// Releases held requests matching `pred`, in submission order.
    pub fn release(&self, pred: impl Fn(&IoRequest) -> bool) {
        let mut g = self.gate.lock().unwrap();
        let held = std::mem::take(&mut g.held);
        for item in held {
            if pred(&item.1) {
                g.released.push(item);
            } else {
                g.held.push(item);
            }
        }
    }
    /// Forgets held requests: they never reach the device (lost in a crash).
    pub fn drop_held(&self) {
        self.gate.lock().unwrap().held.clear();
    }
}

impl Device for GatedDevice {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn open_queue(&self, depth: u32) -> Result<Box<dyn Queue>, DeviceError> {
        let inner = self.inner.open_queue(depth)?;
        let id = {
            let mut g = self.gate.lock().unwrap();
            g.queues += 1;
            g.queues
        };
        Ok(Box::new(GatedQueue {
            id,
            inner,
            gate: self.gate.clone(),
            pending: VecDeque::new(),
        }))
    }
}

struct GatedQueue {
    id: usize,
    inner: Box<dyn Queue>,
    gate: Arc<Mutex<Gate>>,
    /// Released requests refused by the inner queue (full).
    pending: VecDeque<(IoRequest, u64)>,
}

impl Queue for GatedQueue {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn submit(&mut self, request: IoRequest, token: u64) -> Result<(), Rejected> {
        if let Err(invalid) = request.validate(self.inner.info()) {
            return Err(Rejected {
                request,
                reason: invalid.into(),
            });
        }
        let mut g = self.gate.lock().unwrap();
        if g.hold.as_ref().is_some_and(|p| p(&request)) {
            g.held.push((self.id, request, token));
            return Ok(());
        }
        drop(g);
        self.pending.push_back((request, token));
        self.push();
        Ok(())
    }
    fn reap(&mut self, out: &mut Vec<Completion>) -> usize {
        {
            let mut g = self.gate.lock().unwrap();
            let released = std::mem::take(&mut g.released);
            for (q, r, t) in released {
                if q == self.id {
                    self.pending.push_back((r, t));
                } else {
                    g.released.push((q, r, t));
                }
            }
        }
        self.push();
        self.inner.reap(out)
    }
    fn wait(&mut self, _timeout: Option<Duration>) -> Result<(), IoError> {
        Ok(())
    }
    fn inflight(&self) -> usize {
        let g = self.gate.lock().unwrap();
        let mine = g.held.iter().filter(|h| h.0 == self.id).count()
            + g.released.iter().filter(|h| h.0 == self.id).count();
        self.inner.inflight() + self.pending.len() + mine
    }
    fn depth(&self) -> usize {
        self.inner.depth()
    }
}

impl GatedQueue {
    fn push(&mut self) {
        while let Some((request, token)) = self.pending.pop_front() {
            match self.inner.submit(request, token) {
                Ok(()) => {}
                Err(rejected) => {
                    self.pending.push_front((rejected.request, token));
                    return;
                }
            }
        }
    }
}
