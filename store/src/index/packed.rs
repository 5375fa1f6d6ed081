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
    debug_assert!(value & !mask(width) == 0, "{value:#x} is wider than {width} bits");
    let bit = index * width as usize;
    let word = bit / 64;
    let shift = bit % 64;
    let field = u128::from(mask(width)) << shift;
    let pair = u128::from(words[word]) | (u128::from(words[word + 1]) << 64);
    let pair = (pair & !field) | (u128::from(value) << shift);
    words[word] = pair as u64;
    words[word + 1] = (pair >> 64) as u64;
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
                let expected = if i % 2 == 0 { !value(i) & mask(width) } else { value(i) };
                assert_eq!(get(&words, width, i), expected, "width {width} field {i}");
            }
        }
    }

    #[test]
    fn words_for_counts_the_spare_word() {
        assert_eq!(words_for(0, 44), 1);
        assert_eq!(words_for(1, 64), 2);
        assert_eq!(words_for(3, 44), 4); // 132 bits: 3 words + spare
    }
}
