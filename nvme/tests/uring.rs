//! Tests of the io_uring backend on real files (in the target directory, never on tmpfs) and on
//! loop devices (the loop test needs root and util-linux; it fails, not skips, without them).

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ds_nvme::uring::{OpenOptions, UringDevice};
use ds_nvme::{
    BufPool, Completion, Device, DeviceError, DeviceKind, DmaBuf, InvalidRequest, IoKind,
    IoRequest, Queue, RejectReason, Rejected,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MIB: u64 = 1 << 20;
/// Longest any test waits for its I/O before declaring a hang.
const PATIENCE: Duration = Duration::from_secs(60);

/// A fresh directory on a filesystem with real direct I/O.
fn test_dir() -> tempfile::TempDir {
    let mut base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if is_tmpfs(&base) {
        base = PathBuf::from("/var/tmp");
    }
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix("ds-uring-")
        .tempdir_in(&base)
        .unwrap()
}

fn is_tmpfs(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain data; the path is NUL-terminated and the buffer is live.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stats) };
    rc == 0 && stats.f_type == libc::TMPFS_MAGIC
}

fn create(path: &Path, bytes: u64) -> UringDevice {
    let options = OpenOptions {
        create_bytes: Some(bytes),
        ..OpenOptions::default()
    };
    UringDevice::open(path, &options).unwrap()
}

fn open_existing(path: &Path) -> UringDevice {
    UringDevice::open(path, &OpenOptions::default()).unwrap()
}

fn random_buf(rng: &mut ChaCha8Rng, len: usize) -> DmaBuf {
    let mut buf = DmaBuf::new(len);
    rng.fill(&mut buf.as_mut_slice()[..len]);
    buf
}

/// Submits every request, keeping the queue as full as it goes, and returns the completions
/// (all successful) and the most requests seen in flight at once.
fn run_all(queue: &mut dyn Queue, requests: Vec<IoRequest>) -> (Vec<Completion>, usize) {
    let total = requests.len();
    let mut todo: VecDeque<(IoRequest, u64)> = requests.into_iter().zip(0..).collect();
    let mut done = Vec::with_capacity(total);
    let mut most = 0;
    let start = Instant::now();
    while done.len() < total {
        assert!(
            start.elapsed() < PATIENCE,
            "I/O hangs: {} of {total} done",
            done.len()
        );
        while let Some((request, token)) = todo.pop_front() {
            match queue.submit(request, token) {
                Ok(()) => {}
                Err(Rejected {
                    request,
                    reason: RejectReason::QueueFull,
                }) => {
                    todo.push_front((request, token));
                    break;
                }
                Err(rejected) => panic!("request {token} rejected: {}", rejected.reason),
            }
        }
        most = most.max(queue.inflight());
        if queue.reap(&mut done) == 0 {
            queue.wait(Some(Duration::from_secs(1))).unwrap();
        }
    }
    for completion in &done {
        assert_eq!(
            completion.result,
            Ok(()),
            "{:?} at {}",
            completion.kind,
            completion.offset
        );
    }
    assert_eq!(queue.inflight(), 0);
    (done, most)
}

/// Requests of 1 to 16 blocks at random aligned offsets, never overlapping, with random data.
fn scattered_writes(rng: &mut ChaCha8Rng, count: usize, size: u64, block: u32) -> Vec<IoRequest> {
    let block = u64::from(block);
    let span = size / count as u64 / block * block;
    assert!(span >= block, "file too small for {count} requests");
    (0..count as u64)
        .map(|i| {
            let blocks = rng.gen_range(1..=(span / block).min(16));
            let slack = span / block - blocks;
            let offset = i * span + rng.gen_range(0..=slack) * block;
            let len = (blocks * block) as usize;
            IoRequest::write(random_buf(rng, len), offset, len)
        })
        .collect()
}

/// Reads back what `writes` wrote, through `queue`, and compares.
fn verify(queue: &mut dyn Queue, writes: &[Completion]) {
    let reads = writes
        .iter()
        .map(|w| IoRequest::read(DmaBuf::new(w.len), w.offset, w.len))
        .collect();
    let (reads, _) = run_all(queue, reads);
    for (write, read) in writes.iter().zip(sorted(reads)) {
        let (want, got) = (write.buf.as_ref().unwrap(), read.buf.as_ref().unwrap());
        assert!(
            want.as_slice()[..write.len] == got.as_slice()[..read.len],
            "data differs at offset {}",
            write.offset
        );
    }
}

