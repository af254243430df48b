//! CivisService end to end: the reconciler against the real API server and the Civis simulator, finding
//! its service by the ownership marker and driving its deployments.

use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tether_api::CivisService;
use tether_controller::adapters::civis::Civis;
use tether_e2e::{connect, is_ready, spawn_controller, wait_until};
use tether_sim::{SimOptions, spawn};
use tether_testenv::TestNamespace;

fn deployment_state(cr: Option<&CivisService>) -> Option<String> {
    cr?.status.as_ref()?.at_provider.as_ref()?.state.clone()
}

async fn state(origin: &str) -> Value {
    reqwest::get(format!("{origin}_sim/state")).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn create_deploy_redeploy_stop_and_archive() {
    let ns = TestNamespace::new("civis").await;
    let sim =
        spawn("civis", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(150) }).await.unwrap();
    let client = ns.client.clone();
    connect(&client, &ns.name, "civis", &sim.url, "apiKey", "sim-key").await;
    let controller = spawn_controller::<Civis>(&client, &ns.name);

    let api: Api<CivisService> = Api::namespaced(client.clone(), &ns.name);
    let cr = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "CivisService", "metadata": {"name": "dash"},
        "spec": {"connectionRef": {"name": "civis"}, "name": "Sales dashboard", "description": "weekly",
                 "dockerImageName": "nginx", "dockerImageTag": "1.25", "cpu": 500, "memory": 1024,
                 "environmentVariables": {"LOG_LEVEL": "info"}}});
    let created = api.create(&PostParams::default(), &serde_json::from_value(cr).unwrap()).await.unwrap();
    let uid = created.metadata.uid.clone().unwrap();

    let ready = wait_until(&api, "dash", "runs", |cr| {
        is_ready(cr.and_then(|c| c.status.as_ref())) && deployment_state(cr).as_deref() == Some("running")
    })
    .await
    .unwrap();
    let services = state(&sim.url).await["services"].as_array().cloned().unwrap();
    assert_eq!(services.len(), 1, "exactly one service");
    assert_eq!(services[0]["description"], format!("weekly [tether:{uid}]"));
    let first_deployment = ready.status.unwrap().at_provider.unwrap().current_deployment_id.unwrap();

    // A new image tag redeploys: a new deployment, the old one terminated.
    api.patch("dash", &PatchParams::default(), &Patch::Merge(json!({"spec": {"dockerImageTag": "1.26"}})))
        .await
        .unwrap();
    let redeployed = wait_until(&api, "dash", "redeploys", |cr| {
        is_ready(cr.and_then(|c| c.status.as_ref()))
            && cr.and_then(|c| c.status.as_ref()?.observed_generation) == Some(2)
            && cr.and_then(|c| c.status.as_ref()?.at_provider.as_ref()?.current_deployment_id) != Some(first_deployment)
    })
    .await
    .unwrap();
    let deployments = state(&sim.url).await["deployments"].as_array().cloned().unwrap();
    assert_eq!(deployments.iter().filter(|d| d["state"] == "running").count(), 1);
    assert!(deployments.iter().any(|d| d["deploymentId"] == first_deployment && d["state"] == "terminated"));
    assert!(redeployed.status.unwrap().at_provider.unwrap().current_url.is_some());

    // deployed: false stops the service.
    api.patch("dash", &PatchParams::default(), &Patch::Merge(json!({"spec": {"deployed": false}}))).await.unwrap();
    wait_until(&api, "dash", "stops", |cr| deployment_state(cr).as_deref() == Some("terminated")).await;

    // Delete archives (Civis has no hard delete).
    api.delete("dash", &DeleteParams::default()).await.unwrap();
    wait_until(&api, "dash", "is deleted", |cr| cr.is_none()).await;
    assert_eq!(state(&sim.url).await["services"][0]["archived"], true);
    controller.abort();
}
