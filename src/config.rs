//! A node's configuration: the `node.toml` file read by `ds-appliance --config`, and the node's
//! identity kept in its data directory.
//!
//! Parsing is two steps. Serde reads the file with `deny_unknown_fields` everywhere, so a typo is
//! an error naming the key (its dotted path and line come from `serde_path_to_error` and the TOML
//! span). Then [`NodeConfig::validate`] checks ranges and relations between keys. Whether device
//! files exist, or whether the CPUs exist, is checked when the node starts: a config checked on one
//! machine may be meant for another.
//!
//! Relative paths: `data_dir` is taken from the working directory; device paths and
//! `stats_socket` are taken under `data_dir`.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ds_proto::Scheme;
use ds_store::FormatPolicy;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Data cores a node runs at most (also the most partitions a device holds).
pub const CORES_MAX: usize = 64;
/// CPUs `sched_setaffinity` addresses with a `cpu_set_t` (glibc's CPU_SETSIZE).
pub const CPUS_MAX: usize = 1024;
/// The longest spin of the adaptive poll mode before a core blocks.
pub const ADAPTIVE_SPIN_US_MAX: u64 = 1_000_000;
/// Connections one core accepts at most.
pub const CONNECTIONS_PER_CORE_MAX: usize = 65_536;
/// Bounds of one connection's receive buffer.
pub const RECV_BUFFER_BYTES_MIN: u64 = 4096;
pub const RECV_BUFFER_BYTES_MAX: u64 = 64 << 20;
/// Every configured size is a multiple of this (the largest logical block the store expects).
pub const SIZE_ALIGN_BYTES: u64 = 4096;
/// Shards of one object at most (K + M).
pub const SCHEME_SHARDS_MAX: u32 = ds_proto::limits::SCHEME_SHARDS_MAX as u32;
/// The largest `objects.write_quorum_parity`: M of the widest scheme (K = 1).
pub const WRITE_QUORUM_PARITY_MAX: u8 = (ds_proto::limits::SCHEME_SHARDS_MAX - 1) as u8;
/// `sun_path` holds 108 bytes including the terminating zero.
pub const SOCKET_PATH_BYTES_MAX: usize = 107;
/// The file under `data_dir` that holds the node id.
pub const NODE_ID_FILE: &str = "node-id";

const _: () = assert!(CORES_MAX <= CPUS_MAX);
const _: () = assert!(RECV_BUFFER_BYTES_MIN.is_multiple_of(SIZE_ALIGN_BYTES));
const _: () = assert!(RECV_BUFFER_BYTES_MAX.is_multiple_of(SIZE_ALIGN_BYTES));

/// Why a configuration was refused or the node id could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("{}: cannot read: {source}", origin.display())]
    Read { origin: PathBuf, source: io::Error },
    /// Not TOML, an unknown or missing key, or a value of the wrong type or form. `key` is the
    /// dotted path of the key (empty for the top level), `location` the file and line.
    #[error("{location}: {}{detail}", key_prefix(key))]
    Parse {
        location: String,
        key: String,
        detail: String,
    },
    /// A key's value is well-formed but not acceptable.
    #[error("{origin}: {key}: {problem}")]
    Invalid {
        origin: String,
        key: String,
        problem: Problem,
    },
    /// The node id file could not be read, or created.
    #[error("{}: node id: {source}", path.display())]
    NodeIdIo { path: PathBuf, source: io::Error },
    /// The cluster secret file could not be read, or created.
    #[error("{}: cluster secret: {source}", path.display())]
    SecretIo { path: PathBuf, source: io::Error },
    /// The node id file holds something other than 32 hex digits. It is never replaced: that
    /// would give the node's data a new owner.
    #[error("{}: not a node id (expected 32 hex digits); not replacing it", path.display())]
    NodeIdCorrupt { path: PathBuf },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl ConfigError {
    /// The dotted path of the key at fault, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Parse { key, .. } | ConfigError::Invalid { key, .. }
                if !key.is_empty() =>
            {
                Some(key)
            }
            _ => None,
        }
    }
}

