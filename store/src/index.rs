//! The in-memory index: a multimap from a shard key's 64-bit fingerprint to the packed locations
//! of its records, small enough to keep every record of a large device in memory.
//!
//! What it does: [`Index`] keeps every (fingerprint, value) entry, fingerprint collisions
//! included, and [`Index::candidates`] returns the values of every entry with a given
//! fingerprint. All 64 fingerprint bits are kept, so the only candidates that are not the
//! caller's key are true fingerprint collisions between shard keys (about n / 2^64 per lookup);
//! the caller still checks each candidate against the record header on disk. [`Index::iter`]
//! gives back the exact fingerprints, so an index rebuilt from it answers the same.
//!
//! What it does not: it knows nothing of keys, locations or devices, does no I/O and no locking
//! (one core owns it), and persists nothing itself (checkpoints save `iter`, start-up re-inserts).
//!
//! Design, for at most 16 heap bytes per entry with O(1) expected lookups and O(1) amortized
//! updates:
//! - The base holds every entry as of the last merge, sorted by fingerprint, in parallel arrays:
//!   the value as a `u64`, and the fingerprint without its top `d` bits, bit-packed in `64 - d`
//!   bits. A directory of `2^d + 1` `u32` offsets gives each bucket's start, so the top `d` bits
//!   are implied by the position. `d` is chosen at each merge for 8 to 16 entries per bucket:
//!   a lookup is one directory read and a short scan. At 10M entries `d = 20`, so an entry costs
//!   8 + 5.5 bytes, plus 0.4 for the directory. Removing a base entry sets a bit in a dead-mark
//!   bitmap (allocated only while some entry is dead); replacing a value writes it in place.
//! - The delta holds the inserts since the last merge in an open-addressing table kept in
//!   fingerprint order (see `delta.rs`), sized once per merge for 1/16 of the base at 80% load:
//!   about 1.3 bytes per base entry.
//! - A merge runs when the delta plus twice the dead marks reach 1/16 of the base (at least
//!   [`DELTA_ENTRIES_MIN`]). It works in place: the delta sorts itself in its own table, the base
//!   arrays grow with `reserve_exact` (a `realloc`, which moves a large block by remapping pages
//!   rather than copying), a front-to-back pass squeezes out dead entries, and a back-to-front
//!   pass merges the delta in. While `d` stays, the entries between two dead or two inserted ones
//!   move as one run (`memmove` for values, word-wise bit copies for remainders) and the
//!   directory is adjusted in place; when `d` changes (the index doubled or halved), the passes
//!   re-encode entry by entry (narrowing front to back, widening back to front) and build a new
//!   directory. So a merge needs little more memory than its result. A merge is O(n) and comes
//!   every n/16 updates, hence O(1) amortized, but it is one pause: about 40 ms at 10M entries.
//!
//! Memory, measured as the worst over every insert of a growing index: at most 16 bytes per
//! entry from about 100K entries up (15.2 at 10M); a smaller index pays for the delta's
//! minimum size and wider remainders. The dead marks weigh double towards a merge so that
//! removals alone stay under 16 too (15.9 at 10M).
//!
//! Why not a `u32` of fingerprint bits below the bucket bits (12 bytes per entry, `d + 32` bits
//! kept): `d` grows with the index, and each growth would turn the lowest kept bit of every base
//! entry into an unknown one, which could then be neither compared nor given back by `iter`.
//! Keeping a fixed set of bits (all of them) in a field that narrows as `d` grows costs 1.5 bytes
//! more per entry at 10M entries and never loses a bit.
//!
//! Why not one hash table of 12- or 16-byte slots: with room to grow it costs 20 to 40 bytes per
//! entry, and growing it needs the old and the new table at once.

mod base;
mod delta;
mod packed;
#[cfg(test)]
mod tests;

use base::Base;
use delta::{Delta, Entry};

/// Most entries the base can hold: the directory's offsets are `u32`.
pub const BASE_ENTRIES_MAX: usize = u32::MAX as usize;
/// Most directory bits; [`BASE_ENTRIES_MAX`] needs 28 at [`BUCKET_ENTRIES_MIN`] per bucket.
pub const DIRECTORY_BITS_MAX: u32 = 32;
/// Least average bucket size chosen at a merge; the most is twice it.
pub const BUCKET_ENTRIES_MIN: usize = 8;
/// The delta and the dead marks may reach the base's live entries divided by this before a
/// merge: a larger divisor means less delta memory and more frequent merges.
pub const DELTA_BASE_DIVISOR: usize = 16;
/// Merge threshold for a small base, so that a small index does not merge on every insert.
pub const DELTA_ENTRIES_MIN: usize = 4096;
/// Highest load of the delta table.
pub const DELTA_LOAD_PERCENT_MAX: usize = 80;
/// A dead mark counts as this many delta entries towards a merge.
const DEAD_WEIGHT: usize = 2;

const _: () = assert!(
    usize::BITS == 64,
    "bit offsets into the packed base need 64 bits"
);
const _: () = assert!((BASE_ENTRIES_MAX / BUCKET_ENTRIES_MIN).ilog2() <= DIRECTORY_BITS_MAX);
const _: () = assert!(DELTA_LOAD_PERCENT_MAX > 0 && DELTA_LOAD_PERCENT_MAX < 100);

