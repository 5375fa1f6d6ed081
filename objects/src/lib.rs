//! The object service's core for the cluster (issue 5), sans-IO: what the coordinator of a
//! request decides, none of the doing. No sockets, threads or clocks: time is passed in, bytes
//! live in the caller's buffers, and every state machine is driven by its caller.
//!
//! | module | what |
//! |---|---|
//! | [`scheme`] | K+M per object, limits, `"4+2"` parsing |
//! | [`stripe`] | object bytes → stripes → data shards; stored sizes; read-modify-write plans |
//! | [`codec`] | reed-solomon-simd over one stripe, reusable state per layout |
//! | [`hlc`] | hybrid logical clock: versions as u64 that only go up |
//! | [`shard_meta`] | the 64-byte header every shard carries (byte layout in its docs) |
//! | [`quorum`] | write quorum tracking, read planning with hedging |
//! | [`shard_set`], [`limits`] | a 64-bit shard set; every bound in one place |
//!
//! # The write path (PUT object, offset, bytes), as the coordinator drives it
//!
//! 1. Load the object's metadata: its [`StripeLayout`] and size `S`. Split the range with
//!    `layout.ranges(offset, len)` (a range past `OBJECT_BYTES_MAX` is refused here).
//! 2. For every [`stripe::StripeRange`] (several in flight, bounded by the node):
//!    1. `plan = layout.write_plan(&range, S)`. If `plan.is_whole()` nothing old is needed;
//!       else read the old stripe first (the read path, steps 2 and 3) and observe its version
//!       in the clock.
//!    2. `plan.assemble(old, data, buf)` builds the new stripe content (`plan.stripe_len`
//!       bytes: old bytes kept, the write's bytes, zeros past the old end).
//!    3. `version = hlc.now(wall_ns)`; `codec.encode(buf, parity)` gives the M parity shards.
//!    4. Shard `i` goes to the `i`-th target of the responsible set: a [`ShardMeta`] (object,
//!       stripe, `i`, layout, version, `object_bytes = max(S, end of write)`) in front of
//!       `layout.data_shard(buf, i)` or parity shard `i − K`.
//!    5. A [`WriteTracker`] per stripe takes each target's outcome. A stale refusal is
//!       `Superseded` (and its stored version goes through `hlc.observe_bounded`).
//! 3. Every stripe `Acked`: grow the metadata's size if the write ends past `S`, then reply.
//!    Any stripe `Failed`: reply with the error; nothing was acknowledged.
//!
//! # The read path (GET object, offset, len)
//!
//! 1. Load the metadata; refuse a range past the size; split it with `layout.ranges`.
//! 2. Per stripe, a [`ReadPlan`]: send a shard request for every `poll_request`, arm a timer
//!    at `poll_timeout` and call `handle_timeout` when it fires (the hedge). Each answer goes
//!    to `handle_reply`: `Found(version)` only after the shard's header decoded, names this
//!    object, stripe, shard and layout, and the data length equals `meta.stored_bytes()`;
//!    `Absent` when the target holds nothing; `Failed` for errors, corrupt or mismatched
//!    shards, and request timeouts.
//! 3. On `Ready(choice)`: `codec.decode` the chosen shards (one version; the stripe's length
//!    comes from their headers) into the stripe's first `stripe_len` bytes; later bytes are
//!    zeros. Count `degraded` and unconfirmed reads; `plan.lagging()` names targets to repair;
//!    cancel `plan.pending()`. On `Hole`: zeros. On `Failed`: the error, never bytes.
//! 4. Copy each range's bytes (`start..end` of the stripe) into the reply.
//!
//! A per-core [`EcCodec`] per layout in use and one [`Hlc`] per core are the only state kept
//! between requests.
//!
//! # Consistency, and its limits
//!
//! - Last writer wins per stripe: every shard of a stripe write carries one version, each target
//!   keeps its highest, reads decode one version only and prefer the newest that can reach K.
//! - With W = K + ⌈M/2⌉ and K > ⌊M/2⌋, a read of K shards sees every acknowledged write
//!   (`quorum` module docs); otherwise the plan asks for more answers and says whether it
//!   could confirm.
//! - Two coordinators doing read-modify-write on one stripe at once can lose the bytes of the
//!   lower version (each rebuilt the stripe from the same old one). Whole-stripe writes are not
//!   affected.
//! - A write that fails after reaching fewer than W targets leaves its shards there. They are
//!   ignored while they cannot reach K, but they can split a stripe so that no version has K
//!   shards (4+2: three and three); the coordinator should rewrite the stripe while it still
//!   holds the bytes.
//! - Decoding costs a fixed ~0.2 ms per stripe in reed-solomon-simd (its error locator is
//!   computed over the whole field), on top of the per-byte work; the copy path has none.
//!
//! What it does not do: placement (the overlay), transport, the metadata record (the node's
//! `service::meta`), repair scheduling (issue 6).

pub mod codec;
pub mod hlc;
pub mod limits;
pub mod quorum;
pub mod scheme;
pub mod shard_meta;
pub mod shard_set;
pub mod stripe;

pub use codec::{CodecError, EcCodec};
pub use hlc::{ClockError, Hlc, Version};
pub use quorum::{
    QuorumError, ReadChoice, ReadError, ReadPlan, ReadState, ShardOutcome, ShardReply, WriteError,
    WriteQuorum, WriteState, WriteTracker,
};
pub use scheme::{ParseSchemeError, Scheme, SchemeError};
pub use shard_meta::{ShardMeta, ShardMetaError};
pub use shard_set::ShardSet;
pub use stripe::{LayoutError, RangeError, StripeLayout, StripeRange, WritePlan};
