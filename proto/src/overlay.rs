//! The OVERLAY reply document: UTF-8 JSON in the reply payload (possibly spread over several
//! frames, as STAT's). Unknown fields are ignored when decoding.

use serde::{Deserialize, Serialize};

/// A node as the overlay knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OverlayPeer {
    /// Node id, 32 hex digits.
    pub id: String,
    /// Overlay (UDP) address.
    pub addr: String,
    /// Data (object protocol, TCP) address, when the node announced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// A node's view of the overlay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverlayReply {
    /// This node.
    pub node: OverlayPeer,
    /// Every entry of the routing table (k-buckets), closest first.
    pub routing: Vec<OverlayPeer>,
    /// The nodes closest to this node, closest first (exact, what repair relies on).
    pub neighbourhood: Vec<OverlayPeer>,
    /// The nodes responsible for the asked key, closest first; absent unless asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible: Option<Vec<OverlayPeer>>,
    /// Counters: lookups, hops, messages, drops (names as in the stats socket).
    #[serde(default)]
    pub stats: serde_json::Map<String, serde_json::Value>,
}

/// An OVERLAY payload that is not a valid document.
#[derive(Debug, thiserror::Error)]
#[error("OVERLAY reply is not a valid document: {0}")]
pub struct OverlayDecodeError(#[from] serde_json::Error);

impl OverlayReply {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("OverlayReply serializes")
    }

    pub fn decode(payload: &[u8]) -> Result<OverlayReply, OverlayDecodeError> {
        Ok(serde_json::from_slice(payload)?)
    }
}