/// What is wrong with a well-formed value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A number outside its range.
    #[error("{value} is outside {min}..={max}")]
    OutOfRange { value: u64, min: u64, max: u64 },
    /// A size of zero bytes.
    #[error("must be greater than 0")]
    Zero,
    /// A size that is not a whole number of 4 KiB blocks.
    #[error("{0} is not a multiple of 4096")]
    Unaligned(u64),
    /// A path that is empty.
    #[error("must not be empty")]
    Empty,
    /// No `[[devices]]` entry.
    #[error("at least one [[devices]] entry is required")]
    NoDevices,
    /// A device listed twice.
    #[error("{path} is also devices[{first}]")]
    DuplicatePath { path: String, first: usize },
    /// A Unix socket path longer than `sun_path` holds.
    #[error("{bytes} bytes is longer than a Unix socket path may be ({SOCKET_PATH_BYTES_MAX})")]
    SocketPathTooLong { bytes: usize },
    /// A tracing filter that does not parse.
    #[error("{text:?} is not a log filter: {reason}")]
    BadFilter { text: String, reason: String },
    /// A key that moved; the value names where it lives now.
    #[error("moved: write it as {0}")]
    Moved(&'static str),
    /// A secret shorter than is safe.
    #[error("is {bytes} bytes; at least {min} are needed")]
    TooShort { bytes: usize, min: usize },
    /// `first_cpu + cores` past the CPUs an affinity mask addresses.
    #[error("cores {first}..{end} go past CPU {}", CPUS_MAX - 1)]
    CpusPastEnd { first: usize, end: usize },
}

/// How a data core waits when it has nothing to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    /// Never block: 100% of a CPU, the lowest latency.
    Busy,
    /// Spin `adaptive_spin_us`, then block on completions.
    #[default]
    Adaptive,
    /// Block as soon as there is nothing to do.
    Sleep,
}

/// When a device is formatted at start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceFormat {
    /// Never: a device without a ds superblock is an error.
    Never,
    /// Only a device whose superblock area is all zeros.
    #[default]
    IfEmpty,
    /// Always: erases what is there.
    Always,
}

impl From<DeviceFormat> for FormatPolicy {
    fn from(format: DeviceFormat) -> Self {
        match format {
            DeviceFormat::Never => FormatPolicy::Never,
            DeviceFormat::IfEmpty => FormatPolicy::IfEmpty,
            DeviceFormat::Always => FormatPolicy::Always,
        }
    }
}

/// A byte count, written in the file as an integer or a string such as `"512M"` or `"1G"`
/// (binary multiples K, M, G, T; a trailing `B` or `iB` is allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let upper = text.trim().to_ascii_uppercase();
        let upper = upper
            .strip_suffix("IB")
            .or_else(|| upper.strip_suffix('B'))
            .unwrap_or(&upper);
        let (digits, shift) = match upper.chars().last() {
            Some('K') => (&upper[..upper.len() - 1], 10),
            Some('M') => (&upper[..upper.len() - 1], 20),
            Some('G') => (&upper[..upper.len() - 1], 30),
            Some('T') => (&upper[..upper.len() - 1], 40),
            _ => (upper, 0),
        };
        let digits = digits.trim_end();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let value: u64 = digits.parse().map_err(|_| ())?;
        value.checked_mul(1 << shift).map(ByteSize).ok_or(())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes as an integer, or a string such as \"512M\"")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(value))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ByteSize, E> {
                u64::try_from(value)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{value} is not a size (it is negative)")))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(|()| {
                    E::custom(format!(
                        "{text:?} is not a size (examples: 4096, 64K, 512M, 1G)"
                    ))
                })
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Reads a scheme `"K+M"` with ds_proto's parser, so a config accepts exactly what CREATE does;
/// the error repeats the text and says what is wrong with it.
fn deserialize_scheme<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Scheme, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|error: ds_proto::SchemeError| {
        de::Error::custom(format!("{text:?} is not a scheme: {error}"))
    })
}

fn deserialize_listen<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.trim().parse().map_err(|_| {
        de::Error::custom(format!(
            "{text:?} is not a socket address (examples: 127.0.0.1:7000, [::1]:7000)"
        ))
    })
}

/// One `[[devices]]` entry.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// A file or a block device; relative paths are under `data_dir` (resolved at parse).
    pub path: PathBuf,
    /// Size of a file to create when it does not exist.
    #[serde(default)]
    pub size: Option<ByteSize>,
    #[serde(default)]
    pub format: DeviceFormat,
}

