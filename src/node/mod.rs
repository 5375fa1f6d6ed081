//! A running node: the devices of a config opened and mounted, one pinned data core per
//! partition serving the object protocol, a stats socket, and an orderly stop.

pub mod core_loop;
pub mod overlay;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use ds_nvme::Device;
use ds_store::{mount, CoreStore, FormatOptions, MountedDevice};

use crate::config::NodeConfig;
use crate::reactor::mailbox::Inbox;
use crate::service::ctx::Message;
use crate::stats::metrics::Published;
use crate::stats::server::StatsServer;
use crate::stats::snapshot::{CoreSnapshot, NodeSnapshot};
use overlay::{OverlayDriver, OverlaySetup};

/// How long start-up waits for every core to recover its partition.
const START_TIMEOUT: Duration = Duration::from_secs(600);

/// A started node. Dropping it without [`Node::stop`] stops it too.
pub struct Node {
    pub node_id: u128,
    pub listen: std::net::SocketAddr,
    pub overlay_addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    /// Dropped first at stop: LEAVE goes out while the cores still serve.
    overlay: Option<OverlayDriver>,
    /// Changes of the node's overlay neighbourhood (what repair will follow).
    pub neighbourhood: Arc<overlay::NeighbourhoodWatch>,
    /// The nodes known to serve data and their data addresses (what the cores place on).
    pub members: Arc<overlay::MembersWatch>,
    /// What the cores' repair walkers report; drain requests.
    pub repair_board: Arc<crate::repair::board::RepairBoard>,
    inboxes: Vec<Arc<Inbox<Message>>>,
    cores: Vec<JoinHandle<anyhow::Result<()>>>,
    _stats: Option<StatsServer>,
    _locks: Vec<std::fs::File>,
}

/// What a core reports once it serves (or why it cannot).
type Ready = anyhow::Result<std::net::SocketAddr>;

