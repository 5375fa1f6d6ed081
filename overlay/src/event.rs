//! What the overlay tells its driver through `poll_event`, and the answer of `responsible_set`.

use crate::id::{NodeId, NodeInfo};
use crate::lookup::LookupId;

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// A lookup from `start_lookup` or `responsible_set` ended.
    LookupDone(LookupDone),
    /// `neighbourhood()` changed (a node came, left, failed or was pushed out). Sent at most
    /// once per `handle_*` call.
    NeighbourhoodChanged,
    /// A node entered the routing table.
    PeerAdded(NodeInfo),
    /// A node left the routing table.
    PeerRemoved {
        node: NodeInfo,
        reason: RemoveReason,
    },
    /// The bootstrap's self-lookup ended with at least one answer.
    Bootstrapped { routing_entries: usize },
    /// No seed answered; the overlay retries every `bootstrap_retry` by itself.
    BootstrapFailed,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LookupDone {
    pub id: LookupId,
    pub key: NodeId,
    /// The closest nodes that answered (this node included where it belongs), closest first;
    /// at most the `n` asked for.
    pub nodes: Vec<NodeInfo>,
    /// Round trips on the longest discovery chain of the nodes returned.
    pub hops: u8,
    /// False when the lookup hit `lookup_timeout` or its request budget, or no other node
    /// answered: `nodes` is then a best effort.
    pub converged: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum RemoveReason {
    /// It sent LEAVE.
    Left,
    /// It missed more than `suspicion_threshold` replies in a row.
    Unresponsive,
}

/// The answer of `responsible_set`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Responsible {
    /// From the cache: the `n` closest nodes, closest first.
    Ready(Vec<NodeInfo>),
    /// A lookup runs; wait for `Event::LookupDone` with this id.
    Pending(LookupId),
}
