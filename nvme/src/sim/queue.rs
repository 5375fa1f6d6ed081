//! The simulator's [`Queue`]: a handle on its in-flight table, which lives in the shared state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lock;
use super::state::State;
use crate::{Completion, DeviceInfo, IoError, IoRequest, Queue, RejectReason, Rejected};

pub(super) struct SimQueue {
    info: DeviceInfo,
    id: u64,
    depth: usize,
    state: Arc<Mutex<State>>,
}

impl SimQueue {
    pub(super) fn new(info: DeviceInfo, depth: usize, state: Arc<Mutex<State>>) -> Self {
        let id = lock(&state).open_queue(depth);
        Self {
            info,
            id,
            depth,
            state,
        }
    }
}

impl Queue for SimQueue {
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
        lock(&self.state)
            .submit(self.id, request, token)
            .map_err(|request| Rejected {
                request,
                reason: RejectReason::QueueFull,
            })
    }

    fn reap(&mut self, out: &mut Vec<Completion>) -> usize {
        lock(&self.state).reap(self.id, out)
    }

    /// Never blocks: the simulated device has no time; every reap makes progress.
    fn wait(&mut self, _timeout: Option<Duration>) -> Result<(), IoError> {
        Ok(())
    }

    fn inflight(&self) -> usize {
        lock(&self.state).inflight(self.id)
    }

    fn depth(&self) -> usize {
        self.depth
    }
}

impl Drop for SimQueue {
    fn drop(&mut self) {
        lock(&self.state).close_queue(self.id);
    }
}