fn sorted(mut completions: Vec<Completion>) -> Vec<Completion> {
    completions.sort_by_key(|c| c.token);
    completions
}

fn flush(queue: &mut dyn Queue) {
    let mut others = Vec::new();
    let done = ds_nvme::run_one(queue, IoRequest::flush(), u64::MAX, &mut others).unwrap();
    assert_eq!(done.kind, IoKind::Flush);
    assert_eq!(done.result, Ok(()));
    assert!(others.is_empty());
}

/// (`stx_dio_mem_align`, `stx_dio_offset_align`) of a path, asked independently of the crate.
fn statx_dio(path: &Path) -> Option<(u32, u32)> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statx is plain data.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated path and a live buffer.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            0,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    (rc == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0)
        .then_some((stx.stx_dio_mem_align, stx.stx_dio_offset_align))
}

#[test]
fn creates_a_sparse_file_and_reports_its_geometry() {
    let dir = test_dir();
    let path = dir.path().join("dev");
    let asked = 64 * MIB + 1000;
    let device = create(&path, asked);
    let info = device.info().clone();
    println!(
        "{info:?}; statx DIOALIGN (mem, offset) here: {:?}",
        statx_dio(&path)
    );

    assert_eq!(info.kind, DeviceKind::File);
    assert_eq!(info.name, path.display().to_string());
    assert!(info.block_bytes.is_power_of_two() && info.block_bytes >= 512);
    assert!(info.mem_align.is_power_of_two());
    if let Some((mem, offset)) = statx_dio(&path) {
        assert_eq!((info.mem_align, info.block_bytes), (mem, offset));
    }
    let block = u64::from(info.block_bytes);
    assert_eq!(info.size_bytes, asked / block * block);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), info.size_bytes);
    assert!(
        meta.blocks() * 512 < MIB,
        "not sparse: {} blocks allocated",
        meta.blocks()
    );

    // Reopening, with or without a create size, keeps the size.
    drop(device);
    assert_eq!(open_existing(&path).info(), &info);
    assert_eq!(create(&path, 4 * MIB).info(), &info);
}

#[test]
fn writes_and_reads_back_with_many_requests_in_flight() {
    let dir = test_dir();
    let path = dir.path().join("dev");
    let device = create(&path, 32 * MIB);
    let info = device.info().clone();
    let mut queue = device.open_queue(32).unwrap();
    assert_eq!(queue.depth(), 32);
    assert_eq!(queue.inflight(), 0);
    // Nothing in flight: returns at once even without a timeout.
    queue.wait(None).unwrap();

    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let writes = scattered_writes(&mut rng, 400, info.size_bytes, info.block_bytes);
    let (writes, most) = run_all(queue.as_mut(), writes);
    assert_eq!(most, 32, "the queue was never full");
    let writes = sorted(writes);
    flush(queue.as_mut());
    verify(queue.as_mut(), &writes);

    // Unwritten blocks read as zeros.
    let last = info.size_bytes - u64::from(info.block_bytes);
    let mut others = Vec::new();
    let read = IoRequest::read(DmaBuf::new(4096), last, info.block_bytes as usize);
    let done = ds_nvme::run_one(queue.as_mut(), read, 7, &mut others).unwrap();
    assert_eq!(done.result, Ok(()));
    assert!(done.buf.unwrap().as_slice().iter().all(|&b| b == 0));

    drop(queue);
    drop(device);
    let device = open_existing(&path);
    assert_eq!(device.info(), &info);
    let mut queue = device.open_queue(8).unwrap();
    verify(queue.as_mut(), &writes);
}

