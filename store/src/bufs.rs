//! A cache of DMA buffers by power-of-two size class, so steady-state requests reuse buffers
//! instead of allocating. Bounded: at most `BUFS_CACHED_MAX` buffers per class are kept.

use ds_nvme::DmaBuf;

const CLASSES: usize = 24;
const BUFS_CACHED_MAX: usize = 64;
const CLASS_MIN_BYTES: usize = 4096;

#[derive(Default)]
pub struct BufCache {
    classes: Vec<Vec<DmaBuf>>,
}

impl BufCache {
    pub fn new() -> Self {
        Self {
            classes: (0..CLASSES).map(|_| Vec::new()).collect(),
        }
    }

    fn class_of(bytes: usize) -> usize {
        let bytes = bytes.max(CLASS_MIN_BYTES).next_power_of_two();
        (bytes.trailing_zeros() - CLASS_MIN_BYTES.trailing_zeros()) as usize
    }

    /// A buffer of at least `bytes`; its contents are whatever the last user left.
    pub fn take(&mut self, bytes: usize) -> DmaBuf {
        let class = Self::class_of(bytes);
        if let Some(buf) = self.classes.get_mut(class).and_then(Vec::pop) {
            return buf;
        }
        DmaBuf::new(bytes.max(CLASS_MIN_BYTES).next_power_of_two())
    }

    pub fn give(&mut self, buf: DmaBuf) {
        let bytes = buf.capacity();
        if !bytes.is_power_of_two() || buf.pool_index().is_some() {
            return;
        }
        let class = Self::class_of(bytes);
        if let Some(list) = self.classes.get_mut(class) {
            if list.len() < BUFS_CACHED_MAX {
                list.push(buf);
            }
        }
    }
}
