//! ApoloApp end to end: the reconciler against the real API server and the Apolo simulator, finding its
//! app by the ownership marker.

use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tether_api::ApoloApp;
use tether_controller::adapters::apolo::Apolo;
use tether_e2e::{connect, is_ready, spawn_controller, wait_until};
use tether_sim::{SimOptions, spawn};
use tether_testenv::TestNamespace;

async fn apps(origin: &str) -> Vec<Value> {
    let state: Value = reqwest::get(format!("{origin}/_sim/state")).await.unwrap().json().await.unwrap();
    state["apps"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn install_reconfigure_upgrade_and_uninstall_by_marker() {
    let ns = TestNamespace::new("apolo").await;
    let sim =
        spawn("apolo", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(150) }).await.unwrap();
    let origin = sim.url.trim_end_matches("/api/v1").to_string();
    let client = ns.client.clone();
    connect(&client, &ns.name, "apolo", &sim.url, "token", "tok").await;
    let controller = spawn_controller::<Apolo>(&client, &ns.name);

    let api: Api<ApoloApp> = Api::namespaced(client.clone(), &ns.name);
    let cr = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "ApoloApp", "metadata": {"name": "db"},
        "spec": {"connectionRef": {"name": "apolo"}, "writeOutputsTo": "db-outputs", "cluster": "default", "org": "superorg", "project": "test3",
                 "templateName": "postgres", "templateVersion": "v1.0.0", "displayName": "Feature store",
                 "input": {"preset": "cpu-small", "storage_gb": 20}}});
    let created = api.create(&PostParams::default(), &serde_json::from_value(cr).unwrap()).await.unwrap();
    let uid = created.metadata.uid.clone().unwrap();

    let ready =
        wait_until(&api, "db", "becomes Ready", |cr| is_ready(cr.and_then(|c| c.status.as_ref()))).await.unwrap();
    let status = ready.status.unwrap();
    let installed = apps(&origin).await;
    assert_eq!(installed.len(), 1, "exactly one app installed");
    assert_eq!(installed[0]["display_name"], format!("Feature store [tether:{uid}]"));
    assert_eq!(status.external_id.as_deref(), installed[0]["id"].as_str());

    // The app's outputs land in the Secret the resource owns.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns.name);
    let outputs = wait_until(&secrets, "db-outputs", "outputs written", |s| {
        s.and_then(|s| s.data.as_ref()).is_some_and(|d| d.contains_key("admin_password"))
    })
    .await
    .unwrap();
    let data = outputs.data.unwrap();
    assert!(data.contains_key("instance_url") && data.contains_key("endpoint"), "{:?}", data.keys());

    // Input change and upgrade: configure, a new revision, Ready again at generation 2.
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"templateVersion": "v1.1.0", "input": {"preset": "cpu-small", "storage_gb": 50}}}),
        ),
    )
    .await
    .unwrap();
    wait_until(&api, "db", "applies generation 2", |cr| {
        is_ready(cr.and_then(|c| c.status.as_ref()))
            && cr.and_then(|c| c.status.as_ref()?.observed_generation) == Some(2)
            && cr.and_then(|c| c.status.as_ref()?.at_provider.as_ref()?.template_version.clone()).as_deref()
                == Some("v1.1.0")
    })
    .await;
    let app = &apps(&origin).await[0];
    assert_eq!((app["input"]["storage_gb"].as_i64(), app["template_version"].as_str()), (Some(50), Some("v1.1.0")));
    assert_eq!(apps(&origin).await.len(), 1, "still one app");

    // Pinned to revision 1: its input comes back and stays, whatever `input` says, until unpinned.
    api.patch("db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"rollbackToRevision": 1}}))).await.unwrap();
    wait_until(&api, "db", "rolls back", |cr| {
        is_ready(cr.and_then(|c| c.status.as_ref()))
            && cr.and_then(|c| c.status.as_ref()?.at_provider.as_ref()?.applied_rollback) == Some(1)
    })
    .await;
    assert_eq!(apps(&origin).await[0]["input"]["storage_gb"], 20);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(apps(&origin).await[0]["input"]["storage_gb"], 20, "the pin holds across drift checks");
    api.patch("db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"rollbackToRevision": null}})))
        .await
        .unwrap();
    wait_until(&api, "db", "follows input again", |cr| {
        is_ready(cr.and_then(|c| c.status.as_ref()))
            && cr.and_then(|c| c.status.as_ref()?.observed_generation) == Some(4)
            && cr.and_then(|c| c.status.as_ref()?.at_provider.as_ref()?.applied_rollback).is_none()
    })
    .await;
    assert_eq!(apps(&origin).await[0]["input"]["storage_gb"], 50);

    // Delete: uninstall, wait until uninstalled, release the finalizer.
    api.delete("db", &DeleteParams::default()).await.unwrap();
    wait_until(&api, "db", "is deleted", |cr| cr.is_none()).await;
    assert_eq!(apps(&origin).await[0]["state"], "uninstalled");
    controller.abort();
}

#[tokio::test]
async fn adoption_by_annotation_and_a_missing_id_is_refused() {
    use tether_platforms::{HttpConfig, Secret as Credential, apolo};
    let ns = TestNamespace::new("apolo-adopt").await;
    let sim =
        spawn("apolo", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(100) }).await.unwrap();
    let origin = sim.url.trim_end_matches("/api/v1").to_string();
    let client = ns.client.clone();
    connect(&client, &ns.name, "apolo", &sim.url, "token", "tok").await;
    // An app installed by hand before Tether.
    let platform = apolo::Client::new(
        HttpConfig::new(sim.url.parse().unwrap()),
        &Credential::new("tok"),
        "default",
        "superorg",
        "test3",
    )
    .unwrap();
    let existing =
        platform.install("postgres", "v1.0.0", &json!({"preset": "cpu-small"}), Some("Legacy")).await.unwrap();
    let _controller = spawn_controller::<Apolo>(&client, &ns.name);

    let api: Api<ApoloApp> = Api::namespaced(client.clone(), &ns.name);
    let body = |name: &str, id: &str| -> ApoloApp {
        serde_json::from_value(json!({"apiVersion": "tether.dev/v1alpha1", "kind": "ApoloApp",
            "metadata": {"name": name, "annotations": {"tether.dev/external-id": id}},
            "spec": {"connectionRef": {"name": "apolo"}, "cluster": "default", "org": "superorg", "project": "test3",
                     "templateName": "postgres", "templateVersion": "v1.0.0", "displayName": "Legacy",
                     "input": {"preset": "cpu-small"}}}))
        .unwrap()
    };
    let adopted = api.create(&PostParams::default(), &body("legacy", &existing.id)).await.unwrap();
    let ready =
        wait_until(&api, "legacy", "adopts and is Ready", |cr| is_ready(cr.and_then(|c| c.status.as_ref()))).await;
    assert_eq!(ready.unwrap().status.unwrap().external_id.as_deref(), Some(existing.id.as_str()));
    let all = apps(&origin).await;
    assert_eq!(all.len(), 1, "adopted, not installed again");
    // The marker is added, so the app is found again even without the annotation.
    let uid = adopted.metadata.uid.unwrap();
    assert_eq!(all[0]["display_name"], format!("Legacy [tether:{uid}]"));

    // An id the platform does not have: refused, nothing installed.
    api.create(&PostParams::default(), &body("ghost", "no-such-app")).await.unwrap();
    let refused = wait_until(&api, "ghost", "is refused", |cr| {
        tether_e2e::condition(cr.and_then(|c| c.status.as_ref()), "Synced").is_some_and(|(_, r, _)| r == "InvalidSpec")
    })
    .await
    .unwrap();
    let stalled = tether_e2e::condition(refused.status.as_ref(), "Stalled").unwrap();
    assert_eq!(stalled.0, "True", "a spec only a human can fix stalls");
    assert_eq!(apps(&origin).await.len(), 1);
}
