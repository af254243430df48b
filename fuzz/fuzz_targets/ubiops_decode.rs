//! Arbitrary bytes as a UbiOps answer, decoded into each type `tether_platforms::ubiops::Client` decodes
//! (a service, the list, its status, a project, deployment or version, and their lists); then what the
//! adapter reads of them. A decoded service must serialise as an object that decodes again to itself: the
//! adapter diffs `serde_json::to_value(remote)` against the spec.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tether_fuzz::{assert_round_trip, decode};
use tether_platforms::ubiops::{Client, Service, ServiceStatus};

fuzz_target!(|data: &[u8]| {
    if let Some(service) = decode::<Service>(data) {
        check_service(&service);
    }
    if let Some(services) = decode::<Vec<Service>>(data) {
        services.iter().for_each(check_service);
    }
    if let Some(status) = decode::<ServiceStatus>(data) {
        assert_round_trip(&status, true);
    }
    // `project_get`, `deployments_get` (its `default_version`), `versions_get` (its `status`).
    if let Some(detail) = decode::<Map<String, Value>>(data) {
        let _ = detail.get("default_version").and_then(Value::as_str);
        let _ = detail.get("status").and_then(Value::as_str).unwrap_or_default().to_string();
    }
    let _ = decode::<Vec<Map<String, Value>>>(data);
});

fn check_service(service: &Service) {
    let remote = assert_round_trip(service, true);
    // The adapter compares each desired field with `remote.get(k).unwrap_or(&Value::Null)`.
    for key in ["name", "deployment", "version", "port", "labels", "description"] {
        let _ = remote.get(key).unwrap_or(&Value::Null);
    }
    // Labels as the list filter takes them: `k1:v1,k2:v2`.
    if let Some(Value::Object(labels)) = service.fields.get("labels") {
        let labels: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
        let filter = Client::label_filter(&labels);
        assert!(labels.is_empty() == filter.is_empty());
    }
}
