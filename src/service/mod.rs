//! The object service of one node: objects (CREATE/PUT/GET/DELETE/STAT) made of stripes, each
//! stripe a shard record, all of an object's records on the core that owns its metadata key.
//! A request runs on the core whose connection received it (the coordinator); shard operations
//! run on the owning core (`owner`), reached over the inter-core inboxes, the same shape a
//! request takes across nodes.

pub mod conn;
pub mod ctx;
pub mod meta;
pub mod owner;
pub mod request;
