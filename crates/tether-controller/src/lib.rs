//! Tether's reconciler: one generic loop ([`reconciler`]) that knows finalizers, connections, policies,
//! conditions and status, and one small adapter per kind ([`adapters`]) that maps a spec onto its platform
//! client with four verbs ([`adapter::Adapter`]).
//!
//! Kinds driven so far: UbiService, PeakWebapp, ApoloApp, CivisService. Still to come: AppService (Iguazio's
//! shared manifest), metrics, Civis tokens and the Connection/Secret watches.

pub mod adapter;
pub mod adapters;
pub mod connection;
pub mod error;
pub mod reconciler;
pub mod status;

pub use error::{Error, Result};
pub use reconciler::{Config, run};
