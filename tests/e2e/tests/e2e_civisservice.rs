//! CivisService end to end: the reconciler against the real API server and the Civis simulator, finding
//! its service by the ownership marker and driving its deployments.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tether_api::{CivisService, Connection};
use tether_controller::adapters::civis::Civis;
use tether_controller::{Config, run};
use tether_sim::{SimOptions, spawn};
use tether_testenv::TestNamespace;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn wait_until<F: Fn(Option<&CivisService>) -> bool>(
    api: &Api<CivisService>,
    name: &str,
    what: &str,
    check: F,
) -> Option<CivisService> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let current = api.get_opt(name).await.expect("get");
        if check(current.as_ref()) {
            return current;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: still {:?}", current.map(|c| c.status));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_ready(cr: Option<&CivisService>) -> bool {
    cr.and_then(|c| {
        c.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready").map(|c| format!("{:?}", c.status))
    })
    .is_some_and(|s| s == "True")
}

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
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "civis"}, "stringData": {"api_key": "sim-key"}});
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &serde_json::from_value(secret).unwrap())
        .await
        .unwrap();
    let connection = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "civis"},
        "spec": {"platform": "civis", "endpoint": sim.url, "credentials": {"apiKey": {"name": "civis", "key": "api_key"}}}});
    Api::<Connection>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &serde_json::from_value(connection).unwrap())
        .await
        .unwrap();
    let config = Config {
        poll_interval: Duration::from_secs(1),
        converge_interval: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
    };
    let controller = tokio::spawn({
        let (client, namespace) = (client.clone(), ns.name.clone());
        async move { run::<Civis>(client, Some(&namespace), config, std::future::pending()).await }
    });

    let api: Api<CivisService> = Api::namespaced(client.clone(), &ns.name);
    let cr = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "CivisService", "metadata": {"name": "dash"},
        "spec": {"connectionRef": {"name": "civis"}, "name": "Sales dashboard", "description": "weekly",
                 "dockerImageName": "nginx", "dockerImageTag": "1.25", "cpu": 500, "memory": 1024,
                 "environmentVariables": {"LOG_LEVEL": "info"}}});
    let created = api.create(&PostParams::default(), &serde_json::from_value(cr).unwrap()).await.unwrap();
    let uid = created.metadata.uid.clone().unwrap();

    let ready =
        wait_until(&api, "dash", "runs", |cr| is_ready(cr) && deployment_state(cr).as_deref() == Some("running"))
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
        is_ready(cr)
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
