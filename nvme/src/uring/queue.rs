//! One queue: an io_uring instance and a fixed table of the requests it has in flight.
//!
//! The table owns every in-flight buffer; the SQE's `user_data` is the slot index. A slot is
//! freed, and its buffer handed back, only when the kernel has posted the request's CQE, so the
//! kernel never reads or writes memory the caller can touch or free.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{Fd, Fixed, FsyncFlags, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

use crate::{
    BufPool, Completion, DeviceError, DeviceInfo, DmaBuf, InvalidRequest, IoError, IoKind,
    IoRequest, Queue, RejectReason, Rejected,
};

/// How long dropping a queue waits for requests in flight before it leaks their buffers.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Most bytes Linux moves in one read or write (`MAX_RW_COUNT` with 4 KiB pages); a longer
/// request is cut to this and completes with [`IoError::Short`].
const MAX_RW_BYTES: usize = 0x7fff_f000;

/// Longest timeout handed to the kernel; longer waits end early, which callers tolerate.
const LONGEST_WAIT: Duration = Duration::from_secs(u32::MAX as u64);

/// `IORING_ENTER_GETEVENTS` of `linux/io_uring.h` (the io-uring crate keeps its copy private).
const ENTER_GETEVENTS: u32 = 1;

/// Index of the device in the ring's registered-file table.
const FIXED_FD: Fixed = Fixed(0);

/// Builds an SQE naming the device by its registered index or by its raw descriptor; the two
/// are different types, so each branch instantiates the builder separately.
macro_rules! on_device {
    ($fixed:expr, $raw:expr, |$fd:ident| $build:expr) => {
        if $fixed {
            let $fd = FIXED_FD;
            $build
        } else {
            let $fd = Fd($raw);
            $build
        }
    };
}

/// A request the kernel may be working on.
#[derive(Debug)]
struct InFlight {
    token: u64,
    kind: IoKind,
    offset: u64,
    len: usize,
    buf: Option<DmaBuf>,
}

/// A [`Queue`] on one io_uring instance. See the module documentation of [`crate::uring`].
pub struct UringQueue {
    // Dropped first, after `Drop::drop` has drained it, so no request outlives its buffer.
    ring: IoUring,
    /// Keeps the descriptor that unregistered SQEs name open.
    file: Arc<File>,
    /// Whether the descriptor is registered, so SQEs name it as `Fixed(0)`.
    fixed_file: bool,
    info: DeviceInfo,
    /// The in-flight table; `user_data` of an SQE is its index here.
    slots: Vec<Option<InFlight>>,
    /// Indices of the empty slots.
    free: Vec<u32>,
    /// SQEs queued that the kernel has not taken yet.
    queued: u32,
    /// Queued SQEs that are handed to the kernel at once ([`super::OpenOptions::submit_batch`]).
    submit_batch: u32,
    /// Registered buffers: pool index -> (address, length).
    registered: Vec<(usize, usize)>,
}

