//! The stats socket: a Unix socket served by one management-side thread. A client sends one
//! request line and gets one answer, then the connection closes:
//!
//! - `json`: the [`NodeReport`](super::report::NodeReport) as JSON;
//! - `prom`: the Prometheus text format;
//! - `GET /metrics HTTP/1.1` (and its headers): Prometheus over minimal HTTP, so
//!   `curl --unix-socket PATH http://localhost/metrics` and Prometheus agents work;
//! - anything else: one line starting with `error:`.
//!
//! Clients are served one after the other; every client is bounded (a 1 KiB request line, 2 s
//! in all), so a stuck client delays the others by 2 s at most. Not a general HTTP server: no
//! keep-alive, no other paths.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::render;
use super::report::NodeReport;
use super::snapshot::NodeSnapshot;

/// The longest request line accepted, newline excluded.
pub const REQUEST_LINE_BYTES_MAX: usize = 1024;
/// The longest HTTP request head (request line and headers) accepted.
pub const HTTP_HEAD_BYTES_MAX: usize = 8192;
/// Time a client has to send its request and take the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

type Source = Box<dyn Fn() -> NodeSnapshot + Send>;

/// A running stats socket. Dropping it stops the thread and removes the socket file.
pub struct StatsServer {
    path: PathBuf,
    /// Device and inode of the socket file bound, so drop removes only its own file.
    identity: (u64, u64),
    /// Dropping this end wakes the thread.
    wake: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsServer")
            .field("path", &self.path)
            .finish()
    }
}

impl StatsServer {
    /// Binds `path` and starts answering. A socket file left by a dead server is replaced; one
    /// where a server still answers is refused (`AddrInUse`), as is a path that exists and is
    /// not a socket (`AlreadyExists`).
    pub fn start(
        path: impl AsRef<Path>,
        source: impl Fn() -> NodeSnapshot + Send + 'static,
    ) -> io::Result<StatsServer> {
        let path = path.as_ref().to_path_buf();
        remove_stale(&path)?;
        let listener = UnixListener::bind(&path).map_err(|error| {
            io::Error::new(error.kind(), format!("binding {}: {error}", path.display()))
        })?;
        listener.set_nonblocking(true)?;
        let metadata = std::fs::symlink_metadata(&path)?;
        let identity = (metadata.dev(), metadata.ino());
        let (wake, woken) = UnixStream::pair()?;
        let source: Source = Box::new(source);
        let thread = std::thread::Builder::new()
            .name("ds-stats".to_string())
            .spawn(move || serve(listener, woken, source))?;
        tracing::info!(path = %path.display(), "stats socket listening");
        Ok(StatsServer {
            path,
            identity,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StatsServer {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(path = %self.path.display(), "stats thread panicked");
            }
        }
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|metadata| (metadata.dev(), metadata.ino()) == self.identity);
        if ours {
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), %error, "removing stats socket");
            }
        }
    }
}

/// Removes a socket file nobody answers on; refuses a live one and anything not a socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if !metadata.file_type().is_socket() {
        let message = format!("{} exists and is not a socket", path.display());
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, message));
    }
    match UnixStream::connect(path) {
        Ok(_) => {
            let message = format!("a stats server already answers at {}", path.display());
            Err(io::Error::new(io::ErrorKind::AddrInUse, message))
        }
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "replacing stale stats socket");
            std::fs::remove_file(path)
        }
        Err(error) => Err(error),
    }
}

/// Waits for a client or the wake-up; serves clients until woken.
fn serve(listener: UnixListener, woken: UnixStream, source: Source) {
    let mut fds = [
        libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: woken.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call, and both
        // descriptors stay open (owned by this function) while it runs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(%error, "stats socket poll failed; stopping");
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents == 0 {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(error) = answer(stream, &source) {
                    tracing::debug!(%error, "stats client");
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => tracing::warn!(%error, "stats socket accept"),
        }
    }
}

/// Why a request got no regular answer.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    /// The client sent more than the bound without a newline.
    #[error("request longer than {0} bytes")]
    TooLong(usize),
    /// The client did not finish its request in time.
    #[error("timed out after {}s", CLIENT_TIMEOUT.as_secs())]
    TimedOut,
    /// The request is not UTF-8.
    #[error("request is not UTF-8")]
    NotUtf8,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads lines of one client against one deadline, keeping bytes read past a newline.
struct LineReader {
    stream: UnixStream,
    buffer: Vec<u8>,
    deadline: Instant,
    closed: bool,
}

impl LineReader {
    /// The next line without its `\n` or `\r\n`; at end of stream, what is left (maybe empty).
    fn read_line(&mut self, bytes_max: usize) -> Result<String, RequestError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                if end > bytes_max {
                    return Err(RequestError::TooLong(bytes_max));
                }
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return decode(&line[..end]);
            }
            if self.buffer.len() > bytes_max {
                return Err(RequestError::TooLong(bytes_max));
            }
            if self.closed {
                let line = std::mem::take(&mut self.buffer);
                return decode(&line);
            }
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(RequestError::TimedOut);
            }
            self.stream.set_read_timeout(Some(remaining))?;
            let mut chunk = [0u8; 512];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(RequestError::TimedOut)
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
}

