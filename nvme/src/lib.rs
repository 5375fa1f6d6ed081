//! The device layer: block devices driven by a per-core reactor without blocking.
//!
//! Users see two traits. A [`Device`] is one block device (a file, a loop device, an NVMe
//! namespace, or the simulator); it knows its geometry and opens [`Queue`]s. A `Queue` belongs to
//! one core: requests are submitted into a fixed in-flight table and completions are reaped by
//! polling, never by blocking (except [`Queue::wait`], which the adaptive poll mode uses when a
//! core is idle).
//!
//! Buffers are owned by the request while it is in flight and handed back in its [`Completion`],
//! so no buffer can be freed or reused while the device may still write into it.
//!
//! Backends: [`uring`] (io_uring + O_DIRECT, the default) and [`sim`] (in-memory, with power-loss
//! semantics, the base of the crash tests). This crate knows nothing about records or objects.

pub mod dma;
pub mod sim;
pub mod uring;

use std::time::Duration;

pub use dma::{BufPool, DmaBuf};

/// What a device is backed by, for display and for choosing defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// A regular file on a filesystem, opened with O_DIRECT.
    File,
    /// A block device node (NVMe namespace, SSD, loop device).
    Block,
    /// The in-memory simulator.
    Sim,
}

/// Geometry of a device, discovered when it is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Path or name, for messages.
    pub name: String,
    pub kind: DeviceKind,
    /// Usable size in bytes, a multiple of `block_bytes`.
    pub size_bytes: u64,
    /// Logical block size: offsets and lengths of every request are multiples of it.
    pub block_bytes: u32,
    /// Required alignment of buffer addresses for direct I/O.
    pub mem_align: u32,
}

/// The kind of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    Read,
    Write,
    /// A write that is durable when it completes (FUA; RWF_DSYNC on io_uring), so no flush is
    /// needed after it.
    WriteFua,
    /// Makes every write that completed before the flush was submitted durable.
    Flush,
}

/// One request. Reads and writes move `len` bytes between `buf` and the device at `offset`.
#[derive(Debug)]
pub struct IoRequest {
    pub kind: IoKind,
    pub offset: u64,
    /// Bytes to move; `0` for a flush. At most `buf.capacity()`.
    pub len: usize,
    /// The buffer; `None` only for a flush.
    pub buf: Option<DmaBuf>,
}

impl IoRequest {
    pub fn read(buf: DmaBuf, offset: u64, len: usize) -> Self {
        Self {
            kind: IoKind::Read,
            offset,
            len,
            buf: Some(buf),
        }
    }

    pub fn write(buf: DmaBuf, offset: u64, len: usize) -> Self {
        Self {
            kind: IoKind::Write,
            offset,
            len,
            buf: Some(buf),
        }
    }

    /// A write that is durable when it completes.
    pub fn write_fua(buf: DmaBuf, offset: u64, len: usize) -> Self {
        Self {
            kind: IoKind::WriteFua,
            offset,
            len,
            buf: Some(buf),
        }
    }

    pub fn flush() -> Self {
        Self {
            kind: IoKind::Flush,
            offset: 0,
            len: 0,
            buf: None,
        }
    }

    /// Checks alignment and bounds against `info`; backends call this before queueing.
    pub fn validate(&self, info: &DeviceInfo) -> Result<(), InvalidRequest> {
        if self.kind == IoKind::Flush {
            return Ok(());
        }
        let Some(buf) = &self.buf else {
            return Err(InvalidRequest::MissingBuffer);
        };
        let block = u64::from(info.block_bytes);
        if !self.offset.is_multiple_of(block) {
            return Err(InvalidRequest::UnalignedOffset {
                offset: self.offset,
                block,
            });
        }
        if self.len == 0 || !(self.len as u64).is_multiple_of(block) {
            return Err(InvalidRequest::UnalignedLength {
                len: self.len,
                block,
            });
        }
        if self.len > buf.capacity() {
            return Err(InvalidRequest::BufferTooSmall {
                len: self.len,
                capacity: buf.capacity(),
            });
        }
        if !(buf.as_ptr() as usize).is_multiple_of(info.mem_align as usize) {
            return Err(InvalidRequest::UnalignedBuffer {
                align: info.mem_align,
            });
        }
        let end = self.offset.checked_add(self.len as u64);
        if end.is_none_or(|end| end > info.size_bytes) {
            return Err(InvalidRequest::OutOfRange {
                offset: self.offset,
                len: self.len,
                size: info.size_bytes,
            });
        }
        Ok(())
    }
}