#[test]
fn rejects_invalid_requests_and_hands_them_back() {
    let dir = test_dir();
    let device = create(&dir.path().join("dev"), 4 * MIB);
    let info = device.info().clone();
    let block = info.block_bytes as usize;
    let mut queue = device.open_queue(4).unwrap();

    let cases = [
        (
            IoRequest::read(DmaBuf::new(block), block as u64 / 2, block),
            "offset",
        ),
        (IoRequest::write(DmaBuf::new(block), 0, block / 2), "length"),
        (IoRequest::read(DmaBuf::new(block), 0, 0), "empty"),
        (
            IoRequest::read(DmaBuf::new(block), 0, block + 4096),
            "buffer",
        ),
        (
            IoRequest::write(DmaBuf::new(block), info.size_bytes, block),
            "range",
        ),
        (
            IoRequest {
                kind: IoKind::Read,
                offset: 0,
                len: block,
                buf: None,
            },
            "no buffer",
        ),
    ];
    for (request, what) in cases {
        let address = request.buf.as_ref().map(|buf| buf.as_ptr());
        let (kind, offset, len) = (request.kind, request.offset, request.len);
        let Err(Rejected { request, reason }) = queue.submit(request, 1) else {
            panic!("{what}: accepted");
        };
        let RejectReason::Invalid(invalid) = reason else {
            panic!("{what}: {reason}")
        };
        let expected = match what {
            "offset" => matches!(invalid, InvalidRequest::UnalignedOffset { .. }),
            "length" | "empty" => matches!(invalid, InvalidRequest::UnalignedLength { .. }),
            "buffer" => matches!(invalid, InvalidRequest::BufferTooSmall { .. }),
            "range" => matches!(invalid, InvalidRequest::OutOfRange { .. }),
            _ => invalid == InvalidRequest::MissingBuffer,
        };
        assert!(expected, "{what}: {invalid:?}");
        assert_eq!(
            (request.kind, request.offset, request.len),
            (kind, offset, len)
        );
        assert_eq!(
            request.buf.as_ref().map(|buf| buf.as_ptr()),
            address,
            "{what}"
        );
    }
    assert_eq!(queue.inflight(), 0);
}

#[test]
fn refuses_requests_beyond_the_depth() {
    let dir = test_dir();
    let device = create(&dir.path().join("dev"), 4 * MIB);
    let block = device.info().block_bytes as usize;
    let mut queue = device.open_queue(4).unwrap();
    for token in 0..4 {
        let offset = token * block as u64;
        queue
            .submit(IoRequest::read(DmaBuf::new(block), offset, block), token)
            .unwrap();
    }
    assert_eq!(queue.inflight(), 4);
    let extra = IoRequest::write(DmaBuf::new(block), 0, block);
    let address = extra.buf.as_ref().unwrap().as_ptr();
    let Err(Rejected {
        request,
        reason: RejectReason::QueueFull,
    }) = queue.submit(extra, 4)
    else {
        panic!("fifth request accepted at depth 4");
    };
    assert_eq!(request.buf.as_ref().unwrap().as_ptr(), address);

    let mut done = Vec::new();
    let start = Instant::now();
    while done.len() < 4 {
        assert!(start.elapsed() < PATIENCE, "reads hang");
        queue.wait(None).unwrap();
        queue.reap(&mut done);
    }
    let mut tokens: Vec<u64> = done.iter().map(|c| c.token).collect();
    tokens.sort();
    assert_eq!(tokens, [0, 1, 2, 3]);
    assert!(done.iter().all(|c| c.result.is_ok() && c.buf.is_some()));
    queue.submit(request, 4).unwrap();
    while queue.inflight() > 0 {
        assert!(start.elapsed() < PATIENCE, "write hangs");
        queue.wait(Some(Duration::from_millis(100))).unwrap();
        queue.reap(&mut done);
    }
}

