//! Stateful simulators of the five platform APIs (axum), faithful to shared/platforms/*.md and judged by
//! the vendors' own SDKs, with fault injection and request counters, for tests, the demo and benchmarks.
//!
//! Not written yet (issue "Faithful simulators"); this crate holds the place in the layout.
