//! The io_uring instance of one transport: setup with fallbacks for older kernels, a backlog for
//! submissions that do not fit the submission queue, and the ways of entering the kernel.
//!
//! It knows nothing about connections; what an entry points at is the caller's business, which is
//! why [`Ring::push`] is `unsafe`.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, EnterFlags, IoUring, Probe};

use crate::limits::{COMPLETION_ENTRIES_LIMIT, SUBMISSION_ENTRIES, WAIT_POLL_STEP};
use crate::NetError;

/// Longest timeout handed to the kernel; a longer wait ends early, which callers tolerate.
const LONGEST_WAIT: Duration = Duration::from_secs(u32::MAX as u64);

/// Operations the backend cannot work without, with the kernel that brought them.
const REQUIRED_OPS: [(u8, &str); 6] = [
    (opcode::Recv::CODE, "IORING_OP_RECV (Linux 5.6)"),
    (opcode::SendMsg::CODE, "IORING_OP_SENDMSG (Linux 5.3)"),
    (opcode::Accept::CODE, "IORING_OP_ACCEPT (Linux 5.5)"),
    (opcode::Connect::CODE, "IORING_OP_CONNECT (Linux 5.5)"),
    (
        opcode::AsyncCancel::CODE,
        "IORING_OP_ASYNC_CANCEL (Linux 5.5)",
    ),
    (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD (Linux 5.1)"),
];

/// Kernel features the backend uses where the kernel has them. All are on outside tests; the
/// tests turn them off to run the fallbacks older kernels get.
#[derive(Clone, Copy, Debug)]
pub(super) struct Features {
    /// `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG` (5.19).
    pub coop_taskrun: bool,
    /// Timed waits through `IORING_ENTER_EXT_ARG` (5.11).
    pub ext_arg: bool,
    /// Multishot accept (5.19) and multishot poll (5.13).
    pub multishot: bool,
}

impl Features {
    pub const ALL: Features = Features {
        coop_taskrun: true,
        ext_arg: true,
        multishot: true,
    };
}

pub(super) struct Ring {
    ring: IoUring,
    /// Entries pushed while the submission queue was full, oldest first. They go to the kernel
    /// in order, before any later entry, so a cancellation never overtakes its target. Bounded
    /// by the operations in flight, each of which has at most one entry waiting.
    backlog: VecDeque<squeue::Entry>,
    /// Set up with `COOP_TASKRUN | TASKRUN_FLAG`.
    coop_taskrun: bool,
    /// Timed waits pass the timeout to the kernel (`IORING_FEAT_EXT_ARG`).
    ext_arg: bool,
    /// Calls of `io_uring_enter` by [`Ring::enter`].
    entries: u64,
}

impl Ring {
    /// A ring whose completion queue holds `completion_entries` (rounded up, and at least twice
    /// the submission queue).
    pub fn new(completion_entries: u32, features: Features) -> Result<Self, NetError> {
        let completion_entries = completion_entries
            .clamp(2 * SUBMISSION_ENTRIES, COMPLETION_ENTRIES_LIMIT)
            .next_power_of_two();
        let build = |coop_taskrun: bool| {
            let mut builder = IoUring::builder();
            builder.setup_cqsize(completion_entries);
            if coop_taskrun {
                // The owning core reaps the ring itself, so completions need not interrupt it;
                // the flag tells it when the kernel holds completions back.
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            builder.build(SUBMISSION_ENTRIES)
        };
        let setup_error = |source| NetError::Setup {
            what: "io_uring_setup",
            source,
        };
        let (ring, coop_taskrun) = match build(features.coop_taskrun) {
            Ok(ring) => (ring, features.coop_taskrun),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(%error, "no IORING_SETUP_COOP_TASKRUN (Linux 5.19); plain ring");
                (build(false).map_err(setup_error)?, false)
            }
            Err(error) => return Err(setup_error(error)),
        };
        let mut probe = Probe::new();
        // Probing needs Linux 5.6; before it, a missing operation shows in its first completion.
        if ring.submitter().register_probe(&mut probe).is_ok() {
            for (code, what) in REQUIRED_OPS {
                if !probe.is_supported(code) {
                    return Err(NetError::Unsupported { what });
                }
            }
        }
        let ext_arg = features.ext_arg && ring.params().is_feature_ext_arg();
        if !ext_arg {
            tracing::debug!("no IORING_FEAT_EXT_ARG (Linux 5.11); timed waits sleep in steps");
        }
        Ok(Self {
            ring,
            backlog: VecDeque::new(),
            coop_taskrun,
            ext_arg,
            entries: 0,
        })
    }

    /// Non-blocking `io_uring_enter` calls so far ([`Ring::enter`]).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Whether the ring runs with `COOP_TASKRUN`, where completions are posted only when this
    /// thread enters the kernel.
    pub fn is_coop_taskrun(&self) -> bool {
        self.coop_taskrun
    }

    /// Queues `entry` for the next submission.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must stay valid, and the memory it names must be neither freed
    /// nor touched by anyone but the kernel, until the completion carrying the entry's
    /// `user_data` has been taken from the ring (for a multishot operation: its last completion),
    /// or for good if the ring is dropped before that.
    pub unsafe fn push(&mut self, entry: squeue::Entry) {
        if self.backlog.is_empty() {
            // SAFETY: forwarded from this function's contract.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
        }
        self.backlog.push_back(entry);
    }

    /// Moves backlogged entries into the submission queue while it has room.
    fn flush_backlog(&mut self) {
        let Self { ring, backlog, .. } = self;
        let mut submission = ring.submission();
        while let Some(entry) = backlog.front() {
            // SAFETY: the entry was given to `push`, whose caller vouched for its pointers.
            if unsafe { submission.push(entry) }.is_err() {
                break;
            }
            backlog.pop_front();
        }
    }

    /// Whether entries wait to be submitted.
    pub fn has_submissions(&mut self) -> bool {
        !self.backlog.is_empty() || !self.ring.submission().is_empty()
    }

    /// Whether the kernel may hold completions back until this thread enters it: with
    /// `COOP_TASKRUN` only when it says so (`IORING_SQ_TASKRUN`, or `IORING_SQ_CQ_OVERFLOW` for
    /// completions that did not fit the ring); without, always assumed.
    pub fn holds_completions(&mut self) -> bool {
        let submission = self.ring.submission();
        !self.coop_taskrun || submission.taskrun() || submission.cq_overflow()
    }

    pub fn cq_is_empty(&mut self) -> bool {
        self.ring.completion().is_empty()
    }

    pub fn cq_capacity(&mut self) -> usize {
        self.ring.completion().capacity()
    }

    pub fn completion(&mut self) -> cqueue::CompletionQueue<'_> {
        self.ring.completion()
    }

    /// Submits what is queued and lets the kernel post the completions it holds back (with
    /// `COOP_TASKRUN` those are posted only while this thread is in the kernel), without waiting.
    pub fn enter(&mut self) {
        // Each round submits a full submission queue; the backlog empties in a bounded number.
        let rounds = self.backlog.len() / SUBMISSION_ENTRIES as usize + 1;
        for _ in 0..rounds {
            self.flush_backlog();
            let to_submit = self.ring.submission().len() as u32;
            self.entries += 1;
            // SAFETY: no argument is passed; the entries being submitted were vouched for by the
            // callers of `push`.
            let result = unsafe {
                self.ring.submitter().enter::<libc::sigset_t>(
                    to_submit,
                    0,
                    EnterFlags::GETEVENTS.bits(),
                    None,
                )
            };
            if let Err(error) = result {
                if !is_transient(&error) {
                    tracing::warn!(%error, "io_uring_enter failed");
                }
                return;
            }
            if self.backlog.is_empty() {
                return;
            }
        }
    }

    /// Submits what is queued and blocks until a completion is in the ring or `timeout` passed.
    /// Interruptions (signals) end the wait early without an error.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.flush_backlog();
        if !self.backlog.is_empty() {
            // The submission queue is full: submit it first so the wait does not miss what
            // completes the backlogged operations.
            self.enter();
            if !self.cq_is_empty() {
                return Ok(());
            }
        }
        let result = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(timeout) if timeout.is_zero() => {
                self.enter();
                Ok(0)
            }
            Some(timeout) if self.ext_arg => {
                let timespec = Timespec::from(timeout.min(LONGEST_WAIT));
                let args = SubmitArgs::new().timespec(&timespec);
                self.ring.submitter().submit_with_args(1, &args)
            }
            Some(timeout) => {
                self.wait_by_polling(timeout);
                Ok(0)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_transient(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Waits by sleeping in short steps, for kernels without `IORING_FEAT_EXT_ARG`.
    fn wait_by_polling(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.enter();
            let now = Instant::now();
            if !self.cq_is_empty() || now >= deadline {
                return;
            }
            std::thread::sleep((deadline - now).min(WAIT_POLL_STEP));
        }
    }
}

/// Errors of `io_uring_enter` that only mean "not now": a timeout, a signal, or the kernel asking
/// us to reap before it takes more.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}
