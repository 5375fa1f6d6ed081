//! Every bound of the transport layer, named in one place. The relations between them are checked
//! at compile time; a [`crate::TransportConfig`] may lower or raise the configurable ones within
//! the `*_LIMIT` values here.

use std::time::Duration;

/// Connections one transport (one core) holds at once unless configured: its table size.
pub const CONNECTIONS_MAX_DEFAULT: u32 = 1024;

/// Most connections one transport can be configured for: an operation's `user_data` has 24 bits
/// for the connection index.
pub const CONNECTIONS_MAX_LIMIT: u32 = 1 << 24;

/// Bytes of one receive buffer unless configured. With one buffer per connection this bounds the
/// receive memory of a core to `connections_max * recv_buffer_bytes`.
pub const RECV_BUFFER_BYTES_DEFAULT: usize = 256 * 1024;

/// Largest receive buffer: one receive moves at most this many bytes (a `u32` in the SQE, and
/// Linux moves less than 2 GiB per call anyway).
pub const RECV_BUFFER_BYTES_LIMIT: usize = 1 << 30;

/// Bytes a connection may have queued for sending (handed to `send` and not yet reported as
/// `Sent`) unless configured. A send beyond it fails with `SendQueueFull`.
pub const SEND_QUEUE_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;

/// Most bytes one send operation hands the kernel; a longer buffer goes out in several.
/// Linux's `MAX_RW_COUNT` (with 4 KiB pages) is the most one call moves.
pub const SEND_BYTES_PER_OP_MAX: usize = 0x7fff_f000;

/// Queued send buffers one send operation gathers (`sendmsg` with an iovec each): replies to
/// pipelined requests leave in one system call and one TCP push instead of one each.
pub const SEND_BUFFERS_PER_OP_MAX: usize = 64;

/// Length of a listening socket's accept queue unless configured (the kernel caps it at
/// `net.core.somaxconn`).
pub const LISTEN_BACKLOG_DEFAULT: u32 = 1024;

/// Listening sockets per transport.
pub const LISTENERS_MAX: usize = 16;

/// Descriptors one transport watches for readability.
pub const WATCHES_MAX: usize = 64;

/// Operations one connection can have in flight at once: a receive, a send, a connect, and one
/// cancellation for each of them while it closes.
pub const OPS_PER_CONNECTION_MAX: u32 = 6;

/// Entries of the submission queue. Operations that do not fit wait in a backlog until the next
/// submission, so this bounds only how many go to the kernel in one system call.
pub const SUBMISSION_ENTRIES: u32 = 256;

/// Most completion-queue entries the kernel allows (`IORING_MAX_CQ_ENTRIES`). Past the ring's
/// size, completions wait in the kernel's overflow list (`IORING_FEAT_NODROP`), never lost.
pub const COMPLETION_ENTRIES_LIMIT: u32 = 1 << 16;

/// Completions handled per batch while reaping; they are copied out of the ring so that handling
/// one may queue new submissions.
pub const REAP_BATCH: usize = 64;

/// How long a listener rests after accepting failed for lack of resources (descriptors, memory)
/// before it accepts again, so that a full descriptor table does not turn into a busy loop.
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// How long dropping a transport waits for the kernel to give back every buffer before it leaks
/// the remaining ones instead of freeing memory the kernel may still write.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Step of the sleeping wait used where the kernel lacks `IORING_FEAT_EXT_ARG` (before 5.11).
pub const WAIT_POLL_STEP: Duration = Duration::from_micros(200);

const _: () = assert!(CONNECTIONS_MAX_DEFAULT <= CONNECTIONS_MAX_LIMIT);
const _: () = assert!(CONNECTIONS_MAX_LIMIT <= 1 << 24);
const _: () = assert!(RECV_BUFFER_BYTES_DEFAULT <= RECV_BUFFER_BYTES_LIMIT);
const _: () = assert!(RECV_BUFFER_BYTES_LIMIT <= u32::MAX as usize);
const _: () = assert!(SEND_BYTES_PER_OP_MAX <= u32::MAX as usize);
const _: () = assert!(SUBMISSION_ENTRIES.is_power_of_two());
const _: () = assert!(SUBMISSION_ENTRIES <= COMPLETION_ENTRIES_LIMIT);
const _: () = assert!(LISTENERS_MAX < 1 << 24);
const _: () = assert!(WATCHES_MAX < 1 << 24);