fn decode(line: &[u8]) -> Result<String, RequestError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8(line.to_vec()).map_err(|_| RequestError::NotUtf8)
}

/// Serves one client: reads its request, writes the answer, closes.
fn answer(stream: UnixStream, source: &Source) -> Result<(), RequestError> {
    stream.set_nonblocking(false)?;
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut reader = LineReader {
        stream,
        buffer: Vec::new(),
        deadline,
        closed: false,
    };
    let reply = match reader.read_line(REQUEST_LINE_BYTES_MAX) {
        // A connection closed without a byte: a liveness probe (see `remove_stale`).
        Ok(line) if line.is_empty() && reader.closed => return Ok(()),
        Ok(line) => respond(&line, &mut reader, source),
        Err(RequestError::Io(error)) => return Err(error.into()),
        Err(error) => format!("error: {error}\n"),
    };
    // A client that timed out still gets its error line if it reads at once.
    let remaining = deadline.saturating_duration_since(Instant::now());
    let stream = &mut reader.stream;
    stream.set_write_timeout(Some(remaining.max(Duration::from_millis(100))))?;
    stream.write_all(reply.as_bytes())?;
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Write)?;
    discard_unread(stream);
    Ok(())
}

/// Reads away what the client sent past its request (a refused long line, a body). Closing a
/// Unix socket with unread bytes resets the connection, and the client would lose the answer.
/// Only bytes already queued are read: a client that keeps sending is not waited for.
fn discard_unread(stream: &mut UnixStream) {
    const DISCARD_BYTES_MAX: usize = 64 << 10;
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut chunk = [0u8; 4096];
    let mut discarded = 0;
    while discarded < DISCARD_BYTES_MAX {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(read) => discarded += read,
        }
    }
}

/// The answer to a request line (and, for HTTP, the rest of the head).
fn respond(line: &str, reader: &mut LineReader, source: &Source) -> String {
    match line.trim() {
        "json" => with_report(source, render::json),
        "prom" => with_report(source, render::prometheus),
        request if request.ends_with(" HTTP/1.1") || request.ends_with(" HTTP/1.0") => {
            respond_http(request, reader, source)
        }
        request => {
            let shown: String = request.chars().take(64).collect();
            format!("error: unknown request {shown:?}; send json, prom, or GET /metrics HTTP/1.1\n")
        }
    }
}

fn respond_http(request: &str, reader: &mut LineReader, source: &Source) -> String {
    // Read the headers so that closing does not reset a connection holding unread bytes.
    let mut head_bytes = request.len();
    loop {
        match reader.read_line(HTTP_HEAD_BYTES_MAX) {
            Ok(header) if header.is_empty() => break,
            Ok(header) => {
                head_bytes += header.len() + 2;
                if head_bytes > HTTP_HEAD_BYTES_MAX {
                    return http(431, "text/plain", "request header fields too large\n");
                }
            }
            Err(RequestError::TimedOut) => return http(408, "text/plain", "request timeout\n"),
            Err(_) => return http(400, "text/plain", "bad request\n"),
        }
    }
    let mut parts = request.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let body = with_report(source, render::prometheus);
            if body.starts_with("error:") {
                http(500, "text/plain", &body)
            } else {
                http(200, render::PROMETHEUS_CONTENT_TYPE, &body)
            }
        }
        ("GET", _) => http(404, "text/plain", "only /metrics is served here\n"),
        _ => http(405, "text/plain", "only GET is served here\n"),
    }
}

fn http(status: u16, content_type: &str, body: &str) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Takes a snapshot and renders it; a panicking source answers an error instead of ending
/// the stats thread.
fn with_report(source: &Source, render: impl Fn(&NodeReport) -> String) -> String {
    let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        render(&NodeReport::new(&source()))
    }));
    rendered.unwrap_or_else(|_| {
        tracing::error!("stats source panicked");
        "error: the node could not take a snapshot\n".to_string()
    })
}
