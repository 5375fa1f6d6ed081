//! The per-core reactor's parts: a task executor, completion slots, timers, per-key locks,
//! inter-core inboxes, CPU pinning and poll modes. The loop that drives them for a node is in
//! `node::core_loop`; these parts know nothing about objects or sockets.

pub mod executor;
pub mod gather;
pub mod lock;
pub mod mailbox;
pub mod slots;
pub mod timer;

use std::time::{Duration, Instant};

/// What a core does when a turn of its loop found no work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollMode {
    /// Never block: lowest latency, a whole CPU per core (SPDK's way).
    Busy,
    /// Spin for a while after the last work, then block until something completes.
    Adaptive,
    /// Block as soon as there is no work.
    Sleep,
}

impl PollMode {
    /// Whether a core idle since `idle_since` should block now.
    pub fn should_block(self, idle_since: Instant, spin: Duration) -> bool {
        match self {
            PollMode::Busy => false,
            PollMode::Sleep => true,
            PollMode::Adaptive => idle_since.elapsed() >= spin,
        }
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data, zeroed is an empty set; CPU_SET writes inside it (the
    // index is checked against its size first), and sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// CPUs this process may run on.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
