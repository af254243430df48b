//! `ApoloApp`: an Apolo app installed from a template (shared/platforms/apolo.md §3, §9).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{FreeForm, ManagedFields, ManagedStatus, free_form_object};

/// Desired state of an Apolo app.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "ApoloApp",
    namespaced,
    status = "ApoloAppStatus",
    doc = "An app on Apolo, installed from a template and kept configured as declared.",
    shortname = "apolo",
    category = "tether"
)]
#[serde(rename_all = "camelCase")]
pub struct ApoloAppSpec {
    #[serde(flatten)]
    pub managed: ManagedFields,
    /// Apolo cluster the app runs in. Immutable. A name, not a path: no `/`, and not `.` or `..`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "cluster is immutable"}]))]
    pub cluster: String,
    /// Organisation owning the project. Immutable. A name, not a path: no `/`, and not `.` or `..`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "org is immutable"}]))]
    pub org: String,
    /// Project the app is installed into. Immutable. A name, not a path: no `/`, and not `.` or `..`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "project is immutable"}]))]
    pub project: String,
    /// Template the app is installed from. Immutable: Apolo cannot change an app's template in place. A name, not a path: no `/`, and not `.` or `..`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "templateName is immutable"}]))]
    pub template_name: String,
    /// Template version; changing it upgrades the app. No `/`, and not `.` or `..`.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"))]
    pub template_version: String,
    /// Human label of the app (Tether adds its ownership marker on the platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,
    /// Template input, replaced as a whole on change. Values may be app-instance references
    /// `{type: app-instance-ref, instance_id, path}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub input: Option<FreeForm>,
    /// Uninstall with `force=true`, skipping the platform's wait for its resources to go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_uninstall: Option<bool>,
    /// Pin the app's configuration to this earlier revision: Tether rolls back to it (a new revision with
    /// its input) and keeps the app there, ignoring `input`, until the field is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rollback_to_revision: Option<i32>,
}

/// Observed state of an ApoloApp.
pub type ApoloAppStatus = ManagedStatus<ApoloAppObservation>;

/// What Tether last read of the Apolo app.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApoloAppObservation {
    /// App state: queued, progressing, healthy, degraded, errored, uninstalling, uninstalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Server-generated app name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Kubernetes namespace the app runs in on the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Public URLs of the app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Who installed the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    /// Template version actually installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<String>,
    /// The current configuration revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<i32>,
    /// The revision the configuration is pinned to (`rollbackToRevision`), once the app runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_rollback: Option<i32>,
    /// When the app was installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the app last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}
