//! The C allocator's settings for a long-running node: memory a core frees stays with the
//! process for its next request instead of going back to the kernel.
//!
//! glibc serves a block above its mmap threshold (128 KiB at first, then moving with what was
//! freed) with a mapping of its own, and gives an arena's free top back to the kernel above its
//! trim threshold. A node assembling 1 MiB PUT payloads then wrote each into fresh pages: ~26
//! page faults per PUT (27 000/s at 1 GB/s), and faulting and zeroing pages under every copy.
//! Fixed thresholds stop both; the memory kept is bounded by what the node's own limits let it
//! hold at once (frames, buffers, requests in flight).

use thiserror::Error;

/// Blocks up to this size come from the arenas (glibc's ceiling for the setting).
pub const MMAP_THRESHOLD_BYTES: i32 = 32 << 20;
/// An arena keeps up to this much free memory at its top.
pub const TRIM_THRESHOLD_BYTES: i32 = 256 << 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AllocatorError {
    #[error("mallopt refused {setting} = {value}")]
    Refused { setting: &'static str, value: i32 },
}

/// Applies [`MMAP_THRESHOLD_BYTES`] and [`TRIM_THRESHOLD_BYTES`]; call once at start-up, before
/// the threads that allocate are spawned. A no-op where the C library is not glibc.
pub fn keep_freed_memory() -> Result<(), AllocatorError> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (setting, param, value) in [
        (
            "M_MMAP_THRESHOLD",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD_BYTES,
        ),
        (
            "M_TRIM_THRESHOLD",
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD_BYTES,
        ),
    ] {
        // SAFETY: mallopt only changes allocator parameters; it takes plain integers and is
        // safe to call at any time (glibc serialises it with the arenas' locks).
        if unsafe { libc::mallopt(param, value) } != 1 {
            return Err(AllocatorError::Refused { setting, value });
        }
    }
    Ok(())
}
