//! Per-key async locks of one core (a stripe under read-modify-write, an object's metadata).
//! Waiters are granted the lock in arrival order; the guard releases it on drop.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Waiter {
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// Locks by key; the front of each queue holds the lock.
pub struct LockTable<K> {
    queues: HashMap<K, VecDeque<Rc<Waiter>>>,
}

impl<K> Default for LockTable<K> {
    fn default() -> Self {
        Self {
            queues: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Copy> LockTable<K> {
    pub fn is_locked(&self, key: &K) -> bool {
        self.queues.contains_key(key)
    }

    pub fn held(&self) -> usize {
        self.queues.len()
    }

    fn release(&mut self, key: K) {
        let Some(queue) = self.queues.get_mut(&key) else {
            return;
        };
        queue.pop_front();
        match queue.front() {
            Some(next) => {
                next.granted.set(true);
                if let Some(waker) = next.waker.borrow_mut().take() {
                    waker.wake();
                }
            }
            None => {
                self.queues.remove(&key);
            }
        }
    }
}

/// Waits until `key` is free and takes it.
pub async fn lock<K: Hash + Eq + Copy>(table: &Rc<RefCell<LockTable<K>>>, key: K) -> Guard<K> {
    let waiter = Rc::new(Waiter::default());
    {
        let mut t = table.borrow_mut();
        let queue = t.queues.entry(key).or_default();
        waiter.granted.set(queue.is_empty());
        queue.push_back(waiter.clone());
    }
    // Made before waiting, so a task dropped while queued leaves the queue.
    let guard = Guard {
        table: table.clone(),
        key,
        waiter,
    };
    Granted(&guard.waiter).await;
    guard
}

struct Granted<'a>(&'a Rc<Waiter>);

impl Future for Granted<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.granted.get() {
            return Poll::Ready(());
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Holds a key's lock; dropping it (also when the waiting task is dropped) passes it on.
pub struct Guard<K: Hash + Eq + Copy> {
    table: Rc<RefCell<LockTable<K>>>,
    key: K,
    waiter: Rc<Waiter>,
}

impl<K: Hash + Eq + Copy> Drop for Guard<K> {
    fn drop(&mut self) {
        let mut table = self.table.borrow_mut();
        if self.waiter.granted.get() {
            table.release(self.key);
        } else if let Some(queue) = table.queues.get_mut(&self.key) {
            queue.retain(|w| !Rc::ptr_eq(w, &self.waiter));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::executor::Executor;

    #[test]
    fn holders_follow_in_arrival_order() {
        let table = Rc::new(RefCell::new(LockTable::<u32>::default()));
        let executor = Executor::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let gate = Rc::new(Cell::new(false));
        for name in 0..3 {
            let (t, l, g) = (table.clone(), log.clone(), gate.clone());
            executor.spawn(async move {
                let _guard = lock(&t, 9).await;
                l.borrow_mut().push(name);
                if name == 0 {
                    // Hold the lock until the gate opens.
                    std::future::poll_fn(|cx| {
                        if g.get() {
                            Poll::Ready(())
                        } else {
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                    })
                    .await;
                }
            });
        }
        executor.run_ready();
        assert_eq!(*log.borrow(), vec![0]);
        assert!(table.borrow().is_locked(&9));
        gate.set(true);
        for _ in 0..10 {
            executor.run_ready();
        }
        assert_eq!(*log.borrow(), vec![0, 1, 2]);
        assert!(!table.borrow().is_locked(&9));
    }
}
