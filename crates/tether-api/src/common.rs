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
///
/// Atomic: one value, owned as a whole by one field manager, as the platforms take it (Apolo replaces a
/// template input whole). It also keeps `metadata.managedFields` shallow: without it the API server
/// tracks every key of the value there, as deep as the value nests, and an object whose managedFields
/// nest past 128 levels cannot be decoded by any kube-rs client, which would stop the kind's watch.
pub(crate) fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": MAX_FREE_FORM_KEYS,
        "x-kubernetes-map-type": "atomic",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Most levels a free-form spec value may nest (its top-level object is level 1). Real template inputs
/// and service settings are a few levels deep.
pub const MAX_FREE_FORM_DEPTH: usize = 32;

/// Most keys of a free-form spec object's top level (admission refuses more: `maxProperties`).
pub const MAX_FREE_FORM_KEYS: usize = 512;

/// A free-form JSON value of a spec (Apolo `input`, Iguazio `serviceConfig`), as the API server sent it.
///
/// Decoding it never fails: kube decodes a whole list of a kind at once, and serde_json stops at 128
/// levels, so one object nested deeper would fail the list, and with it the controller of every object of
/// the kind. The schema cannot bound depth (`x-kubernetes-preserve-unknown-fields`), so a value nested
/// deeper than [`MAX_FREE_FORM_DEPTH`] is skipped over as text (serde_json skips without recursing) and
/// kept as [`FreeForm::Refused`], for the reconcile to report on its own resource.
#[derive(Clone, Debug, PartialEq)]
pub enum FreeForm {
    /// The value.
    Value(serde_json::Value),
    /// A value Tether will not use, with why and its text as sent (written back verbatim).
    Refused {
        /// Why, for a condition message.
        why: String,
        /// The value's JSON text.
        text: String,
    },
}

impl FreeForm {
    /// The value, or why it cannot be used.
    pub fn value(&self) -> Result<&serde_json::Value, &str> {
        match self {
            FreeForm::Value(value) => Ok(value),
            FreeForm::Refused { why, .. } => Err(why),
        }
    }
}

impl From<serde_json::Value> for FreeForm {
    fn from(value: serde_json::Value) -> Self {
        FreeForm::Value(value)
    }
}

/// How many levels `value` nests (a scalar: 0, `{}`: 1), counted without recursion.
fn depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match value {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(level);
        stack.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

impl<'de> Deserialize<'de> for FreeForm {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let too_deep = || format!("nests deeper than {MAX_FREE_FORM_DEPTH} levels");
        // Parsed on its own, the value starts at depth 0: serde_json's limit (128) is past ours.
        Ok(match serde_json::from_str::<serde_json::Value>(raw.get()) {
            Ok(value) if depth(&value) <= MAX_FREE_FORM_DEPTH => FreeForm::Value(value),
            Ok(_) => FreeForm::Refused { why: too_deep(), text: raw.get().to_string() },
            Err(e) if e.to_string().contains("recursion limit") => {
                FreeForm::Refused { why: too_deep(), text: raw.get().to_string() }
            }
            Err(e) => return Err(serde::de::Error::custom(e)),
        })
    }
}

impl Serialize for FreeForm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FreeForm::Value(value) => value.serialize(serializer),
            FreeForm::Refused { text, .. } => serde_json::value::RawValue::from_string(text.clone())
                .map_err(serde::ser::Error::custom)?
                .serialize(serializer),
        }
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ApoloApp;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
    }

    fn app(name: &str, input: &str) -> String {
        format!(
            r#"{{"apiVersion":"tether.dev/v1alpha1","kind":"ApoloApp","metadata":{{"name":"{name}"}},
            "spec":{{"connectionRef":{{"name":"c"}},"cluster":"c","org":"o","project":"p",
            "templateName":"t","templateVersion":"1","input":{input}}}}}"#
        )
    }

    /// One object nested past serde_json's limit does not fail the list of every object of its kind.
    #[test]
    fn a_list_with_one_value_nested_too_deep_still_decodes() {
        let list = format!(
            r#"{{"apiVersion":"tether.dev/v1alpha1","kind":"ApoloAppList","metadata":{{}},"items":[{},{},{}]}}"#,
            app("deep", &nested(200)),
            app("fine", r#"{"storage_gb": 5}"#),
            app("past-ours", &nested(MAX_FREE_FORM_DEPTH + 1)),
        );
        let decoded: kube::core::ObjectList<ApoloApp> = serde_json::from_str(&list).expect("the list decodes");
        let inputs: Vec<_> = decoded.items.iter().map(|a| a.spec.input.clone().unwrap()).collect();
        assert!(matches!(&inputs[0], FreeForm::Refused { why, .. } if why.contains("deeper than 32")));
        assert_eq!(inputs[1], FreeForm::Value(json!({"storage_gb": 5})));
        assert!(inputs[2].value().is_err());
        assert!(FreeForm::Value(serde_json::from_str(&nested(MAX_FREE_FORM_DEPTH)).unwrap()).value().is_ok());
        // Written back as it came.
        assert_eq!(serde_json::to_string(&inputs[0]).unwrap(), nested(200));
        assert_eq!(serde_json::to_string(&inputs[1]).unwrap(), r#"{"storage_gb":5}"#);
    }

    /// The same for a watch event, as the controller's watch stream decodes it.
    #[test]
    fn a_watch_event_with_a_value_nested_too_deep_still_decodes() {
        let line = format!(r#"{{"type":"ADDED","object":{}}}"#, app("deep", &nested(200)));
        let event: kube::core::WatchEvent<ApoloApp> = serde_json::from_str(&line).expect("the event decodes");
        let kube::core::WatchEvent::Added(app) = event else { panic!("an ADDED event") };
        assert!(app.spec.input.unwrap().value().is_err());
    }

    #[test]
    fn depth_counts_levels() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": {}}]})), 4);
        let value: serde_json::Value = serde_json::from_str(&nested(MAX_FREE_FORM_DEPTH)).unwrap();
        assert_eq!(depth(&value), MAX_FREE_FORM_DEPTH);
    }
}
