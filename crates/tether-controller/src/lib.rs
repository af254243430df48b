//! Tether's reconciler: one generic loop ([`reconciler`]) that knows finalizers, connections, policies,
//! conditions and status, and one small adapter per kind ([`adapters`]) that maps a spec onto its platform
//! client with four verbs ([`adapter::Adapter`]). Kinds: AppService, CivisService, ApoloApp, UbiService and
//! PeakWebapp. Reconciles are measured with controller-runtime's metric names ([`metrics`]).

pub mod adapter;
pub mod adapters;
pub mod annotations;
pub mod connection;
pub mod connection_status;
mod context;
mod dependencies;
pub mod drift;
pub mod error;
pub mod lanes;
mod memory;
pub mod metrics;
mod own_writes;
mod plan;
pub mod preview;
pub mod reconciler;
pub mod shards;
pub mod sources;
pub mod status;
pub mod teardown;

pub use error::{Error, Result};
pub use metrics::Metrics;
pub use reconciler::{Config, run};
