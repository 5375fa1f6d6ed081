//! The shard store on real files and loop devices, through the real `ds-store` binary:
//! SIGKILL under write load, a flipped byte on disk, garbage and foreign devices, a full device.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ds::cli::parse_key;
use ds::local::{LocalStore, OpenSpec};
use ds::tools::load::payload;
use ds_store::{FormatOptions, FormatPolicy, GetError, PutError, ShardKey, ShardMeta};

const BIN: &str = env!("CARGO_BIN_EXE_ds-store");

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ds_store(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run ds-store")
}

fn open(path: &Path) -> LocalStore {
    LocalStore::open(&OpenSpec {
        paths: vec![path.to_path_buf()],
        create_bytes: None,
        policy: FormatPolicy::Never,
        format: None,
        sqpoll: false,
        durability: Default::default(),
    })
    .expect("open store")
}

#[test]
fn sigkill_under_write_load_loses_nothing_acknowledged() {
    let dir = workdir("sigkill");
    let device = dir.join("dev.img");
    let device_arg = device.to_str().unwrap();
    let out = ds_store(&[
        "format",
        "-d",
        device_arg,
        "--size",
        "1G",
        "--cores",
        "2",
        "--segment",
        "4M",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut acked: Vec<(ShardKey, usize)> = Vec::new();
    for cycle in 1..=3u64 {
        let seed = cycle.to_string();
        let mut child = Command::new(BIN)
            .args([
                "load",
                "-d",
                device_arg,
                "--size",
                "64K",
                "--concurrency",
                "32",
                "--seed",
                &seed,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start load");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut this_cycle = 0;
        // Kill once enough puts are durable that the kill lands mid-load, not at a quiet point.
        while this_cycle < 300 * cycle as usize {
            let line = lines.next().expect("load ended early").unwrap();
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields[0], "ACK", "{line}");
            acked.push((parse_key(fields[1]).unwrap(), fields[3].parse().unwrap()));
            this_cycle += 1;
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        // Acks printed before the kill landed but not yet read are acknowledged too.
        for line in lines.map_while(Result::ok) {
            let fields: Vec<&str> = line.split(' ').collect();
            acked.push((parse_key(fields[1]).unwrap(), fields[3].parse().unwrap()));
        }
        let mut store = open(&device);
        for (key, len) in &acked {
            let (_, data) = store
                .store_for(*key)
                .get(*key)
                .unwrap_or_else(|e| panic!("cycle {cycle}: acknowledged {key} lost: {e}"));
            assert_eq!(data.len(), *len, "{key}");
            assert_eq!(
                data,
                payload(*key, 64 << 10),
                "cycle {cycle}: {key} differs"
            );
        }
    }
    assert!(acked.len() >= 1800);
}

#[test]
fn a_flipped_byte_on_the_file_is_caught_by_get_and_scrub() {
    let dir = workdir("flip");
    let device = dir.join("dev.img");
    let device_arg = device.to_str().unwrap();
    assert!(ds_store(&[
        "format",
        "-d",
        device_arg,
        "--size",
        "256M",
        "--segment",
        "4M"
    ])
    .status
    .success());
    let input = dir.join("input");
    let pattern: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&input, &pattern).unwrap();
    let out = ds_store(&["put", "-d", device_arg, "beef/1/2", input.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ds_store(&["put", "-d", device_arg, "cafe", input.to_str().unwrap()]);
    assert!(out.status.success());
    let out = ds_store(&["get", "-d", device_arg, "beef/1/2"]);
    assert_eq!(out.stdout, pattern);
    // Flip one byte in the middle of the first copy of the pattern on the device.
    let mut image = std::fs::read(&device).unwrap();
    let at = image
        .windows(4096)
        .position(|w| w == &pattern[..4096])
        .unwrap()
        + 50_000;
    image[at] ^= 0x40;
    std::fs::write(&device, &image).unwrap();
    let out = ds_store(&["get", "-d", device_arg, "beef/1/2"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "corrupt data must never be returned");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt"), "{stderr}");
    let out = ds_store(&["get", "-d", device_arg, "cafe"]);
    assert_eq!(out.stdout, pattern, "the other shard is untouched");
    let out = ds_store(&["scrub", "-d", device_arg, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bad = report["bad"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{report}");
    assert_eq!(bad[0]["key"], "0000000000000000000000000000beef/1/2");
    assert_eq!(bad[0]["live"], true);
}

#[test]
fn garbage_and_foreign_devices_are_refused_and_left_untouched() {
    let dir = workdir("foreign");
    let garbage = dir.join("garbage.img");
    let bytes: Vec<u8> = (0..(8u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, &bytes).unwrap();
    for args in [vec!["format"], vec!["stat"], vec!["get", "abc"]] {
        let mut full = args.clone();
        full.extend(["-d", garbage.to_str().unwrap()]);
        let out = ds_store(&full);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not a ds device"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(
        std::fs::read(&garbage).unwrap() == bytes,
        "a refused device was modified"
    );

    let ext4 = dir.join("ext4.img");
    std::fs::write(&ext4, vec![0u8; 64 << 20]).unwrap();
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&ext4)
        .status()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(mkfs.success());
    let before = std::fs::read(&ext4).unwrap();
    let out = ds_store(&["format", "-d", ext4.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert!(
        std::fs::read(&ext4).unwrap() == before,
        "the ext4 image was modified"
    );
    // Asked for explicitly, formatting proceeds.
    let out = ds_store(&[
        "format",
        "--force",
        "-d",
        ext4.to_str().unwrap(),
        "--segment",
        "1M",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A damaged ds superblock is refused too, not reformatted.
    let mut image = std::fs::read(&ext4).unwrap();
    image[100] ^= 1;
    image[4096 + 100] ^= 1;
    std::fs::write(&ext4, &image).unwrap();
    let out = ds_store(&["format", "-d", ext4.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged in both copies"));
}

#[test]
fn a_full_file_device_says_no_space_and_stays_usable() {
    let dir = workdir("full");
    let mut store = LocalStore::open(&OpenSpec {
        paths: vec![dir.join("dev.img")],
        create_bytes: Some(48 << 20),
        policy: FormatPolicy::IfEmpty,
        format: Some(FormatOptions {
            partitions: 1,
            segment_bytes: 1 << 20,
            node_id: 5,
            block_bytes: None,
        }),
        sqpoll: false,
        durability: Default::default(),
    })
    .unwrap();
    let core = &mut store.cores[0];
    let key = |n: u64| ShardKey::new(u128::from(n) + 1, 0, 0);
    let meta = |version| ShardMeta {
        version,
        scheme_k: 1,
        scheme_m: 0,
        object_bytes: 0,
    };
    let mut stored = 0;
    let error = loop {
        match core.put(key(stored), meta(1), &vec![stored as u8; 300_000]) {
            Ok(()) => stored += 1,
            Err(error) => break error,
        }
    };
    assert_eq!(error, PutError::NoSpace);
    for n in 0..stored {
        assert_eq!(core.get(key(n)).unwrap().1, vec![n as u8; 300_000]);
    }
    for n in 0..stored / 2 {
        assert!(core.delete(key(n), 2).unwrap());
        assert_eq!(core.get(key(n)).unwrap_err(), GetError::NotFound);
    }
    core.request_compaction();
    core.run_until_idle();
    core.put(key(1000), meta(1), &vec![9; 300_000])
        .expect("space is back after compaction");
    for n in stored / 2..stored {
        assert_eq!(core.get(key(n)).unwrap().1, vec![n as u8; 300_000]);
    }
}

#[test]
fn the_store_runs_on_a_loop_device() {
    let dir = workdir("loop");
    let backing = dir.join("backing.img");
    std::fs::write(&backing, vec![0u8; 128 << 20]).unwrap();
    let out = Command::new("losetup")
        .args(["--find", "--show", "--direct-io=on"])
        .arg(&backing)
        .output()
        .expect("losetup (util-linux) must be installed; this test needs root");
    assert!(
        out.status.success(),
        "losetup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loop_device = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let result = std::panic::catch_unwind(|| {
        let out = ds_store(&[
            "format",
            "-d",
            &loop_device,
            "--segment",
            "4M",
            "--cores",
            "2",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let input = dir.join("input");
        std::fs::write(&input, vec![7u8; 123_457]).unwrap();
        assert!(
            ds_store(&["put", "-d", &loop_device, "77/0/3", input.to_str().unwrap()])
                .status
                .success()
        );
        let out = ds_store(&["get", "-d", &loop_device, "77/0/3"]);
        assert_eq!(out.stdout, vec![7u8; 123_457]);
        let out = ds_store(&["scrub", "-d", &loop_device]);
        assert!(out.status.success());
    });
    let _ = Command::new("losetup").args(["-d", &loop_device]).status();
    result.unwrap();
}
