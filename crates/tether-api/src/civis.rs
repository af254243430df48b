//! `CivisService`: a Civis Platform service and its deployments (shared/platforms/civis.md §3, §9).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ManagedFields, ManagedStatus, SecretKeySelector, StringMap};

/// Desired state of a Civis Platform service.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "CivisService",
    namespaced,
    status = "CivisServiceStatus",
    doc = "A service on Civis Platform, kept deployed as declared.",
    shortname = "civis",
    category = "tether"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.maxReplicas) || !has(self.replicas) || self.maxReplicas >= self.replicas",
     "message": "maxReplicas must be greater than or equal to replicas"},
    {"rule": "!has(self.tokens) || size(self.tokens) == 0 || has(self.writeOutputsTo)",
     "message": "tokens need writeOutputsTo: the minted token secrets are written to that Secret"},
    {"rule": "has(self.dockerImageName) || has(self.gitRepoUrl)",
     "message": "set dockerImageName or gitRepoUrl: a service needs something to run"},
    {"rule": "has(self.type) == has(oldSelf.type) && (!has(self.type) || self.type == oldSelf.type)",
     "message": "type is set at creation and cannot change"},
    {"rule": "has(self.hidden) == has(oldSelf.hidden) && (!has(self.hidden) || self.hidden == oldSelf.hidden)",
     "message": "hidden is set at creation and cannot change"},
]))]
pub struct CivisServiceSpec {
    #[serde(flatten)]
    pub managed: ManagedFields<CivisDeletionPolicy>,
    /// Display name of the service. Civis names are not unique; Tether finds its service by an ownership
    /// marker it appends to `description`.
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// Free-text description (Tether appends its ownership marker on the platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Type of the service, set at creation only.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Hide the service from default listings; set at creation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<bool>,
    /// Container image to run. Changing it redeploys the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub docker_image_name: Option<String>,
    /// Image tag; the platform uses "latest" when unset. Changing it redeploys the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub docker_image_tag: Option<String>,
    /// Git repository with the service's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_repo_url: Option<String>,
    /// Branch, tag or commit of the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_repo_ref: Option<String>,
    /// Subdirectory of the repository; the root when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_path_dir: Option<String>,
    /// Replica count; the minimum when `maxReplicas` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: Option<i32>,
    /// Setting it enables autoscaling up to this many replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: Option<i32>,
    /// Instance type the service runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Memory per replica, in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub memory: Option<i32>,
    /// CPU per replica, in millicores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub cpu: Option<i32>,
    /// When the deployed service is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Environment variables of the container; keys are kept exactly as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<StringMap>,
    /// Environment variables whose values Tether reads from Secrets in this namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_variables_from: Vec<SecretEnvVar>,
    /// Ids of Civis credentials injected into the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<i64>>,
    /// Permission set of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_set_id: Option<i64>,
    /// Compute partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_label: Option<String>,
    /// Failure notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Notifications>,
    /// Whether a deployment should be running. `false` stops the current deployment.
    #[serde(default = "default_true")]
    pub deployed: bool,
    /// Ids of the Civis projects the service belongs to; Tether adds and removes memberships to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<i64>>,
    /// Users and groups the service is shared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<Shares>,
    /// Access tokens to mint; each token's secret is written to the `writeOutputsTo` Secret under
    /// `token-<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub tokens: Vec<TokenSpec>,
}

fn default_true() -> bool {
    true
}

/// What Tether does with the Civis service when the resource is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CivisDeletionPolicy {
    /// Stop the running deployment, revoke the tokens Tether minted, then archive the service (Civis has
    /// no hard delete).
    #[default]
    Delete,
    /// Archive the service as it is, deployment and tokens untouched, so un-archiving restores it.
    Archive,
    /// Leave the service as it is.
    Orphan,
}

/// When the service is up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// on_demand (starts when viewed, sleeps when idle), specific_times (up during `recurrences`) or
    /// always_on.
    pub runtime_plan: RuntimePlan,
    /// Days and hours the service is up under specific_times.
    #[serde(default)]
    pub recurrences: Vec<Recurrence>,
}

/// Civis runtime plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuntimePlan {
    /// Starts when viewed, sleeps after inactivity.
    OnDemand,
    /// Up during the recurrences.
    SpecificTimes,
    /// Always up.
    AlwaysOn,
}

/// One weekly recurrence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recurrence {
    /// Days of the week, 0 = Sunday to 6 = Saturday.
    #[schemars(inner(range(min = 0, max = 6)))]
    pub scheduled_days: Vec<i32>,
    /// Hours of the day, 0 to 23.
    #[schemars(inner(range(min = 0, max = 23)))]
    pub scheduled_hours: Vec<i32>,
}

/// An environment variable read from a Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretEnvVar {
    /// Variable name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Secret key holding the value (the Secret's namespace is the resource's).
    pub secret_key_ref: SecretKeySelector,
}

/// Failure notifications.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    /// Addresses mailed when the service fails.
    #[serde(default)]
    pub failure_email_addresses: Vec<String>,
    /// Whether failure mails are sent.
    #[serde(default)]
    pub failure_on: bool,
}

/// Users and groups the service is shared with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Shares {
    /// User shares.
    #[serde(default)]
    pub users: Vec<Share>,
    /// Group shares.
    #[serde(default)]
    pub groups: Vec<Share>,
}

/// One share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    /// User or group id.
    pub id: i64,
    /// read, write or manage.
    pub permission_level: PermissionLevel,
}

/// Civis permission levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PermissionLevel {
    /// Read only.
    Read,
    /// Read and write.
    Write,
    /// Full control.
    Manage,
}

/// A token to mint for the service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenSpec {
    /// Token name, unique within this resource.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// A compact machine token carrying no user information.
    #[serde(default)]
    pub machine_token: bool,
    /// Lifetime in seconds; no expiry when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60))]
    pub expires_in: Option<i64>,
}

/// Observed state of a CivisService.
pub type CivisServiceStatus = ManagedStatus<CivisServiceObservation>;

/// What Tether last read of the Civis service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CivisServiceObservation {
    /// State of the current deployment: pending, running, sleeping or terminated; `none` without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The platform's detail on the deployment state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_message: Option<String>,
    /// Id of the current deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_deployment_id: Option<i64>,
    /// URL the service is served at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_url: Option<String>,
    /// Report wrapping the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_id: Option<i64>,
    /// Whether the service is archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<bool>,
    /// Owner's username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The caller's permission on the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub my_permission_level: Option<String>,
    /// Hash of the image settings last deployed, to tell when a redeploy is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_config_hash: Option<String>,
    /// Ids of the tokens Tether minted, by token name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ids: Option<std::collections::BTreeMap<String, i64>>,
    /// When the service was created on the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the service last changed on the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}
