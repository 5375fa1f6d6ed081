//! The node's allocator settings, in a process of their own (they are process-wide): freed
//! 1 MiB blocks are reused without new page faults.

fn minor_faults() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_THREAD is this thread.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: initialised by the successful call above.
    unsafe { usage.assume_init() }.ru_minflt
}

/// Page faults of allocating, writing and freeing 16 blocks of 1 MiB, after one round to warm.
fn faults_of_a_round() -> i64 {
    let round = || {
        let blocks: Vec<Vec<u8>> = (0..16).map(|i| vec![i as u8; 1 << 20]).collect();
        std::hint::black_box(&blocks);
    };
    round();
    let before = minor_faults();
    round();
    minor_faults() - before
}

#[test]
fn freed_megabyte_blocks_are_reused_without_page_faults() {
    // In a thread of its own: its arena has seen nothing else.
    let (untuned, tuned) = std::thread::spawn(|| {
        let untuned = faults_of_a_round();
        ds::allocator::keep_freed_memory().expect("mallopt");
        (untuned, faults_of_a_round())
    })
    .join()
    .unwrap();
    // 16 MiB written is 4096 pages: glibc's defaults fault on most of them again.
    assert!(untuned > 1000, "untuned round: {untuned} faults");
    assert!(
        tuned < 100,
        "tuned round: {tuned} faults (untuned {untuned})"
    );
}
