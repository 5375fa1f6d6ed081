//! Timers of one core: `sleep(d).await` in a task; the reactor fires due timers each turn and
//! bounds how long it blocks by the next deadline.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    wakers: std::collections::HashMap<u64, Waker>,
    next_id: u64,
}

impl Timers {
    /// Wakes every timer due at `now`; returns how many fired.
    pub fn fire(&mut self, now: Instant) -> usize {
        let mut fired = 0;
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if let Some(waker) = self.wakers.remove(&id) {
                waker.wake();
                fired += 1;
            }
        }
        fired
    }

    /// The earliest deadline still pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }
}

/// Completes at `deadline`.
pub fn sleep_until(timers: Rc<RefCell<Timers>>, deadline: Instant) -> Sleep {
    Sleep {
        timers,
        deadline,
        id: None,
    }
}

pub struct Sleep {
    timers: Rc<RefCell<Timers>>,
    deadline: Instant,
    id: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let mut timers = self.timers.borrow_mut();
        let id = match self.id {
            Some(id) => id,
            None => {
                timers.next_id += 1;
                let id = timers.next_id;
                timers.heap.push(Reverse((deadline, id)));
                id
            }
        };
        timers.wakers.insert(id, cx.waker().clone());
        drop(timers);
        self.id = Some(id);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            // The heap entry stays until it falls due; without a waker it fires nothing.
            self.timers.borrow_mut().wakers.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::executor::Executor;
    use std::cell::Cell;
    use std::time::Duration;

    #[test]
    fn sleepers_wake_in_deadline_order() {
        let timers = Rc::new(RefCell::new(Timers::default()));
        let executor = Executor::new();
        let order = Rc::new(RefCell::new(Vec::new()));
        let start = Instant::now();
        for (name, ms) in [("b", 20u64), ("a", 10)] {
            let (t, o) = (timers.clone(), order.clone());
            executor.spawn(async move {
                sleep_until(t, start + Duration::from_millis(ms)).await;
                o.borrow_mut().push(name);
            });
        }
        executor.run_ready();
        assert_eq!(
            timers.borrow().next_deadline(),
            Some(start + Duration::from_millis(10))
        );
        let fired = Cell::new(0);
        while order.borrow().len() < 2 {
            fired.set(fired.get() + timers.borrow_mut().fire(Instant::now()));
            executor.run_ready();
        }
        assert_eq!(*order.borrow(), vec!["a", "b"]);
        assert_eq!(fired.get(), 2);
    }
}
