//! The wire codec: every message survives a round trip, and every malformed, truncated,
//! forged or replayed datagram is refused with its own reason, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use ds_overlay::codec::{
    nodes_fitting, reseal, BODY_LENGTH_AT, FLAGS_AT, HEADER_BYTES, MESSAGE_BYTES_MIN, OPCODE_AT,
    RECEIVER_AT, REQUEST_AT, TRAILER_BYTES, VERSION_AT,
};
use ds_overlay::limits::{MESSAGE_BYTES_MAX, NODES_PER_MESSAGE_MAX};
use ds_overlay::{
    decode, encode, Body, ClusterSecret, Config, DecodeError, DropReason, Message, NodeId,
    NodeInfo, Overlay, RequestId,
};
use proptest::prelude::*;

fn secret() -> ClusterSecret {
    ClusterSecret::new(b"codec test cluster secret").unwrap()
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    let node = (any::<u128>(), addr(), any::<u16>()).prop_map(|(id, addr, data_port)| NodeInfo {
        id: NodeId(id),
        addr,
        data_port,
    });
    prop_oneof![
        Just(Body::Ping),
        Just(Body::Pong),
        Just(Body::Leave),
        (any::<u128>(), 1..=NODES_PER_MESSAGE_MAX as u8).prop_map(|(key, count)| {
            Body::FindNode {
                key: NodeId(key),
                count,
            }
        }),
        // Many IPv6 nodes do not fit one datagram; the overlay sends the prefix that fits.
        proptest::collection::vec(node, 0..=NODES_PER_MESSAGE_MAX).prop_map(|mut nodes| {
            nodes.truncate(nodes_fitting(&nodes));
            Body::Nodes { nodes }
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<u128>(),
        any::<u16>(),
        proptest::option::of(any::<u128>()),
        any::<u64>(),
        body(),
    )
        .prop_map(|(sender, data_port, receiver, request, body)| Message {
            sender: NodeId(sender),
            sender_data_port: data_port,
            receiver: receiver.map(NodeId),
            request: RequestId(request),
            body,
        })
}

fn encoded(message: &Message, sequence: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode(message, sequence, &secret(), &mut bytes);
    bytes
}

fn ping() -> Message {
    Message {
        sender: NodeId(7),
        sender_data_port: 7100,
        receiver: Some(NodeId(8)),
        request: RequestId(9),
        body: Body::Ping,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn roundtrip(message in message(), sequence in any::<u64>()) {
        let bytes = encoded(&message, sequence);
        prop_assert!(bytes.len() <= MESSAGE_BYTES_MAX);
        let decoded = decode(&bytes, &secret()).unwrap();
        prop_assert_eq!(decoded.message, message);
        prop_assert_eq!(decoded.sequence, sequence);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        prop_assert!(decode(&bytes, &secret()).is_err());
    }

    /// Any change to a valid datagram is caught (by length, magic, version, crc or MAC).
    #[test]
    fn tampering_is_refused(
        message in message(),
        at in any::<prop::sample::Index>(),
        flip in 1..=255u8,
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = encoded(&message, 1);
        let mut flipped = bytes.clone();
        let at = at.index(flipped.len());
        flipped[at] ^= flip;
        prop_assert!(decode(&flipped, &secret()).is_err());
        let cut = cut.index(bytes.len());
        prop_assert!(decode(&bytes[..cut], &secret()).is_err());
    }

    /// With crc and MAC made valid again, edits reach the header and body checks: decoding
    /// gives an error or a message that encodes back to exactly those bytes.
    #[test]
    fn resealed_edits_are_checked_or_canonical(
        message in message(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encoded(&message, 3);
        let editable = bytes.len() - TRAILER_BYTES;
        for (at, value) in edits {
            bytes[at.index(editable)] = value;
        }
        reseal(&mut bytes, &secret());
        if let Ok(decoded) = decode(&bytes, &secret()) {
            prop_assert_eq!(encoded(&decoded.message, decoded.sequence), bytes);
        }
    }
}

#[test]
fn each_reason_is_reported() {
    let secret = secret();
    let good = encoded(&ping(), 1);
    assert!(decode(&good, &secret).is_ok());

    let big = vec![0u8; MESSAGE_BYTES_MAX + 1];
    assert_eq!(
        decode(&big, &secret),
        Err(DecodeError::TooLarge {
            bytes: MESSAGE_BYTES_MAX + 1
        })
    );
    assert_eq!(
        decode(&good[..MESSAGE_BYTES_MIN - 1], &secret),
        Err(DecodeError::Truncated)
    );
    assert_eq!(decode(&good[..2], &secret), Err(DecodeError::Truncated));
    assert_eq!(
        decode(b"GET / HTTP/1.1", &secret),
        Err(DecodeError::BadMagic)
    );

    let mut bytes = good.clone();
    bytes[0] = b'X';
    assert_eq!(decode(&bytes, &secret), Err(DecodeError::BadMagic));

    // Version 1 had no data ports: refused, not misread.
    let mut bytes = good.clone();
    bytes[VERSION_AT] = 1;
    assert_eq!(
        decode(&bytes, &secret),
        Err(DecodeError::BadVersion { version: 1 })
    );

    // Declared body longer than the datagram: truncated; shorter: trailing bytes.
    let mut bytes = good.clone();
    bytes[BODY_LENGTH_AT] = 5;
    assert_eq!(decode(&bytes, &secret), Err(DecodeError::Truncated));
    let mut bytes = good.clone();
    bytes.push(0);
    assert_eq!(decode(&bytes, &secret), Err(DecodeError::BodyLength));

    let mut bytes = good.clone();
    bytes[REQUEST_AT + 1] ^= 1;
    assert_eq!(decode(&bytes, &secret), Err(DecodeError::BadChecksum));

    // Forged: crc fixed up by someone without the secret.
    let mut bytes = good.clone();
    bytes[REQUEST_AT + 1] ^= 1;
    let crc_at = bytes.len() - TRAILER_BYTES;
    let crc = crc32c::crc32c(&bytes[..crc_at]);
    bytes[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decode(&bytes, &secret), Err(DecodeError::BadMac));
    // Made with another cluster's secret.
    let other = ClusterSecret::new(b"some other cluster's secret").unwrap();
    assert_eq!(decode(&good, &other), Err(DecodeError::BadMac));

    // Behind the MAC (resealed with the right secret): header and body checks.
    let mut bytes = good.clone();
    bytes[FLAGS_AT] = 0x80;
    reseal(&mut bytes, &secret);
    assert_eq!(decode(&bytes, &secret), Err(DecodeError::BadHeader));
    let mut bytes = encoded(
        &Message {
            receiver: None,
            ..ping()
        },
        1,
    );
    bytes[RECEIVER_AT] = 1;
    reseal(&mut bytes, &secret);
    assert_eq!(decode(&bytes, &secret), Err(DecodeError::BadHeader));
    let mut bytes = good.clone();
    bytes[OPCODE_AT] = 99;
    reseal(&mut bytes, &secret);
    assert_eq!(
        decode(&bytes, &secret),
        Err(DecodeError::UnknownOpcode { opcode: 99 })
    );
    // A PING that claims to be FIND_NODE has no body.
    let mut bytes = good.clone();
    bytes[OPCODE_AT] = 3;
    reseal(&mut bytes, &secret);
    assert_eq!(decode(&bytes, &secret), Err(DecodeError::BadBody));
    // NODES with a count beyond the limit, and with a bad address family.
    let nodes = Message {
        body: Body::Nodes {
            nodes: vec![NodeInfo {
                id: NodeId(1),
                addr: "10.0.0.1:1".parse().unwrap(),
                data_port: 2,
            }],
        },
        ..ping()
    };
    let mut bytes = encoded(&nodes, 1);
    bytes[HEADER_BYTES] = (NODES_PER_MESSAGE_MAX + 1) as u8;
    reseal(&mut bytes, &secret);
    assert_eq!(decode(&bytes, &secret), Err(DecodeError::BadBody));
    let mut bytes = encoded(&nodes, 1);
    bytes[HEADER_BYTES + 1 + 16] = 5;
    reseal(&mut bytes, &secret);
    assert_eq!(decode(&bytes, &secret), Err(DecodeError::BadBody));
}

fn node(id: u128, port: u16) -> NodeInfo {
    NodeInfo {
        id: NodeId(id),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        data_port: 0,
    }
}

fn overlay(info: NodeInfo, secret: ClusterSecret, now: Instant) -> Overlay {
    Overlay::new(info, Config::new(secret), now).unwrap()
}

#[test]
fn data_ports_travel_in_datagrams() {
    let now = Instant::now();
    let start = |info: NodeInfo| {
        let mut config = Config::new(secret());
        config.data_port = info.addr.port() + 1000;
        Overlay::new(info, config, now).unwrap()
    };
    let (a, b, c) = (node(1, 7001), node(2, 7002), node(3, 7003));
    let mut nodes = vec![start(a), start(b), start(c)];
    nodes[1].bootstrap(&[], now);
    nodes[0].bootstrap(&[b.addr], now);
    nodes[2].bootstrap(&[b.addr], now);
    // Deliver until quiet: a and c learn of each other through b's NODES lists.
    let mut datagram = Vec::new();
    for _ in 0..20 {
        let mut in_flight = Vec::new();
        for node in &mut nodes {
            let source = node.info().addr;
            while let Some(to) = node.poll_transmit_datagram(&mut datagram) {
                in_flight.push((source, to, datagram.clone()));
            }
        }
        if in_flight.is_empty() {
            break;
        }
        for (source, to, bytes) in in_flight {
            for node in nodes.iter_mut().filter(|node| node.info().addr == to) {
                let _ = node.handle_datagram(source, &bytes, now);
            }
        }
    }
    for overlay in &nodes {
        let table = overlay.routing_table();
        assert_eq!(table.len(), 2, "{:?}", overlay.info());
        for entry in table {
            assert_eq!(entry.data_port, entry.addr.port() + 1000);
            assert_eq!(
                entry.data_addr(),
                Some(SocketAddr::from(([127, 0, 0, 1], entry.addr.port() + 1000)))
            );
        }
    }
}

#[test]
fn overlay_counts_every_refused_datagram_and_replays() {
    let now = Instant::now();
    let a = node(1, 7001);
    let b = node(2, 7002);
    let mut sender = overlay(a, secret(), now);
    let mut receiver = overlay(b, secret(), now);
    sender.bootstrap(&[b.addr], now);
    let mut datagram = Vec::new();
    let to = sender.poll_transmit_datagram(&mut datagram).unwrap();
    assert_eq!(to, b.addr);
    assert_eq!(receiver.handle_datagram(a.addr, &datagram, now), Ok(()));
    // The same datagram again (a replay, or a duplicate from the network): refused.
    assert_eq!(
        receiver.handle_datagram(a.addr, &datagram, now),
        Err(DecodeError::Replayed)
    );
    let mut forged = datagram.clone();
    forged[HEADER_BYTES] ^= 1;
    assert_eq!(
        receiver.handle_datagram(a.addr, &forged, now),
        Err(DecodeError::BadChecksum)
    );
    assert!(receiver
        .handle_datagram(a.addr, &datagram[..10], now)
        .is_err());
    assert!(receiver.handle_datagram(a.addr, &[0u8; 2000], now).is_err());
    let stats = receiver.stats();
    assert_eq!(stats.dropped.get(DropReason::Replayed), 1);
    assert_eq!(stats.dropped.get(DropReason::BadChecksum), 1);
    assert_eq!(stats.dropped.get(DropReason::Truncated), 1);
    assert_eq!(stats.dropped.get(DropReason::TooLarge), 1);
    assert_eq!(stats.messages_received, 1);
    // The answer made it back; a node that knows the secret is in.
    while let Some(to) = receiver.poll_transmit_datagram(&mut datagram) {
        assert_eq!(to, a.addr);
        assert_eq!(sender.handle_datagram(b.addr, &datagram, now), Ok(()));
    }
    assert!(sender.knows(b.id));
    assert!(receiver.knows(a.id));
}

#[test]
fn a_node_without_the_secret_cannot_join() {
    let now = Instant::now();
    let member = node(1, 7001);
    let outsider = node(2, 7002);
    let mut inside = overlay(member, secret(), now);
    let wrong = ClusterSecret::new(b"guessed secret, not the cluster's").unwrap();
    let mut outside = overlay(outsider, wrong, now);
    inside.bootstrap(&[], now);
    outside.bootstrap(&[member.addr], now);
    let mut datagram = Vec::new();
    while let Some(to) = outside.poll_transmit_datagram(&mut datagram) {
        assert_eq!(to, member.addr);
        assert_eq!(
            inside.handle_datagram(outsider.addr, &datagram, now),
            Err(DecodeError::BadMac)
        );
    }
    assert!(!inside.knows(outsider.id));
    assert!(
        inside.poll_transmit().is_none(),
        "nothing is sent back to an outsider"
    );
    assert_eq!(inside.stats().dropped.get(DropReason::BadMac), 1);
    assert_eq!(inside.routing_entries(), 0);
}

#[test]
fn replies_to_another_node_are_refused() {
    // A reply names its receiver; delivered elsewhere (replayed to another node) it is dropped.
    let now = Instant::now();
    let mut target = overlay(node(5, 7005), secret(), now);
    let stray = Message {
        sender: NodeId(6),
        sender_data_port: 0,
        receiver: Some(NodeId(77)),
        request: RequestId(1),
        body: Body::Pong,
    };
    target.handle_message(node(6, 7006).addr, stray, now);
    let leave = Message {
        sender: NodeId(6),
        sender_data_port: 0,
        receiver: None,
        request: RequestId(0),
        body: Body::Leave,
    };
    target.handle_message(node(6, 7006).addr, leave, now);
    assert_eq!(target.stats().dropped.get(DropReason::Misdirected), 2);
    assert!(!target.knows(NodeId(6)));
}
