//! Mounting a device: find and check its superblock, or format it when (and only when) asked.
//!
//! A device that holds anything but a valid ds superblock is refused with a message that says
//! what was found; nothing is written unless the caller's policy allows formatting.

use ds_nvme::{run_one, Device, DmaBuf, IoError, IoRequest};

use crate::limits::{SEGMENT_BYTES_DEFAULT, SUPERBLOCK_BYTES, SUPERBLOCK_COPIES};
use crate::superblock::{LayoutError, Superblock, SuperblockError};

/// When a device may be formatted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatPolicy {
    /// Never write a new superblock.
    Never,
    /// Format only a device whose superblock area is all zeros (a new file or a wiped disk).
    IfEmpty,
    /// Format whatever is there: the explicit request of an operator.
    Always,
}

#[derive(Clone, Debug)]
pub struct FormatOptions {
    /// Partitions to create: one per data core.
    pub partitions: usize,
    pub segment_bytes: u64,
    pub node_id: u128,
    /// Record alignment; at least the device's logical block. `None`: the device's block.
    pub block_bytes: Option<u32>,
}

impl FormatOptions {
    pub fn new(partitions: usize, node_id: u128) -> Self {
        Self {
            partitions,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            node_id,
            block_bytes: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{device}: reading the superblock failed: {source}")]
    Read { device: String, source: IoError },
    #[error("{device}: writing the superblock failed: {source}")]
    Write { device: String, source: IoError },
    #[error("{device}: device is empty (no superblock); format it explicitly to use it")]
    Empty { device: String },
    #[error("{device}: holds data that is not a ds device (first bytes {first:02x?}); refusing to overwrite it unless formatting is asked for explicitly")]
    Foreign { device: String, first: [u8; 16] },
    #[error(
        "{device}: ds superblock is damaged in both copies ({first}; {second}); refusing to mount"
    )]
    Corrupt {
        device: String,
        first: SuperblockError,
        second: SuperblockError,
    },
    #[error("{device}: superblock format version {found} is newer than this build reads; refusing to mount")]
    Version { device: String, found: u32 },
    // Not a `source` field: the message already carries it, and a chain would repeat it.
    #[error("{device}: {problem}")]
    Layout {
        device: String,
        problem: LayoutError,
    },
    #[error("{device}: belongs to node {found:032x}, not to this node {expected:032x}")]
    NodeMismatch {
        device: String,
        expected: u128,
        found: u128,
    },
    #[error("{device}: formatted for {found} data cores, but {expected} are configured")]
    Partitions {
        device: String,
        expected: usize,
        found: usize,
    },
    #[error("{device}: superblock says {recorded} bytes with {recorded_block}-byte blocks, the device has {actual} bytes with {actual_block}-byte blocks")]
    Geometry {
        device: String,
        recorded: u64,
        recorded_block: u32,
        actual: u64,
        actual_block: u32,
    },
}

/// Reads the superblock of `device`, formatting it as `policy` allows. The device must have
/// been formatted for `options.node_id` with `options.partitions` partitions.
pub fn mount(
    device: &dyn Device,
    policy: FormatPolicy,
    options: &FormatOptions,
) -> Result<Superblock, MountError> {
    let sb = read_or_format(device, policy, options)?;
    let name = device.info().name.clone();
    if sb.node_id != options.node_id {
        return Err(MountError::NodeMismatch {
            device: name,
            expected: options.node_id,
            found: sb.node_id,
        });
    }
    if sb.partitions.len() != options.partitions {
        return Err(MountError::Partitions {
            device: name,
            expected: options.partitions,
            found: sb.partitions.len(),
        });
    }
    Ok(sb)
}

/// Reads and checks the superblock without expectations about node or partitions (tools use
/// it to learn them). Never writes.
pub fn peek(device: &dyn Device) -> Result<Superblock, MountError> {
    read_or_format(device, FormatPolicy::Never, &FormatOptions::new(1, 0))
}

