//! UbiService end to end: the reconciler against the real API server and the UbiOps simulator.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tether_api::UbiService;
use tether_controller::adapters::ubiops::UbiOps;
use tether_e2e::{condition, connect, is_ready, spawn_controller, wait_until};
use tether_sim::{SimOptions, spawn};
use tether_testenv::TestNamespace;

/// `(type, reason)` of the Events about the resource named `name`.
async fn events(client: &kube::Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&Default::default()).await.expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
        .collect()
}

async fn sim_services(origin: &str) -> Vec<Value> {
    let state: Value = reqwest::get(format!("{origin}/_sim/state")).await.unwrap().json().await.unwrap();
    state["projects"]["proj"]["services"].as_array().cloned().unwrap_or_default()
}

async fn sim_counter(origin: &str, key: &str) -> u64 {
    let counters: Value = reqwest::get(format!("{origin}/_sim/counters")).await.unwrap().json().await.unwrap();
    counters[key].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn create_update_drift_steady_state_bad_credentials_and_delete() {
    let ns = TestNamespace::new("ubi").await;
    let sim = spawn("ubiops", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(200) })
        .await
        .unwrap();
    let origin = sim.url.trim_end_matches("/v2.1").to_string();
    let client = ns.client.clone();

    connect(&client, &ns.name, "ubiops", &sim.url, "token", "test-token").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);

    let controller = spawn_controller::<UbiOps>(&client, &ns.name);

    let api: Api<UbiService> = Api::namespaced(client.clone(), &ns.name);
    let cr = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "UbiService", "metadata": {"name": "scoring"},
        "spec": {"connectionRef": {"name": "ubiops"}, "writeOutputsTo": "scoring-endpoint", "project": "proj", "name": "scoring", "deployment": "dep-1",
                 "port": 8080, "labels": {"team": "risk"}, "description": "scoring"}});
    api.create(&PostParams::default(), &serde_json::from_value(cr).unwrap()).await.unwrap();

    // Create: Ready=False from the first reconcile, then Ready=True with the external id.
    let created =
        wait_until(&api, "scoring", "becomes Ready", |cr| is_ready(cr.and_then(|c| c.status.as_ref()))).await.unwrap();
    let status = created.status.clone().unwrap();
    assert!(status.external_id.is_some());
    assert_eq!(status.at_provider.as_ref().and_then(|a| a.state.as_deref()), Some("ready"));
    assert!(created.metadata.finalizers.unwrap_or_default().contains(&"tether.dev/finalizer".to_string()));
    let remote = sim_services(&origin).await;
    assert_eq!(remote.len(), 1);
    assert_eq!((remote[0]["port"].as_i64(), remote[0]["id"].as_str()), (Some(8080), status.external_id.as_deref()));

    assert!(events(&client, &ns.name, "scoring").await.contains(&("Normal".into(), "Created".into())));

    // The endpoint is written to the outputs Secret, which the resource owns.
    let outputs = wait_until(&secrets, "scoring-endpoint", "outputs written", |s| s.is_some()).await.unwrap();
    let endpoint = outputs.data.unwrap_or_default().get("endpoint").map(|b| String::from_utf8(b.0.clone()).unwrap());
    assert_eq!(endpoint.as_deref(), remote[0]["endpoint"].as_str());
    let owners = outputs.metadata.owner_references.unwrap_or_default();
    assert_eq!(owners.iter().map(|o| o.uid.as_str()).collect::<Vec<_>>(), [created.metadata.uid.as_deref().unwrap()]);

    // Spec change: the remote follows, observedGeneration follows.
    api.patch("scoring", &PatchParams::default(), &Patch::Merge(json!({"spec": {"port": 9090}}))).await.unwrap();
    wait_until(&api, "scoring", "applies generation 2", |cr| {
        is_ready(cr.and_then(|c| c.status.as_ref()))
            && cr.and_then(|c| c.status.as_ref()?.observed_generation) == Some(2)
    })
    .await;
    assert_eq!(sim_services(&origin).await[0]["port"], 9090);

    // Drift made behind Tether's back is corrected within a drift period.
    let http = reqwest::Client::new();
    http.patch(format!("{}/projects/proj/services/scoring", sim.url))
        .header("authorization", "Token test-token")
        .json(&json!({"port": 7070, "description": "changed by hand"}))
        .send()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sim_services(&origin).await[0]["port"] != 9090 || sim_services(&origin).await[0]["description"] != "scoring" {
        assert!(tokio::time::Instant::now() < deadline, "drift was never corrected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Steady state: three drift periods, no write to the API server and no remote write.
    wait_until(&api, "scoring", "settles", |cr| is_ready(cr.and_then(|c| c.status.as_ref()))).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = api.get("scoring").await.unwrap().metadata.resource_version;
    let secret_before = secrets.get("scoring-endpoint").await.unwrap().metadata.resource_version;
    let patches = sim_counter(&origin, "PATCH /v2.1/projects/{project_name}/services/{service_name}").await;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_eq!(api.get("scoring").await.unwrap().metadata.resource_version, before, "a no-op reconcile wrote");
    let secret_after = secrets.get("scoring-endpoint").await.unwrap().metadata.resource_version;
    assert_eq!(secret_after, secret_before, "a no-op reconcile rewrote the outputs Secret");
    assert_eq!(sim_counter(&origin, "PATCH /v2.1/projects/{project_name}/services/{service_name}").await, patches);
    assert!(sim_counter(&origin, "GET /v2.1/projects/{project_name}/services/{service_name}").await > 0);

    // Bad credentials: Synced=False Unauthorized; fixing the Secret recovers without a restart.
    secrets
        .patch("ubiops", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"token": "wrong"}})))
        .await
        .unwrap();
    wait_until(&api, "scoring", "reports Unauthorized", |cr| {
        condition(cr.and_then(|c| c.status.as_ref()), "Synced")
            .is_some_and(|(s, r, _)| s == "False" && r == "Unauthorized")
    })
    .await;
    let warnings = events(&client, &ns.name, "scoring").await;
    assert!(warnings.contains(&("Warning".into(), "Unauthorized".into())), "{warnings:?}");
    secrets
        .patch("ubiops", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"token": "test-token"}})))
        .await
        .unwrap();
    wait_until(&api, "scoring", "recovers", |cr| {
        condition(cr.and_then(|c| c.status.as_ref()), "Synced")
            .is_some_and(|(s, r, _)| s == "True" && r == "ReconcileSuccess")
    })
    .await;

    // Delete: the remote object goes, then the finalizer.
    api.delete("scoring", &DeleteParams::default()).await.unwrap();
    wait_until(&api, "scoring", "is deleted", |cr| cr.is_none()).await;
    assert!(sim_services(&origin).await.is_empty(), "remote service left behind");
    controller.abort();
}

