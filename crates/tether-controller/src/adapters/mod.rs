//! One adapter per kind: how its spec maps onto its platform client. Short and boring by design.

pub mod apolo;
pub mod civis;
mod keys;
pub mod peak;
pub mod ubiops;

pub use keys::spec_fields;
