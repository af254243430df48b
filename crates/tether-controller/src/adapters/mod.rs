//! One adapter per kind: how its spec maps onto its platform client. Short and boring by design.

/// `ManagedResource` for a kind whose frame is the plain `ManagedFields` (deletion policy Delete or Orphan):
/// the same four lines for each, so written once.
macro_rules! managed_resource {
    ($kind:ty, $observation:ty) => {
        impl $crate::adapter::ManagedResource for $kind {
            type Observation = $observation;

            fn connection_ref(&self) -> &tether_api::ConnectionRef {
                &self.spec.managed.connection_ref
            }
            fn deletes_remote(&self) -> bool {
                self.spec.managed.deletion_policy == tether_api::DeletionPolicy::Delete
            }
            fn observe_only(&self) -> bool {
                self.spec.managed.management_policy == tether_api::ManagementPolicy::ObserveOnly
            }
            fn managed_status(&self) -> Option<&tether_api::ManagedStatus<$observation>> {
                self.status.as_ref()
            }
            fn outputs_secret(&self) -> Option<&str> {
                self.spec.managed.write_outputs_to.as_deref()
            }
        }
    };
}

pub mod apolo;
pub mod civis;
pub mod iguazio;
mod keys;
pub mod peak;
pub mod ubiops;

pub use keys::spec_fields;
