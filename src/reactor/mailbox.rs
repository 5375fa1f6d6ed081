//! Bounded message rings between cores. Each core has one inbox that every other core may push
//! to; a core about to block raises its `sleeping` flag, and a sender that sees it writes the
//! core's eventfd, which the core's transport watches, so a sleeping core wakes at once and a
//! busy one is never interrupted by a syscall.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

/// Messages one inbox holds; a full inbox makes the sender retry later (backpressure).
pub const INBOX_MESSAGES_MAX: usize = 4096;

pub struct Inbox<M> {
    queue: ArrayQueue<M>,
    sleeping: AtomicBool,
    wake_fd: OwnedFd,
    /// Pushes refused because the inbox was full.
    pub full: AtomicU64,
}

impl<M> Inbox<M> {
    pub fn new() -> std::io::Result<Arc<Self>> {
        // SAFETY: eventfd takes no pointers; a non-negative return is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Arc::new(Self {
            queue: ArrayQueue::new(INBOX_MESSAGES_MAX),
            sleeping: AtomicBool::new(false),
            // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
            wake_fd: unsafe { OwnedFd::from_raw_fd(fd) },
            full: AtomicU64::new(0),
        }))
    }

    /// Delivers `message`, or hands it back when the inbox is full.
    pub fn push(&self, message: M) -> Result<(), M> {
        if let Err(message) = self.queue.push(message) {
            self.full.fetch_add(1, Ordering::Relaxed);
            return Err(message);
        }
        // Pairs with the SeqCst store in `prepare_sleep`: either the owner sees the message
        // in its final check, or we see it sleeping and wake it.
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
        Ok(())
    }

    pub fn pop(&self) -> Option<M> {
        self.queue.pop()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The descriptor that becomes readable when another core wakes this one.
    pub fn wake_fd(&self) -> RawFd {
        self.wake_fd.as_raw_fd()
    }

    /// Wakes the owner from a block (also used to stop it).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. A full counter (EAGAIN) means
        // a wake is already pending, which is all we need.
        unsafe { libc::write(self.wake_fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Called by the owner before blocking; returns false if messages arrived meanwhile, in
    /// which case it must not block.
    pub fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        if !self.queue.is_empty() {
            self.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Called by the owner after waking: lowers the flag and clears the eventfd.
    pub fn woke(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd; EAGAIN (no
        // pending wake) is fine.
        unsafe { libc::read(self.wake_fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleeping_owner_is_woken_through_its_eventfd() {
        let inbox = Inbox::<u32>::new().unwrap();
        assert!(inbox.prepare_sleep());
        inbox.push(5).unwrap();
        let mut pfd = libc::pollfd {
            fd: inbox.wake_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 1000) };
        assert_eq!(ready, 1);
        inbox.woke();
        assert_eq!(inbox.pop(), Some(5));
        assert!(!inbox.prepare_sleep() || inbox.is_empty());
    }

    #[test]
    fn a_full_inbox_hands_the_message_back() {
        let inbox = Inbox::<usize>::new().unwrap();
        for i in 0..INBOX_MESSAGES_MAX {
            inbox.push(i).unwrap();
        }
        assert_eq!(inbox.push(7), Err(7));
        assert_eq!(inbox.full.load(Ordering::Relaxed), 1);
    }
}
