//! Arbitrary bytes as a Civis answer, decoded into each type `tether_platforms::civis::Client` decodes
//! (services and their list, deployments and their list, tokens, logs, shares, dependencies, projects),
//! then what the client and the adapter read of them. `Service::archived` has its own deserializer (a
//! bool or a "true"/"false" string); a decoded service must serialise as an object that decodes again to
//! itself, since the adapter diffs `serde_json::to_value(remote)` against the spec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tether_fuzz::{assert_round_trip, decode};
use tether_platforms::civis::{Deployment, Service, Token};

fuzz_target!(|data: &[u8]| {
    if let Some(service) = decode::<Service>(data) {
        check_service(&service);
    }
    if let Some(services) = decode::<Vec<Service>>(data) {
        services.iter().for_each(check_service);
        // The adapter keeps the newest of the services carrying its marker.
        let mut ours: Vec<&Service> =
            services.iter().filter(|s| s.description.as_deref().is_some_and(|d| d.ends_with("]"))).collect();
        ours.sort_by_key(|s| std::cmp::Reverse(s.id));
    }
    if let Some(deployment) = decode::<Deployment>(data) {
        check_deployment(&deployment);
    }
    if let Some(deployments) = decode::<Vec<Deployment>>(data) {
        deployments.iter().for_each(check_deployment);
    }
    if let Some(token) = decode::<Token>(data) {
        assert_round_trip(&token, true);
    }
    if let Some(tokens) = decode::<Vec<Token>>(data) {
        tokens.iter().for_each(|t| drop(assert_round_trip(t, true)));
    }
    // `logs`, `dependencies`, `shares` (the first ShareIndex) and `projects` (the ids).
    if let Some(list) = decode::<Vec<Map<String, Value>>>(data) {
        let _ids: Vec<i64> = list.iter().filter_map(|p| p.get("id")?.as_i64()).collect();
        if let Some(index) = list.first() {
            for section in ["readers", "writers", "owners"] {
                for key in ["users", "groups"] {
                    let items = index.get(section).and_then(|s| s.get(key)).and_then(Value::as_array);
                    let _: Vec<i64> = items.into_iter().flatten().filter_map(|i| i.get("id")?.as_i64()).collect();
                }
            }
        }
    }
});

fn check_service(service: &Service) {
    assert_round_trip(service, true);
    // The adapter: the creator, the deployment's start time, whether it runs, the credentials' ids.
    let _ = service.fields.get("user").and_then(|u| u.get("id")?.as_i64());
    if let Some(deployment) = &service.current_deployment {
        check_deployment(deployment);
    }
    if let Some(Value::Array(items)) = service.fields.get("credentials") {
        let _: Vec<Value> = items.iter().map(|i| i.get("id").cloned().unwrap_or_else(|| i.clone())).collect();
    }
}

fn check_deployment(deployment: &Deployment) {
    assert_round_trip(deployment, true);
    let _ = deployment.fields.get("createdAt").and_then(Value::as_str);
    let _ = matches!(deployment.state.as_str(), "pending" | "running" | "sleeping");
    let _ = format!(
        "deployment {} terminated: {}",
        deployment.deployment_id,
        deployment.state_message.clone().unwrap_or_default()
    );
}