impl UringQueue {
    pub(super) fn new(
        file: Arc<File>,
        info: DeviceInfo,
        depth: u32,
        sqpoll_idle_ms: Option<u32>,
        submit_batch: u32,
    ) -> Result<Self, DeviceError> {
        let entries = match depth.checked_next_power_of_two() {
            Some(entries) if depth > 0 => entries,
            _ => {
                let reason = format!("queue depth {depth} is not between 1 and 2^31");
                return Err(DeviceError::Unsupported {
                    path: info.name,
                    reason,
                });
            }
        };
        let mut builder = IoUring::builder();
        if let Some(idle) = sqpoll_idle_ms {
            builder.setup_sqpoll(idle);
        } else {
            // The owning core reaps the queue itself, so completions need not interrupt it; the
            // flag tells it when the kernel holds completions back.
            builder.setup_coop_taskrun().setup_taskrun_flag();
        }
        // The SQ has room for the whole table, so a push never finds it full; the CQ is twice
        // that by default, so it never overflows.
        let ring = builder
            .build(entries)
            .map_err(|source| DeviceError::Setup {
                path: info.name.clone(),
                what: "io_uring_setup",
                source,
            })?;
        let fixed_file = match ring.submitter().register_files(&[file.as_raw_fd()]) {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(name = info.name, %error, "cannot register the fd; using it raw");
                false
            }
        };
        let depth_slots = depth as usize;
        Ok(Self {
            ring,
            file,
            fixed_file,
            info,
            slots: (0..depth_slots).map(|_| None).collect(),
            free: (0..depth).rev().collect(),
            queued: 0,
            submit_batch: submit_batch.max(1),
            registered: Vec::new(),
        })
    }

    /// Whether the ring has an SQPOLL kernel thread.
    pub fn is_sqpoll(&self) -> bool {
        self.ring.params().is_setup_sqpoll()
    }

    /// Requests queued and not yet taken by the kernel (at most `submit_batch - 1` after a
    /// successful submission).
    pub fn unsubmitted(&self) -> u32 {
        self.queued
    }

    /// How many buffers are registered (by the last successful [`Queue::register`]).
    pub fn registered_buffers(&self) -> usize {
        self.registered.len()
    }

    /// The registered-buffer index to use for `len` bytes of `buf`, if it is registered: it
    /// comes from a pool and sits at the address registered for its index.
    fn fixed_index(&self, buf: &DmaBuf, len: usize) -> Option<u16> {
        let index = buf.pool_index()?;
        let &(address, bytes) = self.registered.get(usize::from(index))?;
        (address == buf.as_ptr() as usize && len <= bytes).then_some(index)
    }

    /// The SQE for the request in `slot`.
    fn entry(&mut self, slot: u32) -> Result<squeue::Entry, InvalidRequest> {
        let (fixed_file, raw) = (self.fixed_file, self.file.as_raw_fd());
        let Some(request) = self.slots[slot as usize].as_ref() else {
            unreachable!("entry() is called on a filled slot");
        };
        let (kind, offset) = (request.kind, request.offset);
        let len = request.len.min(MAX_RW_BYTES) as u32;
        let fixed = request
            .buf
            .as_ref()
            .and_then(|buf| self.fixed_index(buf, len as usize));
        let ptr = self.slots[slot as usize]
            .as_mut()
            .and_then(|r| r.buf.as_mut())
            .map(|buf| buf.as_mut_ptr());
        let entry = match (kind, ptr, fixed) {
            (IoKind::Flush, _, _) => on_device!(fixed_file, raw, |fd| {
                opcode::Fsync::new(fd).flags(FsyncFlags::DATASYNC).build()
            }),
            (IoKind::Read, Some(ptr), Some(index)) => on_device!(fixed_file, raw, |fd| {
                opcode::ReadFixed::new(fd, ptr, len, index)
                    .offset(offset)
                    .build()
            }),
            (IoKind::Read, Some(ptr), None) => on_device!(fixed_file, raw, |fd| {
                opcode::Read::new(fd, ptr, len).offset(offset).build()
            }),
            (IoKind::Write, Some(ptr), Some(index)) => on_device!(fixed_file, raw, |fd| {
                opcode::WriteFixed::new(fd, ptr, len, index)
                    .offset(offset)
                    .build()
            }),
            (IoKind::Write, Some(ptr), None) => on_device!(fixed_file, raw, |fd| {
                opcode::Write::new(fd, ptr, len).offset(offset).build()
            }),
            // RWF_DSYNC on an O_DIRECT write becomes a FUA write (or write + flush) in the kernel.
            (IoKind::WriteFua, Some(ptr), Some(index)) => on_device!(fixed_file, raw, |fd| {
                opcode::WriteFixed::new(fd, ptr, len, index)
                    .offset(offset)
                    .rw_flags(libc::RWF_DSYNC)
                    .build()
            }),
            (IoKind::WriteFua, Some(ptr), None) => on_device!(fixed_file, raw, |fd| {
                opcode::Write::new(fd, ptr, len)
                    .offset(offset)
                    .rw_flags(libc::RWF_DSYNC)
                    .build()
            }),
            (IoKind::Read | IoKind::Write | IoKind::WriteFua, None, _) => {
                return Err(InvalidRequest::MissingBuffer)
            }
        };
        Ok(entry.user_data(u64::from(slot)))
    }

    /// Hands queued SQEs to the kernel. With SQPOLL this enters the kernel only to wake a
    /// sleeping submission thread (the io-uring crate checks `IORING_SQ_NEED_WAKEUP`).
    fn submit_pending(&mut self) {
        if let Err(error) = self.ring.submit() {
            if !is_transient(&error) {
                tracing::warn!(name = self.info.name, %error, "io_uring_enter failed");
            }
        }
        self.count_unsubmitted();
    }

    /// Updates what is left in the SQ after an `io_uring_enter`.
    fn count_unsubmitted(&mut self) {
        self.queued = self.ring.submission().len() as u32;
    }

    /// Enters the kernel without waiting so it posts completions it holds back until this
    /// thread asks (COOP_TASKRUN): what a polling core does instead of sleeping.
    fn run_task_work(&mut self) {
        // SAFETY: no SQEs are submitted (to_submit 0) and no argument is passed.
        let result = unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(0, 0, ENTER_GETEVENTS, None)
        };
        if let Err(error) = result {
            if !is_transient(&error) {
                tracing::warn!(name = self.info.name, %error, "io_uring_enter failed");
            }
        }
    }

    /// Waits by sleeping in short steps, for kernels without `IORING_FEAT_EXT_ARG` (before 5.11).
    fn wait_by_polling(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.queued > 0 {
                self.submit_pending();
            }
            let now = Instant::now();
            if !self.ring.completion().is_empty() || now >= deadline {
                return;
            }
            std::thread::sleep((deadline - now).min(Duration::from_micros(200)));
        }
    }
}

