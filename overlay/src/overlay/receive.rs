//! Handling of accepted messages: requests are answered, replies matched to their request.

use std::net::SocketAddr;

use super::Overlay;
use crate::codec;
use crate::event::RemoveReason;
use crate::id::NodeInfo;
use crate::limits::NODES_PER_MESSAGE_MAX;
use crate::lookup::Purpose;
use crate::message::{Body, Message, RequestId};
use crate::requests::RequestKind;
use crate::stats::DropReason;

impl Overlay {
    pub(super) fn receive(&mut self, from: SocketAddr, message: Message) {
        if self.left {
            self.drop_message(DropReason::Left);
            return;
        }
        if message.sender == self.info.id {
            self.drop_message(DropReason::SelfId);
            return;
        }
        match message.receiver {
            Some(receiver) if receiver != self.info.id => {
                self.drop_message(DropReason::Misdirected);
                return;
            }
            None if !message.body.is_request() => {
                self.drop_message(DropReason::Misdirected);
                return;
            }
            _ => {}
        }
        self.stats.messages_received += 1;
        let sender = NodeInfo {
            id: message.sender,
            addr: from,
            data_port: message.sender_data_port,
        };
        let request = message.request;
        match message.body {
            Body::Ping => {
                self.note_alive(sender, true);
                self.reply(sender, request, Body::Pong);
            }
            Body::FindNode { key, count } => {
                self.note_alive(sender, true);
                let count = usize::from(count).clamp(1, NODES_PER_MESSAGE_MAX);
                let mut nodes = self.closest_nodes(key, count, Some(sender.id));
                // Many IPv6 nodes do not all fit one datagram: the closest that do go.
                nodes.truncate(codec::nodes_fitting(&nodes));
                self.reply(sender, request, Body::Nodes { nodes });
            }
            Body::Pong => self.handle_pong(sender, request),
            Body::Nodes { nodes } => self.handle_nodes(sender, request, nodes),
            Body::Leave => self.remove_peer(sender.id, RemoveReason::Left),
        }
    }

    pub(super) fn reply(&mut self, to: NodeInfo, request: RequestId, body: Body) {
        let message = Message {
            sender: self.info.id,
            sender_data_port: self.info.data_port,
            receiver: Some(to.id),
            request,
            body,
        };
        self.send(to.addr, message);
    }

    pub(super) fn handle_pong(&mut self, sender: NodeInfo, request: RequestId) {
        let taken = self.requests.take_if(request, |pending| {
            pending.kind == RequestKind::Ping && pending.to == Some(sender.id)
        });
        if taken.is_none() {
            self.drop_message(DropReason::Unsolicited);
            return;
        }
        self.note_alive(sender, false);
    }

    pub(super) fn handle_nodes(
        &mut self,
        sender: NodeInfo,
        request: RequestId,
        mut nodes: Vec<NodeInfo>,
    ) {
        let taken = self
            .requests
            .take_if(request, |pending| match pending.kind {
                RequestKind::FindNode { .. } => pending.to == Some(sender.id),
                RequestKind::Bootstrap => pending.addr == sender.addr,
                RequestKind::Ping => false,
            });
        let Some(taken) = taken else {
            self.drop_message(DropReason::Unsolicited);
            return;
        };
        self.note_alive(sender, false);
        let self_id = self.info.id;
        nodes.truncate(NODES_PER_MESSAGE_MAX);
        nodes.retain(|node| node.id != self_id && node.id != sender.id);
        match taken.kind {
            RequestKind::FindNode { lookup, depth } => {
                let Some(at) = self.lookup_index(lookup) else {
                    return;
                };
                // A self-lookup asks the would-be neighbours itself; other lookups may stumble
                // on a node near us that we did not know.
                if !matches!(
                    self.lookups[at].purpose,
                    Purpose::Join | Purpose::SelfLookup
                ) {
                    for node in &nodes {
                        self.consider_neighbour(*node);
                    }
                }
                let Some(at) = self.lookup_index(lookup) else {
                    return;
                };
                // The node's own word on its addresses replaces what a NODES list said.
                self.lookups[at].update_info(sender);
                self.lookups[at].finish(sender.id, true);
                self.feed_lookup(at, &nodes, depth.saturating_add(1));
                self.drive_lookup(lookup);
            }
            RequestKind::Bootstrap => {
                assert!(self.bootstrap.in_flight > 0);
                self.bootstrap.in_flight -= 1;
                let lookup = match self.bootstrap.join_lookup {
                    Some(lookup) => lookup,
                    None if !self.bootstrap.joined => {
                        let width = self.self_lookup_width();
                        let lookup =
                            self.start_lookup_internal(self.info.id, width, width, Purpose::Join);
                        self.bootstrap.join_lookup = Some(lookup);
                        lookup
                    }
                    None => return,
                };
                if let Some(at) = self.lookup_index(lookup) {
                    self.feed_lookup(at, &nodes, 1);
                    self.drive_lookup(lookup);
                }
            }
            RequestKind::Ping => unreachable!("filtered by take_if"),
        }
    }

    pub(super) fn feed_lookup(&mut self, at: usize, nodes: &[NodeInfo], depth: u8) {
        let now = self.now;
        for node in nodes {
            if self.removed.get(node.id, now).is_none() {
                self.lookups[at].add_candidate(*node, depth);
            }
        }
    }

    /// A node named in a NODES list: if it would enter the neighbourhood, verify it first.
    pub(super) fn consider_neighbour(&mut self, node: NodeInfo) {
        if !self.neighbourhood.would_admit(node.id) {
            return;
        }
        if self.removed.get(node.id, self.now).is_some() {
            return;
        }
        if let Some(entry) = self.table.get(node.id) {
            // Verified already (a full bucket's neighbour that was pushed out earlier).
            let (info, last_seen) = (entry.info, entry.last_seen);
            if self.neighbourhood.seen(info, last_seen) {
                self.neighbourhood_changed();
            }
            return;
        }
        self.ping(node);
    }
}
