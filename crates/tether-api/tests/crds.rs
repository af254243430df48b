//! The generated CRDs: committed copies in crds/ are current, every field explains itself, and the
//! examples parse into the types.

use std::path::PathBuf;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn crds_directories_match_the_types() {
    // crds/ for kubectl and kustomize; the chart's crds/ for Helm, which installs them first.
    for dir in ["crds", "deploy/helm/tether/crds"] {
        let path = repo().join(dir);
        let mut stale = Vec::new();
        let expected = tether_api::crd_files().expect("CRDs serialise");
        for (file, yaml) in &expected {
            match std::fs::read_to_string(path.join(file)) {
                Ok(committed) if &committed == yaml => {}
                Ok(_) => stale.push(format!("{file} differs")),
                Err(_) => stale.push(format!("{file} is missing")),
            }
        }
        let on_disk = std::fs::read_dir(&path).map(|d| d.count()).unwrap_or(0);
        if on_disk != expected.len() {
            stale.push(format!("{dir}/ holds {on_disk} files, the types generate {}", expected.len()));
        }
        assert!(stale.is_empty(), "{dir}/ is out of date ({}). Regenerate with: make crds", stale.join("; "));
    }
}

#[test]
fn there_are_seven_crds_in_group_tether_dev_with_status_and_category() {
    let crds = tether_api::crds();
    assert_eq!(crds.len(), 7);
    for crd in &crds {
        assert_eq!(crd.spec.group, tether_api::GROUP);
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["tether".to_string()][..]));
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{}", crd.spec.names.kind);
        assert!(crd.spec.names.short_names.as_ref().is_some_and(|s| !s.is_empty()));
    }
}

#[test]
fn managed_kinds_print_ready_synced_state_external_id_age() {
    for crd in tether_api::crds().iter().filter(|c| !c.spec.names.kind.ends_with("Connection")) {
        let columns: Vec<_> =
            crd.spec.versions[0].additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, ["Ready", "Synced", "State", "External-ID", "Age"], "{}", crd.spec.names.kind);
    }
}

/// Walks a schema and reports every property that has no description, by its path.
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            if prop.get("description").and_then(Value::as_str).is_none_or(|d| d.trim().is_empty()) {
                out.push(here.clone());
            }
            undocumented(prop, &here, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        undocumented(values, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_spec_and_status_field_has_a_description() {
    let mut missing = Vec::new();
    for crd in tether_api::crds() {
        let kind = crd.spec.names.kind.clone();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema serialises");
        let root = &schema["openAPIV3Schema"]["properties"];
        for part in ["spec", "status"] {
            assert!(root.get(part).is_some(), "{kind} has no {part}");
            undocumented(&root[part], &format!("{kind}.{part}"), &mut missing);
        }
    }
    assert!(missing.is_empty(), "fields without a description:\n{}", missing.join("\n"));
}

#[test]
fn the_description_walk_notices_a_missing_description() {
    let schema = serde_json::json!({"properties": {"a": {"description": "yes"}, "b": {"properties": {"c": {}}}}});
    let mut missing = Vec::new();
    undocumented(&schema, "x", &mut missing);
    assert_eq!(missing, ["x.b", "x.b.c"]);
}

#[test]
fn every_example_parses_into_its_type() {
    use tether_api::*;
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(repo().join("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).expect("YAML");
            let kind = value["kind"].as_str().expect("kind").to_string();
            let parsed = match kind.as_str() {
                "AppService" => serde_json::from_value::<AppService>(value).map(drop),
                "CivisService" => serde_json::from_value::<CivisService>(value).map(drop),
                "ApoloApp" => serde_json::from_value::<ApoloApp>(value).map(drop),
                "UbiService" => serde_json::from_value::<UbiService>(value).map(drop),
                "PeakWebapp" => serde_json::from_value::<PeakWebapp>(value).map(drop),
                "Connection" => serde_json::from_value::<Connection>(value).map(drop),
                "ClusterConnection" => serde_json::from_value::<ClusterConnection>(value).map(drop),
                "Secret" => serde_json::from_value::<k8s_openapi::api::core::v1::Secret>(value).map(drop),
                other => panic!("{}: unexpected kind {other}", path.display()),
            };
            parsed.unwrap_or_else(|e| panic!("{} ({kind}): {e}", path.display()));
            kinds.push(kind);
        }
    }
    for kind in
        ["AppService", "CivisService", "ApoloApp", "UbiService", "PeakWebapp", "Connection", "ClusterConnection"]
    {
        assert!(kinds.iter().any(|k| k == kind), "no example of {kind}");
    }
}

#[test]
fn defaults_are_applied_when_fields_are_left_out() {
    let spec: tether_api::PeakWebappSpec = serde_json::from_value(serde_json::json!({
        "connectionRef": {"name": "peak"}, "name": "app", "imageDetails": {"imageId": 1}
    }))
    .expect("minimal spec");
    assert_eq!(spec.managed.deletion_policy, tether_api::DeletionPolicy::Delete);
    assert_eq!(spec.managed.management_policy, tether_api::ManagementPolicy::Full);
    let civis: tether_api::CivisServiceSpec = serde_json::from_value(serde_json::json!({
        "connectionRef": {"name": "c"}, "name": "svc", "dockerImageName": "nginx"
    }))
    .expect("minimal spec");
    assert!(civis.deployed, "a Civis service is deployed unless told otherwise");
}

/// Every spec value has a size bound admission checks: a string's length, a list's items, a map's and a
/// free-form object's keys. (Depth of free-form values is bounded by the controller: see `FreeForm`.)
#[test]
fn every_spec_value_is_bounded() {
    fn walk(schema: &Value, path: &str, unbounded: &mut Vec<String>) {
        let has = |key: &str| schema.get(key).is_some();
        match schema["type"].as_str() {
            Some("string") if !has("maxLength") => unbounded.push(format!("{path}: string without maxLength")),
            Some("array") if !has("maxItems") => unbounded.push(format!("{path}: list without maxItems")),
            Some("object")
                if (has("additionalProperties") || has("x-kubernetes-preserve-unknown-fields"))
                    && !has("maxProperties") =>
            {
                unbounded.push(format!("{path}: map without maxProperties"))
            }
            _ => {}
        }
        for (name, child) in schema["properties"].as_object().into_iter().flatten() {
            walk(child, &format!("{path}.{name}"), unbounded);
        }
        if schema["items"].is_object() {
            walk(&schema["items"], &format!("{path}[]"), unbounded);
        }
        if schema["additionalProperties"].is_object() {
            walk(&schema["additionalProperties"], &format!("{path}{{}}"), unbounded);
        }
    }
    let mut unbounded = Vec::new();
    for crd in tether_api::crds() {
        let crd = serde_json::to_value(&crd).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        walk(spec, &format!("{}.spec", crd["spec"]["names"]["kind"].as_str().unwrap()), &mut unbounded);
    }
    assert!(unbounded.is_empty(), "{unbounded:#?}");
}
