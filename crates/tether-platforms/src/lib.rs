//! Typed async clients of the five platforms (Iguazio, Civis, Apolo, UbiOps, Peak) over one HTTP layer:
//! credentials, timeouts, retries with jittered backoff honouring Retry-After, a per-connection rate limit
//! and one error type that classifies every failure. No kube dependency: usable as a plain Rust SDK.
//!
//! The clients are not written yet (issue "Platform clients"); this crate holds the place in the layout.
