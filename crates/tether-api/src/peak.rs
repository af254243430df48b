//! `PeakWebapp`: a Peak webapp (shared/platforms/peak.md §3, §9).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ManagedFields, ManagedStatus};

/// Desired state of a Peak webapp.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "PeakWebapp",
    namespaced,
    status = "PeakWebappStatus",
    doc = "A webapp on Peak, kept deployed as declared.",
    shortname = "peak",
    category = "tether"
)]
#[serde(rename_all = "camelCase")]
pub struct PeakWebappSpec {
    #[serde(flatten)]
    pub managed: ManagedFields,
    /// Webapp name, unique in the tenant; the key Tether finds it by. Immutable.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "name is immutable"}]))]
    pub name: String,
    /// Display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub title: Option<String>,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,
    /// Image to run; changing it redeploys the webapp.
    pub image_details: ImageDetails,
    /// Compute resources; changing them redeploys the webapp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<WebappResources>,
    /// Tie each user to one server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_stickiness: Option<bool>,
    /// Scale the webapp to zero when idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_to_zero: Option<bool>,
}

/// The image a webapp runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageDetails {
    /// Image id (an image of type webapp in Peak's image management).
    #[schemars(range(min = 1))]
    pub image_id: i64,
    /// Image version id; unset takes the image's latest ready version, and Tether then treats the version
    /// the platform picked as desired rather than as drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub version_id: Option<i64>,
}

/// Compute resources of a webapp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebappResources {
    /// Instance type id (tenant instance options of entity type webapp); the platform default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub instance_type_id: Option<i64>,
}

/// Observed state of a PeakWebapp.
pub type PeakWebappStatus = ManagedStatus<PeakWebappObservation>;

/// What Tether last read of the Peak webapp.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeakWebappObservation {
    /// Webapp status: CREATING, DEPLOYING, AVAILABLE, DELETING, CREATE_FAILED or DELETE_FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Image version deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_version_id: Option<i64>,
    /// Instance type deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type_id: Option<i64>,
    /// Public URL of the running webapp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_url: Option<String>,
    /// When the webapp was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the webapp last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Who last changed the webapp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}
