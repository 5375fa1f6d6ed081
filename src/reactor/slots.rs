//! Completion slots: a task parks on a slot, and a poller fills it when the operation the slot
//! stands for completes (a store request, a reply from another core). The slot id travels as
//! the operation's token, so no pointer ever crosses into the kernel or another core.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

enum Slot<T> {
    Free,
    Waiting(Option<Waker>),
    Done(T),
}

/// A table of pending operations yielding `T`.
pub struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slots<T> {
    /// Reserves a slot; its id is the token to hand to the operation.
    pub fn open(&mut self) -> usize {
        match self.free.pop() {
            Some(id) => {
                self.slots[id] = Slot::Waiting(None);
                id
            }
            None => {
                self.slots.push(Slot::Waiting(None));
                self.slots.len() - 1
            }
        }
    }

    /// Fills slot `id` and wakes its task. A completion for no open slot is dropped and
    /// reported: it would mean a token was reused while in flight.
    pub fn complete(&mut self, id: usize, value: T) -> bool {
        match self.slots.get_mut(id) {
            Some(slot @ Slot::Waiting(_)) => {
                let Slot::Waiting(waker) = std::mem::replace(slot, Slot::Done(value)) else {
                    unreachable!()
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
                true
            }
            _ => {
                tracing::error!(id, "completion for a slot that is not waiting");
                false
            }
        }
    }

    fn poll_slot(&mut self, id: usize, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.slots[id] {
            Slot::Waiting(waker) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            slot @ Slot::Done(_) => {
                let Slot::Done(value) = std::mem::replace(slot, Slot::Free) else {
                    unreachable!()
                };
                self.free.push(id);
                Poll::Ready(value)
            }
            Slot::Free => panic!("slot {id} polled after it completed"),
        }
    }

    /// Gives back a slot whose operation never started (nothing will complete it).
    pub fn cancel(&mut self, id: usize) {
        if matches!(self.slots.get(id), Some(Slot::Waiting(None))) {
            self.slots[id] = Slot::Free;
            self.free.push(id);
        }
    }

    /// Operations opened and not yet collected.
    pub fn pending(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// Waits for slot `id` of `slots`.
pub fn wait<T>(slots: Rc<RefCell<Slots<T>>>, id: usize) -> SlotFuture<T> {
    SlotFuture { slots, id }
}

pub struct SlotFuture<T> {
    slots: Rc<RefCell<Slots<T>>>,
    id: usize,
}

impl<T> Future for SlotFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let id = self.id;
        self.slots.borrow_mut().poll_slot(id, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::executor::Executor;
    use std::cell::Cell;

    #[test]
    fn a_task_waits_until_its_slot_completes() {
        let slots = Rc::new(RefCell::new(Slots::<u32>::default()));
        let id = slots.borrow_mut().open();
        let got = Rc::new(Cell::new(0));
        let executor = Executor::new();
        let (s, g) = (slots.clone(), got.clone());
        executor.spawn(async move { g.set(wait(s, id).await) });
        executor.run_ready();
        assert_eq!(got.get(), 0);
        assert!(slots.borrow_mut().complete(id, 7));
        assert_eq!(executor.run_ready(), 1);
        assert_eq!(got.get(), 7);
        assert_eq!(slots.borrow().pending(), 0);
        assert!(
            !slots.borrow_mut().complete(id, 8),
            "a collected slot takes nothing"
        );
    }
}
