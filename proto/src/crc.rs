//! Checksum arithmetic on payloads: the crc32c of a payload's tail from the crc32c of the whole,
//! so a receiver that verified a frame's checksum need not pass over the tail again.

/// The crc32c of `whole[prefix.len()..]`, given `whole_crc` = crc32c(`whole`), `prefix` (the
/// first bytes of `whole`) and `suffix_len` (the rest's length). crc32c is linear: the crc of
/// A‖B is crc(A) shifted by |B| xor crc(B), and `crc32c_combine(crc(A), 0, |B|)` is that shift.
pub fn suffix_crc(whole_crc: u32, prefix: &[u8], suffix_len: usize) -> u32 {
    whole_crc ^ crc32c::crc32c_combine(crc32c::crc32c(prefix), 0, suffix_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_suffix_crc_is_the_crc_of_the_suffix(
            prefix in proptest::collection::vec(any::<u8>(), 0..200),
            suffix in proptest::collection::vec(any::<u8>(), 0..5000),
        ) {
            let whole: Vec<u8> = prefix.iter().chain(&suffix).copied().collect();
            let crc = suffix_crc(crc32c::crc32c(&whole), &prefix, suffix.len());
            prop_assert_eq!(crc, crc32c::crc32c(&suffix));
        }
    }
}
