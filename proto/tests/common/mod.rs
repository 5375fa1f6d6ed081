//! A tiny in-test node: one connection, objects in a HashMap, speaking protocol v1 through the
//! crate's own codec. Enough to test the client's framing, pipelining and MORE handling; the
//! real node is tested elsewhere. Faults make it misbehave in the ways the client must catch.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;

use ds_proto::frame::encode_frame;
use ds_proto::{
    Frame, FrameDecoder, Header, ObjectId, Opcode, ReplyChunks, Scheme, StatPart, StatReply,
    Status, LENGTH_TO_END,
};

#[derive(Clone, Copy, Debug, Default)]
pub enum Fault {
    #[default]
    None,
    /// The second frame of a multi-frame GET reply claims an offset one byte too far.
    GetGap,
    /// Every reply is a VERSION_MISMATCH from a node speaking this version; then it closes.
    Version(u16),
    /// Every reply carries the request id + 1000.
    WrongRequestId,
    /// Every request is answered with an unattributed BUSY (request id 0); then it closes.
    Unattributed,
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// PUT replies are held until this many are pending, then sent newest first, so the client
    /// sees them out of order.
    pub put_reply_batch: usize,
    /// Parts listed in every STAT reply (enough of them span several frames).
    pub stat_parts: usize,
    pub fault: Fault,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            put_reply_batch: 1,
            stat_parts: 2,
            fault: Fault::None,
        }
    }
}

/// Starts a node on an ephemeral port; it serves one connection until the client closes it.
/// The handle's result says what requests it saw (opcode per request).
pub fn spawn(options: Options) -> (SocketAddr, JoinHandle<Vec<Opcode>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        Node::new(options).serve(stream)
    });
    (addr, handle)
}

struct Node {
    options: Options,
    objects: HashMap<ObjectId, (Scheme, Vec<u8>)>,
    next_id: u128,
    held_puts: Vec<Frame>,
    seen: Vec<Opcode>,
    out: Vec<u8>,
}

impl Node {
    fn new(options: Options) -> Node {
        Node {
            options,
            objects: HashMap::new(),
            next_id: 0x1000,
            held_puts: Vec::new(),
            seen: Vec::new(),
            out: Vec::new(),
        }
    }

