//! The flags byte of a frame header.

use std::fmt;
use std::ops::BitOr;

/// A set of frame flags. Only the combinations v1 allows can be built from wire bits: no
/// unknown bits, and MORE only together with REPLY (requests are always one frame).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    pub const NONE: Flags = Flags(0);
    /// The frame is a reply (set by the node in every reply frame).
    pub const REPLY: Flags = Flags(0x01);
    /// More reply frames of the same request follow this one.
    pub const MORE: Flags = Flags(0x02);
    const KNOWN_BITS: u8 = 0x03;

    /// The flags of a wire byte; `None` for unknown bits or MORE without REPLY.
    pub fn from_bits(bits: u8) -> Option<Flags> {
        let flags = Flags(bits);
        let unknown = bits & !Flags::KNOWN_BITS != 0;
        let lone_more = flags.contains(Flags::MORE) && !flags.contains(Flags::REPLY);
        (!unknown && !lone_more).then_some(flags)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_reply(self) -> bool {
        self.contains(Flags::REPLY)
    }

    pub fn has_more(self) -> bool {
        self.contains(Flags::MORE)
    }
}

impl BitOr for Flags {
    type Output = Flags;

    fn bitor(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_reply(), self.has_more()) {
            (false, false) => f.write_str("NONE"),
            (true, false) => f.write_str("REPLY"),
            (false, true) => f.write_str("MORE"),
            (true, true) => f.write_str("REPLY|MORE"),
        }?;
        let unknown = self.0 & !Flags::KNOWN_BITS;
        if unknown != 0 {
            write!(f, "|{unknown:#04x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bits() {
        assert_eq!(Flags::from_bits(0), Some(Flags::NONE));
        assert_eq!(Flags::from_bits(1), Some(Flags::REPLY));
        assert_eq!(Flags::from_bits(3), Some(Flags::REPLY | Flags::MORE));
        assert_eq!(Flags::from_bits(2), None, "MORE without REPLY");
        for bits in 4..=u8::MAX {
            assert_eq!(Flags::from_bits(bits), None, "{bits:#04x}");
        }
    }

    #[test]
    fn debug_names_bits() {
        assert_eq!(format!("{:?}", Flags::REPLY | Flags::MORE), "REPLY|MORE");
        assert_eq!(format!("{:?}", Flags::NONE), "NONE");
    }
}
