//! One overlay node driven by hand: bucket eviction under a flood of new ids, suspicion and
//! removal, LEAVE, bootstrap failure, the responsible-set cache.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ds_overlay::{
    Body, ClusterSecret, Config, Event, Message, NodeId, NodeInfo, Overlay, RemoveReason,
    RequestId, Responsible,
};

const ME: u128 = 0;
/// The data port every hand-driven peer announces.
const DATA_PORT: u16 = 8000;

fn node(id: u128) -> NodeInfo {
    NodeInfo {
        id: NodeId(id),
        addr: SocketAddr::from(([10, 9, (id >> 8) as u8, id as u8], 7000)),
        data_port: DATA_PORT,
    }
}

fn config(k: usize) -> Config {
    let mut config = Config::new(ClusterSecret::new(b"harness cluster secret").unwrap());
    config.k = k;
    config
}

fn ping_from(from: NodeInfo, request: u64) -> Message {
    Message {
        sender: from.id,
        sender_data_port: from.data_port,
        receiver: Some(NodeId(ME)),
        request: RequestId(request),
        body: Body::Ping,
    }
}

/// Answers every PING the overlay sends to a node in `live` (others stay silent), and drops
/// everything else it sends. Returns the ids pinged.
fn answer_pings(overlay: &mut Overlay, live: &HashSet<NodeId>, now: Instant) -> Vec<NodeId> {
    let mut pinged = Vec::new();
    let mut outgoing = Vec::new();
    while let Some(transmit) = overlay.poll_transmit() {
        outgoing.push(transmit);
    }
    for (addr, message) in outgoing {
        let Some(to) = message.receiver else { continue };
        if message.body == Body::Ping {
            pinged.push(to);
            if live.contains(&to) {
                let pong = Message {
                    sender: to,
                    sender_data_port: DATA_PORT,
                    receiver: Some(NodeId(ME)),
                    request: message.request,
                    body: Body::Pong,
                };
                overlay.handle_message(addr, pong, now);
            }
        }
    }
    pinged
}

/// Bucket 0 of node 0 holds ids with the top bit set.
fn far(index: u128) -> NodeInfo {
    node((1 << 127) | index)
}

#[test]
fn a_flood_of_new_ids_does_not_evict_live_entries() {
    let t0 = Instant::now();
    let k = 4;
    let mut overlay = Overlay::new(node(ME), config(k), t0).unwrap();
    let originals: Vec<NodeInfo> = (1..=k as u128).map(far).collect();
    let live: HashSet<NodeId> = originals.iter().map(|n| n.id).collect();
    for (at, original) in originals.iter().enumerate() {
        overlay.handle_message(original.addr, ping_from(*original, at as u64), t0);
    }
    assert_eq!(overlay.routing_entries(), k);
    let mut now = t0;
    let mut eviction_pings = 0;
    // 2,000 newcomers in the same bucket, spread over 200 simulated seconds so that the
    // originals age and get pinged again and again.
    for newcomer in 0..2000u128 {
        now += Duration::from_millis(100);
        let attacker = far(1000 + newcomer);
        overlay.handle_message(attacker.addr, ping_from(attacker, newcomer as u64), now);
        eviction_pings += answer_pings(&mut overlay, &live, now)
            .iter()
            .filter(|id| live.contains(id))
            .count();
        overlay.handle_timeout(now);
        answer_pings(&mut overlay, &live, now);
        while overlay.poll_event().is_some() {}
    }
    let table: HashSet<NodeId> = overlay.routing_table().iter().map(|n| n.id).collect();
    assert_eq!(table, live, "live entries stayed");
    assert!(eviction_pings > 0, "the originals were checked");
    // At most one check per entry per probe interval, not one per newcomer.
    assert!(
        eviction_pings < 200,
        "{eviction_pings} pings for 2000 newcomers"
    );
    assert!(overlay.stats().evictions_refused > 0);
    assert_eq!(overlay.stats().evictions, 0);
}

