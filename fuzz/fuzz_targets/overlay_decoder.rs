//! `ds_overlay::decode` (the overlay's datagram codec) on arbitrary bytes: never panics, and a
//! datagram it accepts re-encodes to exactly the same bytes (the encoding is canonical, so two
//! parsers cannot disagree on a message). Each input is tried as it is, and forged: magic,
//! version, body length, crc and MAC made valid with the fuzz secret, so the fuzzer gets behind
//! the MAC to the header and body checks (like proto_decoder it forges its own inputs and has
//! no seeds in gen_corpus). The replay window is checked against a plain model: a sequence
//! number passes once, and only if it is within 64 of the highest seen.
#![no_main]

use std::collections::HashSet;

use ds_overlay::codec::{reseal, BODY_LENGTH_AT, MAGIC, MESSAGE_BYTES_MIN, VERSION, VERSION_AT};
use ds_overlay::limits::{MESSAGE_BYTES_MAX, NODES_PER_MESSAGE_MAX, REPLAY_WINDOW};
use ds_overlay::{decode, encode, Body, ClusterSecret, NodeId, ReplayGuard};
use libfuzzer_sys::fuzz_target;

/// The secret gen_corpus seals its seeds with.
const FUZZ_SECRET: &[u8] = b"ds fuzz cluster secret";

fuzz_target!(|data: &[u8]| {
    let secret = ClusterSecret::new(FUZZ_SECRET).expect("valid secret");
    check(data, &secret);
    if (MESSAGE_BYTES_MIN..=MESSAGE_BYTES_MAX).contains(&data.len()) {
        let mut forged = data.to_vec();
        forged[..4].copy_from_slice(&MAGIC);
        forged[VERSION_AT] = VERSION;
        let body = (forged.len() - MESSAGE_BYTES_MIN) as u16;
        forged[BODY_LENGTH_AT..BODY_LENGTH_AT + 2].copy_from_slice(&body.to_le_bytes());
        reseal(&mut forged, &secret);
        check(&forged, &secret);
    }
    replay_model(data);
});

fn check(bytes: &[u8], secret: &ClusterSecret) {
    let Ok(decoded) = decode(bytes, secret) else {
        return;
    };
    if let Body::Nodes { nodes } = &decoded.message.body {
        assert!(nodes.len() <= NODES_PER_MESSAGE_MAX);
    }
    let mut encoded = Vec::new();
    encode(&decoded.message, decoded.sequence, secret, &mut encoded);
    assert_eq!(encoded, bytes, "accepted bytes are not canonical");
}

fn replay_model(data: &[u8]) {
    let mut guard = ReplayGuard::new();
    let mut seen = HashSet::new();
    let mut highest: Option<u64> = None;
    let peer = NodeId(1);
    for pair in data.chunks_exact(2) {
        let sequence = u64::from(u16::from_le_bytes([pair[0], pair[1]]));
        let fresh = !seen.contains(&sequence)
            && highest.is_none_or(|top| sequence + REPLAY_WINDOW > top);
        assert_eq!(guard.check(peer, sequence).is_ok(), fresh, "sequence {sequence}");
        if fresh {
            seen.insert(sequence);
            highest = Some(highest.map_or(sequence, |top| top.max(sequence)));
        }
    }
}
