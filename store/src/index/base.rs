//! The base: every entry as of the last merge, sorted by fingerprint, bucketed by its top bits.
//!
//! Entry `i` is `values[i]` and field `i` of `rems`: the fingerprint without its top `bits` bits,
//! packed in `64 - bits` bits. Bucket `b` (the entries whose top `bits` bits are `b`) is
//! `dir[b]..dir[b + 1]`, so those top bits are implied by the position and not stored.

use super::delta::Entry;
use super::packed::{self, words_for};
use super::{BASE_ENTRIES_MAX, BUCKET_ENTRIES_MIN, DIRECTORY_BITS_MAX};

pub(super) struct Base {
    /// Directory bits: fingerprint bits implied by the bucket.
    bits: u32,
    /// `2^bits + 1` bucket starts; the last is the number of entries.
    dir: Vec<u32>,
    /// Packed remainders, `64 - bits` bits each.
    rems: Vec<u64>,
    values: Vec<u64>,
    /// One bit per entry marks a removed one; empty while none is.
    dead: Vec<u64>,
    dead_count: usize,
    /// Entries the caller reserved room for: merges do not shrink the arrays below it.
    reserved: usize,
}

/// Directory bits for `entries`: the most that leave at least [`BUCKET_ENTRIES_MIN`] entries per
/// bucket on average, so a bucket holds 8 to 16 of them and the directory costs 0.25 to 0.5
/// bytes per entry.
pub(super) fn bits_for(entries: usize) -> u32 {
    (entries / BUCKET_ENTRIES_MIN)
        .max(1)
        .ilog2()
        .min(DIRECTORY_BITS_MAX)
}

fn width(bits: u32) -> u32 {
    64 - bits
}

fn bucket_of(fp: u64, bits: u32) -> usize {
    // checked_shr: with no directory bits the shift would be by 64.
    fp.checked_shr(width(bits)).unwrap_or(0) as usize
}

fn join(bucket: usize, rem: u64, bits: u32) -> u64 {
    (bucket as u64).checked_shl(width(bits)).unwrap_or(0) | rem
}

impl Base {
    pub fn new() -> Self {
        Self {
            bits: 0,
            dir: vec![0; 2],
            rems: Vec::new(),
            values: Vec::new(),
            dead: Vec::new(),
            dead_count: 0,
            reserved: 0,
        }
    }

    pub fn reserve(&mut self, entries: usize) {
        assert!(entries <= BASE_ENTRIES_MAX);
        self.reserved = entries;
        self.values
            .reserve_exact(entries.saturating_sub(self.values.len()));
        let words = words_for(entries, width(bits_for(entries)));
        self.rems
            .reserve_exact(words.saturating_sub(self.rems.len()));
    }

    pub fn live(&self) -> usize {
        self.values.len() - self.dead_count
    }

    pub fn dead_count(&self) -> usize {
        self.dead_count
    }

    pub fn heap_bytes(&self) -> usize {
        self.dir.capacity() * size_of::<u32>()
            + (self.rems.capacity() + self.values.capacity() + self.dead.capacity())
                * size_of::<u64>()
    }

    #[inline]
    fn is_dead(&self, index: usize) -> bool {
        self.dead_count > 0 && self.dead[index / 64] & (1 << (index % 64)) != 0
    }

    /// Calls `found` with the index of every live entry whose fingerprint is `fp`; stops early
    /// when it returns true.
    #[inline]
    fn probe(&self, fp: u64, mut found: impl FnMut(usize) -> bool) {
        let bucket = bucket_of(fp, self.bits);
        let width = width(self.bits);
        let rem = fp & packed::mask(width);
        let (start, end) = (self.dir[bucket] as usize, self.dir[bucket + 1] as usize);
        for index in start..end {
            let here = packed::get(&self.rems, width, index);
            if here == rem {
                if !self.is_dead(index) && found(index) {
                    return;
                }
            } else if here > rem {
                return; // sorted within the bucket
            }
        }
    }

    pub fn candidates(&self, fp: u64, out: &mut Vec<u64>) {
        self.probe(fp, |index| {
            out.push(self.values[index]);
            false
        });
    }