#[tokio::test]
async fn orphan_keeps_the_remote_and_observe_only_never_writes() {
    let ns = TestNamespace::new("ubi-policy").await;
    let sim = spawn("ubiops", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO }).await.unwrap();
    let origin = sim.url.trim_end_matches("/v2.1").to_string();
    let client = ns.client.clone();
    connect(&client, &ns.name, "ubiops", &sim.url, "token", "test-token").await;
    // An existing service, made by someone else, for ObserveOnly to find.
    reqwest::Client::new()
        .post(format!("{origin}/_sim/seed"))
        .json(&json!({"project": "proj", "service": {"name": "existing", "deployment": "dep-1", "port": 80}}))
        .send()
        .await
        .unwrap();

    let controller = spawn_controller::<UbiOps>(&client, &ns.name);
    let api: Api<UbiService> = Api::namespaced(client.clone(), &ns.name);
    let spec = |name: &str, extra: Value| {
        let mut spec = json!({"connectionRef": {"name": "ubiops"}, "project": "proj", "name": name, "deployment": "dep-1", "port": 8080});
        json_patch_merge(&mut spec, extra);
        serde_json::from_value::<UbiService>(json!({"apiVersion": "tether.dev/v1alpha1", "kind": "UbiService",
            "metadata": {"name": name}, "spec": spec}))
        .unwrap()
    };
    api.create(
        &PostParams::default(),
        &spec("watched", json!({"managementPolicy": "ObserveOnly", "name": "existing"})),
    )
    .await
    .unwrap();
    api.create(&PostParams::default(), &spec("kept", json!({"deletionPolicy": "Orphan"}))).await.unwrap();

    let watched = wait_until(&api, "watched", "observes the existing service", |cr| {
        cr.and_then(|c| c.status.as_ref()?.external_id.clone()).is_some()
    })
    .await
    .unwrap();
    assert_eq!(
        sim_services(&origin).await.iter().find(|s| s["name"] == "existing").unwrap()["port"],
        80,
        "ObserveOnly changed the remote"
    );
    assert!(watched.metadata.finalizers.unwrap_or_default().is_empty(), "ObserveOnly needs no finalizer");

    wait_until(&api, "kept", "becomes Ready", |cr| is_ready(cr.and_then(|c| c.status.as_ref()))).await;
    api.delete("kept", &DeleteParams::default()).await.unwrap();
    wait_until(&api, "kept", "is deleted", |cr| cr.is_none()).await;
    assert!(sim_services(&origin).await.iter().any(|s| s["name"] == "kept"), "Orphan must leave the remote object");
    let writes = sim_counter(&origin, "PATCH /v2.1/projects/{project_name}/services/{service_name}").await
        + sim_counter(&origin, "DELETE /v2.1/projects/{project_name}/services/{service_name}").await;
    assert_eq!(writes, 0);
    controller.abort();
}