#[test]
fn dead_entries_are_suspected_then_replaced() {
    let t0 = Instant::now();
    let k = 2;
    let mut overlay = Overlay::new(node(ME), config(k), t0).unwrap();
    let dead = far(1);
    let alive = far(2);
    overlay.handle_message(dead.addr, ping_from(dead, 1), t0);
    overlay.handle_message(
        alive.addr,
        ping_from(alive, 2),
        t0 + Duration::from_secs(15),
    );
    let live: HashSet<NodeId> = [alive.id].into_iter().collect();
    answer_pings(&mut overlay, &live, t0);
    let mut now = t0 + Duration::from_secs(30);
    let newcomer = far(3);
    overlay.handle_message(newcomer.addr, ping_from(newcomer, 3), now);
    // The least recently seen (dead) is pinged; it never answers.
    let pinged = answer_pings(&mut overlay, &live, now);
    assert!(pinged.contains(&dead.id));
    let mut removed = None;
    for _ in 0..20 {
        now += Duration::from_millis(500);
        overlay.handle_timeout(now);
        answer_pings(&mut overlay, &live, now);
        while let Some(event) = overlay.poll_event() {
            if let Event::PeerRemoved { node, reason } = event {
                removed = Some((node.id, reason));
            }
        }
    }
    assert_eq!(removed, Some((dead.id, RemoveReason::Unresponsive)));
    let table: HashSet<NodeId> = overlay.routing_table().iter().map(|n| n.id).collect();
    assert_eq!(table, [alive.id, newcomer.id].into_iter().collect());
    assert_eq!(overlay.stats().evictions, 1);
    // Suspicion took `suspicion_threshold` misses before the newcomer got the slot: not at once.
    assert!(overlay.stats().requests_timed_out >= 2);
}

#[test]
fn leave_removes_the_sender_at_once() {
    let t0 = Instant::now();
    let mut overlay = Overlay::new(node(ME), config(20), t0).unwrap();
    let peer = node(5);
    overlay.handle_message(peer.addr, ping_from(peer, 1), t0);
    assert!(overlay.knows(peer.id));
    assert_eq!(overlay.neighbourhood(), &[peer]);
    while overlay.poll_event().is_some() {}
    let leave = Message {
        sender: peer.id,
        sender_data_port: DATA_PORT,
        receiver: Some(NodeId(ME)),
        request: RequestId(0),
        body: Body::Leave,
    };
    overlay.handle_message(peer.addr, leave, t0);
    assert!(!overlay.knows(peer.id));
    assert!(overlay.neighbourhood().is_empty());
    let events: Vec<Event> = std::iter::from_fn(|| overlay.poll_event()).collect();
    assert!(events.contains(&Event::PeerRemoved {
        node: peer,
        reason: RemoveReason::Left
    }));
    assert!(events.contains(&Event::NeighbourhoodChanged));
    // A late reply does not bring it back; a new request from it does (it rejoined).
    let late = Message {
        sender: peer.id,
        sender_data_port: DATA_PORT,
        receiver: Some(NodeId(ME)),
        request: RequestId(12345),
        body: Body::Pong,
    };
    overlay.handle_message(peer.addr, late, t0);
    assert!(!overlay.knows(peer.id));
    overlay.handle_message(peer.addr, ping_from(peer, 2), t0 + Duration::from_secs(1));
    assert!(overlay.knows(peer.id));
}

#[test]
fn leave_tells_everyone_known() {
    let t0 = Instant::now();
    let mut overlay = Overlay::new(node(ME), config(20), t0).unwrap();
    for id in 1..=30 {
        overlay.handle_message(node(id).addr, ping_from(node(id), id as u64), t0);
    }
    while overlay.poll_transmit().is_some() {}
    overlay.leave(t0);
    let told: HashSet<NodeId> = std::iter::from_fn(|| overlay.poll_transmit())
        .map(|(_, message)| {
            assert_eq!(message.body, Body::Leave);
            message.receiver.unwrap()
        })
        .collect();
    assert_eq!(told.len(), 30);
    assert!(overlay.has_left());
    assert_eq!(overlay.poll_timeout(), None);
}

#[test]
fn bootstrap_without_answer_fails_and_retries() {
    let t0 = Instant::now();
    let mut overlay = Overlay::new(node(ME), config(20), t0).unwrap();
    let seed = node(9).addr;
    overlay.bootstrap(&[seed], t0);
    let (to, message) = overlay.poll_transmit().unwrap();
    assert_eq!(to, seed);
    assert_eq!(message.receiver, None);
    assert!(matches!(message.body, Body::FindNode { key, .. } if key == NodeId(ME)));
    let mut now = t0;
    let mut failed = false;
    let mut retried = false;
    for _ in 0..80 {
        now += Duration::from_millis(100);
        overlay.handle_timeout(now);
        failed |= std::iter::from_fn(|| overlay.poll_event()).any(|e| e == Event::BootstrapFailed);
        retried |= overlay.poll_transmit().is_some();
    }
    assert!(failed);
    assert!(retried, "retried after bootstrap_retry");
    assert!(!overlay.is_joined());
}

