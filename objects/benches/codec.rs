//! Raw erasure-coding throughput of one core: `EcCodec` encoding and decoding full stripes,
//! one JSON object per line. This is "the raw codec" figure the node benchmarks compare to.
//!
//! MB/s counts object bytes (the stripe's K data shards; 1 MB = 10^6 B), not parity: it is the
//! rate at which the codec can take PUT bytes in or give GET bytes back. Each series runs
//! `ROUNDS` rounds of at least `ROUND_SECONDS` after a warm-up; the median is reported beside
//! every round. Decoding loses the first data shards, up to M: the most work a read can meet.
//!
//! Run: `cargo bench -p ds-objects --bench codec` (optionally `-- K+M STRIPE_BYTES`, default
//! `4+2 1048576`). `DS_CODEC_QUICK=1` runs 3 rounds of 0.25 s per series instead (about 8 s in
//! all, for `bench/cluster.sh`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use ds_objects::codec::EcCodec;
use ds_objects::limits::SHARD_ALIGN_BYTES;
use ds_objects::scheme::Scheme;
use ds_objects::stripe::StripeLayout;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROUNDS: usize = 5;
const ROUND_SECONDS: f64 = 0.5;
const WARM_UP: Duration = Duration::from_millis(200);
/// With `DS_CODEC_QUICK` set (not empty, not 0).
const QUICK_ROUNDS: usize = 3;
const QUICK_ROUND_SECONDS: f64 = 0.25;
const QUICK_WARM_UP: Duration = Duration::from_millis(100);

/// Rounds per series, seconds per round, warm-up.
#[derive(Clone, Copy)]
struct Timing {
    rounds: usize,
    round_seconds: f64,
    warm_up: Duration,
}

impl Timing {
    fn from_env() -> Timing {
        let quick = std::env::var("DS_CODEC_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        if quick {
            Timing {
                rounds: QUICK_ROUNDS,
                round_seconds: QUICK_ROUND_SECONDS,
                warm_up: QUICK_WARM_UP,
            }
        } else {
            Timing {
                rounds: ROUNDS,
                round_seconds: ROUND_SECONDS,
                warm_up: WARM_UP,
            }
        }
    }
}
const SEED: u64 = 0xec_c0de;
/// Stripes coded in turn: one (in cache) and 64 (64 MiB at the default stripe, past this
/// machine's 32 MiB L3: the bytes come from memory, as a large PUT's do).
const WORKING_SET_STRIPES: [usize; 2] = [1, 64];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let scheme: Scheme = args
        .first()
        .map_or("4+2", String::as_str)
        .parse()
        .expect("K+M");
    let stripe_target: u32 = args
        .get(1)
        .map_or(1 << 20, |s| s.parse().expect("stripe bytes"));
    let shard_bytes = stripe_target
        .div_ceil(u32::from(scheme.k()))
        .next_multiple_of(SHARD_ALIGN_BYTES);
    let layout = StripeLayout::new(scheme, shard_bytes).expect("shard size");
    let mut codec = EcCodec::new(layout).expect("codec");
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let simd = simd_level();
    let timing = Timing::from_env();
    for working_set in WORKING_SET_STRIPES {
        let stripes: Vec<Vec<u8>> = (0..working_set)
            .map(|_| (0..layout.stripe_bytes()).map(|_| rng.gen()).collect())
            .collect();
        let mut parity =
            vec![vec![vec![0u8; shard_bytes as usize]; usize::from(scheme.m())]; working_set];
        let mut outs = vec![vec![0u8; layout.stripe_bytes() as usize]; working_set];
        let report = |series: &str, lost: u8, rounds: Vec<f64>| {
            let mut sorted = rounds.clone();
            sorted.sort_by(f64::total_cmp);
            let line = serde_json::json!({
                "bench": "codec",
                "series": series,
                "scheme": scheme.to_string(),
                "stripe_bytes": layout.stripe_bytes(),
                "shard_bytes": shard_bytes,
                "working_set_bytes": working_set as u64 * u64::from(layout.stripe_bytes()),
                "data_shards_lost": lost,
                "mb_per_s": sorted[sorted.len() / 2].round(),
                "rounds_mb_per_s": rounds.iter().map(|r| r.round()).collect::<Vec<_>>(),
                "simd": simd,
            });
            println!("{line}");
        };

        let mut next = 0;
        let rounds = measure(timing, layout.stripe_bytes(), || {
            let i = next % working_set;
            next += 1;
            codec
                .encode(black_box(&stripes[i]), &mut parity[i])
                .expect("encode");
        });
        report("encode", 0, rounds);

        // Decoding with 0 ..= M data shards lost (the first ones); 0 is the copy path.
        for lost in 0..=scheme.m().min(scheme.k()) {
            let held: Vec<Vec<Option<&[u8]>>> = (0..working_set)
                .map(|i| {
                    let data = (0..scheme.k()).map(|s| layout.data_shard(&stripes[i], s));
                    let all = data.chain(parity[i].iter().map(Vec::as_slice));
                    (0u8..)
                        .zip(all)
                        .map(|(s, bytes)| (s >= lost).then_some(bytes))
                        .collect()
                })
                .collect();
            let mut next = 0;
            let rounds = measure(timing, layout.stripe_bytes(), || {
                let i = next % working_set;
                next += 1;
                codec
                    .decode(black_box(&held[i]), &mut outs[i])
                    .expect("decode");
            });
            assert!(outs.iter().zip(&stripes).all(|(out, stripe)| out == stripe));
            report(
                if lost == 0 { "decode_copy" } else { "decode" },
                lost,
                rounds,
            );
        }
    }
}

/// MB/s of `bytes_per_call` over `timing.rounds` timed rounds.
fn measure(timing: Timing, bytes_per_call: u32, mut call: impl FnMut()) -> Vec<f64> {
    let warm_up = Instant::now();
    while warm_up.elapsed() < timing.warm_up {
        call();
    }
    (0..timing.rounds)
        .map(|_| {
            let start = Instant::now();
            let mut calls = 0u64;
            while start.elapsed().as_secs_f64() < timing.round_seconds {
                call();
                calls += 1;
            }
            let seconds = start.elapsed().as_secs_f64();
            calls as f64 * f64::from(bytes_per_call) / seconds / 1e6
        })
        .collect()
}

/// The widest SIMD level reed-solomon-simd can pick here (it chooses at run time).
fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
        if std::arch::is_x86_feature_detected!("ssse3") {
            return "ssse3";
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        return "neon";
    }
    #[allow(unreachable_code)]
    "none"
}
