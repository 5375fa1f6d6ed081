//! Creating and configuring sockets: the synchronous part of listening, connecting and
//! accepting. The sockets stay blocking: io_uring waits for readiness itself, and on a descriptor
//! with `O_NONBLOCK` it would hand `EAGAIN` back instead of waiting.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::NetError;

/// A listening socket on `addr` that shares the port with the other cores' listeners.
pub(super) fn listener(addr: SocketAddr, backlog: u32) -> Result<Socket, NetError> {
    let listen_error = |source: io::Error| match source.kind() {
        io::ErrorKind::AddrInUse => NetError::AddressInUse { addr },
        io::ErrorKind::AddrNotAvailable => NetError::AddressNotAvailable { addr },
        _ => NetError::Listen { addr, source },
    };
    // `Socket::new` sets close-on-exec.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(listen_error)?;
    socket.set_reuse_address(true).map_err(listen_error)?;
    socket.set_reuse_port(true).map_err(listen_error)?;
    socket.bind(&SockAddr::from(addr)).map_err(listen_error)?;
    let backlog = i32::try_from(backlog).expect("validated by TransportConfig");
    socket.listen(backlog).map_err(listen_error)?;
    Ok(socket)
}

/// The address a listener is bound to.
pub(super) fn local_addr(socket: &Socket, addr: SocketAddr) -> Result<SocketAddr, NetError> {
    let source = |source| NetError::Listen { addr, source };
    let local = socket.local_addr().map_err(source)?;
    local
        .as_socket()
        .ok_or_else(|| source(io::Error::from(io::ErrorKind::Unsupported)))
}

/// A socket for an outgoing connection to `addr`, not connected yet.
pub(super) fn outgoing(addr: SocketAddr) -> Result<Socket, NetError> {
    let connect_error = |source| NetError::Connect { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(connect_error)?;
    socket.set_tcp_nodelay(true).map_err(connect_error)?;
    Ok(socket)
}

/// Configures an accepted connection and finds its peer. Fails when the connection is gone
/// already (reset before we got to it).
pub(super) fn accepted(fd: OwnedFd) -> io::Result<(Socket, SocketAddr)> {
    let socket = Socket::from(fd);
    socket.set_tcp_nodelay(true)?;
    let peer = socket
        .peer_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::from(io::ErrorKind::Unsupported))?;
    Ok((socket, peer))
}
