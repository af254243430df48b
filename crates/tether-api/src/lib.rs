//! Tether's API: the custom resource types of group `tether.dev`, version `v1alpha1`.
//!
//! Five managed kinds, one per platform (`AppService`, `CivisService`, `ApoloApp`, `UbiService`,
//! `PeakWebapp`), share a frame ([`common::ManagedFields`], [`common::ManagedStatus`]); `Connection` and
//! `ClusterConnection` say how to reach a platform account. Validation lives in the schema (types, ranges,
//! patterns, CEL rules) so the API server rejects a bad manifest at admission, with no webhook.

pub mod apolo;
pub mod civis;
pub mod common;
pub mod connection;
pub mod iguazio;
pub mod peak;
pub mod ubiops;

pub use apolo::{ApoloApp, ApoloAppSpec, ApoloAppStatus};
pub use civis::{CivisService, CivisServiceSpec, CivisServiceStatus};
pub use common::*;
pub use connection::{ClusterConnection, ClusterConnectionSpec, Connection, ConnectionSpec, Platform};
pub use iguazio::{AppService, AppServiceSpec, AppServiceStatus};
pub use peak::{PeakWebapp, PeakWebappSpec, PeakWebappStatus};
pub use ubiops::{UbiService, UbiServiceSpec, UbiServiceStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every Tether kind.
pub const GROUP: &str = "tether.dev";

/// Every CRD Tether defines, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        managed::<AppService>(),
        managed::<CivisService>(),
        managed::<ApoloApp>(),
        managed::<UbiService>(),
        managed::<PeakWebapp>(),
        Connection::crd(),
        ClusterConnection::crd(),
    ];
    crds.iter_mut().for_each(unobserved_until_reconciled);
    crds.iter_mut().for_each(bounded_spec);
    crds
}

/// Default bounds on spec values that declare none: a string's length, an array's items, a map's keys.
/// Admission then refuses a hostile size with a message naming the field, and CEL rules are costed
/// against these bounds instead of the object's whole size. Fields with their own bound keep it.
pub mod bounds {
    /// Longest string (16 KiB: a certificate in an environment variable fits).
    pub const MAX_STRING: i64 = 16 * 1024;
    /// Most items of a list.
    pub const MAX_ITEMS: i64 = 256;
    /// Most keys of a map (labels, environment variables, node selectors).
    pub const MAX_KEYS: i64 = 256;
}

fn bounded_spec(crd: &mut CustomResourceDefinition) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    fn bound(schema: &mut JSONSchemaProps) {
        match schema.type_.as_deref() {
            Some("string") => {
                schema.max_length.get_or_insert(bounds::MAX_STRING);
            }
            Some("array") => {
                schema.max_items.get_or_insert(bounds::MAX_ITEMS);
            }
            Some("object") if schema.additional_properties.is_some() => {
                schema.max_properties.get_or_insert(bounds::MAX_KEYS);
            }
            _ => {}
        }
        for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
            bound(child);
        }
        match schema.items.as_mut() {
            Some(JSONSchemaPropsOrArray::Schema(item)) => bound(item),
            Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(bound),
            None => {}
        }
        if let Some(JSONSchemaPropsOrBool::Schema(value)) = schema.additional_properties.as_mut() {
            bound(value);
        }
        for alternatives in [&mut schema.any_of, &mut schema.one_of, &mut schema.all_of] {
            alternatives.iter_mut().flatten().for_each(bound);
        }
    }
    for version in &mut crd.spec.versions {
        let spec = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"));
        if let Some(spec) = spec {
            bound(spec);
        }
    }
}

/// A status default of `observedGeneration: 0`: an object Tether has not reconciled yet (just applied, or
/// the operator is down) reads as an unobserved generation, so kstatus says InProgress and Argo CD
/// Progressing, never Current because there are no conditions yet. The API server applies it when it reads
/// the object, so it holds from the first watch event on.
fn unobserved_until_reconciled(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("status"));
        if let Some(status) = status {
            status.default = Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                serde_json::json!({"observedGeneration": 0}),
            ));
        }
    }
}

/// The CRD of a managed kind, with the printer columns all five share: READY, SYNCED, STATE (the
/// platform's own state), EXTERNAL-ID, AGE. Defined once here rather than in five `#[kube]` attributes.
fn managed<K: CustomResourceExt>() -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;
    let column = |name: &str, type_: &str, json_path: &str| CustomResourceColumnDefinition {
        name: name.into(),
        type_: type_.into(),
        json_path: json_path.into(),
        ..Default::default()
    };
    let mut crd = K::crd();
    for version in &mut crd.spec.versions {
        version.additional_printer_columns = Some(vec![
            column("Ready", "string", r#".status.conditions[?(@.type=="Ready")].status"#),
            column("Synced", "string", r#".status.conditions[?(@.type=="Synced")].status"#),
            column("State", "string", ".status.atProvider.state"),
            column("External-ID", "string", ".status.externalId"),
            column("Age", "date", ".metadata.creationTimestamp"),
        ]);
    }
    crd
}

/// All CRDs as one YAML stream, as `tether crds` prints it.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    Ok(crd_files()?.into_iter().map(|(_, yaml)| format!("---\n{yaml}")).collect())
}

/// One `(file name, YAML)` pair per CRD, as crds/ stores them (`appservices.tether.dev.yaml`, ...).
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml_ng::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            Ok((format!("{name}.yaml"), serde_yaml_ng::to_string(&crd)?))
        })
        .collect()
}
