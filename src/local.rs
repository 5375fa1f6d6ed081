//! A node's devices opened from paths, mounted, and split into one shard store per data core.
//! Shard keys are spread over cores by fingerprint, so each core owns a fixed share.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ds_nvme::uring::{OpenOptions, UringDevice};
use ds_nvme::Device;
use ds_store::{
    mount, peek, CoreStore, Durability, FormatOptions, FormatPolicy, MountedDevice, RecoveryReport,
    ShardKey,
};

/// How to open the devices.
#[derive(Clone, Debug)]
pub struct OpenSpec {
    pub paths: Vec<PathBuf>,
    /// Create missing files at this size (sparse).
    pub create_bytes: Option<u64>,
    pub policy: FormatPolicy,
    /// Used when formatting; otherwise learnt from the first device's superblock.
    pub format: Option<FormatOptions>,
    pub sqpoll: bool,
    pub durability: Durability,
}

pub struct LocalStore {
    pub cores: Vec<CoreStore>,
    pub devices: Vec<Arc<dyn Device>>,
    pub reports: Vec<RecoveryReport>,
    pub node_id: u128,
}

/// Opens one device file or block device through io_uring.
pub fn open_device(
    path: &std::path::Path,
    create_bytes: Option<u64>,
    sqpoll: bool,
) -> anyhow::Result<Arc<dyn Device>> {
    let options = OpenOptions {
        create_bytes,
        sqpoll,
        ..OpenOptions::default()
    };
    let device = UringDevice::open(path, &options)
        .with_context(|| format!("opening device {}", path.display()))?;
    Ok(Arc::new(device))
}

impl LocalStore {
    /// Opens (and mounts, and recovers) every core's store. Cores are opened one after the
    /// other here; the appliance opens each on its own pinned thread.
    pub fn open(spec: &OpenSpec) -> anyhow::Result<Self> {
        anyhow::ensure!(!spec.paths.is_empty(), "no device given");
        let devices = spec
            .paths
            .iter()
            .map(|path| open_device(path, spec.create_bytes, spec.sqpoll))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let options = match &spec.format {
            Some(options) => options.clone(),
            None => {
                let sb = peek(devices[0].as_ref())
                    .with_context(|| format!("reading {}", spec.paths[0].display()))?;
                FormatOptions {
                    partitions: sb.partitions.len(),
                    segment_bytes: sb.segment_bytes,
                    node_id: sb.node_id,
                    block_bytes: None,
                }
            }
        };
        let mut mounted = Vec::new();
        for (device, path) in devices.iter().zip(&spec.paths) {
            let superblock = mount(device.as_ref(), spec.policy, &options)
                .with_context(|| format!("mounting {}", path.display()))?;
            mounted.push(MountedDevice {
                device: device.clone(),
                superblock,
            });
        }
        let mut cores = Vec::new();
        let mut reports = Vec::new();
        for core in 0..options.partitions {
            let (mut store, report) = CoreStore::open(core, options.node_id, mounted.clone())
                .with_context(|| format!("recovering core {core}"))?;
            store.set_durability(spec.durability);
            cores.push(store);
            reports.push(report);
        }
        Ok(Self {
            cores,
            devices,
            reports,
            node_id: options.node_id,
        })
    }

    /// The core that owns `key`.
    pub fn core_of(&self, key: ShardKey) -> usize {
        core_of(key, self.cores.len())
    }

    pub fn store_for(&mut self, key: ShardKey) -> &mut CoreStore {
        let core = self.core_of(key);
        &mut self.cores[core]
    }
}

/// The core that owns `key` among `cores`.
pub fn core_of(key: ShardKey, cores: usize) -> usize {
    // The high bits: the index uses the low ones.
    ((key.fingerprint() >> 40) % cores as u64) as usize
}
