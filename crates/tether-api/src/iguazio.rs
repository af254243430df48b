//! `AppService`: an Iguazio app service, one entry of the tenant's app-services manifest
//! (shared/platforms/iguazio.md §3, §9). Field names are the platform's, in camelCase.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{FreeForm, ManagedFields, ManagedStatus, StringMap, free_form_object};

/// The fields of a manifest entry besides the kind-specific settings, in the platform's names. A `kind` may
/// not be one of them (the CEL rule on `kind` lists them too; a test keeps the two equal).
pub const ENTRY_FIELDS: &[&str] = &[
    "name",
    "kind",
    "owner",
    "display_name",
    "description",
    "credentials",
    "resources",
    "target_cpu",
    "min_replicas",
    "max_replicas",
    "enabled",
    "avatar",
    "mark_for_restart",
    "mark_as_changed",
    "visible_to_all",
    "scale_to_zero",
    "pvc",
    "desired_state",
    "authentication_mode",
    "security_context",
    "persistency_mode",
    "advanced",
    "labels",
];

/// Desired state of an Iguazio app service.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "AppService",
    namespaced,
    status = "AppServiceStatus",
    doc = "An Iguazio app service, kept in the tenant's app-services manifest as declared.",
    shortname = "igz",
    category = "tether"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.minReplicas) || !has(self.maxReplicas) || self.maxReplicas >= self.minReplicas",
     "message": "maxReplicas must be greater than or equal to minReplicas"},
]))]
pub struct AppServiceSpec {
    #[serde(flatten)]
    pub managed: ManagedFields,
    /// Name of the app service, unique within the tenant; the key Tether finds it by. Immutable.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "name is immutable"}]))]
    pub name: String,
    /// Service kind, e.g. jupyter, shell, grafana, mlrun. Its settings go in `serviceConfig`. Immutable.
    /// Not one of the entry's own fields (`name`, `owner`, `pvc`, …: [`ENTRY_FIELDS`]): the settings are
    /// sent under the key `kind` names, which would overwrite that field.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9_]+$"))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "kind is immutable"},
        {"rule": "!(self in ['name', 'kind', 'owner', 'display_name', 'description', 'credentials', 'resources', 'target_cpu', 'min_replicas', 'max_replicas', 'enabled', 'avatar', 'mark_for_restart', 'mark_as_changed', 'visible_to_all', 'scale_to_zero', 'pvc', 'desired_state', 'authentication_mode', 'security_context', 'persistency_mode', 'advanced', 'labels'])",
         "message": "kind names a service kind (jupyter, shell, …), not one of the app service's own fields"},
    ]))]
    pub kind: String,
    /// Kind-specific settings, sent to the platform under the key named by `kind` with the platform's own
    /// snake_case keys, e.g. for kind jupyter `{image_name: jupyter-all, ssh_enabled: false}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub service_config: Option<FreeForm>,
    /// Iguazio username that owns the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Name shown in the Iguazio UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Identity the service runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<ServiceCredentials>,
    /// CPU, memory and GPU limits and requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Target CPU utilisation (percent) for horizontal autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu: Option<i32>,
    /// Fewest replicas the autoscaler keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: Option<i32>,
    /// Most replicas the autoscaler may run; at least `minReplicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: Option<i32>,
    /// Legacy "deploy or not" switch; prefer `desiredState`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Icon shown in the UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    /// Whether every user of the tenant sees the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_to_all: Option<bool>,
    /// Automatic scale-to-zero after a period without activity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_to_zero: Option<ScaleToZero>,
    /// Volume mounts of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<Pvc>,
    /// `ready` runs the service, `disabled` stops it, `scaledToZero` scales it to zero; moving back to
    /// `ready` scales it from zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<DesiredState>,
    /// Authentication mode of the service's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_mode: Option<String>,
    /// Security context of the service's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Persistency mode of the service's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistency_mode: Option<String>,
    /// Scheduling settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced: Option<Advanced>,
    /// Labels propagated to the service's Kubernetes resources on the platform (`meta.labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<StringMap>,
}

/// Identity the service runs as.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceCredentials {
    /// Iguazio username.
    #[schemars(length(min = 1))]
    pub username: String,
}

/// Limits and requests; values are Kubernetes quantities as strings ("2", "4Gi").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Upper bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceList>,
    /// Guaranteed amounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceList>,
}