/// A finished request. `buf` is the buffer that was submitted with it.
#[derive(Debug)]
pub struct Completion {
    pub token: u64,
    pub kind: IoKind,
    pub offset: u64,
    pub len: usize,
    pub buf: Option<DmaBuf>,
    pub result: Result<(), IoError>,
}

/// Why a request was refused at submission. The request is handed back.
#[derive(Debug)]
pub struct Rejected {
    pub request: IoRequest,
    pub reason: RejectReason,
}

#[derive(Debug, thiserror::Error)]
pub enum RejectReason {
    /// Every slot of the in-flight table is taken; reap and try again.
    #[error("queue full")]
    QueueFull,
    /// The request breaks the device's alignment or bounds rules.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
}

/// A request that breaks the rules of the device (a bug in the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("read or write without a buffer")]
    MissingBuffer,
    #[error("offset {offset} is not a multiple of the block size {block}")]
    UnalignedOffset { offset: u64, block: u64 },
    #[error("length {len} is zero or not a multiple of the block size {block}")]
    UnalignedLength { len: usize, block: u64 },
    #[error("length {len} exceeds the buffer capacity {capacity}")]
    BufferTooSmall { len: usize, capacity: usize },
    #[error("buffer address is not aligned to {align} bytes")]
    UnalignedBuffer { align: u32 },
    #[error("range {offset}+{len} is outside the device of {size} bytes")]
    OutOfRange { offset: u64, len: usize, size: u64 },
}

/// A request that reached the device and failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// The operating system returned an error number.
    #[error("device error: {}", std::io::Error::from_raw_os_error(*.0))]
    Os(i32),
    /// Fewer bytes were moved than asked for.
    #[error("short transfer: {done} of {asked} bytes")]
    Short { done: usize, asked: usize },
    /// The simulator injected a failure.
    #[error("injected media error")]
    Injected,
}

/// Failure to open or set up a device or queue.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {what}: {source}")]
    Setup {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Unsupported { path: String, reason: String },
}

/// One block device. Shared by the cores that use it; each core opens its own queue.
pub trait Device: Send + Sync {
    fn info(&self) -> &DeviceInfo;

    /// Opens a queue with room for `depth` requests in flight.
    fn open_queue(&self, depth: u32) -> Result<Box<dyn Queue>, DeviceError>;
}

/// A queue owned by one core. Not shared: requests and completions never cross cores.
pub trait Queue: Send {
    fn info(&self) -> &DeviceInfo;

    /// Adds a request to the in-flight table. It may be handed to the device only at the next
    /// [`Queue::reap`] or [`Queue::wait`], so that several submissions cost one system call.
    fn submit(&mut self, request: IoRequest, token: u64) -> Result<(), Rejected>;

    /// Hands queued requests to the device and moves finished ones into `out`. Never blocks.
    /// Returns how many completions were added.
    fn reap(&mut self, out: &mut Vec<Completion>) -> usize;

    /// Hands queued requests to the device without reaping. A caller about to block on
    /// [`Queue::wake_fd`] calls it first: a request only queued would never complete.
    fn submit_queued(&mut self) {}

    /// Blocks until at least one completion is ready or `timeout` passes (`None`: no limit).
    /// Returns at once when nothing is in flight.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), IoError>;

    /// Requests submitted and not yet reaped.
    fn inflight(&self) -> usize;

    /// Size of the in-flight table.
    fn depth(&self) -> usize;

    /// A descriptor that polls readable while completions wait to be reaped, so a reactor can
    /// block on this queue and its network at once. `None`: the backend has none (the caller
    /// bounds its sleep instead).
    fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    /// Registers a pool's buffers with the device, where the backend supports it, so that I/O on
    /// them skips per-request page pinning. Optional: the default does nothing.
    fn register(&mut self, _pool: &BufPool) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// Submits `request` and waits for its completion, reaping others into `others`.
/// For tools, tests and start-up paths, never for the data path.
pub fn run_one(
    queue: &mut dyn Queue,
    request: IoRequest,
    token: u64,
    others: &mut Vec<Completion>,
) -> Result<Completion, RejectReason> {
    let mut request = request;
    loop {
        match queue.submit(request, token) {
            Ok(()) => break,
            Err(Rejected {
                request: back,
                reason: RejectReason::QueueFull,
            }) => {
                request = back;
                queue.reap(others);
                let _ = queue.wait(Some(Duration::from_millis(10)));
            }
            Err(Rejected { reason, .. }) => return Err(reason),
        }
    }
    let mut done = Vec::new();
    loop {
        queue.reap(&mut done);
        if let Some(position) = done.iter().position(|c| c.token == token) {
            let completion = done.swap_remove(position);
            others.append(&mut done);
            return Ok(completion);
        }
        let _ = queue.wait(Some(Duration::from_millis(100)));
    }
}