    pub fn find(&self, fp: u64, value: u64) -> Option<usize> {
        let mut at = None;
        self.probe(fp, |index| {
            if self.values[index] == value {
                at = Some(index);
            }
            at.is_some()
        });
        at
    }

    pub fn set_value(&mut self, index: usize, value: u64) {
        assert!(!self.is_dead(index));
        self.values[index] = value;
    }

    pub fn kill(&mut self, index: usize) {
        assert!(!self.is_dead(index));
        if self.dead.is_empty() {
            let words = self.values.len().div_ceil(64);
            self.dead.reserve_exact(words);
            self.dead.resize(words, 0);
        }
        self.dead[index / 64] |= 1 << (index % 64);
        self.dead_count += 1;
    }

    /// Live entries as (fingerprint, value), in fingerprint order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut bucket = 0;
        (0..self.values.len()).filter_map(move |index| {
            while self.dir[bucket + 1] as usize <= index {
                bucket += 1;
            }
            if self.is_dead(index) {
                return None;
            }
            let rem = packed::get(&self.rems, width(self.bits), index);
            Some((join(bucket, rem, self.bits), self.values[index]))
        })
    }

    /// Folds `delta` (sorted by fingerprint) in and drops the dead entries, in place: the arrays
    /// grow by the entries added, and only a directory of a new size is a second buffer.
    pub fn merge(&mut self, delta: &[Entry]) {
        debug_assert!(delta.windows(2).all(|pair| pair[0].fp <= pair[1].fp));
        let total = self.live() + delta.len();
        assert!(
            total <= BASE_ENTRIES_MAX,
            "index over {BASE_ENTRIES_MAX} entries"
        );
        let bits = bits_for(total);
        // A narrower field fits front to back and a wider one back to front: first squeeze out
        // the dead and narrow if needed, then merge and widen if needed.
        let front_bits = bits.max(self.bits);
        if self.dead_count > 0 || front_bits != self.bits {
            self.compact(front_bits);
        }
        if !delta.is_empty() || bits != self.bits {
            self.merge_back(delta, bits);
        }
        self.trim();
        #[cfg(debug_assertions)]
        self.check();
    }

    /// Front to back: drops dead entries and re-encodes for `bits >= self.bits` directory bits.
    fn compact(&mut self, bits: u32) {
        assert!(bits >= self.bits);
        if bits == self.bits {
            self.compact_moving_runs();
            return;
        }
        let (from, to) = (width(self.bits), width(bits));
        let mut dir = new_dir(bits);
        let mut bucket = 0;
        let mut kept = 0;
        for index in 0..self.values.len() {
            while self.dir[bucket + 1] as usize <= index {
                bucket += 1;
            }
            if self.is_dead(index) {
                continue;
            }
            let fp = join(bucket, packed::get(&self.rems, from, index), self.bits);
            // kept <= index and to <= from: the write ends before field index + 1 starts.
            packed::set(&mut self.rems, to, kept, fp & packed::mask(to));
            self.values[kept] = self.values[index];
            dir[bucket_of(fp, bits) + 1] += 1;
            kept += 1;
        }
        self.values.truncate(kept);
        self.rems.truncate(words_for(kept, to));
        self.dead = Vec::new();
        self.dead_count = 0;
        self.bits = bits;
        self.dir = prefix_sums(dir);
    }

    /// Back to front: merges `delta` in and re-encodes for `bits <= self.bits` directory bits.
    fn merge_back(&mut self, delta: &[Entry], bits: u32) {
        assert!(bits <= self.bits);
        assert_eq!(self.dead_count, 0);
        let (from, to) = (width(self.bits), width(bits));
        let old = self.values.len();
        let total = old + delta.len();
        self.values.reserve_exact(delta.len());
        self.values.resize(total, 0);
        let words = self.rems.len().max(words_for(total, to));
        self.rems.reserve_exact(words - self.rems.len());
        self.rems.resize(words, 0);
        if bits == self.bits {
            self.merge_back_moving_runs(delta, old);
            return;
        }
        let mut dir = new_dir(bits);

        // Reads old entry `index` (counting down) as a full fingerprint.
        let mut bucket = self.dir.len() - 2;
        let mut old_fp = |rems: &[u64], index: usize| {
            while self.dir[bucket] as usize > index {
                bucket -= 1;
            }
            join(bucket, packed::get(rems, from, index), self.bits)
        };
        let mut unread = old; // old entries still to place
        let mut next_old = (unread > 0).then(|| old_fp(&self.rems, unread - 1));
        let mut pending = delta.len(); // delta entries still to place
        for at in (0..total).rev() {
            // at = unread + pending - 1 >= unread - 1, and to >= from: this write starts after
            // every unread old field ends.
            let take_old = match next_old {
                Some(fp) => pending == 0 || delta[pending - 1].fp <= fp,
                None => false,
            };
            let (fp, value) = if take_old {
                let fp = next_old.expect("checked above");
                unread -= 1;
                let value = self.values[unread];
                next_old = (unread > 0).then(|| old_fp(&self.rems, unread - 1));
                (fp, value)
            } else {
                pending -= 1;
                let entry = delta[pending];
                (entry.fp, entry.value)
            };
            packed::set(&mut self.rems, to, at, fp & packed::mask(to));
            self.values[at] = value;
            dir[bucket_of(fp, bits) + 1] += 1;
        }
        assert_eq!((unread, pending), (0, 0));
        self.bits = bits;
        self.dir = prefix_sums(dir);
    }

    /// `compact` when the encoding stays: the live entries between two dead ones move down as one
    /// run, and the directory is updated in place.
    fn compact_moving_runs(&mut self) {
        assert!(self.dead_count > 0);
        let width = width(self.bits) as usize;
        let mut kept = 0; // entries [0, kept) are final
        let mut next = 0; // first old entry not yet moved or dropped
        for word in 0..self.dead.len() {
            let mut bits = self.dead[word];
            while bits != 0 {
                let dead = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if kept != next {
                    self.values.copy_within(next..dead, kept);
                    let len = (dead - next) * width;
                    packed::copy_bits_down(&mut self.rems, next * width, kept * width, len);
                }
                kept += dead - next;
                next = dead + 1;
            }
        }
        let len = self.values.len();
        if kept != next {
            self.values.copy_within(next..len, kept);
            let bits = (len - next) * width;
            packed::copy_bits_down(&mut self.rems, next * width, kept * width, bits);
        }
        kept += len - next;
        assert_eq!(kept, len - self.dead_count);
        // Each bucket now starts earlier by the dead entries before it.
        let mut counted_words = 0; // dead words wholly counted in `below`
        let mut below = 0;
        for start in self.dir.iter_mut() {
            let at = *start as usize;
            while counted_words < at / 64 {
                below += self.dead[counted_words].count_ones() as usize;
                counted_words += 1;
            }
            let partial = match self.dead.get(at / 64) {
                Some(&word) => (word & ((1 << (at % 64)) - 1)).count_ones(),
                None => 0,
            };
            *start -= (below + partial as usize) as u32;
        }
        self.values.truncate(kept);
        self.rems.truncate(words_for(kept, width as u32));
        self.dead = Vec::new();
        self.dead_count = 0;
    }

    /// `merge_back` when the encoding stays: the old entries between two delta entries move as
    /// one run (a `memmove` of values and of bits), and the directory is updated in place.
    fn merge_back_moving_runs(&mut self, delta: &[Entry], old: usize) {
        let width = width(self.bits);
        let mut unmoved = old; // old entries [0, unmoved) are still where they were
        for (pending, entry) in delta.iter().enumerate().rev() {
            // The entry goes after the old ones that sort before it or tie with it.
            let bucket = bucket_of(entry.fp, self.bits);
            let rem = entry.fp & packed::mask(width);
            let end = (self.dir[bucket + 1] as usize).min(unmoved);
            let mut at = self.dir[bucket] as usize;
            while at < end && packed::get(&self.rems, width, at) <= rem {
                at += 1;
            }
            // Slots [unmoved, unmoved + pending] are free: the run moves up by pending + 1.
            let shift = pending + 1;
            self.values.copy_within(at..unmoved, at + shift);
            packed::copy_bits_up(
                &mut self.rems,
                at * width as usize,
                (at + shift) * width as usize,
                (unmoved - at) * width as usize,
            );
            self.values[at + pending] = entry.value;
            packed::set(&mut self.rems, width, at + pending, rem);
            unmoved = at;
        }
        // Each bucket now starts after the delta entries of the buckets before it.
        let mut before = 0;
        for (bucket, start) in self.dir.iter_mut().enumerate() {
            while before < delta.len() && bucket_of(delta[before].fp, self.bits) < bucket {
                before += 1;
            }
            *start += before as u32;
        }
    }

    /// Gives back what the merge no longer needs: capacity follows length (or the reservation).
    fn trim(&mut self) {
        let words = words_for(self.values.len(), width(self.bits));
        self.rems.truncate(words);
        self.rems
            .shrink_to(words.max(words_for(self.reserved, width(bits_for(self.reserved)))));
        self.values.shrink_to(self.values.len().max(self.reserved));
    }

    /// O(n). Directory consistent, entries sorted, dead marks counted.
    pub fn check(&self) {
        assert!(self.bits <= DIRECTORY_BITS_MAX);
        assert_eq!(self.dir.len(), (1 << self.bits) + 1);
        assert_eq!(self.dir[0], 0);
        assert_eq!(*self.dir.last().unwrap() as usize, self.values.len());
        assert!(self.dir.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(self.values.len() <= BASE_ENTRIES_MAX);
        if !self.values.is_empty() {
            assert!(self.rems.len() >= words_for(self.values.len(), width(self.bits)));
        }
        if self.dead_count == 0 {
            assert!(self.dead.is_empty());
        } else {
            assert_eq!(self.dead.len(), self.values.len().div_ceil(64));
            let marked: u32 = self.dead.iter().map(|word| word.count_ones()).sum();
            assert_eq!(marked as usize, self.dead_count);
        }
        let mut bucket = 0;
        let mut last = 0;
        for index in 0..self.values.len() {
            while self.dir[bucket + 1] as usize <= index {
                bucket += 1;
            }
            let fp = join(
                bucket,
                packed::get(&self.rems, width(self.bits), index),
                self.bits,
            );
            assert!(fp >= last, "base out of order at {index}");
            assert_eq!(bucket_of(fp, self.bits), bucket);
            last = fp;
        }
    }
}