/// Amounts of CPU, memory and GPUs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceList {
    /// CPU, e.g. "2" or "500m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory, e.g. "4Gi".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?)?$"))]
    pub memory: Option<String>,
    /// Number of NVIDIA GPUs, e.g. "1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+$"))]
    pub nvidia_gpu: Option<String>,
}

/// Scale-to-zero settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleToZero {
    /// `enabled` or `disabled`.
    pub mode: ScaleToZeroMode,
    /// Metrics whose inactivity over a window triggers the scale-down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_resources: Vec<ScaleResource>,
}

/// Whether scale-to-zero is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ScaleToZeroMode {
    /// Scale to zero when idle.
    Enabled,
    /// Never scale to zero.
    Disabled,
}

/// One idleness metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleResource {
    /// Metric name, e.g. num_of_requests or jupyter_kernel_busyness.
    #[schemars(length(min = 1))]
    pub metric_name: String,
    /// Value at or below which the service counts as idle.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub threshold: i64,
    /// How long the metric must stay idle: 1m, 5m, 10m, 1h, 2h or 4h.
    pub window_size: WindowSize,
}

/// Idle windows the platform offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WindowSize {
    /// One minute.
    #[serde(rename = "1m")]
    OneMinute,
    /// Five minutes.
    #[serde(rename = "5m")]
    FiveMinutes,
    /// Ten minutes.
    #[serde(rename = "10m")]
    TenMinutes,
    /// One hour.
    #[serde(rename = "1h")]
    OneHour,
    /// Two hours.
    #[serde(rename = "2h")]
    TwoHours,
    /// Four hours.
    #[serde(rename = "4h")]
    FourHours,
}

/// Volume mounts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pvc {
    /// Mount definitions per volume name, as the platform takes them.
    #[serde(default)]
    pub mounts: std::collections::BTreeMap<String, Vec<StringMap>>,
}

/// Run state the service should be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DesiredState {
    /// Running.
    Ready,
    /// Stopped.
    Disabled,
    /// Scaled to zero replicas.
    ScaledToZero,
}

/// Security context of the service's pods; all fields are required when it is given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    /// User id the containers run as.
    pub run_as_user: String,
    /// Group id the containers run as.
    pub run_as_group: String,
    /// Group that owns mounted volumes.
    pub fs_group: String,
    /// Additional groups.
    pub supplemental_groups: Vec<String>,
    /// Refuse to run as root.
    pub run_as_non_root: bool,
}

/// Scheduling settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Advanced {
    /// Node labels the service's pods must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<StringMap>,
    /// Priority class of the service's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<PriorityClass>,
}

/// The priority classes Iguazio defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PriorityClass {
    /// igz-workload-low
    IgzWorkloadLow,
    /// igz-workload-medium
    IgzWorkloadMedium,
    /// igz-workload-high
    IgzWorkloadHigh,
    /// igz-system-medium
    IgzSystemMedium,
    /// igz-system-high
    IgzSystemHigh,
    /// igz-system-critical
    IgzSystemCritical,
}

/// Observed state of an AppService.
pub type AppServiceStatus = ManagedStatus<AppServiceObservation>;

/// What Tether last read of the app service and of the manifest holding it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppServiceObservation {
    /// The service's state on the platform, e.g. ready, provisioning, error, disabled, scaledToZero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// User-facing URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<ServiceUrl>,
    /// API endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_urls: Vec<ServiceUrl>,
    /// In-cluster endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub internal_api_urls: Vec<ServiceUrl>,
    /// Deployed version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Last error the platform reported for this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Id of the last background job that applied the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job_id: Option<String>,
    /// Id of the background job applying the manifest now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_job_id: Option<String>,
    /// State of the whole tenant manifest (ready, provisioning, error, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_state: Option<String>,
}

/// A URL the platform publishes for the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceUrl {
    /// What the URL is for, e.g. https.
    pub kind: String,
    /// The URL.
    pub url: String,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    /// The CEL rule on `kind` and [`ENTRY_FIELDS`] name the same fields.
    #[test]
    fn the_kind_rule_lists_every_entry_field() {
        let crd = serde_json::to_value(AppService::crd()).unwrap();
        let kind = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["kind"];
        let rule = kind["x-kubernetes-validations"][1]["rule"].as_str().unwrap();
        let listed: Vec<&str> = rule.split('\'').skip(1).step_by(2).collect();
        assert_eq!(listed, ENTRY_FIELDS);
    }
}
