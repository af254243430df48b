//! `UbiService`: a UbiOps service routing traffic to a deployment version (shared/platforms/ubiops.md §3,
//! §9).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ManagedFields, ManagedStatus, StringMap};

/// Desired state of a UbiOps service.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "UbiService",
    namespaced,
    status = "UbiServiceStatus",
    doc = "A service on UbiOps, routing traffic to a deployment version.",
    shortname = "ubi",
    category = "tether"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.rateLimit) || !has(self.rateLimitUserDefault) || self.rateLimitUserDefault <= self.rateLimit",
     "message": "rateLimitUserDefault cannot exceed rateLimit"},
    {"rule": "!has(self.concurrencyLimit) || !has(self.concurrencyLimitUserDefault) || self.concurrencyLimitUserDefault <= self.concurrencyLimit",
     "message": "concurrencyLimitUserDefault cannot exceed concurrencyLimit"},
]))]
pub struct UbiServiceSpec {
    #[serde(flatten)]
    pub managed: ManagedFields,
    /// UbiOps project holding the service. Immutable.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "project is immutable"}]))]
    pub project: String,
    /// Service name, unique in the project; the key Tether finds it by. Immutable.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "name is immutable"}]))]
    pub name: String,
    /// Deployment in the same project that receives the traffic.
    #[schemars(length(min = 1, max = 64))]
    pub deployment: String,
    /// Version of that deployment; unset follows the deployment's default version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub version: Option<String>,
    /// Port on the instances traffic is routed to.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 400))]
    pub description: Option<String>,
    /// Labels of the service, replaced as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<StringMap>,
    /// Whether callers must authenticate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_required: Option<bool>,
    /// Whether UbiOps API tokens are accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_method_token_enabled: Option<bool>,
    /// Forward the caller's authentication header to the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_header_pass_through: Option<bool>,
    /// Regular expression of request paths left out of request logging, e.g. `(health|status)$`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 400))]
    pub request_logging_excluded_paths: Option<String>,
    /// File extensions left out of request logging, e.g. svg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_logging_excluded_extensions: Option<Vec<String>>,
    /// Overall request rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rate_limit: Option<i64>,
    /// Default per-user request rate limit; at most `rateLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rate_limit_user_default: Option<i64>,
    /// Overall concurrency limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub concurrency_limit: Option<i64>,
    /// Default per-user concurrency limit; at most `concurrencyLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub concurrency_limit_user_default: Option<i64>,
    /// Service type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// LLM-specific cache-aware routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_aware_llm_routing: Option<bool>,
    /// Name of the external service an imported service points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub imported_name: Option<String>,
    /// Namespace of the external service an imported service points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub imported_namespace: Option<String>,
    /// Cluster domain of the external service an imported service points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub imported_cluster_domain: Option<String>,
    /// Health check (API v2.1 shape; newer platforms keep it on the deployment version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Rate limit per authentication token (API v2.1 shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rate_limit_token: Option<i64>,
}

/// Health check of the service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Path probed, starting with "/".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: Option<String>,
    /// Seconds between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub interval: Option<i32>,
    /// Seconds a probe may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout: Option<i32>,
    /// Failed probes before the instance counts as unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub failure_threshold: Option<i32>,
}

/// Observed state of a UbiService.
pub type UbiServiceStatus = ManagedStatus<UbiServiceObservation>;

/// What Tether last read of the UbiOps service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UbiServiceObservation {
    /// `ready` when instances serve traffic, `notReady` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Public endpoint URL of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Instances ready to serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_ready: Option<i64>,
    /// Deployment version the service resolves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When the service was created on the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_created: Option<String>,
    /// When the service last changed on the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_updated: Option<String>,
}