/// A node's configuration. Build it with [`NodeConfig::load`] or [`NodeConfig::parse`], which
/// resolve relative paths and [`validate`](NodeConfig::validate).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    #[serde(default = "default_listen", deserialize_with = "deserialize_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_cores")]
    pub cores: usize,
    #[serde(default = "default_true")]
    pub pin_cores: bool,
    #[serde(default)]
    pub first_cpu: Option<usize>,
    #[serde(default)]
    pub poll_mode: PollMode,
    #[serde(default = "default_adaptive_spin_us")]
    pub adaptive_spin_us: u64,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// Empty in the file means `DATA_DIR/stats.sock` (resolved at parse).
    #[serde(default)]
    pub stats_socket: PathBuf,
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// The top-level `default_scheme` of earlier versions, now `objects.default_scheme`: read
    /// only to be refused with a message saying where it went.
    #[serde(default, rename = "default_scheme")]
    legacy_default_scheme: Option<toml::Value>,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_recv_buffer")]
    pub recv_buffer: ByteSize,
    /// The overlay: membership and routing among nodes (`[overlay]`).
    #[serde(default)]
    pub overlay: OverlayConfig,
    /// How new objects are coded and when writes are acknowledged (`[objects]`).
    #[serde(default)]
    pub objects: ObjectsConfig,
    /// Background repair and scrub (`[repair]`).
    #[serde(default)]
    pub repair: RepairConfig,
    /// Where the configuration came from, for error messages.
    #[serde(skip)]
    pub origin: String,
}

/// The `[overlay]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayConfig {
    /// UDP address of the overlay; unset: the IP of `listen`, port + 1 (port 0 stays 0).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Overlay addresses of nodes to join through; empty: this node starts a new cluster.
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    /// The secret every message is authenticated with; nodes join only with the same one.
    /// Unset: a random one is created once in `DATA_DIR/cluster-secret` (a cluster of one).
    #[serde(default)]
    pub cluster_secret: Option<String>,
    /// Bucket size (k) and lookup parallelism (alpha); unset: the overlay's defaults.
    #[serde(default)]
    pub k: Option<usize>,
    #[serde(default)]
    pub alpha: Option<usize>,
}

/// The `[objects]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsConfig {
    /// The scheme of an object whose CREATE names none (`aux` = 0); default `1+0`.
    #[serde(default = "default_scheme", deserialize_with = "deserialize_scheme")]
    pub default_scheme: Scheme,
    /// Parity shards that must be durable, beside the K data shards, before a write is
    /// acknowledged. Unset: ⌈M/2⌉ of the object's scheme. Above an object's M it counts as M
    /// (all N shards) for that object; see [`ObjectsConfig::write_quorum_parity`].
    #[serde(default)]
    pub write_quorum_parity: Option<u8>,
}

impl Default for ObjectsConfig {
    fn default() -> Self {
        ObjectsConfig {
            default_scheme: default_scheme(),
            write_quorum_parity: None,
        }
    }
}

impl ObjectsConfig {
    /// Parity shards beside the K data shards that must be durable before a write to an object
    /// coded with `scheme` is acknowledged: the configured count capped at M, or ⌈M/2⌉.
    /// The write quorum W is `scheme.k() + write_quorum_parity(scheme)`, within K..=N.
    pub fn write_quorum_parity(&self, scheme: Scheme) -> u8 {
        match self.write_quorum_parity {
            Some(parity) => parity.min(scheme.m()),
            None => scheme.m().div_ceil(2),
        }
    }
}

/// The `[repair]` table: how each data core walks its records (scrub, and finding the
/// objects it repairs) and how fast it rebuilds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairConfig {
    /// Seconds between the end of one pass and the start of the next (a change of members
    /// starts one at once). 0 turns background repair and scrub off.
    #[serde(default = "default_repair_interval")]
    pub interval_secs: u64,
    /// Device bytes per second each core's walk may read (the scrub rate).
    #[serde(default = "default_scrub_rate")]
    pub scrub_rate: ByteSize,
    /// Stripe bytes per second each core may rebuild or move.
    #[serde(default = "default_repair_rate")]
    pub rate: ByteSize,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            interval_secs: default_repair_interval(),
            scrub_rate: default_scrub_rate(),
            rate: default_repair_rate(),
        }
    }
}