    fn serve(mut self, mut stream: TcpStream) -> Vec<Opcode> {
        let mut decoder = FrameDecoder::new();
        let mut buffer = vec![0u8; 16 << 10];
        loop {
            let read = match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return self.seen,
                Ok(read) => read,
            };
            let mut input = &buffer[..read];
            let mut close = false;
            loop {
                match decoder.decode(&mut input) {
                    Ok(Some(frame)) => close |= self.handle(frame),
                    Ok(None) => break,
                    Err(error) => {
                        self.push(&error.reply());
                        if error.breaks_framing() {
                            close = true;
                            break;
                        }
                    }
                }
            }
            if stream.write_all(&self.out).is_err() || close {
                return self.seen;
            }
            self.out.clear();
        }
    }

    /// Answers one request; true when the connection must close.
    fn handle(&mut self, request: Frame) -> bool {
        let header = request.header;
        self.seen.push(header.opcode);
        match self.options.fault {
            Fault::Version(version) => {
                let frame = Frame::error_reply(&header, Status::VersionMismatch, "v1? no");
                let start = self.out.len();
                self.push(&frame);
                // A node of another version writes its own version into bytes 4..6.
                self.out[start + 4..start + 6].copy_from_slice(&version.to_le_bytes());
                return true;
            }
            Fault::Unattributed => {
                self.push(&Frame::unattributed_error(Status::Busy, "go away"));
                return true;
            }
            _ => {}
        }
        if header.is_reply() || !header.status.is_ok() {
            self.push(&Frame::error_reply(
                &header,
                Status::BadRequest,
                "not a request",
            ));
            return false;
        }
        match header.opcode {
            Opcode::Ping => self.reply(&header, Status::Ok, &request.payload),
            Opcode::Create => match Scheme::from_aux(header.aux) {
                Ok(scheme) => {
                    let id = ObjectId(self.next_id);
                    self.next_id += 1;
                    self.objects.insert(id, (scheme, Vec::new()));
                    let mut reply = header.reply(Status::Ok);
                    reply.object_id = id;
                    reply.aux = header.aux;
                    self.push(&Frame::new(reply, Vec::new()).unwrap());
                }
                Err(error) => self.reply(&header, Status::BadRequest, error.to_string().as_bytes()),
            },
            Opcode::Put => self.put(&header, &request.payload),
            Opcode::Get => self.get(&header),
            Opcode::Delete => match self.objects.remove(&header.object_id) {
                Some(_) => self.reply(&header, Status::Ok, b""),
                None => self.reply(&header, Status::NotFound, b"no such object"),
            },
            Opcode::Stat => self.stat(&header),
            _ => self.reply(&header, Status::BadRequest, b"not served here"),
        }
        false
    }

    fn put(&mut self, header: &Header, payload: &[u8]) {
        let frame = match self.objects.get_mut(&header.object_id) {
            None => Frame::error_reply(header, Status::NotFound, "no such object"),
            Some((_, data)) => {
                let start = header.offset as usize;
                let end = start + payload.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[start..end].copy_from_slice(payload);
                let mut reply = header.reply(Status::Ok);
                reply.offset = header.offset;
                reply.length = payload.len() as u64;
                Frame::new(reply, Vec::new()).unwrap()
            }
        };
        self.held_puts.push(frame);
        if self.held_puts.len() >= self.options.put_reply_batch {
            let held = std::mem::take(&mut self.held_puts);
            for frame in held.iter().rev() {
                self.push(frame);
            }
        }
    }

    fn get(&mut self, header: &Header) {
        let Some((_, data)) = self.objects.get(&header.object_id) else {
            return self.reply(header, Status::NotFound, b"no such object");
        };
        let size = data.len() as u64;
        let total = match header.length {
            _ if header.offset > size => None,
            LENGTH_TO_END => Some(size - header.offset),
            length => header
                .offset
                .checked_add(length)
                .filter(|end| *end <= size)
                .map(|_| length),
        };
        let Some(total) = total else {
            return self.reply(header, Status::OutOfRange, b"past the end");
        };
        let data = data.clone();
        for (index, chunk) in ReplyChunks::new(header.offset, total).unwrap().enumerate() {
            let mut reply = chunk.header(header);
            if index == 1 && matches!(self.options.fault, Fault::GetGap) {
                reply.offset += 1;
            }
            let at = (header.offset + chunk.start) as usize;
            self.push_parts(&reply, &data[at..at + chunk.bytes]);
        }
    }

    fn stat(&mut self, header: &Header) {
        let Some((scheme, data)) = self.objects.get(&header.object_id) else {
            return self.reply(header, Status::NotFound, b"no such object");
        };
        let document = StatReply {
            id: header.object_id,
            size: data.len() as u64,
            scheme: *scheme,
            version: 1,
            created_ns: Some(42),
            parts: (0..self.options.stat_parts)
                .map(|index| StatPart {
                    stripe: (index / scheme.shards()) as u32,
                    shard: (index % scheme.shards()) as u8,
                    node: format!("node-{}", index % 7),
                    device: "/dev/sim0".to_string(),
                })
                .collect(),
            missing: Vec::new(),
            stripes: 0,
            stripes_listed: 0,
        }
        .encode();
        for chunk in ReplyChunks::new(0, document.len() as u64).unwrap() {
            let at = chunk.start as usize;
            self.push_parts(&chunk.header(header), &document[at..at + chunk.bytes]);
        }
    }

    fn reply(&mut self, request: &Header, status: Status, payload: &[u8]) {
        let reply = request.reply(status);
        self.push_parts(&reply, payload);
    }

    fn push(&mut self, frame: &Frame) {
        self.push_parts(&frame.header, &frame.payload);
    }

    fn push_parts(&mut self, header: &Header, payload: &[u8]) {
        let mut header = *header;
        if matches!(self.options.fault, Fault::WrongRequestId) {
            header.request_id += 1000;
        }
        encode_frame(&header, payload, &mut self.out).unwrap();
    }
}
