//! Completions of the io_uring transport: each one taken from the ring, matched to its
//! connection, listener or watch by its `user_data`, and turned into state changes and events.
//! A completion is the moment the kernel lets go of what its operation pointed at; the handlers
//! clear the in-flight flag first, and only then may the buffer move.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Instant;

use io_uring::cqueue;

use super::UringTransport;
use crate::limits::{ACCEPT_RETRY_DELAY, REAP_BATCH};
use crate::uring::conn::{Conn, Phase};
use crate::uring::op::{Op, OpKind};
use crate::uring::socket;
use crate::{CloseReason, ConnId, NetEvent};

impl UringTransport {
    /// Takes every completion in the ring and turns it into state changes and events.
    pub(super) fn reap(&mut self) {
        // New completions appear while reaping only without COOP_TASKRUN; bound the rounds by
        // what the ring holds.
        let rounds = self.ring.cq_capacity() / REAP_BATCH + 1;
        let mut reaped = std::mem::take(&mut self.reaped);
        for _ in 0..rounds {
            reaped.clear();
            reaped.extend(
                self.ring
                    .completion()
                    .take(REAP_BATCH)
                    .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
            );
            if reaped.is_empty() {
                break;
            }
            for &(user_data, result, flags) in &reaped {
                self.handle_completion(user_data, result, flags);
            }
        }
        reaped.clear();
        self.reaped = reaped;
    }

    fn handle_completion(&mut self, user_data: u64, result: i32, flags: u32) {
        let Some(op) = Op::decode(user_data) else {
            tracing::error!(
                user_data,
                result,
                "completion of no operation of this transport"
            );
            return;
        };
        match op.kind {
            OpKind::Recv | OpKind::Send | OpKind::Connect | OpKind::CancelConn => {
                let id = ConnId::new(op.index, op.generation);
                let Some(conn) = self.conns.get_mut(id) else {
                    // The table keeps a connection until all its completions are in.
                    tracing::error!(?op, result, "completion for a connection not in the table");
                    return;
                };
                self.ops_inflight -= 1;
                match op.kind {
                    OpKind::Recv => {
                        assert!(conn.recv_inflight);
                        conn.recv_inflight = false;
                        self.handle_recv(id, result);
                    }
                    OpKind::Send => {
                        assert!(conn.send_inflight);
                        conn.send_inflight = false;
                        self.handle_send(id, result);
                    }
                    OpKind::Connect => {
                        assert!(conn.connect_inflight);
                        conn.connect_inflight = false;
                        // The kernel is done with the address.
                        conn.connect_addr = None;
                        self.handle_connect(id, result);
                    }
                    _ => {
                        assert!(conn.cancels_inflight > 0);
                        conn.cancels_inflight -= 1;
                        if result == -libc::EALREADY {
                            // The target was running and may not notice the cancellation; shutting
                            // the socket down ends any operation on it. Failing is harmless: the
                            // socket is being closed anyway.
                            let _ = conn.socket.shutdown(std::net::Shutdown::Both);
                        }
                        self.finish_close(id);
                    }
                }
            }
            OpKind::Accept => self.handle_accept(op.index as usize, result, flags),
            OpKind::Poll => self.handle_poll(op.index as usize, result, flags),
            OpKind::CancelAccept | OpKind::CancelPoll => self.ops_inflight -= 1,
        }
    }

    fn handle_recv(&mut self, id: ConnId, result: i32) {
        let conn = self
            .conns
            .get_mut(id)
            .expect("checked by handle_completion");
        if conn.is_closing() {
            self.finish_close(id);
            return;
        }
        match result {
            1.. => {
                let len = result as usize;
                let mut buf = conn.recv_buf.take().expect("the receive's buffer");
                buf.set_len(len);
                self.stats.received_bytes += len as u64;
                self.events.push_back(NetEvent::Received { conn: id, buf });
            }
            0 => {
                conn.eof = true;
                self.close_if_drained(id);
            }
            _ => match -result {
                libc::EAGAIN | libc::EINTR => self.arm_recv(id),
                errno => self.begin_close(id, CloseReason::Error(errno)),
            },
        }
    }

