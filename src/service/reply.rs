//! How a request's handler answers: a refusal (status and message), or frames built in pooled
//! buffers and queued on the connection.

use ds_net::ConnId;
use ds_proto::{Frame, Header, ReplyChunks, Status, HEADER_BYTES};

use crate::service::conn::{self, Gone};
use crate::service::ctx::CoreCtx;
use crate::service::owner::OpError;

/// A failed request: the status and the message of its error reply.
pub struct Refusal(pub Status, pub String);

impl From<OpError> for Refusal {
    fn from(error: OpError) -> Self {
        let status = match error {
            OpError::NotFound => Status::NotFound,
            OpError::Corrupt(_) => Status::Corrupt,
            OpError::NoSpace => Status::NoSpace,
            OpError::Busy => Status::Busy,
            OpError::Stale(_) => Status::Stale,
            OpError::Unavailable(_) => Status::Unavailable,
            OpError::Io(_) | OpError::Internal(_) => Status::Internal,
        };
        Refusal(status, error.to_string())
    }
}

pub fn refuse(status: Status, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

/// What a handler returns: bytes sent on success, or a refusal to answer with.
pub type Handled = Result<Result<u64, Gone>, Refusal>;

/// Sends a one-frame successful reply with `payload`.
pub async fn reply(ctx: &CoreCtx, conn: ConnId, request: &Header, payload: Vec<u8>) -> Handled {
    reply_with(ctx, conn, request.reply(Status::Ok), payload).await
}

/// Sends a one-frame reply with this header and `payload`.
pub async fn reply_with(ctx: &CoreCtx, conn: ConnId, header: Header, payload: Vec<u8>) -> Handled {
    let len = payload.len() as u64;
    let frame = Frame::new(header, payload).map_err(|e| refuse(Status::Internal, e.to_string()))?;
    Ok(send_frame(ctx, conn, &frame).await.map(|()| len))
}

pub async fn send_frame(ctx: &CoreCtx, conn: ConnId, frame: &Frame) -> Result<(), Gone> {
    let mut bytes = ctx.take_send_buf(HEADER_BYTES + frame.payload.len());
    let _ = frame.encode_into(&mut bytes);
    conn::send(ctx, conn, bytes).await
}

/// A reply built in place in a pooled buffer: room for the header, then the payload is
/// appended by the caller, then [`finish_frame`] writes the header (one copy of the payload).
pub fn start_frame(ctx: &CoreCtx, payload_bytes: usize) -> Vec<u8> {
    let mut bytes = ctx.take_send_buf(HEADER_BYTES + payload_bytes);
    bytes.resize(HEADER_BYTES, 0);
    bytes
}

pub fn finish_frame(mut header: Header, bytes: &mut [u8]) -> Result<(), Refusal> {
    header
        .seal(&bytes[HEADER_BYTES..])
        .map_err(|e| refuse(Status::Internal, e.to_string()))?;
    bytes[..HEADER_BYTES].copy_from_slice(&header.encode());
    Ok(())
}

/// Sends a document (JSON) as a reply of as many frames as it needs.
pub async fn send_document(
    ctx: &CoreCtx,
    conn: ConnId,
    request: &Header,
    document: &[u8],
) -> Handled {
    let total = document.len() as u64;
    let chunks =
        ReplyChunks::new(0, total).ok_or_else(|| refuse(Status::Internal, "document too large"))?;
    for chunk in chunks {
        let start = chunk.start as usize;
        let mut bytes = start_frame(ctx, chunk.bytes);
        bytes.extend_from_slice(&document[start..start + chunk.bytes]);
        finish_frame(chunk.header(request), &mut bytes)?;
        if conn::send(ctx, conn, bytes).await.is_err() {
            return Ok(Err(Gone));
        }
    }
    Ok(Ok(total))
}
