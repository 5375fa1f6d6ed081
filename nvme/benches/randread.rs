//! Raw device-layer random reads, no store: `cargo bench -p ds-nvme --bench randread --
//! "$PWD"/FILE [BYTES] [DEPTH] [SECONDS] [wait|spin] [BATCH]` (cargo runs benches in `nvme/`:
//! give an absolute path). BATCH is [`OpenOptions::submit_batch`] (default 1; DEPTH hands every
//! request of a reap over in one system call). Prints IOPS, to set beside fio on the same file
//! and beside the store's gets (`ds-store bench --op read`), which tells device-layer cost from
//! store cost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ds_nvme::uring::{OpenOptions, UringDevice};
use ds_nvme::{Device, DmaBuf, IoRequest};
use rand::{Rng, SeedableRng};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(path) = args.first() else {
        eprintln!("usage: randread FILE [BYTES] [DEPTH] [SECONDS] [wait|spin] [BATCH]");
        std::process::exit(2);
    };
    let number = |at: usize, default: u64, what: &str| -> u64 {
        args.get(at).map_or(default, |a| {
            a.parse()
                .unwrap_or_else(|_| fail(&format!("{what} `{a}` is not a number")))
        })
    };
    let bytes = number(1, 4096, "BYTES") as usize;
    let depth = number(2, 32, "DEPTH") as usize;
    let seconds = number(3, 5, "SECONDS");
    // `spin` polls like fio does (enter the kernel for completions, never sleep); `wait` blocks
    // for a completion when none is ready.
    let spin = match args.get(4).map(String::as_str) {
        None | Some("wait") => false,
        Some("spin") => true,
        Some(other) => fail(&format!("mode `{other}` is not wait or spin")),
    };
    let submit_batch = number(5, 1, "BATCH") as u32;
    let options = OpenOptions {
        submit_batch,
        ..OpenOptions::default()
    };
    let device = UringDevice::open(&PathBuf::from(path), &options)
        .unwrap_or_else(|error| fail(&error.to_string()));
    let size = device.info().size_bytes;
    let mut queue = device.open_queue(depth as u32).expect("queue");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let blocks = (size - bytes as u64) / 512;
    let mut done = Vec::new();
    let mut bufs: Vec<DmaBuf> = (0..depth).map(|_| DmaBuf::new(bytes)).collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut ops = 0u64;
    let mut inflight = 0;
    while Instant::now() < deadline || inflight > 0 {
        while Instant::now() < deadline && inflight < depth {
            let offset = rng.gen_range(0..blocks) * 512;
            let buf = bufs.pop().expect("buffer");
            queue
                .submit(IoRequest::read(buf, offset, bytes), ops)
                .expect("submit");
            inflight += 1;
        }
        queue.reap(&mut done);
        if done.is_empty() && !spin {
            let _ = queue.wait(Some(Duration::from_millis(1)));
        }
        for completion in done.drain(..) {
            completion.result.expect("read");
            bufs.push(completion.buf.expect("buffer"));
            inflight -= 1;
            ops += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"bytes\":{bytes},\"depth\":{depth},\"spin\":{spin},\"submit_batch\":{submit_batch},\"iops\":{:.0}}}",
        ops as f64 / elapsed
    );
}

fn fail(message: &str) -> ! {
    eprintln!("randread: {message}");
    std::process::exit(2);
}