/// Frees the slot named by `cqe` and turns it into a [`Completion`].
fn complete(
    slots: &mut [Option<InFlight>],
    free: &mut Vec<u32>,
    name: &str,
    cqe: &cqueue::Entry,
) -> Option<Completion> {
    let slot = usize::try_from(cqe.user_data())
        .ok()
        .filter(|&slot| slot < slots.len());
    let Some(request) = slot.and_then(|slot| slots[slot].take()) else {
        tracing::error!(
            name,
            user_data = cqe.user_data(),
            "CQE for no request in flight"
        );
        return None;
    };
    free.push(cqe.user_data() as u32);
    let res = cqe.result();
    let result = if res < 0 {
        Err(IoError::Os(-res))
    } else if request.kind != IoKind::Flush && (res as usize) < request.len {
        Err(IoError::Short {
            done: res as usize,
            asked: request.len,
        })
    } else {
        Ok(())
    };
    Some(Completion {
        token: request.token,
        kind: request.kind,
        offset: request.offset,
        len: request.len,
        buf: request.buf,
        result,
    })
}

/// Errors of `io_uring_enter` that only mean "not now": a timeout, a signal, or the kernel
/// asking us to reap before it takes more.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

impl Queue for UringQueue {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&mut self, request: IoRequest, token: u64) -> Result<(), Rejected> {
        if let Err(invalid) = request.validate(&self.info) {
            return Err(Rejected {
                request,
                reason: RejectReason::Invalid(invalid),
            });
        }
        let Some(slot) = self.free.pop() else {
            return Err(Rejected {
                request,
                reason: RejectReason::QueueFull,
            });
        };
        let IoRequest {
            kind,
            offset,
            len,
            buf,
        } = request;
        // The buffer goes into its slot before the SQE exists: an SQPOLL thread may start the
        // I/O as soon as it is pushed.
        self.slots[slot as usize] = Some(InFlight {
            token,
            kind,
            offset,
            len,
            buf,
        });
        let pushed = match self.entry(slot) {
            // SAFETY: the SQE points at the buffer owned by slot `slot` (its heap memory does not
            // move with the DmaBuf) and names the device's descriptor, kept open by `self.file`
            // and the registered-file table. The slot keeps the buffer until the CQE carrying
            // this `user_data` is reaped, or leaks it if the queue is dropped before that
            // (see `Drop`), so the memory stays valid for as long as the kernel may use it.
            Ok(entry) => unsafe { self.ring.submission().push(&entry) }.map_err(|_| None),
            Err(invalid) => Err(Some(invalid)),
        };
        if let Err(invalid) = pushed {
            let request = self.slots[slot as usize].take().expect("slot filled above");
            self.free.push(slot);
            let reason = invalid.map_or(RejectReason::QueueFull, RejectReason::Invalid);
            let request = IoRequest {
                kind: request.kind,
                offset: request.offset,
                len: request.len,
                buf: request.buf,
            };
            return Err(Rejected { request, reason });
        }
        self.queued += 1;
        if self.queued >= self.submit_batch {
            self.submit_pending();
        }
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completion>) -> usize {
        if self.queued > 0 {
            self.submit_pending();
        } else if self.inflight() > 0
            && !self.is_sqpoll()
            && self.ring.completion().is_empty()
            && self.ring.submission().taskrun()
        {
            self.run_task_work();
        }
        let before = out.len();
        let Self {
            ring,
            slots,
            free,
            info,
            ..
        } = self;
        for cqe in ring.completion() {
            out.extend(complete(slots, free, &info.name, &cqe));
        }
        out.len() - before
    }

    fn submit_queued(&mut self) {
        if self.queued > 0 {
            self.submit_pending();
        }
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), IoError> {
        if self.inflight() == 0 {
            return Ok(());
        }
        if !self.ring.completion().is_empty() {
            if self.queued > 0 {
                self.submit_pending();
            }
            return Ok(());
        }
        let result = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(timeout) if timeout.is_zero() => self.ring.submit(),
            Some(timeout) if self.ring.params().is_feature_ext_arg() => {
                // The kernel takes a signed seconds count.
                let ts = Timespec::from(timeout.min(LONGEST_WAIT));
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            Some(timeout) => {
                self.wait_by_polling(timeout);
                Ok(0)
            }
        };
        self.count_unsubmitted();
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_transient(&error) => Ok(()),
            Err(error) => Err(IoError::Os(error.raw_os_error().unwrap_or(libc::EIO))),
        }
    }

    fn inflight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The ring itself: an io_uring descriptor polls readable when its CQ has entries.
    fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.ring.as_raw_fd())
    }

    fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Registers the pool's buffers, replacing any registered before. Only with nothing in
    /// flight: queued SQEs name buffers by index. The pool must stay alive while registered:
    /// a buffer of a later pool that happens to get the same address and index would be taken
    /// for a registered one while the kernel still holds the old pages.
    fn register(&mut self, pool: &BufPool) -> Result<(), DeviceError> {
        let name = &self.info.name;
        let setup = |what, source| DeviceError::Setup {
            path: name.clone(),
            what,
            source,
        };
        if self.inflight() > 0 {
            let source = io::Error::from_raw_os_error(libc::EBUSY);
            return Err(setup("register buffers with requests in flight", source));
        }
        if !self.registered.is_empty() {
            self.registered.clear();
            self.ring
                .submitter()
                .unregister_buffers()
                .map_err(|e| setup("unregister", e))?;
        }
        if pool.regions().is_empty() {
            return Ok(());
        }
        let iovecs: Vec<libc::iovec> = pool
            .regions()
            .iter()
            .map(|&(address, len)| libc::iovec {
                iov_base: address as *mut libc::c_void,
                iov_len: len,
            })
            .collect();
        // SAFETY: every iovec describes a live allocation owned by the pool. The kernel pins
        // those pages until the buffers are unregistered or the ring is closed, so it never
        // touches memory reused by someone else, even if the pool is dropped first; and fixed
        // operations are issued only for a buffer whose address and index match a region.
        match unsafe { self.ring.submitter().register_buffers(&iovecs) } {
            Ok(()) => {
                self.registered = pool.regions().to_vec();
                Ok(())
            }
            Err(source) => {
                tracing::debug!(name, %source, "buffer registration failed; using normal I/O");
                Err(setup("register_buffers", source))
            }
        }
    }
}

impl Drop for UringQueue {
    /// Waits for every request in flight: the kernel may still write into their buffers. After
    /// 10 s the remaining buffers are leaked, never freed.
    fn drop(&mut self) {
        let deadline = Instant::now() + DRAIN_LIMIT;
        let mut done = Vec::new();
        while self.inflight() > 0 {
            self.reap(&mut done);
            done.clear();
            let now = Instant::now();
            if self.inflight() == 0 || now >= deadline {
                break;
            }
            let step = (deadline - now).min(Duration::from_millis(100));
            if self.wait(Some(step)).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if self.inflight() > 0 {
            tracing::error!(
                name = self.info.name,
                inflight = self.inflight(),
                "io_uring requests still in flight after {DRAIN_LIMIT:?}; leaking their buffers"
            );
            for request in self.slots.iter_mut().filter_map(Option::take) {
                std::mem::forget(request.buf);
            }
        }
    }
}
