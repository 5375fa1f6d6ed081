//! Fixed-width unsigned fields packed back to back in `u64` words, field `i` at bit `i * width`.
//!
//! Every array carries one spare word at the end, so any field can be read or written as one
//! pair of adjacent words without a branch on whether it straddles a word boundary.

/// Widest field, in bits.
pub(super) const FIELD_BITS_MAX: u32 = 64;

/// Words that hold `count` fields of `width` bits, spare word included.
pub(super) fn words_for(count: usize, width: u32) -> usize {
    (count * width as usize).div_ceil(64) + 1
}

/// The low `width` bits set.
#[inline]
pub(super) fn mask(width: u32) -> u64 {
    debug_assert!((1..=FIELD_BITS_MAX).contains(&width));
    u64::MAX >> (FIELD_BITS_MAX - width)
}

#[inline]
pub(super) fn get(words: &[u64], width: u32, index: usize) -> u64 {
    let bit = index * width as usize;
    let word = bit / 64;
    let pair = u128::from(words[word]) | (u128::from(words[word + 1]) << 64);
    (pair >> (bit % 64)) as u64 & mask(width)
}

/// Writes field `index`; the bits of the two words outside the field are written back unchanged,
/// which the in-place merge passes rely on.
#[inline]
pub(super) fn set(words: &mut [u64], width: u32, index: usize, value: u64) {
    debug_assert!(
        value & !mask(width) == 0,
        "{value:#x} is wider than {width} bits"
    );
    let bit = index * width as usize;
    let word = bit / 64;
    let shift = bit % 64;
    let field = u128::from(mask(width)) << shift;
    let pair = u128::from(words[word]) | (u128::from(words[word + 1]) << 64);
    let pair = (pair & !field) | (u128::from(value) << shift);
    words[word] = pair as u64;
    words[word + 1] = (pair >> 64) as u64;
}

/// Copies the `len` bits at bit `from` to bit `to`, which may overlap them if `to >= from` (a
/// memmove for bits): from the top down, whole destination words in the middle.
pub(super) fn copy_bits_up(words: &mut [u64], from: usize, to: usize, len: usize) {
    assert!(to >= from);
    assert!(
        (to + len).div_ceil(64) < words.len(),
        "copy past the spare word"
    );
    let mut left = len;
    // The partial destination word at the top.
    let top = ((to + left) % 64).min(left);
    if top > 0 {
        copy_piece(words, from + left - top, to + left - top, top as u32);
        left -= top;
    }
    // Whole destination words; the source is at the same offset in each pair of words.
    let shift = (from + left) % 64;
    while left >= 64 {
        let source = (from + left - 64) / 64;
        let pair = u128::from(words[source]) | (u128::from(words[source + 1]) << 64);
        words[(to + left) / 64 - 1] = (pair >> shift) as u64;
        left -= 64;
    }
    if left > 0 {
        copy_piece(words, from, to, left as u32);
    }
}

/// Copies the `len` bits at bit `from` to bit `to`, which may overlap them if `to <= from`:
/// from the bottom up, whole destination words in the middle.
pub(super) fn copy_bits_down(words: &mut [u64], from: usize, to: usize, len: usize) {
    assert!(to <= from);
    assert!(
        (from + len).div_ceil(64) < words.len(),
        "copy past the spare word"
    );
    // The partial destination word at the bottom.
    let mut done = ((64 - to % 64) % 64).min(len);
    if done > 0 {
        copy_piece(words, from, to, done as u32);
    }
    // Whole destination words; the source is at the same offset in each pair of words.
    let shift = (from + done) % 64;
    while len - done >= 64 {
        let source = (from + done) / 64;
        let pair = u128::from(words[source]) | (u128::from(words[source + 1]) << 64);
        words[(to + done) / 64] = (pair >> shift) as u64;
        done += 64;
    }
    if done < len {
        copy_piece(words, from + done, to + done, (len - done) as u32);
    }
}

/// Copies `width` bits that land in one destination word.
#[inline]
fn copy_piece(words: &mut [u64], from: usize, to: usize, width: u32) {
    debug_assert!(to % 64 + width as usize <= 64);
    let pair = u128::from(words[from / 64]) | (u128::from(words[from / 64 + 1]) << 64);
    let value = (pair >> (from % 64)) as u64 & mask(width);
    let field = mask(width) << (to % 64);
    words[to / 64] = (words[to / 64] & !field) | (value << (to % 64));
}

/// Asks the CPU to start loading `slice[index]` into cache, when it is in bounds; a hint only.
#[inline]
pub(super) fn prefetch<T>(slice: &[T], index: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(item) = slice.get(index) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: prefetching is a hint: it cannot fault, changes no memory and the program
        // reads nothing through it; the address is a live element anyway. The function is
        // unsafe only because SSE is a target feature, and SSE is part of every x86_64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slice, index);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_at_every_width() {
        for width in 1..=FIELD_BITS_MAX {
            let count = 200;
            let mut words = vec![0; words_for(count, width)];
            let value = |i: usize| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) & mask(width);
            for i in 0..count {
                set(&mut words, width, i, value(i));
            }
            // Overwrite every other field to check neighbours are left alone.
            for i in (0..count).step_by(2) {
                set(&mut words, width, i, !value(i) & mask(width));
            }
            for i in 0..count {
                let expected = if i % 2 == 0 {
                    !value(i) & mask(width)
                } else {
                    value(i)
                };
                assert_eq!(get(&words, width, i), expected, "width {width} field {i}");
            }
        }
    }

    #[test]
    fn copy_bits_up_is_a_memmove() {
        let mut seed = 0x1234_5678_u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed
        };
        for _ in 0..2000 {
            let words_len = 8;
            let mut words: Vec<u64> = (0..words_len).map(|_| next()).collect();
            let bits = (words_len - 1) * 64; // the last word is the spare one
            let from = next() as usize % bits;
            let to = from + next() as usize % (bits - from);
            let len = next() as usize % (bits - to + 1);
            let bit = |words: &[u64], i: usize| words[i / 64] >> (i % 64) & 1;
            let mut expected: Vec<u64> = (0..bits).map(|i| bit(&words, i)).collect();
            expected.copy_within(from..from + len, to);
            copy_bits_up(&mut words, from, to, len);
            let got: Vec<u64> = (0..bits).map(|i| bit(&words, i)).collect();
            assert_eq!(got, expected, "from {from} to {to} len {len}");
        }
    }

    #[test]
    fn copy_bits_down_is_a_memmove() {
        let mut seed = 0x8765_4321_u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed
        };
        for _ in 0..2000 {
            let words_len = 8;
            let mut words: Vec<u64> = (0..words_len).map(|_| next()).collect();
            let bits = (words_len - 1) * 64;
            let to = next() as usize % bits;
            let from = to + next() as usize % (bits - to);
            let len = next() as usize % (bits - from + 1);
            let bit = |words: &[u64], i: usize| words[i / 64] >> (i % 64) & 1;
            let mut expected: Vec<u64> = (0..bits).map(|i| bit(&words, i)).collect();
            expected.copy_within(from..from + len, to);
            copy_bits_down(&mut words, from, to, len);
            let got: Vec<u64> = (0..bits).map(|i| bit(&words, i)).collect();
            assert_eq!(got, expected, "from {from} to {to} len {len}");
        }
    }

    #[test]
    fn words_for_counts_the_spare_word() {
        assert_eq!(words_for(0, 44), 1);
        assert_eq!(words_for(1, 64), 2);
        assert_eq!(words_for(3, 44), 4); // 132 bits: 3 words + spare
    }
}
