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

/// Whether process `pid` may still hold its descriptors: it runs, or its main thread is a
/// zombie while other threads still exit (the descriptor table, listening sockets included,
/// is closed by the last thread: a node restarted before that shares its port with a listener
/// about to close, which resets the connections it queued).
pub fn alive(pid: u32) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/status")).map(|s| {
        s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    });
    match zombie {
        Err(_) => false,
        Ok(false) => true,
        Ok(true) => {
            std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| tasks.count() > 1)
        }
    }
}

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

/// The bytes of [`pattern`]`(seed, ..)` as a stream, for objects too large to hold in memory:
/// the first `n` bytes it yields are `pattern(seed, n)`.
#[derive(Clone, Debug)]
pub struct PatternStream {
    x: u64,
}

impl PatternStream {
    pub fn new(seed: u64) -> PatternStream {
        PatternStream {
            x: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    pub fn next_byte(&mut self) -> u8 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        self.x as u8
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            *byte = self.next_byte();
        }
    }
}

/// `len` bytes of `pattern(seed, len)` as a reader (for `Client::put_from`).
pub struct PatternReader {
    stream: PatternStream,
    left: u64,
}

impl PatternReader {
    pub fn new(seed: u64, len: u64) -> PatternReader {
        PatternReader {
            stream: PatternStream::new(seed),
            left: len,
        }
    }
}

impl std::io::Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.stream.fill(&mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// A sink that checks what is written into it against `pattern(seed, ..)`: `seen` counts the
/// bytes, `first_mismatch` is the offset of the first wrong one.
pub struct PatternCheck {
    stream: PatternStream,
    pub seen: u64,
    pub first_mismatch: Option<u64>,
}

impl PatternCheck {
    pub fn new(seed: u64) -> PatternCheck {
        PatternCheck {
            stream: PatternStream::new(seed),
            seen: 0,
            first_mismatch: None,
        }
    }

    /// Whether exactly `pattern(seed, len)` was written.
    pub fn is_exact(&self, len: u64) -> bool {
        self.first_mismatch.is_none() && self.seen == len
    }
}

impl std::io::Write for PatternCheck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for (at, &byte) in buf.iter().enumerate() {
            if self.stream.next_byte() != byte && self.first_mismatch.is_none() {
                self.first_mismatch = Some(self.seen + at as u64);
            }
        }
        self.seen += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
