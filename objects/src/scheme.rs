//! The erasure scheme of an object: K data shards and M parity shards, N = K + M, any K of which
//! restore a stripe. Chosen per object at CREATE and never changed.
//!
//! `1+0` is a plain object (one copy), `1+M` is (M+1)-way replication (the codec's parity of a
//! single data shard is a copy of it), `K+0` stripes without redundancy.
//!
//! What it does not do: decide where shards go (placement) or how many must be durable (quorum).

use std::fmt;
use std::str::FromStr;

use reed_solomon_simd::ReedSolomonEncoder;

use crate::limits::{DATA_SHARDS_MIN, SHARDS_MAX};

/// K data shards + M parity shards. Valid by construction: `1 ≤ K`, `K + M ≤ SHARDS_MAX`, and the
/// codec supports the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scheme {
    k: u8,
    m: u8,
}

/// Why a (K, M) pair is not a scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    /// K is 0: a stripe needs at least one data shard.
    #[error("a scheme needs at least {DATA_SHARDS_MIN} data shard (got {k}+{m})")]
    NoDataShards { k: u8, m: u8 },
    /// K + M is past the limit.
    #[error("scheme {k}+{m} has {} shards; at most {SHARDS_MAX} are allowed", u16::from(*k) + u16::from(*m))]
    TooManyShards { k: u8, m: u8 },
    /// reed-solomon-simd cannot code this pair (never within `SHARDS_MAX` today; kept so a
    /// codec upgrade that narrows its range fails here, not in the middle of a write).
    #[error("scheme {k}+{m} is not supported by the erasure codec")]
    CodecUnsupported { k: u8, m: u8 },
}

/// Why text is not a scheme (`--scheme K+M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseSchemeError {
    /// Not of the form `K+M`.
    #[error("a scheme is written K+M, for example 4+2")]
    Syntax,
    /// K or M is not a number from 0 to 255.
    #[error("K and M of a scheme must be whole numbers from 0 to 255")]
    Number,
    /// Well formed, but not a valid scheme.
    #[error(transparent)]
    Invalid(#[from] SchemeError),
}

impl Scheme {
    /// One copy, no parity: what a single node stores.
    pub const PLAIN: Scheme = Scheme { k: 1, m: 0 };

    pub fn new(k: u8, m: u8) -> Result<Self, SchemeError> {
        if usize::from(k) < DATA_SHARDS_MIN {
            return Err(SchemeError::NoDataShards { k, m });
        }
        if usize::from(k) + usize::from(m) > SHARDS_MAX {
            return Err(SchemeError::TooManyShards { k, m });
        }
        // With no parity the codec is never called (it needs at least one recovery shard).
        if m > 0 && !ReedSolomonEncoder::supports(usize::from(k), usize::from(m)) {
            return Err(SchemeError::CodecUnsupported { k, m });
        }
        Ok(Self { k, m })
    }

    /// Data shards (K): any K shards of a stripe restore it.
    pub fn k(self) -> u8 {
        self.k
    }

    /// Parity shards (M): a stripe survives the loss of any M shards.
    pub fn m(self) -> u8 {
        self.m
    }

    /// All shards of a stripe (N = K + M).
    pub fn n(self) -> u8 {
        self.k + self.m
    }

    /// Whether shard `index` holds object bytes (as opposed to parity).
    pub fn is_data(self, index: u8) -> bool {
        assert!(index < self.n());
        index < self.k
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.k, self.m)
    }
}

impl FromStr for Scheme {
    type Err = ParseSchemeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (k, m) = text
            .trim()
            .split_once('+')
            .ok_or(ParseSchemeError::Syntax)?;
        let number = |part: &str| {
            let part = part.trim();
            // `u8::from_str` accepts a leading '+', which would let "4++2" through.
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseSchemeError::Number);
            }
            part.parse::<u8>().map_err(|_| ParseSchemeError::Number)
        };
        Ok(Scheme::new(number(k)?, number(m)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(
            Scheme::new(0, 2),
            Err(SchemeError::NoDataShards { k: 0, m: 2 })
        );
        assert_eq!(
            Scheme::new(60, 5),
            Err(SchemeError::TooManyShards { k: 60, m: 5 })
        );
        assert_eq!(
            Scheme::new(255, 255),
            Err(SchemeError::TooManyShards { k: 255, m: 255 })
        );
        let widest = Scheme::new(32, 32).unwrap();
        assert_eq!(widest.n(), 64);
        let scheme = Scheme::new(4, 2).unwrap();
        assert_eq!((scheme.k(), scheme.m(), scheme.n()), (4, 2, 6));
        assert!(scheme.is_data(3));
        assert!(!scheme.is_data(4));
        assert_eq!(Scheme::new(1, 0).unwrap(), Scheme::PLAIN);
    }

    #[test]
    fn every_valid_pair_is_codable() {
        for k in 1..=SHARDS_MAX as u8 {
            for m in 0..=(SHARDS_MAX as u8 - k) {
                assert!(Scheme::new(k, m).is_ok(), "{k}+{m}");
            }
        }
    }

    #[test]
    fn parse() {
        assert_eq!("4+2".parse::<Scheme>(), Ok(Scheme::new(4, 2).unwrap()));
        assert_eq!(" 1 + 2 ".parse::<Scheme>(), Ok(Scheme::new(1, 2).unwrap()));
        assert_eq!("4".parse::<Scheme>(), Err(ParseSchemeError::Syntax));
        assert_eq!("4-2".parse::<Scheme>(), Err(ParseSchemeError::Syntax));
        assert_eq!("4++2".parse::<Scheme>(), Err(ParseSchemeError::Number));
        assert_eq!("+2".parse::<Scheme>(), Err(ParseSchemeError::Number));
        assert_eq!("256+1".parse::<Scheme>(), Err(ParseSchemeError::Number));
        assert_eq!("a+b".parse::<Scheme>(), Err(ParseSchemeError::Number));
        assert_eq!(
            "0+3".parse::<Scheme>(),
            Err(ParseSchemeError::Invalid(SchemeError::NoDataShards {
                k: 0,
                m: 3
            }))
        );
        assert_eq!(Scheme::new(10, 4).unwrap().to_string(), "10+4");
    }
}