#[test]
fn registered_buffers_round_trip() {
    let dir = test_dir();
    let device = create(&dir.path().join("dev"), 16 * MIB);
    let block = u64::from(device.info().block_bytes);
    let mut queue = device.open_uring_queue(16).unwrap();
    let mut pool = BufPool::new(16, 128 * 1024);
    queue
        .register(&pool)
        .expect("registering 2 MiB of buffers (as root)");
    assert_eq!(queue.registered_buffers(), 16);

    // A second pool, not registered: same indices, other addresses, so normal operations.
    let mut stranger = BufPool::new(4, 128 * 1024);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut writes = Vec::new();
    for i in 0..20u64 {
        let mut buf = if i < 16 {
            pool.take().unwrap()
        } else {
            stranger.take().unwrap()
        };
        let len = (rng.gen_range(1..=128 * 1024 / block) * block) as usize;
        rng.fill(&mut buf.as_mut_slice()[..len]);
        writes.push(IoRequest::write(buf, i * 256 * 1024, len));
    }
    let (writes, _) = run_all(&mut queue, writes);
    let writes = sorted(writes);
    flush(&mut queue);

    // Reading registers nothing new; registering while requests are in flight is refused.
    let reads: Vec<IoRequest> = writes
        .iter()
        .map(|w| IoRequest::read(DmaBuf::new(w.len), w.offset, w.len))
        .collect();
    let mut reads = reads.into_iter();
    queue.submit(reads.next().unwrap(), 99).unwrap();
    assert!(matches!(
        queue.register(&pool),
        Err(DeviceError::Setup { .. })
    ));
    let mut done = Vec::new();
    while queue.inflight() > 0 {
        queue.wait(Some(Duration::from_millis(100))).unwrap();
        queue.reap(&mut done);
    }

    // Give the write buffers back and read into pool buffers (fixed reads).
    let mut expected = Vec::new();
    for write in writes {
        let buf = write.buf.unwrap();
        expected.push((
            write.offset,
            write.len,
            buf.as_slice()[..write.len].to_vec(),
        ));
        if buf.as_ptr() as usize == pool.regions()[usize::from(buf.pool_index().unwrap())].0 {
            pool.give(buf);
        } else {
            stranger.give(buf);
        }
    }
    assert_eq!(pool.available(), 16);
    // Registering again replaces the table.
    queue.register(&pool).unwrap();
    assert_eq!(queue.registered_buffers(), 16);
    let reads = expected[..16]
        .iter()
        .map(|&(offset, len, _)| IoRequest::read(pool.take().unwrap(), offset, len))
        .collect();
    let (reads, _) = run_all(&mut queue, reads);
    for (read, (offset, len, data)) in sorted(reads).into_iter().zip(&expected) {
        assert_eq!(read.offset, *offset);
        assert!(
            read.buf.as_ref().unwrap().as_slice()[..*len] == data[..],
            "at {offset}"
        );
        pool.give(read.buf.unwrap());
    }
}

#[test]
fn failed_registration_is_an_error_and_io_goes_on() {
    let dir = test_dir();
    let device = create(&dir.path().join("dev"), 4 * MIB);
    let block = device.info().block_bytes as usize;
    let mut queue = device.open_uring_queue(4).unwrap();
    let mut pool = BufPool::new(2, 4096);
    queue.register(&pool).unwrap();
    assert_eq!(queue.registered_buffers(), 2);

    // Linux registers at most 2^14 buffers per ring (IORING_MAX_REG_BUFFERS).
    let too_many = BufPool::new((1 << 14) + 1, 4096);
    let error = queue.register(&too_many).unwrap_err();
    assert!(matches!(error, DeviceError::Setup { .. }), "{error}");
    assert_eq!(
        queue.registered_buffers(),
        0,
        "the old registration is dropped"
    );

    let mut buf = pool.take().unwrap();
    buf.as_mut_slice()[..block].fill(0x5a);
    let mut others = Vec::new();
    let write = IoRequest::write(buf, 0, block);
    let done = ds_nvme::run_one(&mut queue, write, 1, &mut others).unwrap();
    assert_eq!(done.result, Ok(()));
    let read = IoRequest::read(pool.take().unwrap(), 0, block);
    let done = ds_nvme::run_one(&mut queue, read, 2, &mut others).unwrap();
    assert_eq!(done.result, Ok(()));
    assert!(done.buf.unwrap().as_slice()[..block]
        .iter()
        .all(|&b| b == 0x5a));
}

#[test]
fn sqpoll_queue_round_trip() {
    let dir = test_dir();
    let path = dir.path().join("dev");
    let options = OpenOptions {
        create_bytes: Some(16 * MIB),
        sqpoll: true,
        sqpoll_idle_ms: 10,
        ..OpenOptions::default()
    };
    let device = UringDevice::open(&path, &options).unwrap();
    let info = device.info().clone();
    let mut queue = device.open_uring_queue(32).unwrap();
    assert!(queue.is_sqpoll());

    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let writes = scattered_writes(&mut rng, 100, info.size_bytes / 2, info.block_bytes);
    let (writes, _) = run_all(&mut queue, writes);
    verify(&mut queue, &sorted(writes));

    // Let the kernel thread fall asleep: the next submissions must wake it.
    std::thread::sleep(Duration::from_millis(200));
    let mut second = scattered_writes(&mut rng, 100, info.size_bytes / 2, info.block_bytes);
    for request in &mut second {
        request.offset += info.size_bytes / 2;
    }
    let (writes, _) = run_all(&mut queue, second);
    flush(&mut queue);
    std::thread::sleep(Duration::from_millis(200));
    verify(&mut queue, &sorted(writes));
}

