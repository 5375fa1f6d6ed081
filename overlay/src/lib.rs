//! The overlay of ds: a Kademlia-style small-world network in which every node finds the N nodes
//! closest to an id (the responsible set of an object) in O(log N) messages, with no node
//! knowing the whole system.
//!
//! - [`Overlay`] is the sans-IO core (quinn-proto style): messages and time go in through
//!   `handle_*`, messages, events and the next timer come out of `poll_*`. It never reads a
//!   clock, a socket or OS randomness; its RNG is seeded from [`Config::seed`].
//! - [`codec`] is the authenticated wire format (versioned, crc32c, HMAC-SHA256, replay window);
//!   `docs/overlay.md` gives the byte layout.
//! - [`sim`] runs many `Overlay`s in one thread on simulated time (the `ds-sim` binary).
//!
//! What it does not do: sockets and real time (the driver on the management thread does), and
//! persisting the node id (the node's data dir does).

pub mod auth;
pub mod bucket;
pub mod cache;
pub mod codec;
pub mod config;
pub mod event;
pub mod id;
pub mod limits;
pub mod lookup;
pub mod message;
pub mod neighbourhood;
pub mod overlay;
pub mod removed;
pub mod requests;
pub mod sim;
pub mod stats;
pub mod table;

pub use auth::{ClusterSecret, ReplayGuard, SecretError};
pub use codec::{decode, encode, DecodeError, Decoded};
pub use config::{Config, ConfigError};
pub use event::{Event, LookupDone, RemoveReason, Responsible};
pub use id::{distance, NodeId, NodeInfo};
pub use lookup::LookupId;
pub use message::{Body, Message, Opcode, RequestId};
pub use overlay::Overlay;
pub use stats::{DropReason, HopsHistogram, Stats};
