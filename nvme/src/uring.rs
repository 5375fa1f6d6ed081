//! The io_uring backend: a regular file or a block device opened with O_DIRECT, driven through
//! one io_uring instance per queue.
//!
//! What it does:
//! - discovers the geometry when opening: size (file size, or `BLKGETSIZE64`), logical block
//!   (`statx` `STATX_DIOALIGN` for files, `BLKSSZGET` for block devices) and buffer alignment;
//! - creates a missing file sparse at a requested size;
//! - per queue, a ring sized to the queue depth (optionally with an SQPOLL kernel thread), the
//!   device fd registered as a fixed file, and the pool buffers registered on request so that I/O
//!   on them uses `READ_FIXED`/`WRITE_FIXED`;
//! - flushes with `fdatasync` semantics.
//!
//! What it does not do: split or merge requests, retry short or failed transfers, order requests
//! (a flush covers only writes completed before it was submitted), or share rings or SQPOLL
//! threads between queues. It refuses paths that are neither regular files nor block devices and
//! files whose filesystem refuses O_DIRECT.

mod queue;

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

pub use queue::UringQueue;

use crate::dma::DMA_ALIGN_BYTES;
use crate::{Device, DeviceError, DeviceInfo, DeviceKind, Queue};

/// `_IOR(0x12, 114, size_t)` from `<linux/fs.h>`; the libc crate does not define it.
const BLKGETSIZE64: libc::Ioctl = libc::_IOR::<libc::size_t>(0x12, 114);

/// Block and memory alignment used for a file when neither `statx` nor sysfs tell them.
const FALLBACK_BLOCK_BYTES: u32 = 4096;
const FALLBACK_MEM_ALIGN: u32 = 512;

/// How to open a [`UringDevice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Create a missing regular file, sparse, at this size (rounded down to the block size).
    /// An existing file keeps its size.
    pub create_bytes: Option<u64>,
    /// Give every queue a kernel submission thread (`IORING_SETUP_SQPOLL`).
    pub sqpoll: bool,
    /// Idle time after which an SQPOLL thread sleeps until woken by the next submission.
    pub sqpoll_idle_ms: u32,
    /// Requests queued before they are handed to the kernel without waiting for the caller's
    /// next reap (at least 1). The default, 1, submits each request at once, as fio does: a
    /// virtio disk here served 32 random reads handed over in one system call at 0.82 of the
    /// IOPS it served them one at a time (docs/PERFORMANCE.md, "Shard store vs fio").
    pub submit_batch: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            create_bytes: None,
            sqpoll: false,
            sqpoll_idle_ms: 1000,
            submit_batch: 1,
        }
    }
}

/// A regular file or block device opened with O_DIRECT. Queues share its file descriptor.
#[derive(Debug)]
pub struct UringDevice {
    file: Arc<File>,
    info: DeviceInfo,
    /// SQPOLL idle time in milliseconds, when SQPOLL is wanted.
    sqpoll_idle_ms: Option<u32>,
    /// See [`OpenOptions::submit_batch`].
    submit_batch: u32,
}

impl UringDevice {
    /// Opens (or creates, see [`OpenOptions::create_bytes`]) `path` and discovers its geometry.
    pub fn open(path: &Path, options: &OpenOptions) -> Result<UringDevice, DeviceError> {
        let name = path.display().to_string();
        let (file, created) = open_direct(path, options, &name)?;
        let result = describe(
            &file,
            created.then_some(options.create_bytes).flatten(),
            &name,
        );
        let info = match result {
            Ok(info) => info,
            Err(error) => {
                if created {
                    // Do not leave behind a file we made but cannot use.
                    let _ = std::fs::remove_file(path);
                }
                return Err(error);
            }
        };
        tracing::debug!(?info, "opened io_uring device");
        Ok(UringDevice {
            file: Arc::new(file),
            info,
            sqpoll_idle_ms: options.sqpoll.then_some(options.sqpoll_idle_ms),
            submit_batch: options.submit_batch,
        })
    }