fn default_repair_interval() -> u64 {
    60
}

fn default_scrub_rate() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_repair_rate() -> ByteSize {
    ByteSize(128 << 20)
}

fn default_scheme() -> Scheme {
    Scheme::new(1, 0).expect("1+0 is a scheme")
}

/// Smallest cluster secret accepted: a short one is guessable.
pub const CLUSTER_SECRET_BYTES_MIN: usize = 16;

impl NodeConfig {
    /// The overlay's UDP address (see [`OverlayConfig::listen`]).
    pub fn overlay_listen(&self) -> SocketAddr {
        self.overlay.listen.unwrap_or_else(|| {
            let port = match self.listen.port() {
                0 => 0,
                port => port.wrapping_add(1),
            };
            SocketAddr::new(self.listen.ip(), port)
        })
    }

    /// The cluster secret: from the config, or kept in `DATA_DIR/cluster-secret` (created once).
    pub fn cluster_secret(&self) -> Result<Vec<u8>, ConfigError> {
        if let Some(secret) = &self.overlay.cluster_secret {
            return Ok(secret.as_bytes().to_vec());
        }
        let path = self.data_dir.join("cluster-secret");
        match fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let secret = format!(
                    "{:032x}{:032x}",
                    rand::random::<u128>(),
                    rand::random::<u128>()
                );
                fs::create_dir_all(&self.data_dir)
                    .and_then(|()| fs::write(&path, &secret))
                    .map_err(|source| ConfigError::SecretIo {
                        path: path.clone(),
                        source,
                    })?;
                Ok(secret.into_bytes())
            }
            Err(source) => Err(ConfigError::SecretIo { path, source }),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000))
}
fn default_cores() -> usize {
    1
}
fn default_true() -> bool {
    true
}
fn default_adaptive_spin_us() -> u64 {
    // Half a millisecond: a wake-up costs more than that much spinning at low load (see
    // docs/PERFORMANCE.md, QD1 latency by spin).
    500
}
fn default_log_level() -> String {
    "info".to_string()
}
fn default_max_connections() -> usize {
    1024
}
fn default_recv_buffer() -> ByteSize {
    ByteSize(256 << 10)
}

