//! `Connection` and `ClusterConnection`: how to reach one platform account, with credentials kept in
//! Secrets and the request budget Tether may spend on it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, SecretKeySelector};

/// How to reach a platform account from the resources of one namespace.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "Connection",
    namespaced,
    status = "ConnectionStatus",
    doc = "A platform account (endpoint, credentials, limits) for the resources of this namespace.",
    shortname = "tconn",
    category = "tether",
    printcolumn = r#"{"name":"Platform","type":"string","jsonPath":".spec.platform"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpoint"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(transform = connection_rules)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(!has(self.credentials.username) || !has(self.credentials.username.namespace)) && (!has(self.credentials.accessKey) || !has(self.credentials.accessKey.namespace)) && (!has(self.credentials.apiKey) || !has(self.credentials.apiKey.namespace)) && (!has(self.credentials.token) || !has(self.credentials.token.namespace))",
     "message": "a Connection reads Secrets from its own namespace: leave credentials.*.namespace unset"},
]))]
pub struct ConnectionSpec {
    #[serde(flatten)]
    pub settings: ConnectionSettings,
}

/// How to reach a platform account from the namespaces it allows.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "ClusterConnection",
    status = "ConnectionStatus",
    doc = "A platform account (endpoint, credentials, limits) shared by the namespaces it allows.",
    shortname = "tcconn",
    category = "tether",
    printcolumn = r#"{"name":"Platform","type":"string","jsonPath":".spec.platform"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpoint"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = connection_rules)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(!has(self.credentials.username) || has(self.credentials.username.namespace)) && (!has(self.credentials.accessKey) || has(self.credentials.accessKey.namespace)) && (!has(self.credentials.apiKey) || has(self.credentials.apiKey.namespace)) && (!has(self.credentials.token) || has(self.credentials.token.namespace))",
     "message": "every credential of a ClusterConnection must name the Secret's namespace"},
]))]
pub struct ClusterConnectionSpec {
    #[serde(flatten)]
    pub settings: ConnectionSettings,
    /// Namespaces whose resources may use this connection; `*` allows every namespace.
    #[schemars(
        length(min = 1),
        inner(length(min = 1, max = 63), regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"))
    )]
    pub allowed_namespaces: Vec<String>,
}

/// Endpoint, credentials and request budget of one platform account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSettings {
    /// The platform this account is on. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "platform is immutable"}]))]
    pub platform: Platform,
    /// Base URL of the platform API, e.g. https://api.ubiops.com/v2.1 or https://api.civisanalytics.com.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s/]+(/\S*)?$"))]
    pub endpoint: String,
    /// Secret keys holding the credentials the platform needs: Iguazio username and accessKey, Civis and
    /// Peak apiKey, Apolo and UbiOps token.
    pub credentials: Credentials,
    /// Most requests per second Tether sends to this account, shared by every resource using it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub requests_per_second: Option<i32>,
    /// Requests that may go out at once above the steady rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub burst: Option<i32>,
    /// Timeout of one request, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: Option<i32>,
}

/// The platforms Tether manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Iguazio app services (AppService).
    Iguazio,
    /// Civis Platform services (CivisService).
    Civis,
    /// Apolo apps (ApoloApp).
    Apolo,
    /// UbiOps services (UbiService).
    Ubiops,
    /// Peak webapps (PeakWebapp).
    Peak,
}

/// Where each credential lives; which ones are required depends on the platform.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// Iguazio username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretKeySelector>,
    /// Iguazio access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretKeySelector>,
    /// Civis or Peak API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretKeySelector>,
    /// Apolo or UbiOps API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretKeySelector>,
}

/// Adds the rules both connection kinds share (which credentials each platform needs) to a spec schema.
fn connection_rules(schema: &mut schemars::Schema) {
    let shared = serde_json::json!([
        {"rule": "self.platform != 'iguazio' || (has(self.credentials.username) && has(self.credentials.accessKey))",
         "message": "platform iguazio needs credentials.username and credentials.accessKey"},
        {"rule": "!(self.platform in ['civis', 'peak']) || has(self.credentials.apiKey)",
         "message": "platforms civis and peak need credentials.apiKey"},
        {"rule": "!(self.platform in ['apolo', 'ubiops']) || has(self.credentials.token)",
         "message": "platforms apolo and ubiops need credentials.token"},
        {"rule": "!has(self.burst) || has(self.requestsPerSecond)",
         "message": "burst needs requestsPerSecond"},
    ]);
    let rules = schema.ensure_object().entry("x-kubernetes-validations").or_insert_with(|| serde_json::json!([]));
    if let (Some(rules), serde_json::Value::Array(shared)) = (rules.as_array_mut(), shared) {
        rules.extend(shared);
    }
}

/// Observed state of a Connection or ClusterConnection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// Ready: the credentials were found and the platform accepted them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