fn new_dir(bits: u32) -> Vec<u32> {
    let mut dir = Vec::new();
    dir.reserve_exact((1 << bits) + 1);
    dir.resize((1 << bits) + 1, 0);
    dir
}

/// Bucket sizes at `dir[b + 1]` to bucket starts.
fn prefix_sums(mut dir: Vec<u32>) -> Vec<u32> {
    let mut sum = 0;
    for start in dir.iter_mut() {
        sum += *start;
        *start = sum;
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_keep_buckets_between_8_and_16_entries() {
        assert_eq!(bits_for(0), 0);
        assert_eq!(bits_for(15), 0);
        assert_eq!(bits_for(16), 1);
        for entries in [1000, 4096, 10_000_000, 1 << 30] {
            let bits = bits_for(entries);
            let per_bucket = entries as f64 / (1u64 << bits) as f64;
            assert!((8.0..16.0).contains(&per_bucket), "{entries}: {per_bucket}");
        }
        assert_eq!(bits_for(BASE_ENTRIES_MAX), 28);
    }

    #[test]
    fn join_and_bucket_at_zero_bits() {
        assert_eq!(bucket_of(u64::MAX, 0), 0);
        assert_eq!(join(0, u64::MAX, 0), u64::MAX);
        assert_eq!(bucket_of(u64::MAX, 20), (1 << 20) - 1);
        assert_eq!(join((1 << 20) - 1, packed::mask(44), 20), u64::MAX);
    }
}
