//! Node configuration: the example files load, defaults apply, every kind of bad input is refused
//! with a message naming the key, and the node id persists in the data directory.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ds::config::{
    ByteSize, ConfigError, DeviceFormat, NodeConfig, ObjectsConfig, PollMode, Problem,
};
use ds_proto::Scheme;

const MINIMAL: &str = r#"
data_dir = "/srv/ds"

[[devices]]
path = "dev0.img"
size = "1G"
"#;

fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::parse(text, "test.toml")
}

/// Parses `text`, expects a refusal, and returns its message after checking that it names
/// `key` and the origin.
fn refused(text: &str, key: &str) -> String {
    let error = parse(text).expect_err("the config should be refused");
    let message = error.to_string();
    assert!(message.starts_with("test.toml"), "no origin in: {message}");
    assert!(message.contains(key), "`{key}` not named in: {message}");
    message
}

#[test]
fn example_files_load() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut loaded = 0;
    for entry in fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let config = NodeConfig::load(&path)
                .unwrap_or_else(|error| panic!("{} does not load: {error}", path.display()));
            config.validate().unwrap();
            assert!(!config.devices.is_empty());
            loaded += 1;
        }
    }
    assert!(
        loaded >= 3,
        "expected the three example files, found {loaded}"
    );

    let node = NodeConfig::load(folder.join("node.toml")).unwrap();
    assert_eq!(node.devices.len(), 1);
    assert_eq!(node.devices[0].size, Some(ByteSize(1 << 30)));
    assert_eq!(node.devices[0].path, node.data_dir.join("dev0.img"));

    let busy = NodeConfig::load(folder.join("busy-2core.toml")).unwrap();
    assert_eq!(busy.poll_mode, PollMode::Busy);
    assert_eq!(busy.cores, 2);

    let two = NodeConfig::load(folder.join("two-devices.toml")).unwrap();
    assert_eq!(two.devices.len(), 2);
    assert_eq!(two.devices[1].format, DeviceFormat::Never);
    assert_eq!(two.objects.default_scheme, Scheme::new(2, 1).unwrap());

    let cluster = NodeConfig::load(folder.join("cluster-node.toml")).unwrap();
    assert_eq!(cluster.objects.default_scheme, Scheme::new(4, 2).unwrap());
    assert_eq!(cluster.objects.write_quorum_parity, None);
}

#[test]
fn defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("/srv/ds"));
    assert_eq!(
        config.listen,
        "127.0.0.1:7000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.cores, 1);
    assert!(config.pin_cores);
    assert_eq!(config.first_cpu, None);
    assert_eq!(config.poll_mode, PollMode::Adaptive);
    assert_eq!(config.adaptive_spin_us, 500);
    assert_eq!(config.stats_socket, PathBuf::from("/srv/ds/stats.sock"));
    assert_eq!(config.log_level, "info");
    assert_eq!(config.objects, ObjectsConfig::default());
    assert_eq!(config.objects.default_scheme, Scheme::new(1, 0).unwrap());
    assert_eq!(config.objects.write_quorum_parity, None);
    assert_eq!(config.max_connections, 1024);
    assert_eq!(config.recv_buffer, ByteSize(256 << 10));
    assert_eq!(config.devices[0].path, PathBuf::from("/srv/ds/dev0.img"));
    assert_eq!(config.devices[0].format, DeviceFormat::IfEmpty);
}

#[test]
fn values_in_both_forms() {
    let config = parse(
        r#"
        data_dir = "d"
        listen = "[::1]:7001"
        cores = 64
        first_cpu = 0
        poll_mode = "sleep"
        stats_socket = "/run/ds.sock"
        recv_buffer = 1048576
        log_level = "warn,ds=debug"
        [objects]
        default_scheme = " 8 + 3 "
        write_quorum_parity = 2
        [[devices]]
        path = "/dev/nvme0n1"
        format = "always"
        [[devices]]
        path = "b.img"
        size = 8192
        "#,
    )
    .unwrap();
    assert_eq!(config.listen, "[::1]:7001".parse::<SocketAddr>().unwrap());
    assert_eq!(config.cores, 64);
    assert_eq!(config.poll_mode, PollMode::Sleep);
    assert_eq!(config.stats_socket, PathBuf::from("/run/ds.sock"));
    assert_eq!(config.recv_buffer, ByteSize(1 << 20));
    assert_eq!(config.devices[0].size, None);
    assert_eq!(config.devices[1].path, PathBuf::from("d/b.img"));
    assert_eq!(config.devices[1].size, Some(ByteSize(8192)));
    assert_eq!(config.objects.default_scheme, Scheme::new(8, 3).unwrap());
    assert_eq!(config.objects.write_quorum_parity, Some(2));
}

#[test]
fn unknown_top_level_key() {
    let message = refused(&format!("colour = \"blue\"\n{MINIMAL}"), "colour");
    assert!(message.contains("test.toml:1:"), "{message}");
}