    /// Like [`Device::open_queue`], without boxing.
    pub fn open_uring_queue(&self, depth: u32) -> Result<UringQueue, DeviceError> {
        UringQueue::new(
            Arc::clone(&self.file),
            self.info.clone(),
            depth,
            self.sqpoll_idle_ms,
            self.submit_batch,
        )
    }
}

impl Device for UringDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn open_queue(&self, depth: u32) -> Result<Box<dyn Queue>, DeviceError> {
        Ok(Box::new(self.open_uring_queue(depth)?))
    }
}

fn unsupported(name: &str, reason: impl Into<String>) -> DeviceError {
    DeviceError::Unsupported {
        path: name.to_string(),
        reason: reason.into(),
    }
}

fn setup_error(name: &str, what: &'static str, source: io::Error) -> DeviceError {
    DeviceError::Setup {
        path: name.to_string(),
        what,
        source,
    }
}

/// Opens `path` with O_DIRECT | O_RDWR | O_CLOEXEC; returns whether the file was created.
fn open_direct(
    path: &Path,
    options: &OpenOptions,
    name: &str,
) -> Result<(File, bool), DeviceError> {
    let mut open = std::fs::OpenOptions::new();
    // std adds O_CLOEXEC itself.
    open.read(true).write(true).custom_flags(libc::O_DIRECT);
    let created = match std::fs::metadata(path) {
        Ok(meta) => {
            check_file_type(&meta, name)?;
            false
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if options.create_bytes.is_none() {
                let source = io::Error::new(
                    io::ErrorKind::NotFound,
                    "no such file or device, and no size to create it with was given",
                );
                return Err(DeviceError::Open {
                    path: name.to_string(),
                    source,
                });
            }
            open.create_new(true).mode(0o644);
            true
        }
        Err(source) => {
            return Err(DeviceError::Open {
                path: name.to_string(),
                source,
            })
        }
    };
    match open.open(path) {
        Ok(file) => Ok((file, created)),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
            if created {
                // The filesystem creates the inode before it refuses O_DIRECT.
                let _ = std::fs::remove_file(path);
            }
            Err(unsupported(
                name,
                "O_DIRECT is not supported there (open returned EINVAL)",
            ))
        }
        Err(source) => Err(DeviceError::Open {
            path: name.to_string(),
            source,
        }),
    }
}

fn check_file_type(meta: &std::fs::Metadata, name: &str) -> Result<(), DeviceError> {
    let file_type = meta.file_type();
    if file_type.is_file() || file_type.is_block_device() {
        return Ok(());
    }
    let what = if file_type.is_dir() {
        "a directory"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "an unknown kind of file"
    };
    Err(unsupported(
        name,
        format!("is {what}, not a regular file or a block device"),
    ))
}

/// Discovers the geometry of an open file or block device; sizes a newly created file.
fn describe(file: &File, create_bytes: Option<u64>, name: &str) -> Result<DeviceInfo, DeviceError> {
    // Checked again on the open descriptor: the path may have changed since it was looked at.
    let meta = file.metadata().map_err(|e| setup_error(name, "fstat", e))?;
    check_file_type(&meta, name)?;
    let (kind, size, block_bytes, mem_align) = if meta.file_type().is_block_device() {
        let (size, block, mem) = block_device_geometry(file, name)?;
        (DeviceKind::Block, size, block, mem)
    } else {
        let (block, mem) = file_alignment(file, &meta, name)?;
        let size = match create_bytes {
            Some(bytes) => {
                let size = bytes / u64::from(block) * u64::from(block);
                if size == 0 {
                    let reason = format!("create size {bytes} is below the block size {block}");
                    return Err(unsupported(name, reason));
                }
                // Sparse: ftruncate allocates nothing.
                file.set_len(size)
                    .map_err(|e| setup_error(name, "ftruncate", e))?;
                size
            }
            None => meta.len(),
        };
        (DeviceKind::File, size, block, mem)
    };
    if !block_bytes.is_power_of_two() || !mem_align.is_power_of_two() {
        let reason = format!("odd alignment: block {block_bytes} bytes, memory {mem_align} bytes");
        return Err(unsupported(name, reason));
    }
    if mem_align as usize > DMA_ALIGN_BYTES {
        tracing::warn!(
            name,
            mem_align,
            "buffers need more alignment than DmaBuf provides"
        );
    }
    let size_bytes = size / u64::from(block_bytes) * u64::from(block_bytes);
    if size_bytes != size {
        tracing::debug!(
            name,
            size,
            size_bytes,
            "size rounded down to the block size"
        );
    }
    Ok(DeviceInfo {
        name: name.to_string(),
        kind,
        size_bytes,
        block_bytes,
        mem_align,
    })
}