impl NodeConfig {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<NodeConfig, ConfigError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            origin: path.to_path_buf(),
            source,
        })?;
        NodeConfig::parse(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `origin` names it in errors (a file path, `<inline>`).
    pub fn parse(text: &str, origin: &str) -> Result<NodeConfig, ConfigError> {
        let parse_error = |key: String, error: toml::de::Error| ConfigError::Parse {
            location: location(origin, text, error.span()),
            key,
            detail: error.message().trim_end().to_string(),
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|error| {
            // A syntax error has no key path; show what the span covers (a duplicate key, a bad
            // value) when it is short.
            let near = error
                .span()
                .and_then(|span| text.get(span))
                .map(str::trim)
                .filter(|near| !near.is_empty() && near.len() <= 40 && !near.contains('\n'))
                .map(|near| format!(" (at `{near}`)"))
                .unwrap_or_default();
            ConfigError::Parse {
                location: location(origin, text, error.span()),
                key: String::new(),
                detail: format!("{}{near}", error.message().trim_end()),
            }
        })?;
        let mut config: NodeConfig =
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                let key = error.path().to_string();
                let key = if key == "." { String::new() } else { key };
                parse_error(key, error.into_inner())
            })?;
        config.origin = origin.to_string();
        config.resolve_paths();
        config.validate()?;
        Ok(config)
    }

    /// Device paths and the stats socket are under `data_dir` unless absolute.
    fn resolve_paths(&mut self) {
        for device in &mut self.devices {
            if device.path.is_relative() && !device.path.as_os_str().is_empty() {
                device.path = self.data_dir.join(&device.path);
            }
        }
        if self.stats_socket.as_os_str().is_empty() {
            self.stats_socket = self.data_dir.join("stats.sock");
        } else if self.stats_socket.is_relative() {
            self.stats_socket = self.data_dir.join(&self.stats_socket);
        }
    }

    /// Checks ranges and relations between keys; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |(key, problem): (&str, Problem)| ConfigError::Invalid {
            origin: self.origin.clone(),
            key: key.to_string(),
            problem,
        };
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid(("data_dir", Problem::Empty)));
        }
        check_range("cores", self.cores as u64, 1, CORES_MAX as u64).map_err(&invalid)?;
        if let Some(secret) = &self.overlay.cluster_secret {
            if secret.len() < CLUSTER_SECRET_BYTES_MIN {
                let problem = Problem::TooShort {
                    bytes: secret.len(),
                    min: CLUSTER_SECRET_BYTES_MIN,
                };
                return Err(invalid(("overlay.cluster_secret", problem)));
            }
        }
        if let Some(k) = self.overlay.k {
            check_range("overlay.k", k as u64, 2, 256).map_err(&invalid)?;
        }
        if let Some(alpha) = self.overlay.alpha {
            check_range("overlay.alpha", alpha as u64, 1, 16).map_err(&invalid)?;
        }
        if let Some(first) = self.first_cpu {
            let end = first.saturating_add(self.cores);
            if end > CPUS_MAX {
                return Err(invalid(("first_cpu", Problem::CpusPastEnd { first, end })));
            }
        }
        check_range(
            "adaptive_spin_us",
            self.adaptive_spin_us,
            0,
            ADAPTIVE_SPIN_US_MAX,
        )
        .map_err(&invalid)?;
        self.validate_devices()?;
        let socket_bytes = self.stats_socket.as_os_str().len();
        if socket_bytes > SOCKET_PATH_BYTES_MAX {
            let problem = Problem::SocketPathTooLong {
                bytes: socket_bytes,
            };
            return Err(invalid(("stats_socket", problem)));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            let problem = Problem::BadFilter {
                text: self.log_level.clone(),
                reason: error.to_string(),
            };
            return Err(invalid(("log_level", problem)));
        }
        if self.legacy_default_scheme.is_some() {
            let problem = Problem::Moved("default_scheme under [objects]");
            return Err(invalid(("default_scheme", problem)));
        }
        if let Some(parity) = self.objects.write_quorum_parity {
            check_range(
                "objects.write_quorum_parity",
                u64::from(parity),
                0,
                u64::from(WRITE_QUORUM_PARITY_MAX),
            )
            .map_err(&invalid)?;
        }
        check_range(
            "max_connections",
            self.max_connections as u64,
            1,
            CONNECTIONS_PER_CORE_MAX as u64,
        )
        .map_err(&invalid)?;
        check_size("recv_buffer", self.recv_buffer).map_err(&invalid)?;
        check_range(
            "recv_buffer",
            self.recv_buffer.bytes(),
            RECV_BUFFER_BYTES_MIN,
            RECV_BUFFER_BYTES_MAX,
        )
        .map_err(&invalid)?;
        Ok(())
    }

    fn validate_devices(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, problem: Problem| ConfigError::Invalid {
            origin: self.origin.clone(),
            key,
            problem,
        };
        if self.devices.is_empty() {
            return Err(invalid("devices".to_string(), Problem::NoDevices));
        }
        for (index, device) in self.devices.iter().enumerate() {
            if device.path.as_os_str().is_empty() {
                return Err(invalid(format!("devices[{index}].path"), Problem::Empty));
            }
            // Lexical comparison: the files may not exist yet, so nothing is canonicalized.
            if let Some(first) = self.devices[..index]
                .iter()
                .position(|other| other.path == device.path)
            {
                let problem = Problem::DuplicatePath {
                    path: device.path.display().to_string(),
                    first,
                };
                return Err(invalid(format!("devices[{index}].path"), problem));
            }
            if let Some(size) = device.size {
                let key = format!("devices[{index}].size");
                check_size(&key, size)
                    .map_err(|(key, problem)| invalid(key.to_string(), problem))?;
            }
        }
        Ok(())
    }

    /// The file holding the node id.
    pub fn node_id_path(&self) -> PathBuf {
        self.data_dir.join(NODE_ID_FILE)
    }

    /// The node's id: read from `DATA_DIR/node-id`, or created there once (random 128 bits)
    /// when the file does not exist. Creates `data_dir` if needed.
    pub fn node_id(&self) -> Result<u128, ConfigError> {
        let path = self.node_id_path();
        match read_node_id(&path) {
            Err(ConfigError::NodeIdIo { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                create_node_id(&self.data_dir, &path)
            }
            result => result,
        }
    }
}