#[test]
fn unknown_device_key() {
    let text = format!("{MINIMAL}\n[[devices]]\npath = \"b\"\nsizes = \"1G\"\n");
    let message = refused(&text, "sizes");
    assert!(message.contains("devices[1]"), "{message}");
}

#[test]
fn bad_poll_mode() {
    let message = refused(&format!("poll_mode = \"turbo\"\n{MINIMAL}"), "poll_mode");
    assert!(message.contains("turbo"), "{message}");
}

#[test]
fn bad_size_string() {
    let text = format!("{MINIMAL}\n[[devices]]\npath = \"b\"\nsize = \"12Q\"\n");
    let message = refused(&text, "devices[1].size");
    assert!(message.contains("\"12Q\" is not a size"), "{message}");
}

#[test]
fn unaligned_and_zero_sizes() {
    let text = format!("{MINIMAL}\n[[devices]]\npath = \"b\"\nsize = 1000\n");
    let message = refused(&text, "devices[1].size");
    assert!(message.contains("multiple of 4096"), "{message}");
    refused(&format!("recv_buffer = 0\n{MINIMAL}"), "recv_buffer");
    refused(&format!("recv_buffer = \"1T\"\n{MINIMAL}"), "recv_buffer");
    refused(&format!("recv_buffer = -4096\n{MINIMAL}"), "recv_buffer");
}

#[test]
fn cores_out_of_range() {
    let error = parse(&format!("cores = 0\n{MINIMAL}")).unwrap_err();
    assert_eq!(error.key(), Some("cores"));
    assert!(matches!(
        error,
        ConfigError::Invalid {
            problem: Problem::OutOfRange { value: 0, .. },
            ..
        }
    ));
    refused(&format!("cores = 65\n{MINIMAL}"), "cores");
    refused(&format!("cores = \"two\"\n{MINIMAL}"), "cores");
    refused(
        &format!("cores = 8\nfirst_cpu = 1020\n{MINIMAL}"),
        "first_cpu",
    );
}

#[test]
fn no_devices() {
    let message = refused("data_dir = \"/srv/ds\"\n", "devices");
    assert!(message.contains("at least one"), "{message}");
    refused("data_dir = \"/srv/ds\"\ndevices = []\n", "devices");
}

#[test]
fn bad_scheme() {
    for (scheme, why) in [
        ("0+2", "at least 1"),
        ("60+5", "65 shards"),
        ("three", "K+M"),
        ("4+", "M of the scheme"),
        ("4+-1", "M of the scheme"),
        ("300+1", "K of the scheme"),
    ] {
        let text = format!("{MINIMAL}\n[objects]\ndefault_scheme = \"{scheme}\"\n");
        let error = parse(&text).expect_err(scheme);
        assert_eq!(error.key(), Some("objects.default_scheme"), "{error}");
        let message = refused(&text, "objects.default_scheme");
        assert!(message.contains(scheme), "{message}");
        assert!(message.contains(why), "{message}");
    }
    refused(
        &format!("{MINIMAL}\n[objects]\ndefault_scheme = 42\n"),
        "objects.default_scheme",
    );
}

#[test]
fn objects_table() {
    let with = |body: &str| format!("{MINIMAL}\n[objects]\n{body}\n");
    let config = parse(&with("default_scheme = \"1+2\"")).unwrap();
    assert_eq!(config.objects.default_scheme, Scheme::new(1, 2).unwrap());
    assert_eq!(config.objects.write_quorum_parity, None);
    // Unset: ceil(M/2) of each object's scheme; set: capped at the object's M.
    let parity = |config: &NodeConfig, scheme: &str| {
        config.objects.write_quorum_parity(scheme.parse().unwrap())
    };
    assert_eq!(parity(&config, "4+2"), 1);
    assert_eq!(parity(&config, "4+3"), 2);
    let config = parse(&with("write_quorum_parity = 2")).unwrap();
    assert_eq!(config.objects.default_scheme, Scheme::new(1, 0).unwrap());
    assert_eq!(parity(&config, "8+4"), 2);
    assert_eq!(parity(&config, "4+1"), 1);
    assert_eq!(parity(&config, "1+0"), 0);
    let config = parse(&with("write_quorum_parity = 0")).unwrap();
    assert_eq!(parity(&config, "4+2"), 0);

    refused(
        &with("write_quorum_parity = 64"),
        "objects.write_quorum_parity",
    );
    refused(
        &with("write_quorum_parity = -1"),
        "objects.write_quorum_parity",
    );
    refused(
        &with("write_quorum_parity = 300"),
        "objects.write_quorum_parity",
    );
    refused(
        &with("write_quorum_parity = \"two\""),
        "objects.write_quorum_parity",
    );
    refused(&with("scheme = \"4+2\""), "objects.scheme");
}

