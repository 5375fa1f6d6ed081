//! Erasure-coding schemes: K data shards and M parity shards per stripe, any K of the K+M
//! restore it. Written "K+M" by humans; carried in the `aux` field of CREATE as two bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::SCHEME_SHARDS_MAX;

/// A valid scheme: 1 ≤ K and K + M ≤ `SCHEME_SHARDS_MAX`. M = 0 (no redundancy) is allowed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Scheme {
    k: u8,
    m: u8,
}

/// Why a scheme is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    /// The text is not two numbers joined by '+'.
    #[error("a scheme is written K+M (for example 4+2), got {input:?}")]
    Format { input: String },
    /// One side of the '+' is not a number from 0 to 255.
    #[error("{part} of the scheme must be a number from 0 to 255, got {input:?}")]
    Number { part: &'static str, input: String },
    /// No data shards.
    #[error("K (data shards) must be at least 1")]
    NoDataShards,
    /// More shards per stripe than the limit.
    #[error("K+M is {k}+{m} = {} shards, the limit is {}", *k as u16 + *m as u16, SCHEME_SHARDS_MAX)]
    TooManyShards { k: u8, m: u8 },
    /// The CREATE `aux` field has bits set beyond its two scheme bytes.
    #[error("aux {aux:#x} has bits set above K and M (bytes 2..8 must be zero)")]
    AuxHighBits { aux: u64 },
}

impl Scheme {
    pub fn new(k: u8, m: u8) -> Result<Scheme, SchemeError> {
        if k == 0 {
            return Err(SchemeError::NoDataShards);
        }
        if usize::from(k) + usize::from(m) > SCHEME_SHARDS_MAX {
            return Err(SchemeError::TooManyShards { k, m });
        }
        Ok(Scheme { k, m })
    }

    /// Data shards per stripe.
    pub fn k(self) -> u8 {
        self.k
    }

    /// Parity shards per stripe.
    pub fn m(self) -> u8 {
        self.m
    }

    /// Shards per stripe (K + M).
    pub fn shards(self) -> usize {
        usize::from(self.k) + usize::from(self.m)
    }

    /// The CREATE `aux` field: byte 0 = K, byte 1 = M, bytes 2..8 zero.
    pub fn to_aux(self) -> u64 {
        u64::from(self.k) | u64::from(self.m) << 8
    }

    pub fn from_aux(aux: u64) -> Result<Scheme, SchemeError> {
        if aux >> 16 != 0 {
            return Err(SchemeError::AuxHighBits { aux });
        }
        Scheme::new(aux as u8, (aux >> 8) as u8)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.k, self.m)
    }
}

impl FromStr for Scheme {
    type Err = SchemeError;

    fn from_str(text: &str) -> Result<Scheme, SchemeError> {
        let (k, m) = text.split_once('+').ok_or_else(|| SchemeError::Format {
            input: text.to_string(),
        })?;
        let number = |part: &'static str, digits: &str| {
            // u8::from_str takes a leading '+', which would let "+4+2" through.
            let plain = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            plain
                .then(|| digits.parse::<u8>().ok())
                .flatten()
                .ok_or_else(|| SchemeError::Number {
                    part,
                    input: digits.to_string(),
                })
        };
        Scheme::new(number("K", k.trim())?, number("M", m.trim())?)
    }
}

impl Serialize for Scheme {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scheme {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Scheme, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints() {
        let scheme: Scheme = "4+2".parse().unwrap();
        assert_eq!((scheme.k(), scheme.m()), (4, 2));
        assert_eq!(scheme.to_string(), "4+2");
        assert_eq!(" 1 + 0 ".parse::<Scheme>(), Scheme::new(1, 0));
        assert_eq!("64+0".parse::<Scheme>(), Scheme::new(64, 0));
    }

    #[test]
    fn errors_are_specific() {
        assert!(matches!(
            "42".parse::<Scheme>(),
            Err(SchemeError::Format { .. })
        ));
        assert!(matches!(
            "x+2".parse::<Scheme>(),
            Err(SchemeError::Number { part: "K", .. })
        ));
        assert!(matches!(
            "4+".parse::<Scheme>(),
            Err(SchemeError::Number { part: "M", .. })
        ));
        assert!(matches!(
            "4+2+1".parse::<Scheme>(),
            Err(SchemeError::Number { part: "M", .. })
        ));
        assert!(matches!(
            "+4+2".parse::<Scheme>(),
            Err(SchemeError::Number { part: "K", .. })
        ));
        assert!(matches!(
            "300+1".parse::<Scheme>(),
            Err(SchemeError::Number { part: "K", .. })
        ));
        assert_eq!("0+2".parse::<Scheme>(), Err(SchemeError::NoDataShards));
        assert_eq!(
            "60+5".parse::<Scheme>(),
            Err(SchemeError::TooManyShards { k: 60, m: 5 })
        );
        let message = "200+200".parse::<Scheme>().unwrap_err().to_string();
        assert!(message.contains("400 shards"), "{message}");
    }

    #[test]
    fn aux_layout() {
        let scheme = Scheme::new(10, 4).unwrap();
        assert_eq!(scheme.to_aux(), 0x040a);
        assert_eq!(Scheme::from_aux(0x040a), Ok(scheme));
        assert_eq!(
            Scheme::from_aux(0x1_040a),
            Err(SchemeError::AuxHighBits { aux: 0x1_040a })
        );
        assert_eq!(Scheme::from_aux(0x0400), Err(SchemeError::NoDataShards));
    }

    #[test]
    fn json_is_a_string() {
        let scheme = Scheme::new(4, 2).unwrap();
        assert_eq!(serde_json::to_string(&scheme).unwrap(), "\"4+2\"");
        assert_eq!(serde_json::from_str::<Scheme>("\"4+2\"").unwrap(), scheme);
        assert!(serde_json::from_str::<Scheme>("\"0+2\"").is_err());
    }

    proptest! {
        #[test]
        fn valid_schemes_round_trip(k in 1u8..=64, m in 0u8..=63) {
            match Scheme::new(k, m) {
                Ok(scheme) => {
                    prop_assert!(scheme.shards() <= SCHEME_SHARDS_MAX);
                    prop_assert_eq!(scheme.to_string().parse::<Scheme>(), Ok(scheme));
                    prop_assert_eq!(Scheme::from_aux(scheme.to_aux()), Ok(scheme));
                }
                Err(error) => prop_assert_eq!(error, SchemeError::TooManyShards { k, m }),
            }
        }

        #[test]
        fn parsing_and_aux_never_panic(text in "\\PC{0,12}", aux: u64) {
            let _ = text.parse::<Scheme>();
            let _ = Scheme::from_aux(aux);
        }
    }
}
