//! The generic reconciler (finalizer, connection resolution, observe → create/update/delete, status,
//! events, metrics) and one small adapter per kind mapping its spec to its platform client.
//!
//! Not written yet (issue "The reconciler"); this crate holds the place in the layout.
