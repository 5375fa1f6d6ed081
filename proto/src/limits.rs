//! Every bound of protocol v1, in one place, units last. `docs/protocol.md` repeats them.

/// The protocol version this crate speaks; the only one a v1 decoder accepts.
pub const PROTOCOL_VERSION: u16 = 1;
/// Size of the fixed frame header.
pub const HEADER_BYTES: usize = 72;
/// Object bytes in one PUT request frame or one GET reply frame (1 MiB).
pub const DATA_CHUNK_BYTES: usize = 1 << 20;
/// Largest payload of one frame: a data chunk and 4 KiB beside it (room for a 1 MiB shard and
/// its 64-byte shard header in a peer SHARD_WRITE). A header announcing more is refused from
/// the header alone, before any payload byte is read or any buffer allocated for it.
pub const MAX_PAYLOAD: usize = DATA_CHUNK_BYTES + 4096;
/// The most a `FrameDecoder` ever holds: one header and one payload.
pub const DECODER_BUFFER_BYTES_MAX: usize = HEADER_BYTES + MAX_PAYLOAD;
/// K + M of an erasure-coding scheme (shards per stripe).
pub const SCHEME_SHARDS_MAX: usize = 64;
/// PUT requests the client keeps in flight on one connection.
pub const PUT_WINDOW: usize = 8;
/// Largest STAT reply document the client accepts (it may span several frames).
pub const STAT_REPLY_BYTES_MAX: usize = 16 << 20;
/// The client's socket read buffer.
pub const CLIENT_READ_BUFFER_BYTES: usize = 64 << 10;

// The payload length travels as a u32.
const _: () = assert!(MAX_PAYLOAD <= u32::MAX as usize);
// The header is a whole number of u64 words, so every field after it stays 8-aligned.
const _: () = assert!(HEADER_BYTES.is_multiple_of(8));
const _: () = assert!(DECODER_BUFFER_BYTES_MAX == HEADER_BYTES + MAX_PAYLOAD);
// A scheme's K and M each fit the u8 they travel in.
const _: () = assert!(SCHEME_SHARDS_MAX <= u8::MAX as usize);
const _: () = assert!(PUT_WINDOW >= 1);
const _: () = assert!(STAT_REPLY_BYTES_MAX >= MAX_PAYLOAD);

/// How long the client waits for one socket read or write before giving up on the node
/// (`Client::set_io_timeout` changes it).
pub const CLIENT_IO_TIMEOUT_SECS: u64 = 30;