fn check_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), (&str, Problem)> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err((key, Problem::OutOfRange { value, min, max }))
    }
}

fn check_size(key: &str, size: ByteSize) -> Result<(), (&str, Problem)> {
    if size.bytes() == 0 {
        return Err((key, Problem::Zero));
    }
    if !size.bytes().is_multiple_of(SIZE_ALIGN_BYTES) {
        return Err((key, Problem::Unaligned(size.bytes())));
    }
    Ok(())
}

/// `origin:line:column` for a byte span of `text`, or `origin` alone.
fn location(origin: &str, text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return origin.to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
    format!("{origin}:{line}:{column}")
}

fn read_node_id(path: &Path) -> Result<u128, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::NodeIdIo {
        path: path.to_path_buf(),
        source,
    })?;
    let hex = text.trim_end_matches('\n');
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ConfigError::NodeIdCorrupt {
            path: path.to_path_buf(),
        });
    }
    Ok(u128::from_str_radix(hex, 16).expect("checked 32 hex digits"))
}

/// Writes a new id to a temporary file, syncs it, links it into place and syncs the directory.
/// A hard link rather than a rename: link never replaces, so of two nodes started at once on one
/// data directory, the second reads the first's id instead of overwriting an id already in use.
fn create_node_id(data_dir: &Path, path: &Path) -> Result<u128, ConfigError> {
    let io_error = |source| ConfigError::NodeIdIo {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(data_dir).map_err(io_error)?;
    let id = loop {
        let id: u128 = rand::random();
        if id != 0 {
            break id;
        }
    };
    let temporary = data_dir.join(format!("{NODE_ID_FILE}.{}.tmp", std::process::id()));
    let written = (|| -> io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        writeln!(file, "{id:032x}")?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| fs::hard_link(&temporary, path));
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return read_node_id(path),
        Err(error) => return Err(io_error(error)),
    }
    fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error)?;
    tracing::info!(node_id = %format!("{id:032x}"), path = %path.display(), "created node id");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let parse = |text: &str| text.parse::<ByteSize>().map(ByteSize::bytes);
        assert_eq!(parse("4096"), Ok(4096));
        assert_eq!(parse("256K"), Ok(256 << 10));
        assert_eq!(parse("512M"), Ok(512 << 20));
        assert_eq!(parse("1G"), Ok(1 << 30));
        assert_eq!(parse("1 GiB"), Ok(1 << 30));
        assert_eq!(parse("2t"), Ok(2 << 40));
        assert_eq!(parse("12Q"), Err(()));
        assert_eq!(parse("G"), Err(()));
        assert_eq!(parse("-1K"), Err(()));
        assert_eq!(parse(""), Err(()));
        assert_eq!(parse("99999999999T"), Err(()));
    }

    #[test]
    fn write_quorum_parity() {
        let scheme = |text: &str| text.parse::<Scheme>().unwrap();
        let mut objects = ObjectsConfig::default();
        assert_eq!(objects.default_scheme, scheme("1+0"));
        assert_eq!(objects.write_quorum_parity(scheme("1+0")), 0);
        assert_eq!(objects.write_quorum_parity(scheme("4+2")), 1);
        assert_eq!(objects.write_quorum_parity(scheme("4+3")), 2);
        assert_eq!(objects.write_quorum_parity(scheme("1+2")), 1);
        objects.write_quorum_parity = Some(2);
        assert_eq!(objects.write_quorum_parity(scheme("4+2")), 2);
        assert_eq!(objects.write_quorum_parity(scheme("8+4")), 2);
        assert_eq!(objects.write_quorum_parity(scheme("4+1")), 1, "capped at M");
        assert_eq!(objects.write_quorum_parity(scheme("1+0")), 0, "capped at M");
        objects.write_quorum_parity = Some(0);
        assert_eq!(objects.write_quorum_parity(scheme("4+2")), 0);
    }

    #[test]
    fn locations() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(location("f", text, Some(6..8)), "f:2:1");
        assert_eq!(location("f", text, Some(11..12)), "f:2:6");
        assert_eq!(location("f", text, None), "f");
    }
}
