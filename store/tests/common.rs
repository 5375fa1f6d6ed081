//! Shared set-up for the store's integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use ds_nvme::sim::{SimConfig, SimDevice};
use ds_nvme::Device;
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
