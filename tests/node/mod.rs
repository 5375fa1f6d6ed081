//! A real `ds-appliance` process on file devices under a test directory, for the node tests.
#![allow(dead_code)] // each test file uses a different part of this helper

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ds_proto::Client;

pub const APPLIANCE: &str = env!("CARGO_BIN_EXE_ds-appliance");
pub const DS: &str = env!("CARGO_BIN_EXE_ds");

pub fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct NodeProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// The overlay's UDP address.
    pub overlay: SocketAddr,
    pub config: PathBuf,
    pub dir: PathBuf,
}

/// Writes a config for a node under `dir` with `cores` and one file device of `device_size`.
pub fn write_config(dir: &Path, cores: usize, device_size: &str, extra: &str) -> PathBuf {
    let config = dir.join("node.toml");
    let text = format!(
        "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\ncores = {cores}\npin_cores = false\npoll_mode = \"adaptive\"\nlog_level = \"warn\"\n{extra}\n[[devices]]\npath = \"dev0.img\"\nsize = {device_size:?}\n",
        data = dir.join("data"),
    );
    std::fs::write(&config, text).unwrap();
    config
}

impl NodeProcess {
    /// Starts `ds-appliance --config CONFIG` and waits for its "serving on" line.
    pub fn start(config: &Path) -> NodeProcess {
        let mut child = Command::new(APPLIANCE)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ds-appliance");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .split("serving on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .unwrap();
        let overlay = line
            .split("(overlay ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("no overlay address in {line:?}"))
            .parse()
            .unwrap();
        NodeProcess {
            child,
            addr,
            overlay,
            config: config.to_path_buf(),
            dir: config.parent().unwrap().to_path_buf(),
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr, Duration::from_secs(5)).expect("connect")
    }

    pub fn stats_socket(&self) -> PathBuf {
        self.dir.join("data").join("stats.sock")
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "node exited with {status}");
    }

    /// SIGKILL: a crash.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Runs the `ds` CLI against this node.
    pub fn ds(&self, args: &[&str]) -> std::process::Output {
        Command::new(DS)
            .arg("--node")
            .arg(self.addr.to_string())
            .args(args)
            .output()
            .expect("run ds")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic test bytes: object `seed`, `len` bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
