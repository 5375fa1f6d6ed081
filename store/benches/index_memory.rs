//! Memory and speed of the in-memory index at 10M entries, one JSON object per line.
//!
//! Inserts 10M entries with random fingerprints (seeded) and distinct random values, looks up
//! existing and missing fingerprints, then removes 10% and inserts as many new ones. Heap bytes
//! come from `Index::heap_bytes` (capacity); the peak comes from a counting global allocator and
//! covers the index only (the bench's own arrays are subtracted). A `realloc` counts as its new
//! size: glibc moves blocks this large by remapping, without a second copy.
//!
//! Run: `cargo bench -p ds-store --bench index_memory` (optionally `-- ENTRIES`).

use ds_store::index::Index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const ENTRIES_DEFAULT: usize = 10_000_000;
const LOOKUPS: usize = 2_000_000;
const REMOVE_PERCENT: usize = 10;
const SEED: u64 = 0x05ee_d1de;

struct Counting;

static CURRENT_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = CURRENT_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    CURRENT_BYTES.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: forwards to the system allocator unchanged and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = System.realloc(ptr, layout, new_size);
        if !moved.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Distinct values that look random: splitmix64's finaliser is a bijection.
fn value_of(n: u64) -> u64 {
    let mut x = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Starts a phase: the peak is measured from here.
fn reset_peak() {
    PEAK_BYTES.store(CURRENT_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// One line per phase. The peak is per entry at the phase's largest entry count.
fn report(phase: &str, index: &Index, outside_bytes: usize, ops: usize, started: Instant) {
    report_peak_per(phase, index, outside_bytes, ops, started, index.len());
}

fn report_peak_per(
    phase: &str,
    index: &Index,
    outside_bytes: usize,
    ops: usize,
    started: Instant,
    entries_max: usize,
) {
    let seconds = started.elapsed().as_secs_f64();
    let entries = index.len();
    let heap = index.heap_bytes();
    let peak = PEAK_BYTES
        .load(Ordering::Relaxed)
        .saturating_sub(outside_bytes);
    println!(
        "{{\"phase\": \"{phase}\", \"entries\": {entries}, \"heap_bytes\": {heap}, \
         \"bytes_per_entry\": {:.2}, \"peak_heap_bytes\": {peak}, \
         \"peak_bytes_per_entry\": {:.2}, \"ops\": {ops}, \"ns_per_op\": {:.1}}}",
        heap as f64 / entries as f64,
        peak as f64 / entries_max as f64,
        seconds * 1e9 / ops as f64,
    );
}

/// Heap the bench holds outside the index, subtracted from the peak.
fn outside(index: &Index) -> usize {
    CURRENT_BYTES.load(Ordering::Relaxed) - index.heap_bytes()
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number sets the entry count.
    let entries = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(ENTRIES_DEFAULT);
    let removals = entries * REMOVE_PERCENT / 100;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let fps: Vec<u64> = (0..entries + removals).map(|_| rng.gen::<u64>()).collect();
    let mut out: Vec<u64> = Vec::with_capacity(16);

    let mut index = Index::new();
    let outside_bytes = outside(&index);
    reset_peak();
    let started = Instant::now();
    for (n, &fp) in fps[..entries].iter().enumerate() {
        index.insert(fp, value_of(n as u64));
    }
    report("insert", &index, outside_bytes, entries, started);

    // Gathered first, so the timed loop reads them in order and only the index misses cache.
    let existing: Vec<(u64, u64)> = (0..LOOKUPS)
        .map(|_| rng.gen_range(0..entries))
        .map(|n| (fps[n], value_of(n as u64)))
        .collect();
    let missing: Vec<u64> = (0..LOOKUPS).map(|_| rng.gen()).collect();
    let outside_bytes = outside(&index);
    reset_peak();
    let mut found = 0;
    let started = Instant::now();
    for &(fp, value) in &existing {
        out.clear();
        index.candidates(fp, &mut out);
        found += usize::from(out.contains(&value));
    }
    report("lookup_existing", &index, outside_bytes, LOOKUPS, started);
    assert_eq!(found, LOOKUPS, "an existing entry was missed");

    let mut false_positives = 0;
    let started = Instant::now();
    for &fp in &missing {
        out.clear();
        index.candidates(black_box(fp), &mut out);
        false_positives += out.len();
    }
    report("lookup_missing", &index, outside_bytes, LOOKUPS, started);
    println!("{{\"phase\": \"lookup_missing\", \"false_positives\": {false_positives}}}");
    drop((existing, missing));

    // Remove every tenth entry, then insert as many new ones.
    let outside_bytes = outside(&index);
    reset_peak();
    let started = Instant::now();
    for n in (0..entries).step_by(100 / REMOVE_PERCENT).take(removals) {
        assert!(index.remove(fps[n], value_of(n as u64)));
    }
    report_peak_per(
        "remove_10_percent",
        &index,
        outside_bytes,
        removals,
        started,
        entries,
    );

    let outside_bytes = outside(&index);
    reset_peak();
    let started = Instant::now();
    for (n, &fp) in fps.iter().enumerate().skip(entries) {
        index.insert(fp, value_of(n as u64));
    }
    report("reinsert", &index, outside_bytes, removals, started);

    // Entries 1, 11, 21, ... were not removed.
    let replaces = entries / 10;
    let started = Instant::now();
    for n in (1..entries).step_by(10).take(replaces) {
        let old = value_of(n as u64);
        assert!(index.replace(fps[n], old, value_of((n + 2 * entries) as u64)));
    }
    report("replace", &index, outside_bytes, replaces, started);

    let started = Instant::now();
    let checksum = index.iter().fold(0u64, |sum, (fp, value)| sum ^ fp ^ value);
    report("iter", &index, outside_bytes, index.len(), started);
    black_box(checksum);

    // One merge of whatever the delta holds now: the pause an insert can take.
    let started = Instant::now();
    index.merge();
    report("merge", &index, outside_bytes, 1, started);
}