/// Answers FIND_NODE for a tiny network whose members all know each other.
#[test]
fn responsible_set_is_looked_up_then_cached() {
    let t0 = Instant::now();
    let members: Vec<NodeInfo> = (1..=10).map(|i| node(i * 1000)).collect();
    let mut overlay = Overlay::new(node(ME), config(20), t0).unwrap();
    overlay.handle_message(members[0].addr, ping_from(members[0], 1), t0);
    while overlay.poll_transmit().is_some() {}
    let key = NodeId(4321);
    let Responsible::Pending(id) = overlay.responsible_set(key, 3, t0) else {
        panic!("nothing cached yet");
    };
    // Same key again while it runs: the same lookup.
    assert_eq!(
        overlay.responsible_set(key, 3, t0),
        Responsible::Pending(id)
    );
    let mut done = None;
    for _ in 0..50 {
        let outgoing: Vec<(SocketAddr, Message)> =
            std::iter::from_fn(|| overlay.poll_transmit()).collect();
        for (addr, message) in outgoing {
            let Body::FindNode { key, count } = message.body else {
                continue;
            };
            let mut known = members.clone();
            known.retain(|n| n.addr != addr);
            known.sort_by_key(|n| n.id.distance(key));
            known.truncate(count as usize);
            let reply = Message {
                sender: message.receiver.unwrap(),
                sender_data_port: DATA_PORT,
                receiver: Some(NodeId(ME)),
                request: message.request,
                body: Body::Nodes { nodes: known },
            };
            overlay.handle_message(addr, reply, t0);
        }
        while let Some(event) = overlay.poll_event() {
            if let Event::LookupDone(result) = event {
                done = Some(result);
            }
        }
        if done.is_some() {
            break;
        }
    }
    let done = done.expect("lookup finished");
    assert_eq!(done.id, id);
    assert!(done.converged);
    let mut truth: Vec<NodeInfo> = members.clone();
    truth.push(node(ME));
    truth.sort_by_key(|n| n.id.distance(key));
    truth.truncate(3);
    assert_eq!(done.nodes, truth);
    // Now from the cache, until the TTL passes.
    assert_eq!(
        overlay.responsible_set(key, 3, t0),
        Responsible::Ready(truth.clone())
    );
    assert_eq!(
        overlay.responsible_set(key, 2, t0),
        Responsible::Ready(truth[..2].to_vec())
    );
    let later = t0 + overlay.config().responsible_ttl;
    assert!(matches!(
        overlay.responsible_set(key, 3, later),
        Responsible::Pending(_)
    ));
    assert!(overlay.stats().responsible_cache_hits >= 2);
}

#[test]
#[should_panic(expected = "time went backwards")]
fn time_must_not_go_back() {
    let t0 = Instant::now() + Duration::from_secs(10);
    let mut overlay = Overlay::new(node(ME), config(20), t0).unwrap();
    overlay.handle_timeout(t0 - Duration::from_secs(1));
}

#[test]
fn data_ports_are_announced_and_follow_the_node() {
    let t0 = Instant::now();
    let mut config = config(20);
    config.data_port = 9100;
    let mut overlay = Overlay::new(node(ME), config, t0).unwrap();
    assert_eq!(overlay.info().data_port, 9100);
    let peer = node(5);
    overlay.handle_message(peer.addr, ping_from(peer, 1), t0);
    let (_, pong) = overlay.poll_transmit().expect("a PONG");
    assert_eq!(pong.body, Body::Pong);
    assert_eq!(pong.sender_data_port, 9100);
    assert_eq!(overlay.routing_table(), vec![peer]);
    assert_eq!(overlay.neighbourhood(), &[peer]);
    while overlay.poll_event().is_some() {}
    // The peer restarted on another data port: its next message says so.
    let moved = NodeInfo {
        data_port: DATA_PORT + 1,
        ..peer
    };
    overlay.handle_message(peer.addr, ping_from(moved, 2), t0 + Duration::from_secs(1));
    assert_eq!(overlay.routing_table(), vec![moved]);
    assert_eq!(overlay.neighbourhood(), &[moved]);
    let events: Vec<Event> = std::iter::from_fn(|| overlay.poll_event()).collect();
    assert!(events.contains(&Event::NeighbourhoodChanged));
    assert_eq!(
        moved.data_addr(),
        Some(SocketAddr::from(([10, 9, 0, 5], DATA_PORT + 1)))
    );
}
