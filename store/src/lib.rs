//! Shard store.
