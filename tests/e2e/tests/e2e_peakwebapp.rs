//! PeakWebapp end to end: the reconciler against the real API server and the Peak simulator, through the
//! platform's asynchronous states.

use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tether_api::PeakWebapp;
use tether_controller::adapters::peak::Peak;
use tether_e2e::{connect, is_ready, spawn_controller, wait_until};
use tether_sim::{SimOptions, spawn};
use tether_testenv::TestNamespace;

fn ready(cr: Option<&PeakWebapp>) -> Option<(String, String, String)> {
    let c = cr?.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((format!("{:?}", c.status), c.reason.clone(), c.message.clone()))
}

async fn webapps(origin: &str) -> Vec<Value> {
    let state: Value = reqwest::get(format!("{origin}/_sim/state")).await.unwrap().json().await.unwrap();
    state["webapps"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn create_redeploy_failure_and_delete_through_the_async_states() {
    let ns = TestNamespace::new("peak").await;
    let sim =
        spawn("peak", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(300) }).await.unwrap();
    let client = ns.client.clone();
    connect(&client, &ns.name, "peak", &sim.url, "apiKey", "sim-token").await;
    let controller = spawn_controller::<Peak>(&client, &ns.name);

    let api: Api<PeakWebapp> = Api::namespaced(client.clone(), &ns.name);
    let cr = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "PeakWebapp", "metadata": {"name": "explorer"},
        "spec": {"connectionRef": {"name": "peak"}, "name": "explorer", "title": "Explorer",
                 "imageDetails": {"imageId": 100, "versionId": 100}, "resources": {"instanceTypeId": 1}}});
    api.create(&PostParams::default(), &serde_json::from_value(cr).unwrap()).await.unwrap();

    // CREATING is reported as Ready=False Creating, then AVAILABLE as Ready=True.
    wait_until(&api, "explorer", "reports Creating", |cr| {
        ready(cr).is_some_and(|(s, r, _)| s == "False" && r == "Creating")
    })
    .await;
    let created =
        wait_until(&api, "explorer", "becomes Ready", |cr| is_ready(cr.and_then(|c| c.status.as_ref()))).await.unwrap();
    let status = created.status.unwrap();
    assert_eq!(status.at_provider.as_ref().and_then(|a| a.state.as_deref()), Some("AVAILABLE"));
    assert_eq!(webapps(&sim.url).await.len(), 1, "exactly one webapp");

    // A new image version redeploys (DEPLOYING), then the resource is Ready at generation 2.
    api.patch(
        "explorer",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"imageDetails": {"versionId": 101}}})),
    )
    .await
    .unwrap();
    wait_until(&api, "explorer", "redeploys", |cr| {
        is_ready(cr.and_then(|c| c.status.as_ref()))
            && cr.and_then(|c| c.status.as_ref()?.observed_generation) == Some(2)
            && cr.and_then(|c| c.status.as_ref()?.at_provider.as_ref()?.image_version_id) == Some(101)
    })
    .await;

    // A failure state on the platform shows as Ready=False with the platform's words.
    let id = status.external_id.unwrap();
    reqwest::Client::new().post(format!("{}/_sim/fail", sim.url)).json(&json!({"id": id})).send().await.unwrap();
    let failed = wait_until(&api, "explorer", "reports the failure", |cr| {
        ready(cr).is_some_and(|(s, r, _)| s == "False" && r == "PlatformError")
    })
    .await;
    assert!(ready(failed.as_ref()).unwrap().2.contains("CREATE_FAILED"));

    // Delete waits through DELETING until the webapp is gone, then releases the finalizer.
    api.delete("explorer", &DeleteParams::default()).await.unwrap();
    wait_until(&api, "explorer", "is deleted", |cr| cr.is_none()).await;
    assert!(webapps(&sim.url).await.is_empty(), "the webapp is gone from Peak");
    controller.abort();
}
