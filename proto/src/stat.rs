//! The STAT reply document: UTF-8 JSON in the reply payload (possibly spread over several
//! frames, see `docs/protocol.md`). The codec itself only moves bytes; this is the schema.
//!
//! Unknown fields are ignored when decoding, so a node may add fields without a version bump.

use serde::{Deserialize, Serialize};

use crate::id::ObjectId;
use crate::scheme::Scheme;

/// What a node knows about an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatReply {
    /// The object's id, 32 hex digits.
    pub id: ObjectId,
    /// Bytes in the object (one past its highest written byte).
    pub size: u64,
    /// The erasure-coding scheme, "K+M".
    pub scheme: Scheme,
    /// The version of the object's latest write (a hybrid logical clock in the cluster).
    pub version: u64,
    /// When the object was created, in nanoseconds since the Unix epoch, if the node knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ns: Option<u64>,
    /// Where the shards of each stripe are stored.
    pub parts: Vec<StatPart>,
    /// Shards of the listed stripes that their node does not hold (or did not answer for).
    #[serde(default)]
    pub missing: Vec<StatMissing>,
    /// Stripes the object has; `parts` and `missing` cover at most the first `stripes_listed`.
    #[serde(default)]
    pub stripes: u64,
    #[serde(default)]
    pub stripes_listed: u64,
}

/// A shard of a stripe that is not where it should be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatMissing {
    pub stripe: u32,
    pub shard: u8,
    /// The node that should hold it.
    pub node: String,
    /// Why it is counted missing: "absent", or the error asking the node.
    pub reason: String,
}

/// One stored shard of one stripe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatPart {
    /// Stripe index within the object (stripe i covers a fixed-size range of bytes).
    pub stripe: u32,
    /// Shard index within the stripe: 0..K are data, K..K+M parity.
    pub shard: u8,
    /// The node holding the shard, as that node names itself (its id or address).
    pub node: String,
    /// The device on that node holding the shard (its path or uuid).
    pub device: String,
}

/// A STAT payload that is not a valid document.
#[derive(Debug, thiserror::Error)]
#[error("STAT reply is not a valid document: {0}")]
pub struct StatDecodeError(#[from] serde_json::Error);

impl StatReply {
    /// The reply payload: compact JSON.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every key is a string, every value plain data.
        serde_json::to_vec(self).expect("StatReply serializes")
    }

    pub fn decode(payload: &[u8]) -> Result<StatReply, StatDecodeError> {
        Ok(serde_json::from_slice(payload)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StatReply {
        StatReply {
            id: ObjectId(0xabc),
            size: 12345,
            scheme: Scheme::new(4, 2).unwrap(),
            version: 77,
            created_ns: None,
            parts: vec![StatPart {
                stripe: 0,
                shard: 5,
                node: "10.0.0.7:7000".to_string(),
                device: "/dev/nvme0n1".to_string(),
            }],
            missing: Vec::new(),
            stripes: 1,
            stripes_listed: 1,
        }
    }

    #[test]
    fn round_trip_and_shape() {
        let reply = sample();
        let bytes = reply.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(
            text,
            r#"{"id":"00000000000000000000000000000abc","size":12345,"scheme":"4+2","version":77,"parts":[{"stripe":0,"shard":5,"node":"10.0.0.7:7000","device":"/dev/nvme0n1"}],"missing":[],"stripes":1,"stripes_listed":1}"#
        );
        assert_eq!(StatReply::decode(&bytes).unwrap(), reply);
        let with_time = StatReply {
            created_ns: Some(5),
            ..reply
        };
        assert_eq!(StatReply::decode(&with_time.encode()).unwrap(), with_time);
    }

    #[test]
    fn unknown_fields_are_ignored_and_bad_documents_refused() {
        let text = r#"{"id":"00000000000000000000000000000001","size":1,"scheme":"1+0","version":1,"parts":[],"future":true}"#;
        assert_eq!(StatReply::decode(text.as_bytes()).unwrap().size, 1);
        assert!(StatReply::decode(b"{}").is_err());
        assert!(StatReply::decode(b"\xff").is_err());
        let bad_scheme = text.replace("1+0", "0+1");
        assert!(StatReply::decode(bad_scheme.as_bytes()).is_err());
    }
}