#[test]
fn requests_reach_the_kernel_in_groups_of_submit_batch() {
    let dir = test_dir();
    let path = dir.path().join("dev");
    for batch in [1, 4] {
        let options = OpenOptions {
            create_bytes: Some(16 * MIB),
            submit_batch: batch,
            ..OpenOptions::default()
        };
        let device = UringDevice::open(&path, &options).unwrap();
        let info = device.info().clone();
        let mut queue = device.open_uring_queue(32).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(u64::from(batch));
        let writes = scattered_writes(&mut rng, 10, info.size_bytes, info.block_bytes);
        let count = writes.len();
        for (n, request) in writes.into_iter().enumerate() {
            queue.submit(request, n as u64).unwrap();
            assert_eq!(queue.unsubmitted(), (n as u32 + 1) % batch, "batch {batch}");
        }
        // With batch 4, the last 10 % 4 = 2 requests go in with the next reap.
        let mut done = Vec::new();
        while done.len() < count {
            queue.reap(&mut done);
            queue.wait(Some(Duration::from_millis(100))).unwrap();
        }
        assert_eq!(queue.unsubmitted(), 0);
        assert!(done.iter().all(|c| c.result.is_ok()), "{done:?}");
    }
}

#[test]
fn dropping_a_busy_queue_waits_for_its_requests() {
    let dir = test_dir();
    let device = create(&dir.path().join("dev"), 16 * MIB);
    let info = device.info().clone();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let writes = scattered_writes(&mut rng, 32, info.size_bytes, info.block_bytes);
    let expected: Vec<(u64, Vec<u8>)> = writes
        .iter()
        .map(|w| {
            (
                w.offset,
                w.buf.as_ref().unwrap().as_slice()[..w.len].to_vec(),
            )
        })
        .collect();
    let mut queue = device.open_queue(32).unwrap();
    for (token, request) in writes.into_iter().enumerate() {
        queue.submit(request, token as u64).unwrap();
    }
    // Never handed to the kernel by reap or wait: the drop submits and waits for them.
    drop(queue);

    let mut queue = device.open_queue(32).unwrap();
    let reads = expected
        .iter()
        .map(|(offset, data)| IoRequest::read(DmaBuf::new(data.len()), *offset, data.len()))
        .collect();
    let (reads, _) = run_all(queue.as_mut(), reads);
    for (read, (offset, data)) in sorted(reads).iter().zip(&expected) {
        assert!(
            read.buf.as_ref().unwrap().as_slice()[..data.len()] == data[..],
            "at {offset}"
        );
    }
}

#[test]
fn open_errors() {
    let dir = test_dir();

    let error = UringDevice::open(dir.path(), &OpenOptions::default()).unwrap_err();
    let DeviceError::Unsupported { reason, .. } = &error else {
        panic!("directory: {error}")
    };
    assert!(reason.contains("directory"), "{error}");

    let missing = dir.path().join("missing");
    let error = UringDevice::open(&missing, &OpenOptions::default()).unwrap_err();
    let DeviceError::Open { source, .. } = &error else {
        panic!("missing file: {error}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{error}");
    assert!(!missing.exists());

    let error = UringDevice::open(Path::new("/dev/null"), &OpenOptions::default()).unwrap_err();
    assert!(
        matches!(error, DeviceError::Unsupported { .. }),
        "/dev/null: {error}"
    );

    // Smaller than one block: refused, and nothing is left behind.
    let options = OpenOptions {
        create_bytes: Some(100),
        ..OpenOptions::default()
    };
    let error = UringDevice::open(&missing, &options).unwrap_err();
    assert!(
        matches!(error, DeviceError::Unsupported { .. }),
        "tiny file: {error}"
    );
    assert!(!missing.exists());

    let device = create(&missing, MIB);
    assert!(device.open_queue(0).is_err());
}

/// A ramfs mounted on a fresh directory, unmounted on drop. ramfs refuses O_DIRECT; tmpfs
/// accepts it since Linux 6.6, so it cannot serve here.
struct Ramfs {
    dir: tempfile::TempDir,
}

impl Ramfs {
    fn mount() -> Ramfs {
        let dir = test_dir();
        let status = Command::new("mount")
            .args(["-t", "ramfs", "ds-uring-test"])
            .arg(dir.path())
            .status()
            .unwrap_or_else(|e| panic!("cannot run mount ({e}): this test needs util-linux"));
        assert!(
            status.success(),
            "mount -t ramfs failed ({status}): this test needs root"
        );
        Ramfs { dir }
    }
}

impl Drop for Ramfs {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(self.dir.path()).status();
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!("umount {} failed: {status:?}", self.dir.path().display());
        }
    }
}