fn json_patch_merge(base: &mut Value, patch: Value) {
    if let (Value::Object(b), Value::Object(p)) = (base, patch) {
        for (k, v) in p {
            b.insert(k, v);
        }
    }
}

/// A UbiService named `name` in project `proj`.
fn service(name: &str) -> UbiService {
    serde_json::from_value(json!({"apiVersion": "tether.dev/v1alpha1", "kind": "UbiService",
        "metadata": {"name": name},
        "spec": {"connectionRef": {"name": "ubiops"}, "project": "proj", "name": name, "deployment": "dep-1", "port": 8080}}))
    .unwrap()
}

#[tokio::test]
async fn a_new_resource_does_not_wait_behind_stuck_drift_checks() {
    let ns = TestNamespace::new("ubi-lanes").await;
    let sim = spawn("ubiops", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO }).await.unwrap();
    let origin = sim.url.trim_end_matches("/v2.1").to_string();
    let client = ns.client.clone();
    connect(&client, &ns.name, "ubiops", &sim.url, "token", "test-token").await;
    // One worker per lane, a drift check every second.
    let config = tether_controller::Config { concurrency: 1, ..tether_e2e::test_config() };
    let _controller = tether_e2e::spawn_controller_with::<UbiOps>(&client, &ns.name, config);
    let api: Api<UbiService> = Api::namespaced(client.clone(), &ns.name);
    for i in 0..3 {
        api.create(&PostParams::default(), &service(&format!("slow-{i}"))).await.unwrap();
    }
    for i in 0..3 {
        wait_until(&api, &format!("slow-{i}"), "is Ready", |cr| is_ready(cr.and_then(|c| c.status.as_ref()))).await;
    }

    // From now on the platform takes two minutes to answer a read of those three: their drift checks
    // hold the drift worker and queue behind it.
    let fault = json!({"method": "GET", "route": "/v2.1/projects/proj/services/slow-", "latencyMs": 120_000});
    let answer = reqwest::Client::new().post(format!("{origin}/_sim/faults")).json(&fault).send().await.unwrap();
    assert!(answer.status().is_success());
    tokio::time::sleep(Duration::from_secs(3)).await;

    api.create(&PostParams::default(), &service("fresh")).await.unwrap();
    let ready = wait_until(&api, "fresh", "is Ready while the drift checks are stuck", |cr| {
        is_ready(cr.and_then(|c| c.status.as_ref()))
    })
    .await;
    assert!(ready.is_some());
}
