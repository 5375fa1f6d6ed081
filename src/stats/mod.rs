//! The node's performance counters and their way out.
//!
//! - [`metrics`]: what one data core counts on its hot path ([`CoreMetrics`]), and how it
//!   publishes a copy every [`PUBLISH_INTERVAL`] into a [`Published`] slot that the management
//!   thread reads.
//! - [`snapshot`]: the plain-data copies: [`CoreSnapshot`], [`DeviceSnapshot`], [`NodeSnapshot`].
//! - [`report`] and [`render`]: the JSON schema, Prometheus text and the human table.
//! - [`server`]: the stats socket ([`StatsServer`]); [`client`] and [`top`]: `ds stats` and
//!   `ds top`.
//!
//! What is counted is up to the reactor and the store; this module neither reads a clock on
//! the request path nor knows where the numbers come from.

pub mod client;
pub mod metrics;
pub mod render;
pub mod report;
pub mod server;
pub mod snapshot;
pub mod top;

pub use client::{fetch, fetch_report, print_stats, Format};
pub use metrics::{
    published_slot, read_all, read_published, ClusterCounters, CoreMetrics, Op, OpCounters,
    Published, QueueDepths, PUBLISH_INTERVAL,
};
pub use report::NodeReport;
pub use server::StatsServer;
pub use snapshot::{CoreSnapshot, DeviceSnapshot, NodeSnapshot, NodeTotals};
pub use top::run_top;