#[test]
fn refuses_a_filesystem_without_o_direct() {
    let ramfs = Ramfs::mount();
    let path = ramfs.dir.path().join("dev");
    let options = OpenOptions {
        create_bytes: Some(MIB),
        ..OpenOptions::default()
    };
    let error = UringDevice::open(&path, &options).unwrap_err();
    let DeviceError::Unsupported { reason, .. } = &error else {
        panic!("ramfs: {error}")
    };
    assert!(reason.contains("O_DIRECT is not supported"), "{error}");
    assert!(!path.exists(), "the refused file was left behind");

    std::fs::write(&path, vec![0u8; MIB as usize]).unwrap();
    let error = UringDevice::open(&path, &OpenOptions::default()).unwrap_err();
    assert!(
        error.to_string().contains("O_DIRECT is not supported"),
        "{error}"
    );
}

/// Loop devices are a machine-wide resource: one test at a time attaches them.
static LOOP_LOCK: Mutex<()> = Mutex::new(());

/// A loop device over a file, detached on drop.
struct LoopDevice {
    path: PathBuf,
}

impl LoopDevice {
    fn attach(file: &Path, sector_bytes: u32) -> LoopDevice {
        let output = Command::new("losetup")
            .args(["--find", "--show", "--direct-io=on", "--sector-size"])
            .arg(sector_bytes.to_string())
            .arg(file)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run losetup ({e}): this test needs util-linux and root")
            });
        assert!(
            output.status.success(),
            "losetup --find --show --direct-io=on failed ({}): {}; this test needs root and \
             loop device support",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let path = String::from_utf8(output.stdout).unwrap().trim().to_string();
        assert!(path.starts_with("/dev/loop"), "losetup printed {path:?}");
        LoopDevice {
            path: PathBuf::from(path),
        }
    }

    fn sysfs(&self, attribute: &str) -> String {
        let name = self.path.file_name().unwrap().to_str().unwrap();
        std::fs::read_to_string(format!("/sys/block/{name}/{attribute}"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let status = Command::new("losetup").arg("-d").arg(&self.path).status();
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!("losetup -d {} failed: {status:?}", self.path.display());
        }
    }
}

fn loop_device_round_trip(sector_bytes: u32) {
    let dir = test_dir();
    let backing = dir.path().join("backing");
    let size = 32 * MIB;
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(size)
        .unwrap();
    let loop_device = LoopDevice::attach(&backing, sector_bytes);

    let device = open_existing(&loop_device.path);
    let info = device.info().clone();
    println!(
        "{info:?} (sysfs dio={}, statx DIOALIGN {:?})",
        loop_device.sysfs("loop/dio"),
        statx_dio(&loop_device.path)
    );
    assert_eq!(info.kind, DeviceKind::Block);
    assert_eq!(info.size_bytes, size);
    assert_eq!(info.block_bytes, sector_bytes);
    assert_eq!(
        info.block_bytes.to_string(),
        loop_device.sysfs("queue/logical_block_size")
    );
    assert!(info.mem_align.is_power_of_two() && info.mem_align <= info.block_bytes);

    let mut queue = device.open_queue(32).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(sector_bytes));
    let writes = scattered_writes(&mut rng, 200, size, info.block_bytes);
    let (writes, _) = run_all(queue.as_mut(), writes);
    let writes = sorted(writes);
    flush(queue.as_mut());
    verify(queue.as_mut(), &writes);
    drop(queue);
    drop(device);
    drop(loop_device);

    // The data reached the backing file.
    let bytes = std::fs::read(&backing).unwrap();
    for write in &writes {
        let start = write.offset as usize;
        let want = &write.buf.as_ref().unwrap().as_slice()[..write.len];
        assert!(
            &bytes[start..start + write.len] == want,
            "backing file differs at {start}"
        );
    }
}

#[test]
fn loop_device_geometry_and_round_trip() {
    let _serial = LOOP_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop_device_round_trip(512);
    loop_device_round_trip(4096);
}
