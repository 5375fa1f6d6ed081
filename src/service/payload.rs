//! Request payloads as the frame decoder hands them over: in a `Vec`, or, for a large PUT,
//! already in a store record buffer (data at `PUT_DATA_OFFSET`, room for the record header in
//! front), so the store writes that buffer itself and the bytes are copied once on their way
//! from the socket to the device instead of twice.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ds_nvme::DmaBuf;
use ds_proto::{Header, Opcode, PayloadBuf};
use ds_store::limits::RECORD_DATA_BYTES_MAX;
use ds_store::PUT_DATA_OFFSET;

use crate::service::ctx::CoreCtx;

/// PUT payloads from this size on are received into record buffers; smaller ones are cheaper
/// to batch with others (the store copies them into a group-commit batch).
pub const RECORD_PAYLOAD_MIN_BYTES: usize = 64 << 10;
/// Record buffers a core's connections may hold payloads in at once; beyond, payloads go into
/// `Vec`s as before. A record buffer is resident at once (a `Vec` only as bytes arrive), so
/// clients stalling inside large PUTs would otherwise pin one each (2 MiB for 1 MiB).
pub const RECORD_PAYLOADS_MAX: usize = 64;

/// A PUT payload in a store record buffer. It counts against its core's
/// [`RECORD_PAYLOADS_MAX`] until it is dropped or handed to the store.
pub struct RecordPayload {
    buf: DmaBuf,
    len: usize,
    held: Held,
}

/// One of a core's record payloads; gives its place back when dropped.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RecordPayload {
    /// Memory for the payload of `header` when it is a PUT worth receiving into a record
    /// buffer (one that fits one record: a larger one is cut into stripes anyway).
    pub fn for_request(ctx: &CoreCtx, header: &Header) -> Option<RecordPayload> {
        let len = header.payload_bytes as usize;
        let wanted = header.opcode == Opcode::Put
            && !header.is_reply()
            && (RECORD_PAYLOAD_MIN_BYTES..=RECORD_DATA_BYTES_MAX).contains(&len);
        if !wanted {
            return None;
        }
        // Only this core's connections add; any core may give back (a payload travels to the
        // core that owns its object).
        let count = &ctx.record_payloads;
        if count.load(Ordering::Relaxed) >= RECORD_PAYLOADS_MAX {
            return None;
        }
        count.fetch_add(1, Ordering::Relaxed);
        Some(RecordPayload {
            buf: ctx.store.borrow_mut().put_buffer(len),
            len,
            held: Held(count.clone()),
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf.as_slice()[PUT_DATA_OFFSET..PUT_DATA_OFFSET + self.len]
    }

    /// The record buffer and the payload's length in it (its place is given back: the store
    /// bounds what it holds).
    pub fn into_parts(self) -> (DmaBuf, usize) {
        let RecordPayload { buf, len, held } = self;
        drop(held);
        (buf, len)
    }
}

impl AsRef<[u8]> for RecordPayload {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PayloadBuf for RecordPayload {
    fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut_slice()[PUT_DATA_OFFSET..PUT_DATA_OFFSET + self.len]
    }
}

impl fmt::Debug for RecordPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordPayload({} bytes)", self.len)
    }
}

/// A request's payload.
#[derive(Debug)]
pub enum Payload {
    Bytes(Vec<u8>),
    Record(RecordPayload),
}

impl Payload {
    pub fn len(&self) -> usize {
        match self {
            Payload::Bytes(bytes) => bytes.len(),
            Payload::Record(record) => record.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes in a `Vec` (a copy for a record buffer).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Bytes(bytes) => bytes,
            Payload::Record(record) => record.as_slice().to_vec(),
        }
    }
}
