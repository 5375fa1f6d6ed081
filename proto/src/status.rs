//! Status codes of replies. 0 (OK) in every request and every successful reply; anything else
//! is an error reply whose payload is a UTF-8 message for humans.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Status {
    /// Success; also the value of the field in every request.
    Ok = 0,
    /// No object with this id (or it was deleted).
    NotFound = 1,
    /// Malformed frame or request: bad magic, unknown opcode, flags or status, a request with
    /// the REPLY flag or a nonzero status, a bad scheme, a field out of its domain.
    BadRequest = 2,
    /// The frame's protocol version is not the node's. The reply carries the node's version;
    /// the node closes the connection after it.
    VersionMismatch = 3,
    /// A GET range reaching past the end of the object, or a range whose end overflows u64.
    OutOfRange = 4,
    /// The frame announced a payload above the limit, or the object would exceed the node's
    /// size limit.
    TooLarge = 5,
    /// The frame's header or payload checksum did not match: damaged in transit.
    Checksum = 6,
    /// The stored data failed its checksum and could not be rebuilt in time; no bytes returned.
    Corrupt = 7,
    /// The node (or the nodes holding the object) has no room for the write.
    NoSpace = 8,
    /// The node is overloaded; retry later, preferably with backoff.
    Busy = 9,
    /// A bug or an unexpected failure inside the node.
    Internal = 10,
    /// Not enough nodes of the object's responsible set are reachable, or the cluster has
    /// fewer nodes than the scheme has shards.
    Unavailable = 11,
    /// Peer SHARD_WRITE: the node holds this shard at the same or a newer version (its version
    /// is in the reply's `aux`); under last-writer-wins that slot is already at least as new.
    Stale = 12,
}

impl Status {
    /// Every status v1 knows, in wire order.
    pub const ALL: [Status; 13] = [
        Status::Ok,
        Status::NotFound,
        Status::BadRequest,
        Status::VersionMismatch,
        Status::OutOfRange,
        Status::TooLarge,
        Status::Checksum,
        Status::Corrupt,
        Status::NoSpace,
        Status::Busy,
        Status::Internal,
        Status::Unavailable,
        Status::Stale,
    ];

    /// The status of a wire value; `None` for values v1 does not define.
    pub fn from_u16(value: u16) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|status| *status as u16 == value)
    }

    pub fn to_u16(self) -> u16 {
        self as u16
    }

    pub fn is_ok(self) -> bool {
        self == Status::Ok
    }

    /// The name used in `docs/protocol.md` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NotFound => "NOT_FOUND",
            Status::BadRequest => "BAD_REQUEST",
            Status::VersionMismatch => "VERSION_MISMATCH",
            Status::OutOfRange => "OUT_OF_RANGE",
            Status::TooLarge => "TOO_LARGE",
            Status::Checksum => "CHECKSUM",
            Status::Corrupt => "CORRUPT",
            Status::NoSpace => "NO_SPACE",
            Status::Busy => "BUSY",
            Status::Internal => "INTERNAL",
            Status::Unavailable => "UNAVAILABLE",
            Status::Stale => "STALE",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_dense_and_round_trip() {
        for (index, status) in Status::ALL.into_iter().enumerate() {
            assert_eq!(status.to_u16() as usize, index);
            assert_eq!(Status::from_u16(status.to_u16()), Some(status));
        }
        assert_eq!(Status::from_u16(Status::ALL.len() as u16), None);
        assert_eq!(Status::from_u16(u16::MAX), None);
    }

    #[test]
    fn names() {
        assert_eq!(Status::NotFound.to_string(), "NOT_FOUND");
        assert_eq!(Status::Ok.to_string(), "OK");
    }
}
