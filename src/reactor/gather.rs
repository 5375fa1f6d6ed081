//! Results of several tasks of one core, taken in the order they finish: the coordinator of a
//! stripe sends shard requests to several nodes and acts on each answer (and on its hedge
//! timer) as it comes, without a select over a changing set of futures.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Shared<T> {
    ready: VecDeque<T>,
    waker: Option<Waker>,
}

/// The receiving end; clone `sender()` into each task.
pub struct Gather<T> {
    shared: Rc<RefCell<Shared<T>>>,
}

/// A task's end: `push` hands over a result.
pub struct Sender<T> {
    shared: Rc<RefCell<Shared<T>>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Default for Gather<T> {
    fn default() -> Self {
        Self {
            shared: Rc::new(RefCell::new(Shared {
                ready: VecDeque::new(),
                waker: None,
            })),
        }
    }
}

impl<T> Gather<T> {
    pub fn sender(&self) -> Sender<T> {
        Sender {
            shared: self.shared.clone(),
        }
    }

    /// The next result, waiting until one is pushed. Waits forever if no sender will push:
    /// the caller counts what it expects.
    pub fn next(&self) -> Next<'_, T> {
        Next { gather: self }
    }
}

impl<T> Sender<T> {
    pub fn push(&self, value: T) {
        let mut shared = self.shared.borrow_mut();
        shared.ready.push_back(value);
        if let Some(waker) = shared.waker.take() {
            waker.wake();
        }
    }
}

pub struct Next<'a, T> {
    gather: &'a Gather<T>,
}

impl<T> Future for Next<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut shared = self.gather.shared.borrow_mut();
        match shared.ready.pop_front() {
            Some(value) => Poll::Ready(value),
            None => {
                shared.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::executor::Executor;
    use std::cell::Cell;

    #[test]
    fn results_come_in_the_order_they_are_pushed() {
        let executor = Executor::new();
        let gather = Rc::new(Gather::default());
        let seen = Rc::new(Cell::new(0u32));
        let (g, s) = (gather.clone(), seen.clone());
        executor.spawn(async move {
            let a = g.next().await;
            let b = g.next().await;
            s.set(a * 10 + b);
        });
        executor.run_ready();
        assert_eq!(seen.get(), 0);
        let sender = gather.sender();
        sender.push(4u32);
        sender.clone().push(2);
        executor.run_ready();
        assert_eq!(seen.get(), 42);
    }
}