fn read_or_format(
    device: &dyn Device,
    policy: FormatPolicy,
    options: &FormatOptions,
) -> Result<Superblock, MountError> {
    let info = device.info();
    let name = info.name.clone();
    let mut queue = device.open_queue(4).map_err(|error| MountError::Read {
        device: name.clone(),
        source: IoError::Os(os_code(&error)),
    })?;
    let bytes = (SUPERBLOCK_BYTES * SUPERBLOCK_COPIES) as usize;
    let request = IoRequest::read(DmaBuf::new(bytes), 0, bytes);
    let completion =
        run_one(queue.as_mut(), request, 1, &mut Vec::new()).expect("superblock read is aligned");
    if let Err(source) = completion.result {
        return Err(MountError::Read {
            device: name,
            source,
        });
    }
    let buf = completion.buf.expect("buffer");
    let area = &buf.as_slice()[..bytes];
    if policy == FormatPolicy::Always {
        return format(queue.as_mut(), options);
    }
    let copies: Vec<Result<Superblock, SuperblockError>> = (0..SUPERBLOCK_COPIES)
        .map(|copy| {
            let at = Superblock::copy_offset(copy) as usize;
            Superblock::decode(&area[at..at + SUPERBLOCK_BYTES as usize])
        })
        .collect();
    if let Some(Err(SuperblockError::Version { found })) = copies
        .iter()
        .find(|copy| matches!(copy, Err(SuperblockError::Version { .. })))
    {
        return Err(MountError::Version {
            device: name,
            found: *found,
        });
    }
    let best = copies
        .iter()
        .filter_map(|copy| copy.as_ref().ok())
        .max_by_key(|sb| sb.generation);
    let Some(sb) = best.cloned() else {
        if area.iter().all(|&byte| byte == 0) {
            if policy == FormatPolicy::IfEmpty {
                return format(queue.as_mut(), options);
            }
            return Err(MountError::Empty { device: name });
        }
        let has_magic = copies
            .iter()
            .any(|copy| !matches!(copy, Err(SuperblockError::Magic { .. })));
        if has_magic {
            let first = copies[0].clone().expect_err("no valid copy");
            let second = copies[1].clone().expect_err("no valid copy");
            return Err(MountError::Corrupt {
                device: name,
                first,
                second,
            });
        }
        let first = area[..16].try_into().expect("16 bytes");
        return Err(MountError::Foreign {
            device: name,
            first,
        });
    };
    if sb.device_bytes > info.size_bytes || sb.block_bytes < info.block_bytes {
        return Err(MountError::Geometry {
            device: name,
            recorded: sb.device_bytes,
            recorded_block: sb.block_bytes,
            actual: info.size_bytes,
            actual_block: info.block_bytes,
        });
    }
    Ok(sb)
}

fn os_code(error: &ds_nvme::DeviceError) -> i32 {
    match error {
        ds_nvme::DeviceError::Open { source, .. } | ds_nvme::DeviceError::Setup { source, .. } => {
            source.raw_os_error().unwrap_or(libc_eio())
        }
        ds_nvme::DeviceError::Unsupported { .. } => libc_eio(),
    }
}

fn libc_eio() -> i32 {
    5
}

/// Writes a new superblock (both copies) with a fresh device uuid, then flushes. Earlier ds
/// contents become unreachable: every segment and checkpoint names the device uuid.
fn format(
    queue: &mut dyn ds_nvme::Queue,
    options: &FormatOptions,
) -> Result<Superblock, MountError> {
    let info = queue.info().clone();
    let block = options
        .block_bytes
        .unwrap_or(info.block_bytes)
        .max(info.block_bytes)
        .max(512);
    let sb = Superblock::layout(
        info.size_bytes,
        block,
        options.partitions,
        options.segment_bytes,
        rand::random::<u128>(),
        options.node_id,
    )
    .map_err(|problem| MountError::Layout {
        device: info.name.clone(),
        problem,
    })?;
    let encoded = sb.encode();
    let mut others = Vec::new();
    for copy in 0..SUPERBLOCK_COPIES {
        let mut buf = DmaBuf::new(SUPERBLOCK_BYTES as usize);
        buf.as_mut_slice()[..encoded.len()].copy_from_slice(&encoded);
        let request = IoRequest::write(
            buf,
            Superblock::copy_offset(copy),
            SUPERBLOCK_BYTES as usize,
        );
        let done = run_one(queue, request, 10 + copy, &mut others).expect("aligned write");
        done.result.map_err(|source| MountError::Write {
            device: info.name.clone(),
            source,
        })?;
    }
    let done = run_one(queue, IoRequest::flush(), 20, &mut others).expect("flush");
    done.result.map_err(|source| MountError::Write {
        device: info.name.clone(),
        source,
    })?;
    tracing::info!(device = %info.name, partitions = options.partitions, "formatted");
    Ok(sb)
}
