//! What one kind must say for the generic reconciler to drive it: how to read its frame from the custom
//! resource, and the four verbs (observe, create, update, delete) against its platform. Per-kind code stays
//! the size of a crossplane provider's `external` client.
//!
//! The contract, as crossplane's: `observe` never writes; every verb is idempotent; a `create` that meets
//! an existing object adopts it; `delete` of an absent object is `Ok`.

use std::fmt::Debug;
use std::future::Future;

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tether_api::{ConnectionRef, ManagedStatus, Platform};
use tether_platforms::Error as PlatformError;

use crate::connection::Account;

/// A custom resource the reconciler manages: the common frame, read uniformly.
pub trait ManagedResource:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// What the status records of the remote object (`status.atProvider`).
    type Observation: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The Connection or ClusterConnection to use.
    fn connection_ref(&self) -> &ConnectionRef;
    /// Whether deleting the resource deletes the remote object (false: orphan it).
    fn deletes_remote(&self) -> bool;
    /// Whether Tether may only observe.
    fn observe_only(&self) -> bool;
    /// The current status.
    fn managed_status(&self) -> Option<&ManagedStatus<Self::Observation>>;
    /// The Secret (in the resource's namespace) to write the remote object's outputs to, if any.
    fn outputs_secret(&self) -> Option<&str>;
}

/// What `observe` found.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation<O> {
    /// No remote object for this resource.
    Absent,
    /// The remote object this resource is bound to.
    Present {
        /// The platform's id of it.
        external_id: String,
        /// Whether it matches the spec.
        up_to_date: bool,
        /// Whether it is usable; `Err` carries the reason and message when not.
        ready: Result<(), (&'static str, String)>,
        /// What the status records of it.
        at_provider: O,
        /// Endpoints, URLs and other outputs for the `writeOutputsTo` Secret, by key.
        outputs: std::collections::BTreeMap<String, String>,
    },
}

/// How a delete went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// The remote object is gone.
    Gone,
    /// The platform is still tearing it down.
    InProgress,
}

/// The four verbs of one kind against its platform.
pub trait Adapter: Send + Sync + 'static {
    /// The custom resource kind.
    type Resource: ManagedResource;
    /// The platform client.
    type Client: Send + Sync + 'static;

    /// The platform this kind lives on; a Connection of another platform is refused.
    const PLATFORM: Platform;

    /// Builds a client for an account.
    fn connect(account: &Account) -> Result<Self::Client, PlatformError>;

    /// Finds the remote object (by the recorded id, else by the natural key) and compares it with the spec.
    fn observe(
        client: &Self::Client,
        cr: &Self::Resource,
    ) -> impl Future<Output = Result<Observation<<Self::Resource as ManagedResource>::Observation>, PlatformError>> + Send;

    /// Creates the remote object; returns its id.
    fn create(client: &Self::Client, cr: &Self::Resource)
    -> impl Future<Output = Result<String, PlatformError>> + Send;

    /// Changes the remote object to match the spec.
    fn update(
        client: &Self::Client,
        cr: &Self::Resource,
        external_id: &str,
    ) -> impl Future<Output = Result<(), PlatformError>> + Send;

    /// Deletes the remote object (absent is `Gone`).
    fn delete(
        client: &Self::Client,
        cr: &Self::Resource,
        external_id: &str,
    ) -> impl Future<Output = Result<Deletion, PlatformError>> + Send;
}
