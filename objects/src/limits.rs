//! Every bound of the object core in one place, units last (TigerBeetle's habit). Relations
//! between the limits are checked at compile time below.

/// Most shards (K + M) one stripe may have. The reed-solomon-simd codec allows far more; 64 keeps
/// a shard set in one `u64` and is more nodes than a responsible set will ever name.
pub const SHARDS_MAX: usize = 64;
/// Fewest data shards (K) of a scheme.
pub const DATA_SHARDS_MIN: usize = 1;
/// Shard sizes are multiples of this. reed-solomon-simd codes 64-byte blocks; sizes that are
/// multiples of 64 take its fast path and stay compatible across its versions.
pub const SHARD_ALIGN_BYTES: u32 = 64;
/// Smallest full shard of an object. Keeps the stripe count of the largest object inside a u32.
pub const SHARD_BYTES_MIN: u32 = 512;
/// Largest full shard of an object: with a 64-byte shard header in front it fits the shard
/// store's 8 MiB record with room to spare.
pub const SHARD_BYTES_MAX: u32 = 4 << 20;
/// Object bytes per stripe that `StripeLayout::for_scheme` aims at (rounded up to whole shards).
pub const STRIPE_BYTES_TARGET: u32 = 1 << 20;
/// Largest object (the object service's limit; writes past it are refused).
pub const OBJECT_BYTES_MAX: u64 = 1 << 40;
/// Stripe index the node reserves for an object's metadata record; no data stripe uses it.
pub const STRIPE_RESERVED: u32 = u32::MAX;
/// Bytes of an encoded shard header (`shard_meta`).
pub const SHARD_META_BYTES: usize = 64;
/// How far ahead of the local wall clock a remote version may be before it is refused: a peer
/// with a clock that far off would otherwise drag every version it touches into the future.
pub const CLOCK_DRIFT_NS_MAX: u64 = 10 * 1_000_000_000;

const _: () = assert!(SHARDS_MAX <= u64::BITS as usize);
const _: () = assert!(SHARDS_MAX <= u8::MAX as usize);
const _: () = assert!(SHARD_BYTES_MIN.is_multiple_of(SHARD_ALIGN_BYTES));
const _: () = assert!(SHARD_BYTES_MAX.is_multiple_of(SHARD_ALIGN_BYTES));
const _: () = assert!(SHARD_BYTES_MIN <= SHARD_BYTES_MAX);
// The widest stripe fits a u32 (the metadata record stores stripe bytes as u32).
const _: () = assert!((SHARDS_MAX as u64) * (SHARD_BYTES_MAX as u64) <= u32::MAX as u64);
// Every stripe of the largest object, at the narrowest stripe, has an index below the reserved one.
const _: () = assert!(OBJECT_BYTES_MAX / (SHARD_BYTES_MIN as u64) < STRIPE_RESERVED as u64);
// A shard with its header in front fits one shard store record (8 MiB of data).
const _: () = assert!(SHARD_BYTES_MAX as usize + SHARD_META_BYTES <= 8 << 20);
