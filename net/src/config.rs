//! The limits a transport is built with. Backend-neutral: the io_uring backend and a later DPDK
//! backend take the same numbers; what only one backend needs stays in that backend.

use crate::limits::{
    CONNECTIONS_MAX_DEFAULT, CONNECTIONS_MAX_LIMIT, LISTEN_BACKLOG_DEFAULT,
    RECV_BUFFER_BYTES_DEFAULT, RECV_BUFFER_BYTES_LIMIT, SEND_QUEUE_BYTES_MAX_DEFAULT,
};
use crate::NetError;

/// Limits of one transport (one core).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// Connections held at once, accepted and outgoing together: the size of the connection
    /// table. An accept past it is closed at once; a `connect` past it fails. At most
    /// [`CONNECTIONS_MAX_LIMIT`].
    pub connections_max: u32,
    /// Capacity of every receive buffer; one receive moves at most this many bytes. At most
    /// [`RECV_BUFFER_BYTES_LIMIT`].
    pub recv_buffer_bytes: usize,
    /// Bytes one connection may have queued for sending; a send past it fails with
    /// [`NetError::SendQueueFull`] and a single buffer larger than it with
    /// [`NetError::SendTooLarge`].
    pub send_queue_bytes_max: usize,
    /// Length of each listening socket's accept queue (capped by `net.core.somaxconn`).
    pub listen_backlog: u32,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            recv_buffer_bytes: RECV_BUFFER_BYTES_DEFAULT,
            send_queue_bytes_max: SEND_QUEUE_BYTES_MAX_DEFAULT,
            listen_backlog: LISTEN_BACKLOG_DEFAULT,
        }
    }
}

impl TransportConfig {
    /// Checks every field against its bounds.
    pub fn validate(&self) -> Result<(), NetError> {
        let invalid = |field, reason| Err(NetError::InvalidConfig { field, reason });
        if self.connections_max == 0 {
            return invalid("connections_max", "must be at least 1");
        }
        if self.connections_max > CONNECTIONS_MAX_LIMIT {
            return invalid("connections_max", "must be at most 2^24");
        }
        if self.recv_buffer_bytes == 0 {
            return invalid("recv_buffer_bytes", "must be at least 1");
        }
        if self.recv_buffer_bytes > RECV_BUFFER_BYTES_LIMIT {
            return invalid("recv_buffer_bytes", "must be at most 1 GiB");
        }
        if self.send_queue_bytes_max == 0 {
            return invalid("send_queue_bytes_max", "must be at least 1");
        }
        if self.listen_backlog == 0 || self.listen_backlog > i32::MAX as u32 {
            return invalid("listen_backlog", "must be between 1 and 2^31 - 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        TransportConfig::default().validate().unwrap();
    }

    #[test]
    fn bounds_are_enforced() {
        let base = TransportConfig::default();
        let cases = [
            TransportConfig {
                connections_max: 0,
                ..base.clone()
            },
            TransportConfig {
                connections_max: CONNECTIONS_MAX_LIMIT + 1,
                ..base.clone()
            },
            TransportConfig {
                recv_buffer_bytes: 0,
                ..base.clone()
            },
            TransportConfig {
                recv_buffer_bytes: RECV_BUFFER_BYTES_LIMIT + 1,
                ..base.clone()
            },
            TransportConfig {
                send_queue_bytes_max: 0,
                ..base.clone()
            },
            TransportConfig {
                listen_backlog: 0,
                ..base.clone()
            },
        ];
        for config in cases {
            let error = config.validate().unwrap_err();
            assert!(matches!(error, NetError::InvalidConfig { .. }), "{error}");
        }
    }
}
