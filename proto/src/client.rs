//! A blocking client over one TCP connection: the operations of protocol v1, PUTs pipelined.
//!
//! One request at a time, except PUT: a write is cut into `DATA_CHUNK_BYTES` frames of which up to
//! `PUT_WINDOW` are in flight, replies matched by request id in whatever order they come.
//! Memory stays bounded by one frame for sending (the socket keeps what is in flight) and one
//! for receiving, whatever the size of the object.

mod error;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub use error::{ClientError, ProtocolError};

use crate::decoder::{DecodeError, FrameDecoder};
use crate::frame::{encode_frame, object_request, Frame};
use crate::header::{Header, HeaderError};
use crate::id::ObjectId;
use crate::limits::{
    CLIENT_IO_TIMEOUT_SECS, CLIENT_READ_BUFFER_BYTES, DATA_CHUNK_BYTES, PUT_WINDOW,
    STAT_REPLY_BYTES_MAX,
};
use crate::opcode::Opcode;
use crate::overlay::OverlayReply;
use crate::scheme::Scheme;
use crate::stat::StatReply;
use crate::status::Status;

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.stream.peer_addr().ok())
            .field("next_request_id", &self.next_request_id)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// GET `length` meaning "from `offset` to the end of the object".
pub const LENGTH_TO_END: u64 = u64::MAX;

/// Bytes of queued requests ([`Client::queue_request`]) that are written without waiting for a
/// flush.
pub const QUEUED_BYTES_MAX: usize = 256 * 1024;

/// Payloads at least this large are written from the caller's memory, not copied into the
/// write buffer first.
const PAYLOAD_COPY_BYTES_MAX: usize = 64 * 1024;

pub struct Client {
    stream: TcpStream,
    decoder: FrameDecoder,
    read_buffer: Box<[u8]>,
    /// `read_buffer[read_at..read_end]` was read from the socket and not yet decoded.
    read_at: usize,
    read_end: usize,
    /// Frames queued and not yet written.
    write_buffer: Vec<u8>,
    next_request_id: u64,
    broken: bool,
}

impl Client {
    /// Connects to the first address of `addr` that answers within `timeout`, and sets
    /// TCP_NODELAY (requests are small and latency-bound; frames go out in one write each).
    pub fn connect<A>(addr: A, timeout: Duration) -> Result<Client, ClientError>
    where
        A: ToSocketAddrs + std::fmt::Debug,
    {
        let failed = |source| ClientError::Connect {
            addr: format!("{addr:?}"),
            source,
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address");
        for candidate in addr.to_socket_addrs().map_err(failed)? {
            match TcpStream::connect_timeout(&candidate, timeout) {
                Ok(stream) => return Client::from_stream(stream),
                Err(error) => last = error,
            }
        }
        Err(failed(last))
    }

    /// Wraps a connected stream (sets TCP_NODELAY and the default I/O timeout).
    pub fn from_stream(stream: TcpStream) -> Result<Client, ClientError> {
        stream.set_nodelay(true).map_err(ClientError::Io)?;
        let client = Client {
            stream,
            decoder: FrameDecoder::new(),
            read_buffer: vec![0; CLIENT_READ_BUFFER_BYTES].into_boxed_slice(),
            read_at: 0,
            read_end: 0,
            write_buffer: Vec::new(),
            next_request_id: 1,
            broken: false,
        };
        client.set_io_timeout(Some(Duration::from_secs(CLIENT_IO_TIMEOUT_SECS)))?;
        Ok(client)
    }

    /// How long one socket read or write may block; `None` waits forever.
    pub fn set_io_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.stream
            .set_read_timeout(timeout)
            .map_err(ClientError::Io)?;
        self.stream
            .set_write_timeout(timeout)
            .map_err(ClientError::Io)
    }