    fn handle_send(&mut self, id: ConnId, result: i32) {
        let conn = self
            .conns
            .get_mut(id)
            .expect("checked by handle_completion");
        if conn.is_closing() {
            self.finish_close(id);
            return;
        }
        let sent = match result {
            1.. => result as usize,
            // Nothing moved although bytes were asked for: the socket is unusable.
            0 => return self.begin_close(id, CloseReason::Error(libc::EIO)),
            _ => match -result {
                libc::EAGAIN | libc::EINTR => return self.start_send(id),
                errno => return self.begin_close(id, CloseReason::Error(errno)),
            },
        };
        self.stats.sent_bytes += sent as u64;
        // The send gathered buffers from the front of the queue: those it took whole are sent.
        let mut left = sent;
        while let Some(front) = conn.sends.front() {
            let rest = front.len() - conn.send_offset;
            if left < rest {
                conn.send_offset += left;
                left = 0;
                break;
            }
            left -= rest;
            let buf = conn.sends.pop_front().expect("front checked");
            conn.send_offset = 0;
            conn.send_queued_bytes -= buf.len();
            self.stats.sends_queued -= 1;
            self.stats.send_queued_bytes -= buf.len() as u64;
            self.events.push_back(NetEvent::Sent { conn: id, buf });
        }
        assert_eq!(left, 0, "the kernel sent more than was queued");
        self.start_send(id);
        self.close_if_drained(id);
    }

    fn handle_connect(&mut self, id: ConnId, result: i32) {
        let conn = self
            .conns
            .get_mut(id)
            .expect("checked by handle_completion");
        if conn.is_closing() {
            self.finish_close(id);
            return;
        }
        assert_eq!(conn.phase, Phase::Connecting);
        if result < 0 {
            return self.begin_close(id, CloseReason::Error(-result));
        }
        conn.phase = Phase::Open;
        self.stats.connected_total += 1;
        self.events.push_back(NetEvent::Connected { conn: id });
        self.arm_recv(id);
        self.start_send(id);
    }

    fn handle_accept(&mut self, index: usize, result: i32, flags: u32) {
        let Some(listener) = self.listeners.get_mut(index) else {
            tracing::error!(index, result, "accept completion for no listener");
            return;
        };
        if !cqueue::more(flags) {
            listener.armed = false;
            self.ops_inflight -= 1;
        }
        if result >= 0 {
            listener.accepted_any = true;
            // SAFETY: a successful accept returns a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(result) };
            if self.dropping {
                drop(fd);
            } else {
                self.adopt(fd);
            }
        } else {
            match -result {
                libc::EINVAL if listener.multishot && !listener.accepted_any => {
                    tracing::debug!("no multishot accept (Linux 5.19); accepting one at a time");
                    listener.multishot = false;
                }
                libc::ECANCELED | libc::ECONNABORTED | libc::EAGAIN | libc::EINTR => {}
                errno => {
                    let error = std::io::Error::from_raw_os_error(errno);
                    tracing::warn!(%error, "accept failed; pausing the listener");
                    listener.rest_until = Some(Instant::now() + ACCEPT_RETRY_DELAY);
                    self.listeners_resting = true;
                }
            }
        }
        let listener = &self.listeners[index];
        if !listener.armed && listener.rest_until.is_none() && !self.dropping {
            self.arm_accept(index);
        }
    }

    /// Takes an accepted descriptor into the table, or closes it if the table is full.
    fn adopt(&mut self, fd: OwnedFd) {
        if self.conns.is_full() {
            self.stats.refused_total += 1;
            // Logged at powers of two, so a flood of connections does not flood the log.
            if self.stats.refused_total.is_power_of_two() {
                tracing::warn!(
                    max = self.conns.capacity(),
                    refused_total = self.stats.refused_total,
                    "connection table full; closing accepted connections"
                );
            }
            return;
        }
        let (socket, peer) = match socket::accepted(fd) {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "accepted connection gone before it was set up");
                return;
            }
        };
        let buf = self.take_recv_buf();
        let id = self
            .conns
            .insert(Conn::new(socket, Phase::Open, buf))
            .expect("table checked not full");
        self.stats.accepted_total += 1;
        self.events.push_back(NetEvent::Accepted { conn: id, peer });
        self.arm_recv(id);
    }

    fn handle_poll(&mut self, index: usize, result: i32, flags: u32) {
        let Some(watch) = self.watches.get_mut(index) else {
            tracing::error!(index, result, "poll completion for no watch");
            return;
        };
        if !cqueue::more(flags) {
            watch.armed = false;
            self.ops_inflight -= 1;
        }
        if result >= 0 {
            watch.fired_any = true;
            self.events
                .push_back(NetEvent::Ready { token: watch.token });
        } else {
            match -result {
                libc::EINVAL if watch.multishot && !watch.fired_any => {
                    tracing::debug!(
                        "no multishot poll (Linux 5.13); polling one wake-up at a time"
                    );
                    watch.multishot = false;
                }
                libc::ECANCELED | libc::EINTR | libc::EAGAIN => {}
                errno => {
                    let error = std::io::Error::from_raw_os_error(errno);
                    tracing::error!(fd = watch.fd, token = watch.token, %error, "watch failed; no longer watched");
                    watch.failed = true;
                }
            }
        }
        let watch = &self.watches[index];
        if !watch.armed && !watch.failed && !self.dropping {
            self.arm_poll(index);
        }
    }
}
