//! Object ids: 128 bits on the wire (little-endian), 32 lowercase hex digits for humans
//! (most significant digit first, as `{:032x}` prints a u128).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hex digits of a printed id.
pub const OBJECT_ID_HEX_CHARS: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ObjectId(pub u128);

/// Why a string is not an object id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseObjectIdError {
    /// Ids are exactly 32 hex digits; shorter forms are refused so a truncated paste is caught.
    #[error(
        "an object id is {} hex digits, got {found} characters",
        OBJECT_ID_HEX_CHARS
    )]
    Length { found: usize },
    /// A character that is not a hex digit (0-9, a-f, A-F).
    #[error("an object id is hex digits only, found {found:?} at position {position}")]
    NotHex { position: usize, found: char },
}

impl ObjectId {
    pub fn to_le_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    pub fn from_le_bytes(bytes: [u8; 16]) -> ObjectId {
        ObjectId(u128::from_le_bytes(bytes))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

impl FromStr for ObjectId {
    type Err = ParseObjectIdError;

    /// Accepts upper-case digits too (people paste ids from other tools); prints lower case.
    fn from_str(text: &str) -> Result<ObjectId, ParseObjectIdError> {
        let found = text.chars().count();
        if found != OBJECT_ID_HEX_CHARS {
            return Err(ParseObjectIdError::Length { found });
        }
        let mut value = 0u128;
        for (position, character) in text.chars().enumerate() {
            let digit = character.to_digit(16).ok_or(ParseObjectIdError::NotHex {
                position,
                found: character,
            })?;
            value = (value << 4) | u128::from(digit);
        }
        Ok(ObjectId(value))
    }
}

impl Serialize for ObjectId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ObjectId, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prints_32_lowercase_digits() {
        assert_eq!(ObjectId(0).to_string(), "0".repeat(32));
        assert_eq!(
            ObjectId(0x0123_4567_89ab_cdef_0011_2233_4455_66ff).to_string(),
            "0123456789abcdef00112233445566ff"
        );
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        assert_eq!(
            "abc".parse::<ObjectId>(),
            Err(ParseObjectIdError::Length { found: 3 })
        );
        assert_eq!(
            "".parse::<ObjectId>(),
            Err(ParseObjectIdError::Length { found: 0 })
        );
        let bad = format!("{}g{}", "0".repeat(5), "0".repeat(26));
        assert_eq!(
            bad.parse::<ObjectId>(),
            Err(ParseObjectIdError::NotHex {
                position: 5,
                found: 'g'
            })
        );
        // from_str_radix would take a sign; ids never have one.
        let signed = format!("+{}", "0".repeat(31));
        assert!(matches!(
            signed.parse::<ObjectId>(),
            Err(ParseObjectIdError::NotHex { position: 0, .. })
        ));
        // 32 characters but more bytes: counted in characters, refused as not hex.
        let wide = format!("é{}", "0".repeat(31));
        assert!(matches!(
            wide.parse::<ObjectId>(),
            Err(ParseObjectIdError::NotHex { position: 0, .. })
        ));
        let message = "xyz".parse::<ObjectId>().unwrap_err().to_string();
        assert!(message.contains("32 hex digits"), "{message}");
    }

    #[test]
    fn upper_case_is_accepted() {
        let id: ObjectId = "ABCDEF00000000000000000000000001".parse().unwrap();
        assert_eq!(id.to_string(), "abcdef00000000000000000000000001");
    }

    #[test]
    fn json_is_a_hex_string() {
        let id = ObjectId(0xff);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}ff\"", "0".repeat(30)));
        assert_eq!(serde_json::from_str::<ObjectId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ObjectId>("\"12\"").is_err());
    }

    proptest! {
        #[test]
        fn text_and_wire_round_trip(value: u128) {
            let id = ObjectId(value);
            prop_assert_eq!(id.to_string().parse::<ObjectId>(), Ok(id));
            prop_assert_eq!(ObjectId::from_le_bytes(id.to_le_bytes()), id);
        }

        #[test]
        fn parsing_never_panics(text in "\\PC{0,40}") {
            let _ = text.parse::<ObjectId>();
        }
    }
}