impl Node {
    pub fn start(config: &NodeConfig) -> anyhow::Result<Node> {
        config.validate().context("checking the config")?;
        let node_id = config.node_id().context("reading the node id")?;
        // Two processes driving the same devices would corrupt them: hold locks on the data
        // dir and on every device for as long as the node runs.
        let mut locks = vec![lock_file(&config.data_dir.join("lock"), "data dir")?];
        let cores = config.cores;
        let options = FormatOptions::new(cores, node_id);
        let mut mounted = Vec::new();
        for device in &config.devices {
            let opened = open_device(&device.path, device.size.map(|s| s.bytes()))?;
            locks.push(lock_file(&device.path, "device")?);
            let superblock = mount(opened.as_ref(), device.format.into(), &options)
                .with_context(|| format!("mounting {}", device.path.display()))?;
            mounted.push(MountedDevice {
                device: opened,
                superblock,
            });
        }
        let repair_board = Arc::new(crate::repair::board::RepairBoard::new(cores));
        let inboxes = (0..cores)
            .map(|_| Inbox::new().context("creating an inbox eventfd"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // The management side's overlay: its socket and channels before the cores (which send
        // it their OVERLAY queries and read its members), running only once the cores have
        // bound, so that it announces the data port they really listen on.
        let overlay = OverlayDriver::bind(OverlaySetup {
            node_id,
            listen: config.overlay_listen(),
            seeds: config.overlay.seeds.clone(),
            secret: config
                .cluster_secret()
                .context("reading the cluster secret")?,
            k: config.overlay.k,
            alpha: config.overlay.alpha,
            inboxes: inboxes.clone(),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let published: Vec<Published> = (0..cores).map(|_| Published::default()).collect();
        let (ready_tx, ready_rx) = mpsc::channel::<(usize, Ready)>();
        let mut handles = Vec::new();
        // Bound once by the first core when the config asks for port 0, then shared.
        let listen = Arc::new(Mutex::new(config.listen));
        for (core, slot) in published.iter().enumerate() {
            let setup = core_loop::CoreSetup {
                core,
                cores,
                node_id,
                mounted: mounted.clone(),
                inboxes: inboxes.clone(),
                stop: stop.clone(),
                published: slot.clone(),
                listen: listen.clone(),
                poll_mode: config.poll_mode,
                spin: Duration::from_micros(config.adaptive_spin_us),
                cpu: config
                    .pin_cores
                    .then(|| config.first_cpu.unwrap_or(0) + core)
                    .map(|cpu| cpu % crate::reactor::available_cpus()),
                max_connections: config.max_connections,
                overlay: Some(overlay.queries.clone()),
                members: Some(overlay.members.clone()),
                policy: config.objects.clone(),
                repair_board: repair_board.clone(),
                repair: config.repair.clone(),
                expect_peers: !config.overlay.seeds.is_empty(),
                recv_buffer: config.recv_buffer.bytes() as usize,
            };
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("ds-core-{core}"))
                .spawn(move || core_loop::run(setup, ready))
                .context("spawning a core thread")?;
            handles.push(handle);
            // Cores start one after the other so the first binds the port the rest share.
            let (_, result) = ready_rx
                .recv_timeout(START_TIMEOUT)
                .context("waiting for a core to start")?;
            if let Err(error) = result {
                abort_cores(&stop, &inboxes, handles);
                return Err(error.context(format!("starting core {core}")));
            }
        }
        let listen = *listen.lock().expect("listen lock");
        let overlay = match overlay.start(listen.port()) {
            Ok(overlay) => overlay,
            Err(error) => {
                abort_cores(&stop, &inboxes, handles);
                return Err(error);
            }
        };
        let version = crate::GIT_REVISION.to_string();
        let started = Instant::now();
        let overlay_stats = overlay.snapshot.clone();
        let board = repair_board.clone();
        let source = move || NodeSnapshot {
            node_id: format!("{node_id:032x}"),
            version: version.clone(),
            uptime_seconds: started.elapsed().as_secs_f64(),
            listen: listen.to_string(),
            cores: published
                .iter()
                .filter_map(|p| p.lock().ok().and_then(|s| s.clone()))
                .collect::<Vec<CoreSnapshot>>(),
            overlay: overlay_stats
                .lock()
                .ok()
                .and_then(|s| serde_json::to_value(&*s).ok()),
            repair: serde_json::to_value(board.health()).ok().map(|mut health| {
                if let Some(fields) = health.as_object_mut() {
                    fields.remove("cores");
                }
                health
            }),
        };
        let stats = StatsServer::start(&config.stats_socket, source).with_context(|| {
            format!(
                "starting the stats socket {}",
                config.stats_socket.display()
            )
        })?;
        tracing::info!(node = format!("{node_id:032x}"), %listen, overlay = %overlay.addr, cores, "node serving");
        Ok(Node {
            node_id,
            listen,
            overlay_addr: overlay.addr,
            neighbourhood: overlay.neighbourhood.clone(),
            members: overlay.members.clone(),
            repair_board,
            overlay: Some(overlay),
            stop,
            inboxes,
            cores: handles,
            _stats: Some(stats),
            _locks: locks,
        })
    }

    /// Stops every core (each finishes what it accepted and checkpoints its store) and waits.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_cores()
    }

    fn stop_cores(&mut self) -> anyhow::Result<()> {
        drop(self.overlay.take());
        self.stop.store(true, Ordering::SeqCst);
        for inbox in &self.inboxes {
            inbox.wake();
        }
        let mut first_error = None;
        for (core, handle) in self.cores.drain(..).enumerate() {
            let result = match handle.join() {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!("core {core} panicked")),
            };
            if let Err(error) = result {
                tracing::error!(core, "{error:#}");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop_cores();
    }
}

/// Stops cores started so far when start-up fails half way.
fn abort_cores(
    stop: &AtomicBool,
    inboxes: &[Arc<Inbox<Message>>],
    handles: Vec<JoinHandle<anyhow::Result<()>>>,
) {
    stop.store(true, Ordering::SeqCst);
    for inbox in inboxes {
        inbox.wake();
    }
    for handle in handles {
        let _ = handle.join();
    }
}

/// Takes an exclusive advisory lock on `path`, or says who is in the way.
fn lock_file(path: &Path, what: &str) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(what == "data dir")
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {what} {} to lock it", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{what} {} is in use by another process (is another ds-appliance running with it?)",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("locking {what} {}", path.display()))
        }
    }
}

fn open_device(path: &Path, create_bytes: Option<u64>) -> anyhow::Result<Arc<dyn Device>> {
    crate::local::open_device(path, create_bytes, false)
}

/// Opens core `core`'s store on the calling thread (so its queues belong to that thread).
pub(crate) fn open_store(
    core: usize,
    node_id: u128,
    mounted: Vec<MountedDevice>,
) -> anyhow::Result<CoreStore> {
    let (store, report) = CoreStore::open(core, node_id, mounted)
        .with_context(|| format!("recovering the partition of core {core}"))?;
    tracing::debug!(core, ?report, "partition recovered");
    Ok(store)
}
