//! The frame every managed kind shares: how it reaches its platform, what happens on delete, whether Tether
//! may write remotely, and the status shape (conditions, external id, observed remote fields).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which Connection or ClusterConnection a resource uses to reach its platform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRef {
    /// Name of the Connection (in the resource's namespace) or of the ClusterConnection.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Connection` (default) or `ClusterConnection`. A ClusterConnection must list this resource's
    /// namespace in `spec.allowedNamespaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ConnectionKind>,
}

/// The kind a `connectionRef` points at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConnectionKind {
    /// A namespaced Connection in the same namespace as the resource.
    #[default]
    Connection,
    /// A cluster-scoped ClusterConnection.
    ClusterConnection,
}

/// What Tether does with the remote object when the resource is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the remote object and wait until the platform reports it gone.
    #[default]
    Delete,
    /// Leave the remote object as it is; only the Kubernetes resource goes.
    Orphan,
}

/// Whether Tether may change the remote object or only watch it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ManagementPolicy {
    /// Create, update and delete the remote object to match the spec.
    #[default]
    Full,
    /// Only observe: report the remote object's state in status, never write to the platform.
    ObserveOnly,
}

/// Observed state of a managed resource: conditions, the remote object it is bound to, and what Tether
/// last observed of that object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedStatus<A> {
    /// Ready (the remote object is usable), Synced (the last reconcile applied the spec), and kstatus's
    /// Reconciling and Stalled. Each carries the generation it was computed for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The metadata.generation of the spec this status describes. A new object reads 0 until Tether's
    /// first reconcile (a schema default), so GitOps tools see an unobserved generation, not a done one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The newest metadata.generation of the spec that Tether applied to the remote object (or, under
    /// ObserveOnly, observed). Behind observedGeneration while a change is still being retried or paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<i64>,
    /// The platform's identifier of the remote object this resource is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// What Tether last observed of the remote object, including the platform's own state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_provider: Option<A>,
    /// When Tether last changed the remote object or this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
}

impl<A> Default for ManagedStatus<A> {
    fn default() -> Self {
        Self {
            conditions: Vec::new(),
            observed_generation: None,
            applied_generation: None,
            external_id: None,
            at_provider: None,
            last_sync_time: None,
        }
    }
}

/// One aspect of a resource's state, in the shape of Kubernetes' metav1.Condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: Ready, Synced, Reconciling or Stalled.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// A PascalCase word for the cause, e.g. Available, Creating, Unauthorized.
    pub reason: String,
    /// What happened, in words a human can act on.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: Time,
    /// The metadata.generation this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The value of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Tether cannot tell yet.
    Unknown,
}

/// A key of a Kubernetes Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// Namespace of the Secret. Required in a ClusterConnection; not allowed in a Connection, which always
    /// reads Secrets from its own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A string map, as used for labels and environment variables.
pub type StringMap = BTreeMap<String, String>;

/// Schema of a free-form JSON object whose keys the platform defines (kept verbatim by the API server).
pub(crate) fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The fields every managed kind carries besides its platform's own: flattened into each spec.
/// `D` is the kind's deletion policy (Civis adds `Archive`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFields<D: Default = DeletionPolicy> {
    /// The Connection or ClusterConnection holding the platform endpoint and credentials.
    pub connection_ref: ConnectionRef,
    /// What happens to the remote object when this resource is deleted (default Delete).
    #[serde(default)]
    #[schemars(extend("default" = "Delete"))]
    pub deletion_policy: D,
    /// `Full` lets Tether create, change and delete the remote object; `ObserveOnly` never writes remotely.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
    /// Name of a Secret in this namespace that Tether creates (owned by this resource) and fills with the
    /// remote object's endpoints, tokens and outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub write_outputs_to: Option<String>,
}