    /// A fresh request id (ids start at 1; 0 is never a request's).
    pub fn next_request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        id
    }

    /// Sends `payload` and checks the node echoes it.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let request_id = self.next_request_id();
        let reply = self.call(Header::request(Opcode::Ping, request_id), payload)?;
        if reply.payload != payload {
            return Err(self.fail(ProtocolError::PingEcho { request_id }));
        }
        Ok(())
    }

    /// Makes a new, empty object coded with `scheme`; `None` (`aux` = 0) leaves the choice to
    /// the node: its configured default scheme.
    pub fn create(&mut self, scheme: Option<Scheme>) -> Result<ObjectId, ClientError> {
        let mut header = Header::request(Opcode::Create, self.next_request_id());
        header.aux = scheme.map_or(0, Scheme::to_aux);
        Ok(self.call(header, &[])?.header.object_id)
    }

    /// Writes `data` at `offset`, pipelined in `DATA_CHUNK_BYTES` frames.
    pub fn put(&mut self, id: ObjectId, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        let mut source = SliceChunks { data, sent: false };
        self.put_chunks(id, offset, &mut source, &mut |_| {})
            .map(|_| ())
    }

    /// Writes everything `source` yields at `offset`, pipelined; `progress` gets the bytes
    /// acknowledged so far after each reply. Returns the bytes written. Holds one frame of
    /// data at a time.
    pub fn put_from(
        &mut self,
        id: ObjectId,
        offset: u64,
        source: impl Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ClientError> {
        let mut source = ReaderChunks {
            reader: source,
            buffer: Vec::with_capacity(DATA_CHUNK_BYTES),
            sent: false,
            eof: false,
        };
        self.put_chunks(id, offset, &mut source, progress)
    }

    /// Reads `length` bytes at `offset` (`LENGTH_TO_END`: to the end of the object) into
    /// `sink`; `progress` gets the bytes written so far after each frame. Returns the bytes
    /// written. On an error some bytes may already be in `sink`.
    pub fn get(
        &mut self,
        id: ObjectId,
        offset: u64,
        length: u64,
        mut sink: impl Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ClientError> {
        self.check_usable()?;
        if length != LENGTH_TO_END && offset.checked_add(length).is_none() {
            return Err(ClientError::RangeOverflow { offset, length });
        }
        let request_id = self.next_request_id();
        let mut header = object_request(Opcode::Get, request_id, id);
        header.offset = offset;
        header.length = length;
        self.send_parts(&header, &[])?;
        let requested = (length != LENGTH_TO_END).then_some(length);
        self.receive_stream(
            request_id,
            Opcode::Get,
            offset,
            requested,
            &mut |frame| sink.write_all(&frame.payload),
            progress,
        )
    }

    /// Removes the object.
    pub fn delete(&mut self, id: ObjectId) -> Result<(), ClientError> {
        let header = object_request(Opcode::Delete, self.next_request_id(), id);
        self.call(header, &[]).map(|_| ())
    }

    /// What the node knows about the object.
    pub fn stat(&mut self, id: ObjectId) -> Result<StatReply, ClientError> {
        let document = self.document(object_request(Opcode::Stat, 0, id))?;
        // A document that does not parse was still received whole: the connection is fine.
        StatReply::decode(&document).map_err(|error| ProtocolError::Stat(error).into())
    }

    /// The node's overlay view; with `responsible` = (key, n), also the n nodes responsible for
    /// key.
    pub fn overlay(
        &mut self,
        responsible: Option<(ObjectId, u64)>,
    ) -> Result<OverlayReply, ClientError> {
        let (key, n) = responsible.unwrap_or((ObjectId(0), 0));
        let mut header = object_request(Opcode::Overlay, 0, key);
        header.length = n;
        let document = self.document(header)?;
        OverlayReply::decode(&document).map_err(|error| ProtocolError::Overlay(error).into())
    }

    /// The node's repair and scrub state (HEALTH): a JSON object (`docs/protocol.md` §5.8).
    pub fn health(&mut self) -> Result<serde_json::Value, ClientError> {
        self.admin(Opcode::Health)
    }

    /// Asks the node to move every shard off itself and then stop (DRAIN); answers the HEALTH
    /// document, whose `drain_remaining` and `drained` tell the progress. Asking again is safe.
    pub fn drain(&mut self) -> Result<serde_json::Value, ClientError> {
        self.admin(Opcode::Drain)
    }

    fn admin(&mut self, opcode: Opcode) -> Result<serde_json::Value, ClientError> {
        let document = self.document(Header::request(opcode, 0))?;
        serde_json::from_slice(&document).map_err(|error| {
            ProtocolError::Document {
                opcode: opcode.name(),
                error: error.to_string(),
            }
            .into()
        })
    }

    /// Sends `header` (its request id filled in here) and collects the JSON document of the
    /// (multi-frame) reply.
    fn document(&mut self, mut header: Header) -> Result<Vec<u8>, ClientError> {
        self.check_usable()?;
        header.request_id = self.next_request_id();
        self.send_parts(&header, &[])?;
        let mut document = Vec::new();
        self.receive_stream(
            header.request_id,
            header.opcode,
            0,
            None,
            &mut |frame| {
                document.extend_from_slice(&frame.payload);
                Ok(())
            },
            &mut |_| {},
        )?;
        Ok(document)
    }

    /// Sends `header` with `payload` (the payload fields of the header are computed), for
    /// tools that pipeline requests themselves; match replies with [`Client::recv`].
    pub fn send_request(&mut self, header: &Header, payload: &[u8]) -> Result<(), ClientError> {
        self.send_parts(header, payload)
    }

    /// Sends one frame as it is (for tests and tools; the operations above use it too).
    pub fn send(&mut self, frame: &Frame) -> Result<(), ClientError> {
        self.send_parts(&frame.header, &frame.payload)
    }

    /// Receives the next frame, whatever it is.
    pub fn recv(&mut self) -> Result<Frame, ClientError> {
        self.check_usable()?;
        loop {
            if self.read_at < self.read_end {
                let mut input = &self.read_buffer[self.read_at..self.read_end];
                let result = self.decoder.decode(&mut input);
                self.read_at = self.read_end - input.len();
                match result {
                    Ok(Some(frame)) => return Ok(frame),
                    Ok(None) => {}
                    Err(DecodeError::Header(HeaderError::UnsupportedVersion(node))) => {
                        self.broken = true;
                        return Err(ClientError::VersionMismatch { node });
                    }
                    Err(error) => return Err(self.fail(ProtocolError::Decode(error))),
                }
            }
            // About to wait for the node: what is queued must reach it first.
            self.flush()?;
            let read = match self.stream.read(&mut self.read_buffer) {
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.broken = true;
                    return Err(ClientError::Io(error));
                }
            };
            if read == 0 {
                let mid_frame = !self.decoder.at_frame_boundary();
                return Err(self.fail(ProtocolError::Closed { mid_frame }));
            }
            self.read_at = 0;
            self.read_end = read;
        }
    }

    /// One request, one single-frame reply.
    fn call(&mut self, header: Header, payload: &[u8]) -> Result<Frame, ClientError> {
        self.check_usable()?;
        self.send_parts(&header, payload)?;
        let frame = self.recv_reply()?;
        if frame.header.request_id != header.request_id {
            let request_id = frame.header.request_id;
            return Err(self.fail(ProtocolError::UnexpectedReply { request_id }));
        }
        self.check_reply(&frame, header.opcode, false)?;
        Ok(frame)
    }

    /// The pipelined PUT loop: keeps up to `PUT_WINDOW` requests in flight. After an error
    /// reply no new chunk is sent and the ones in flight are drained, so the connection stays
    /// usable; the first error is returned.
    fn put_chunks(
        &mut self,
        id: ObjectId,
        offset: u64,
        source: &mut dyn ChunkSource,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ClientError> {
        self.check_usable()?;
        let mut in_flight = VecDeque::with_capacity(PUT_WINDOW);
        let mut position = offset;
        let mut acknowledged = 0u64;
        let mut first_error = None;
        loop {
            if in_flight.len() == PUT_WINDOW {
                self.reap_put(
                    &mut in_flight,
                    &mut acknowledged,
                    progress,
                    &mut first_error,
                )?;
                continue;
            }
            if first_error.is_some() {
                break;
            }
            let chunk = match source.next_chunk() {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(error) => {
                    first_error = Some(ClientError::Source(error));
                    break;
                }
            };
            let bytes = chunk.len() as u64;
            if position.checked_add(bytes).is_none() {
                first_error = Some(ClientError::RangeOverflow {
                    offset: position,
                    length: bytes,
                });
                break;
            }
            let request_id = self.next_request_id();
            let mut header = object_request(Opcode::Put, request_id, id);
            header.offset = position;
            self.send_parts(&header, chunk)?;
            in_flight.push_back(InFlight { request_id, bytes });
            position += bytes;
        }
        while !in_flight.is_empty() {
            self.reap_put(
                &mut in_flight,
                &mut acknowledged,
                progress,
                &mut first_error,
            )?;
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(acknowledged),
        }
    }

    fn reap_put(
        &mut self,
        in_flight: &mut VecDeque<InFlight>,
        acknowledged: &mut u64,
        progress: &mut dyn FnMut(u64),
        first_error: &mut Option<ClientError>,
    ) -> Result<(), ClientError> {
        let frame = self.recv_reply()?;
        let request_id = frame.header.request_id;
        let Some(index) = in_flight.iter().position(|r| r.request_id == request_id) else {
            return Err(self.fail(ProtocolError::UnexpectedReply { request_id }));
        };
        let Some(request) = in_flight.remove(index) else {
            return Err(self.fail(ProtocolError::UnexpectedReply { request_id }));
        };
        match self.check_reply(&frame, Opcode::Put, false) {
            Ok(()) => {
                *acknowledged += request.bytes;
                progress(*acknowledged);
                Ok(())
            }
            Err(error @ ClientError::Server { .. }) if !self.broken => {
                first_error.get_or_insert(error);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Receives the frames of a multi-frame reply (GET, STAT), checking that they are
    /// contiguous from `start` and add up to the announced length, and hands each to `accept`.
    fn receive_stream(
        &mut self,
        request_id: u64,
        opcode: Opcode,
        start: u64,
        requested: Option<u64>,
        accept: &mut dyn FnMut(&Frame) -> io::Result<()>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ClientError> {
        let mut expected = start;
        let mut received = 0u64;
        let mut announced = None;
        loop {
            let frame = self.recv_reply()?;
            let header = frame.header;
            if header.request_id != request_id {
                let request_id = header.request_id;
                return Err(self.fail(ProtocolError::UnexpectedReply { request_id }));
            }
            self.check_reply(&frame, opcode, true)?;
            if header.offset != expected {
                return Err(self.fail(ProtocolError::OffsetGap {
                    request_id,
                    expected,
                    found: header.offset,
                }));
            }
            let total = *announced.get_or_insert(header.length);
            if total != header.length {
                return Err(self.fail(ProtocolError::LengthChanged {
                    request_id,
                    first: total,
                    found: header.length,
                }));
            }
            if let Some(requested) = requested.filter(|requested| *requested != total) {
                return Err(self.fail(ProtocolError::WrongLength {
                    request_id,
                    requested,
                    announced: total,
                }));
            }
            if matches!(
                opcode,
                Opcode::Stat | Opcode::Overlay | Opcode::Health | Opcode::Drain
            ) && total > STAT_REPLY_BYTES_MAX as u64
            {
                return Err(self.fail(ProtocolError::StatTooLarge { bytes: total }));
            }
            let bytes = frame.payload.len() as u64;
            let next = received.checked_add(bytes).filter(|next| *next <= total);
            let (Some(next), Some(next_offset)) = (next, expected.checked_add(bytes)) else {
                return Err(self.fail(ProtocolError::Overrun {
                    request_id,
                    announced: total,
                }));
            };
            if let Err(error) = accept(&frame) {
                // The rest of the reply is still on its way; without reading it the stream
                // cannot be used for another request.
                self.broken |= header.has_more();
                return Err(ClientError::Sink(error));
            }
            received = next;
            expected = next_offset;
            progress(received);
            if !header.has_more() {
                if received != total {
                    return Err(self.fail(ProtocolError::Short {
                        request_id,
                        announced: total,
                        received,
                    }));
                }
                return Ok(received);
            }
        }
    }

    /// Receives a frame, turning an error reply not tied to any request (request id 0: the
    /// node could not read our frame and closes) into that error.
    fn recv_reply(&mut self) -> Result<Frame, ClientError> {
        let frame = self.recv()?;
        if frame.header.request_id == 0 && !frame.header.status.is_ok() {
            self.broken = true;
            return Err(ClientError::Server {
                status: frame.header.status,
                message: frame.error_message(),
            });
        }
        Ok(frame)
    }

    /// Checks a reply frame already matched to its request.
    fn check_reply(
        &mut self,
        frame: &Frame,
        opcode: Opcode,
        multi_frame: bool,
    ) -> Result<(), ClientError> {
        let header = &frame.header;
        let request_id = header.request_id;
        if !header.is_reply() {
            return Err(self.fail(ProtocolError::NotAReply { request_id }));
        }
        if !header.status.is_ok() {
            if header.has_more() {
                return Err(self.fail(ProtocolError::UnexpectedMore {
                    request_id,
                    opcode: header.opcode,
                }));
            }
            // The node closes after VERSION_MISMATCH.
            self.broken |= header.status == Status::VersionMismatch;
            return Err(ClientError::Server {
                status: header.status,
                message: frame.error_message(),
            });
        }
        if header.opcode != opcode {
            return Err(self.fail(ProtocolError::WrongOpcode {
                request_id,
                expected: opcode,
                found: header.opcode,
            }));
        }
        if header.has_more() && !multi_frame {
            return Err(self.fail(ProtocolError::UnexpectedMore { request_id, opcode }));
        }
        Ok(())
    }

    fn send_parts(&mut self, header: &Header, payload: &[u8]) -> Result<(), ClientError> {
        self.check_usable()?;
        if payload.len() < PAYLOAD_COPY_BYTES_MAX {
            encode_frame(header, payload, &mut self.write_buffer)?;
            return self.flush();
        }
        // A large payload goes from the caller's memory to the socket, behind whatever is
        // queued and its own header, in vectored writes: no copy through the write buffer.
        let mut header = *header;
        header.seal(payload)?;
        self.write_buffer.extend_from_slice(&header.encode());
        let result = write_both(&mut self.stream, &self.write_buffer, payload);
        self.write_buffer.clear();
        if let Err(error) = result {
            self.broken = true;
            return Err(ClientError::Io(error));
        }
        Ok(())
    }

    /// Queues a request frame to go out with the next [`Client::flush`], [`Client::recv`] that
    /// has to wait for the socket, or send: a pipelining caller that answers each reply with a
    /// new request then writes them in one system call per batch of replies, not one each.
    /// Queued bytes past [`QUEUED_BYTES_MAX`], and a large payload with everything queued before
    /// it, are written at once.
    pub fn queue_request(&mut self, header: &Header, payload: &[u8]) -> Result<(), ClientError> {
        self.check_usable()?;
        if payload.len() >= PAYLOAD_COPY_BYTES_MAX {
            // Written at once, from the caller's memory.
            return self.send_parts(header, payload);
        }
        encode_frame(header, payload, &mut self.write_buffer)?;
        if self.write_buffer.len() >= QUEUED_BYTES_MAX {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every queued frame.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        if self.write_buffer.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.write_buffer);
        self.write_buffer.clear();
        if let Err(error) = result {
            self.broken = true;
            return Err(ClientError::Io(error));
        }
        Ok(())
    }

    fn check_usable(&self) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Broken);
        }
        Ok(())
    }

    /// Marks the connection unusable and returns the error.
    fn fail(&mut self, error: ProtocolError) -> ClientError {
        self.broken = true;
        ClientError::Protocol(error)
    }
}

/// Writes all of `first`, then all of `second`, with as few system calls as the socket allows.
fn write_both(stream: &mut TcpStream, mut first: &[u8], mut second: &[u8]) -> io::Result<()> {
    while !first.is_empty() || !second.is_empty() {
        let result = if first.is_empty() {
            stream.write(second)
        } else {
            stream.write_vectored(&[io::IoSlice::new(first), io::IoSlice::new(second)])
        };
        let written = match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => written,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if written < first.len() {
            first = &first[written..];
        } else {
            second = &second[written - first.len()..];
            first = &[];
        }
    }
    Ok(())
}

struct InFlight {
    request_id: u64,
    bytes: u64,
}

/// Where the frames of a PUT come from. Yields at least one (possibly empty) chunk, so an
/// empty write still reaches the node (and says whether the object exists).
trait ChunkSource {
    fn next_chunk(&mut self) -> io::Result<Option<&[u8]>>;
}

struct SliceChunks<'a> {
    data: &'a [u8],
    sent: bool,
}

impl ChunkSource for SliceChunks<'_> {
    fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        if self.sent && self.data.is_empty() {
            return Ok(None);
        }
        self.sent = true;
        let (chunk, rest) = self.data.split_at(self.data.len().min(DATA_CHUNK_BYTES));
        self.data = rest;
        Ok(Some(chunk))
    }
}

struct ReaderChunks<R> {
    reader: R,
    buffer: Vec<u8>,
    sent: bool,
    eof: bool,
}

impl<R: Read> ChunkSource for ReaderChunks<R> {
    /// Fills whole frames (readers often return less than asked) so only the last is short.
    fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        self.buffer.clear();
        self.buffer.resize(DATA_CHUNK_BYTES, 0);
        let mut filled = 0;
        while !self.eof && filled < DATA_CHUNK_BYTES {
            match self.reader.read(&mut self.buffer[filled..]) {
                Ok(0) => self.eof = true,
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        self.buffer.truncate(filled);
        if self.sent && filled == 0 {
            return Ok(None);
        }
        self.sent = true;
        Ok(Some(&self.buffer))
    }
}
