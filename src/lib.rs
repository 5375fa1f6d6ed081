//! The ds appliance: what composes the device layer and the shard store into a node.
//!
//! For now this holds [`local`], which opens a node's devices and one store per data core, and
//! [`cli`] helpers shared by the binaries. The reactor, object service, overlay and repair land
//! here with their issues (see `docs/ARCHITECTURE.md`).

pub mod allocator;
pub mod cli;
pub mod config;
pub mod local;
pub mod node;
pub mod reactor;
pub mod repair;
pub mod service;
pub mod stats;
pub mod tools;

/// The git revision this build came from.
pub const GIT_REVISION: &str = env!("DS_GIT_REVISION");
