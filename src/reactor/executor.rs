//! A single-threaded task executor for one core: request code is written as `async fn`s, and
//! the reactor runs whatever got woken between its pollers.
//!
//! Tasks never leave their core. Wakers may in principle be called from anywhere, so the run
//! queue is a lock-free queue; in practice every wake happens on the core itself, from a
//! poller handing a completion to the task waiting for it.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;

use async_task::{Runnable, Task};
use crossbeam_queue::SegQueue;

/// Most tasks run in one turn of the loop, so pollers are never starved by a storm of wakes.
pub const RUNS_PER_TURN_MAX: usize = 256;

#[derive(Default)]
pub struct Executor {
    queue: Arc<SegQueue<Runnable>>,
    spawned: Cell<u64>,
}

impl Executor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `future` on this core. The task runs to completion even if the handle is dropped.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.spawn_task(future).detach();
    }

    /// Starts `future` and returns a handle whose await yields its output.
    pub fn spawn_task<F>(&self, future: F) -> Task<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let queue = self.queue.clone();
        let schedule = move |runnable| queue.push(runnable);
        let (runnable, task) = async_task::spawn_local(future, schedule);
        self.spawned.set(self.spawned.get() + 1);
        runnable.schedule();
        task
    }

    /// Runs woken tasks, at most [`RUNS_PER_TURN_MAX`]; returns how many ran.
    pub fn run_ready(&self) -> usize {
        let mut ran = 0;
        while ran < RUNS_PER_TURN_MAX {
            let Some(runnable) = self.queue.pop() else {
                break;
            };
            runnable.run();
            ran += 1;
        }
        ran
    }

    /// Tasks woken and not yet run.
    pub fn ready(&self) -> usize {
        self.queue.len()
    }

    pub fn spawned(&self) -> u64 {
        self.spawned.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn tasks_run_and_yield_values() {
        let executor = Executor::new();
        let hits = Rc::new(Cell::new(0));
        let h = hits.clone();
        executor.spawn(async move { h.set(h.get() + 1) });
        let task = executor.spawn_task(async { 41 + 1 });
        assert_eq!(executor.run_ready(), 2);
        assert_eq!(hits.get(), 1);
        assert!(task.is_finished());
    }
}