/// Size, logical block and memory alignment of a block device.
fn block_device_geometry(file: &File, name: &str) -> Result<(u64, u32, u32), DeviceError> {
    let fd = file.as_raw_fd();
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at a live local.
    if unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut size as *mut u64) } != 0 {
        return Err(setup_error(
            name,
            "ioctl BLKGETSIZE64",
            io::Error::last_os_error(),
        ));
    }
    let mut block: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at a live local.
    if unsafe { libc::ioctl(fd, libc::BLKSSZGET, &mut block as *mut libc::c_int) } != 0 {
        return Err(setup_error(
            name,
            "ioctl BLKSSZGET",
            io::Error::last_os_error(),
        ));
    }
    let block = u32::try_from(block).unwrap_or(0);
    // Kernels since 6.11 report the DMA alignment of a block device, often below its block size.
    // Without it, the logical block is what older kernels require of buffer addresses.
    let mem = match dio_alignment(file) {
        Some((mem, _)) if mem != 0 => mem,
        _ => block,
    };
    Ok((size, block, mem))
}

/// Logical block and memory alignment for O_DIRECT on a regular file.
fn file_alignment(
    file: &File,
    meta: &std::fs::Metadata,
    name: &str,
) -> Result<(u32, u32), DeviceError> {
    match dio_alignment(file) {
        Some((_, 0)) => Err(unsupported(
            name,
            "O_DIRECT is not supported for this file (statx reports no direct I/O alignment)",
        )),
        Some((mem, offset)) => Ok((offset, mem)),
        None => {
            let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
            match sysfs_logical_block(major, minor) {
                Some(block) => {
                    tracing::debug!(
                        name,
                        block,
                        "statx gives no direct I/O alignment; using the logical block size of \
                         the filesystem's device {major}:{minor} for offsets and buffers"
                    );
                    Ok((block, block))
                }
                None => {
                    tracing::debug!(
                        name,
                        block = FALLBACK_BLOCK_BYTES,
                        mem_align = FALLBACK_MEM_ALIGN,
                        "statx gives no direct I/O alignment and the filesystem's device \
                         {major}:{minor} has no logical block size in sysfs; using defaults"
                    );
                    Ok((FALLBACK_BLOCK_BYTES, FALLBACK_MEM_ALIGN))
                }
            }
        }
    }
}

/// `(stx_dio_mem_align, stx_dio_offset_align)` when the kernel reports them (Linux 6.1+ for
/// files on filesystems that implement it, 6.11+ for block devices).
fn dio_alignment(file: &File) -> Option<(u32, u32)> {
    const EMPTY: &CStr = c"";
    // SAFETY: statx is plain data for which all-zero bytes are a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a valid NUL-terminated string, AT_EMPTY_PATH makes statx describe the
    // open descriptor, and stx is a live, writable statx.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            EMPTY.as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return None;
    }
    Some((stx.stx_dio_mem_align, stx.stx_dio_offset_align))
}

/// Logical block size of the block device `major:minor` (or of the disk holding that partition),
/// read from sysfs: the same number BLKSSZGET returns, without opening the device node.
fn sysfs_logical_block(major: u32, minor: u32) -> Option<u32> {
    if major == 0 {
        // Anonymous device numbers (tmpfs, overlayfs, network filesystems) have no queue.
        return None;
    }
    let base = format!("/sys/dev/block/{major}:{minor}");
    ["queue", "../queue"].iter().find_map(|dir| {
        let text = std::fs::read_to_string(format!("{base}/{dir}/logical_block_size")).ok()?;
        text.trim()
            .parse::<u32>()
            .ok()
            .filter(|&block| block.is_power_of_two())
    })
}
