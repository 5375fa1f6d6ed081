//! The object service: objects (CREATE/PUT/GET/DELETE/STAT) cut into stripes, each stripe
//! erasure-coded into K + M shards on the nodes of the object's placement. A request runs on
//! the core whose connection received it (the coordinator): `request` per opcode, `placement`
//! for the metadata copies, `stripes` for coding and quorums, `shards` to reach a node (this
//! one or a peer over `peer`). On each node, the core that owns an object (`owner`) runs the
//! shard and metadata operations, for local coordinators and for peers (`peer_ops`).

pub mod conn;
pub mod ctx;
pub mod meta;
pub mod owner;
pub mod payload;
pub mod peer;
pub mod peer_ops;
pub mod placement;
pub mod reply;
pub mod request;
pub mod shards;
pub mod stripes;