/// Multimap from 64-bit fingerprint to 64-bit value; see the module documentation.
pub struct Index {
    base: Base,
    delta: Delta,
    /// Delta entries plus dead marks that trigger the next merge.
    merge_at: usize,
    delta_entries_min: usize,
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

impl Index {
    pub fn new() -> Self {
        Self::with_delta_entries_min(DELTA_ENTRIES_MIN)
    }

    /// Reserves the base for `entries`, so merges up to that size do not reallocate it.
    pub fn with_capacity(entries: usize) -> Self {
        let mut index = Self::new();
        index.base.reserve(entries);
        index
    }

    /// Tests use a tiny minimum to merge often.
    fn with_delta_entries_min(delta_entries_min: usize) -> Self {
        assert!(delta_entries_min > 0);
        Self {
            base: Base::new(),
            delta: Delta::empty(),
            merge_at: delta_entries_min,
            delta_entries_min,
        }
    }

    /// Adds an entry. The (fp, value) pair must not be present (debug_assert).
    pub fn insert(&mut self, fp: u64, value: u64) {
        debug_assert!(
            !self.contains(fp, value),
            "({fp:#x}, {value:#x}) already in the index"
        );
        if self.delta.room() == 0 {
            self.delta = Delta::with_room(self.merge_at);
        }
        self.delta.insert(Entry { fp, value });
        self.merge_if_due();
    }

    /// Adds many entries at once, straight into the base with one merge. Start-up loads a
    /// checkpoint this way: its entries come sorted by fingerprint, and sorted inserts one by one
    /// would all land in one corner of the delta and pile up there.
    pub fn insert_many(&mut self, entries: &[(u64, u64)]) {
        let mut sorted: Vec<Entry> = entries
            .iter()
            .map(|&(fp, value)| Entry { fp, value })
            .collect();
        sorted.sort_unstable();
        let delta = std::mem::replace(&mut self.delta, Delta::empty()).into_sorted();
        self.base.merge(&delta);
        self.base.merge(&sorted);
        self.merge_at = (self.base.live() / DELTA_BASE_DIVISOR).max(self.delta_entries_min);
        self.delta = Delta::with_room_in(delta, self.merge_at);
    }

    /// Removes the entry with this fp and value; false when absent.
    pub fn remove(&mut self, fp: u64, value: u64) -> bool {
        self.delta.prefetch(fp); // as in `candidates`
        if let Some(index) = self.base.find(fp, value) {
            self.base.kill(index);
            self.merge_if_due();
            return true;
        }
        match self.delta.find(fp, value) {
            Some(slot) => {
                self.delta.remove_at(slot);
                true
            }
            None => false,
        }
    }

    /// Changes the value of the entry (fp, old) to new; false when absent.
    pub fn replace(&mut self, fp: u64, old: u64, new: u64) -> bool {
        debug_assert!(
            old == new || !self.contains(fp, new),
            "({fp:#x}, {new:#x}) already in the index"
        );
        self.delta.prefetch(fp); // as in `candidates`
        if let Some(index) = self.base.find(fp, old) {
            self.base.set_value(index, new);
            return true;
        }
        match self.delta.find(fp, old) {
            Some(slot) => {
                self.delta.set_value(slot, new);
                true
            }
            None => false,
        }
    }

    /// Appends to `out` the value of every entry whose fingerprint is `fp`, in no particular
    /// order. All fingerprint bits are kept: there are no false positives beyond entries whose
    /// fingerprint is exactly `fp`.
    pub fn candidates(&self, fp: u64, out: &mut Vec<u64>) {
        // The delta's probe and the base's (directory, then remainders, then values) each wait
        // on memory: start the delta's first so that the two overlap.
        self.delta.prefetch(fp);
        self.base.candidates(fp, out);
        self.delta.candidates(fp, out);
    }

    pub fn contains(&self, fp: u64, value: u64) -> bool {
        self.base.find(fp, value).is_some() || self.delta.find(fp, value).is_some()
    }

    pub fn len(&self) -> usize {
        self.base.live() + self.delta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held (capacity, not length), for the memory target.
    pub fn heap_bytes(&self) -> usize {
        self.base.heap_bytes() + self.delta.heap_bytes()
    }

    /// Every entry as (fingerprint, value): the base's in fingerprint order, then the delta's.
    /// The fingerprints are exact, so re-inserting these gives an index that answers the same.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.base
            .iter()
            .chain(self.delta.iter().map(|entry| (entry.fp, entry.value)))
    }

    /// A dead entry weighs double: it holds base memory and counts for nothing in `len`, so
    /// this bounds the bytes per live entry just before a merge.
    fn merge_due(&self) -> bool {
        self.delta.len() + DEAD_WEIGHT * self.base.dead_count() >= self.merge_at
    }

    fn merge_if_due(&mut self) {
        if self.merge_due() {
            self.merge();
        }
    }

    /// Folds the delta and the dead marks into the base; see the module documentation.
    pub fn merge(&mut self) {
        let delta = std::mem::replace(&mut self.delta, Delta::empty()).into_sorted();
        self.base.merge(&delta);
        self.merge_at = (self.base.live() / DELTA_BASE_DIVISOR).max(self.delta_entries_min);
        // Sized now, not at the next insert, so heap_bytes shows the steady state.
        self.delta = Delta::with_room_in(delta, self.merge_at);
    }

    /// O(n). Panics on a broken invariant.
    pub fn check(&self) {
        self.base.check();
        self.delta.check();
        assert!(!self.merge_due());
        assert_eq!(self.iter().count(), self.len());
    }
}
