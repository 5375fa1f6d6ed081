//! Every bound of the overlay in one place. Units are last in the names; relations between the
//! limits are checked at compile time below.

/// Largest bucket size `k` a config may ask for (a NODES reply carries at most this many).
pub const BUCKET_SIZE_MAX: usize = 32;
/// Largest lookup parallelism `alpha`.
pub const ALPHA_MAX: usize = 8;
/// Nodes in one NODES message; also the widest lookup.
pub const NODES_PER_MESSAGE_MAX: usize = 32;
/// Largest `n` of `responsible_set` and `start_lookup`.
pub const RESPONSIBLE_SET_MAX: usize = 32;
/// Largest neighbourhood a config may ask for.
pub const NEIGHBOURHOOD_SIZE_MAX: usize = 64;
/// Widest lookup: the self-lookup of the largest neighbourhood (the node counts itself).
pub const LOOKUP_WIDTH_MAX: usize = NEIGHBOURHOOD_SIZE_MAX + 1;
/// Candidates one lookup remembers (the closest are kept).
pub const LOOKUP_CANDIDATES_MAX: usize = 128;
/// FIND_NODE requests one lookup may send in all; bounds a lookup fed endless fake nodes.
pub const LOOKUP_REQUESTS_MAX: usize = 160;
/// Lookups running at once; more wait in a queue.
pub const LOOKUPS_ACTIVE_MAX: usize = 64;
/// Lookups waiting for a slot; past that a lookup ends at once, unanswered.
pub const LOOKUPS_QUEUED_MAX: usize = 1024;
/// Pings (of every purpose) in flight at once.
pub const PINGS_INFLIGHT_MAX: usize = 512;
/// Seed addresses a bootstrap contacts.
pub const SEEDS_MAX: usize = 64;
/// Requests in flight at once: every lookup's alpha, every ping and every seed fit.
pub const REQUESTS_INFLIGHT_MAX: usize =
    LOOKUPS_ACTIVE_MAX * ALPHA_MAX + PINGS_INFLIGHT_MAX + SEEDS_MAX;
/// Routing table entries (128 buckets of at most `BUCKET_SIZE_MAX`).
pub const ROUTING_ENTRIES_MAX: usize = 128 * BUCKET_SIZE_MAX;
/// Messages waiting for `poll_transmit`; a LEAVE to every known node fits.
pub const TRANSMIT_QUEUE_MAX: usize = ROUTING_ENTRIES_MAX + NEIGHBOURHOOD_SIZE_MAX + 1024;
/// Events waiting for `poll_event`.
pub const EVENT_QUEUE_MAX: usize = 8192;
/// Nodes remembered as recently removed (not re-learned from NODES lists meanwhile).
pub const REMOVED_MEMORY_MAX: usize = 4096;
/// Keys in the responsible-set cache.
pub const RESPONSIBLE_CACHE_MAX: usize = 4096;
/// Senders whose replay window is kept; past that the least recently heard are forgotten.
pub const REPLAY_PEERS_MAX: usize = 8192;
/// Sequence numbers behind the highest one seen that are still accepted once (bitmap width).
pub const REPLAY_WINDOW: u64 = 64;
/// Bucket refresh lookups started by one tick (spreads a join's refreshes over ticks).
pub const REFRESHES_PER_TICK_MAX: usize = 4;
/// Largest datagram, encoded: fits the IPv6 minimum MTU (1280) less IPv6 and UDP headers.
pub const MESSAGE_BYTES_MAX: usize = 1232;
/// Hop counts the histogram tells apart; longer lookups land in the last bucket.
pub const HOPS_MAX: usize = 32;

const _: () = assert!(BUCKET_SIZE_MAX <= NODES_PER_MESSAGE_MAX);
const _: () = assert!(RESPONSIBLE_SET_MAX <= NODES_PER_MESSAGE_MAX);
const _: () = assert!(NODES_PER_MESSAGE_MAX < LOOKUP_CANDIDATES_MAX);
const _: () = assert!(LOOKUP_WIDTH_MAX < LOOKUP_CANDIDATES_MAX);
const _: () = assert!(BUCKET_SIZE_MAX <= LOOKUP_WIDTH_MAX);
const _: () = assert!(NODES_PER_MESSAGE_MAX <= u8::MAX as usize);
const _: () = assert!(REPLAY_WINDOW <= 64);
const _: () = assert!(ROUTING_ENTRIES_MAX + NEIGHBOURHOOD_SIZE_MAX < TRANSMIT_QUEUE_MAX);
const _: () = assert!(LOOKUPS_ACTIVE_MAX + LOOKUPS_QUEUED_MAX <= RESPONSIBLE_CACHE_MAX);
