//! Aligned buffers for direct I/O, and a pool of them that a queue can register.
//!
//! A [`DmaBuf`] owns a heap region aligned to 4096 bytes (enough for every O_DIRECT and NVMe
//! rule seen in practice). It is moved into a request and moved back out of its completion.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment of every [`DmaBuf`]: a page, which satisfies O_DIRECT on any logical block size.
pub const DMA_ALIGN_BYTES: usize = 4096;

/// An owned, zero-initialised, page-aligned buffer.
pub struct DmaBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    /// Index in the [`BufPool`] it came from, if any; lets io_uring use registered buffers.
    pool_index: Option<u16>,
}

// SAFETY: DmaBuf owns its allocation exclusively (no aliasing pointers are kept elsewhere, the
// pool keeps only addresses for registration), so moving it across threads is sound.
unsafe impl Send for DmaBuf {}
// SAFETY: shared references only allow reads of the bytes.
unsafe impl Sync for DmaBuf {}

impl DmaBuf {
    /// Allocates `capacity` zeroed bytes, rounded up to a multiple of [`DMA_ALIGN_BYTES`].
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1).next_multiple_of(DMA_ALIGN_BYTES);
        let layout = Self::layout(capacity);
        // SAFETY: layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout);
        };
        Self {
            ptr,
            capacity,
            pool_index: None,
        }
    }

    fn layout(capacity: usize) -> Layout {
        Layout::from_size_align(capacity, DMA_ALIGN_BYTES).expect("buffer layout")
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn pool_index(&self) -> Option<u16> {
        self.pool_index
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for capacity initialised bytes for the lifetime of self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.capacity) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for capacity bytes and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity) }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // SAFETY: ptr was allocated with exactly this layout in `new`.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.capacity)) }
    }
}

impl std::fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaBuf")
            .field("capacity", &self.capacity)
            .field("pool_index", &self.pool_index)
            .finish()
    }
}

/// A fixed set of equal buffers, handed out and taken back, so the data path never allocates.
/// Queues may register the pool's buffers with the kernel ([`crate::Queue::register`]).
pub struct BufPool {
    buf_bytes: usize,
    free: Vec<DmaBuf>,
    /// Address and length of every buffer, in index order, for registration.
    regions: Vec<(usize, usize)>,
}

impl BufPool {
    /// Allocates `count` buffers of `buf_bytes` each (at most `u16::MAX` buffers).
    pub fn new(count: usize, buf_bytes: usize) -> Self {
        assert!(
            count <= usize::from(u16::MAX),
            "pool of {count} buffers is over the limit"
        );
        let mut free = Vec::with_capacity(count);
        let mut regions = Vec::with_capacity(count);
        for index in 0..count {
            let mut buf = DmaBuf::new(buf_bytes);
            buf.pool_index = Some(index as u16);
            regions.push((buf.as_ptr() as usize, buf.capacity()));
            free.push(buf);
        }
        free.reverse();
        let buf_bytes = regions.first().map_or(buf_bytes, |region| region.1);
        Self {
            buf_bytes,
            free,
            regions,
        }
    }

    pub fn buf_bytes(&self) -> usize {
        self.buf_bytes
    }

    /// Takes a buffer; `None` when all are lent out.
    pub fn take(&mut self) -> Option<DmaBuf> {
        self.free.pop()
    }

    /// Returns a buffer taken from this pool.
    pub fn give(&mut self, buf: DmaBuf) {
        let index = buf.pool_index.expect("buffer does not come from a pool");
        assert_eq!(
            self.regions[usize::from(index)].0,
            buf.as_ptr() as usize,
            "buffer returned to the wrong pool"
        );
        self.free.push(buf);
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// (address, length) of every buffer, indexed by pool index.
    pub fn regions(&self) -> &[(usize, usize)] {
        &self.regions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        for size in [1, 512, 4096, 4097, 1 << 20] {
            let buf = DmaBuf::new(size);
            assert_eq!(buf.as_ptr() as usize % DMA_ALIGN_BYTES, 0);
            assert!(buf.capacity() >= size);
            assert!(buf.as_slice().iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn pool_lends_and_takes_back() {
        let mut pool = BufPool::new(3, 8192);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        let c = pool.take().unwrap();
        assert!(pool.take().is_none());
        assert_eq!(a.pool_index(), Some(0));
        pool.give(b);
        pool.give(a);
        pool.give(c);
        assert_eq!(pool.available(), 3);
    }
}