#[test]
fn top_level_default_scheme_moved() {
    let error = parse(&format!("default_scheme = \"4+2\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(error.key(), Some("default_scheme"));
    assert!(
        matches!(
            error,
            ConfigError::Invalid {
                problem: Problem::Moved(_),
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("[objects]"), "{message}");
}

#[test]
fn duplicate_paths() {
    let text = format!("{MINIMAL}\n[[devices]]\npath = \"/srv/ds/./dev0.img\"\n");
    let message = refused(&text, "devices[1].path");
    assert!(message.contains("devices[0]"), "{message}");
}

#[test]
fn other_bad_values() {
    refused(&format!("listen = \"localhost\"\n{MINIMAL}"), "listen");
    refused(&format!("log_level = \"[[[\"\n{MINIMAL}"), "log_level");
    refused(
        &format!("adaptive_spin_us = 5000000\n{MINIMAL}"),
        "adaptive_spin_us",
    );
    refused(
        &format!("max_connections = 0\n{MINIMAL}"),
        "max_connections",
    );
    refused(&format!("pin_cores = \"yes\"\n{MINIMAL}"), "pin_cores");
    let long = "s".repeat(120);
    refused(
        &format!("stats_socket = \"{long}\"\n{MINIMAL}"),
        "stats_socket",
    );
    let text = format!("{MINIMAL}format = \"sometimes\"\n");
    refused(&text, "devices[0].format");
    refused("[[devices]]\npath = \"a\"\n", "data_dir");
    refused("data_dir = \n", "test.toml");
}

#[test]
fn load_names_the_file() {
    let folder = tempfile::tempdir().unwrap();
    let missing = folder.path().join("missing.toml");
    let error = NodeConfig::load(&missing).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(error.to_string().contains("missing.toml"));

    let bad = folder.path().join("bad.toml");
    fs::write(&bad, format!("{MINIMAL}\ncores = 0\n")).unwrap();
    let message = NodeConfig::load(&bad).unwrap_err().to_string();
    assert!(
        message.contains("bad.toml") && message.contains("cores"),
        "{message}"
    );
}

#[test]
fn node_id_persists() {
    let folder = tempfile::tempdir().unwrap();
    let data_dir = folder.path().join("nested/data");
    let text = format!(
        "data_dir = \"{}\"\n[[devices]]\npath = \"d.img\"\nsize = \"1M\"\n",
        data_dir.display()
    );
    let config = parse(&text).unwrap();
    let id = config.node_id().unwrap();
    assert_ne!(id, 0);
    let stored = fs::read_to_string(data_dir.join("node-id")).unwrap();
    assert_eq!(stored, format!("{id:032x}\n"));
    assert_eq!(config.node_id().unwrap(), id);
    // No temporary file left behind.
    assert_eq!(fs::read_dir(&data_dir).unwrap().count(), 1);

    let other = parse(&text.replace("nested/data", "other")).unwrap();
    assert_ne!(other.node_id().unwrap(), id);
}

#[test]
fn corrupt_node_id_is_kept() {
    let folder = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = \"{}\"\n[[devices]]\npath = \"d.img\"\n",
        folder.path().display()
    );
    let config = parse(&text).unwrap();
    fs::write(config.node_id_path(), "not an id\n").unwrap();
    let error = config.node_id().unwrap_err();
    assert!(matches!(error, ConfigError::NodeIdCorrupt { .. }));
    assert_eq!(
        fs::read_to_string(config.node_id_path()).unwrap(),
        "not an id\n"
    );
}

#[test]
fn overlay_table() {
    let text = "data_dir = \"/srv/ds\"\nlisten = \"10.0.0.5:7000\"\n[overlay]\nseeds = [\"10.0.0.1:7001\"]\ncluster_secret = \"0123456789abcdef-secret\"\nk = 8\n[[devices]]\npath = \"dev0.img\"\nsize = \"1G\"\n";
    let config = parse(text).unwrap();
    assert_eq!(
        config.overlay.seeds,
        vec!["10.0.0.1:7001".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(config.overlay.k, Some(8));
    assert_eq!(
        config.overlay_listen(),
        "10.0.0.5:7001".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.cluster_secret().unwrap(), b"0123456789abcdef-secret");

    let head = "data_dir = \"/srv/ds\"\n";
    let devices = "[[devices]]\npath = \"dev0.img\"\nsize = \"1G\"\n";
    refused(
        &format!("{head}[overlay]\nseedz = []\n{devices}"),
        "overlay.seedz",
    );
    refused(
        &format!("{head}[overlay]\ncluster_secret = \"short\"\n{devices}"),
        "overlay.cluster_secret",
    );
    refused(
        &format!("{head}[overlay]\nseeds = [\"nowhere\"]\n{devices}"),
        "overlay.seeds",
    );
    refused(
        &format!("{head}[overlay]\nalpha = 0\n{devices}"),
        "overlay.alpha",
    );
}

#[test]
fn cluster_secret_is_created_once() {
    let dir = std::env::temp_dir().join(format!("ds-secret-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let config = parse(&format!(
        "data_dir = {dir:?}\n[[devices]]\npath = \"d\"\nsize = \"1G\"\n"
    ))
    .unwrap();
    let first = config.cluster_secret().unwrap();
    assert!(first.len() >= 32);
    assert_eq!(config.cluster_secret().unwrap(), first);
    fs::remove_dir_all(&dir).unwrap();
}
