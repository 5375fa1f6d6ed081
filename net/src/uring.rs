//! The io_uring backend: kernel TCP sockets driven through one io_uring instance per transport.
//!
//! What it does:
//! - listens with `SO_REUSEPORT` and accepts with one multishot accept per listener (5.19),
//!   falling back to a single accept re-armed after each connection;
//! - connects with `IORING_OP_CONNECT`; sets `TCP_NODELAY` on every connection;
//! - keeps one receive in flight per connection into the connection's own buffer, re-armed only
//!   when the caller recycles the buffer; one send in flight per connection, continued after a
//!   short write, the rest of its send queue waiting behind it;
//! - closes a connection by cancelling its operations (`IORING_OP_ASYNC_CANCEL`) and freeing it
//!   only after the kernel posted the last completion that names it;
//! - watches descriptors with a multishot poll (5.13), falling back to a single poll re-armed
//!   after each wake-up;
//! - runs the ring with `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG` (5.19) when the
//!   kernel accepts it, and waits with a timeout through `IORING_ENTER_EXT_ARG` (5.11), sleeping
//!   in short steps on older kernels.
//!
//! Every operation's `user_data` encodes its kind, the index of its connection (listener,
//! watch) and the connection's generation; never a pointer (module `op`).
//!
//! What it does not do: registered files or buffers, provided-buffer rings, zero-copy sends,
//! SQPOLL, or sharing a ring between cores. It needs at least Linux 5.6 (`IORING_OP_RECV`,
//! `IORING_OP_SEND`).

mod conn;
mod op;
mod ring;
mod socket;
mod transport;

pub use transport::UringTransport;

#[cfg(test)]
mod fallback_tests;
