//! A small network that sends every message through the wire codec (crc32c, HMAC-SHA256,
//! replay windows), with intruders that hold another cluster secret: the honest nodes work as
//! without the codec, and no intruder gets into any table.

use ds_overlay::sim::{SimConfig, Simulation};

#[test]
fn codec_path_works_and_intruders_stay_out() {
    let report = Simulation::new(SimConfig {
        nodes: 200,
        seed: 21,
        churn: 0.1,
        intruders: 5,
        codec: true,
        lookups: 200,
        accuracy_keys: 100,
        ..SimConfig::default()
    })
    .run();
    eprintln!("{}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.lookup_success, 1.0);
    assert_eq!(report.responsible_set_accuracy, 1.0);
    assert_eq!(report.intruders_admitted, 0);
    let bad_mac = report.dropped.get("bad_mac").copied().unwrap_or(0);
    assert!(
        bad_mac > 0,
        "the intruders' messages were counted: {:?}",
        report.dropped
    );
    // Honest traffic is never refused by the codec.
    for reason in [
        "bad_checksum",
        "replayed",
        "truncated",
        "bad_magic",
        "bad_body",
    ] {
        assert_eq!(report.dropped.get(reason), None, "{reason}");
    }
}
