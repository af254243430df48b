//! Typed async clients of the platforms Tether manages, over one HTTP layer ([`http`]): credentials,
//! timeouts, retries with jittered backoff honouring Retry-After, a per-account rate limit, and one error
//! type ([`Error`]) that classifies every failure. No kube dependency: usable as a plain Rust SDK.
//!
//! Clients: Iguazio ([`iguazio`]), Civis ([`civis`]), Apolo ([`apolo`]), UbiOps ([`ubiops`]) and Peak
//! ([`peak`]).

pub mod apolo;
pub mod civis;
pub mod error;
pub mod http;
pub mod iguazio;
pub mod listing;
pub mod metrics;
pub mod peak;
pub mod ubiops;

pub use error::{Error, Result};
pub use http::{Call, Dialect, Http, HttpConfig, Secret};
