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

/// A test namespace with a Civis simulator, the Connection `civis` to it, and the Civis controller.
struct World {
    ns: TestNamespace,
    sim: tether_sim::Endpoint,
    api: Api<CivisService>,
    _controller: tokio::task::JoinHandle<()>,
}

impl World {
    async fn new(name: &str, delay: Duration) -> Self {
        let ns = TestNamespace::new(name).await;
        let sim = spawn("civis", "127.0.0.1:0".parse().unwrap(), SimOptions { delay }).await.unwrap();
        connect(&ns.client, &ns.name, "civis", &sim.url, "apiKey", "sim-key").await;
        let _controller = spawn_controller::<Civis>(&ns.client, &ns.name);
        let api = Api::namespaced(ns.client.clone(), &ns.name);
        Self { ns, sim, api, _controller }
    }
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

/// The service's environment as the platform has it.
async fn environment(platform: &tether_platforms::civis::Client, id: i64) -> Value {
    platform.get(id).await.unwrap().fields["environmentVariables"].clone()
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: timed out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn secret_environment_shares_projects_tokens_and_redeploy_on_request() {
    use k8s_openapi::api::core::v1::Secret;
    use tether_platforms::{HttpConfig, Secret as Credential, civis};
    let ns = TestNamespace::new("civis-access").await;
    let sim =
        spawn("civis", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(150) }).await.unwrap();
    let client = ns.client.clone();
    connect(&client, &ns.name, "civis", &sim.url, "apiKey", "sim-key").await;
    let platform = civis::Client::new(HttpConfig::new(sim.url.parse().unwrap()), &Credential::new("sim-key")).unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let db =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "s3cret"}});
    tether_e2e::create(&client, &ns.name, &db, false).await.unwrap();
    let _controller = spawn_controller::<Civis>(&client, &ns.name);

    let api: Api<CivisService> = Api::namespaced(client.clone(), &ns.name);
    let cr = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "CivisService", "metadata": {"name": "app"},
        "spec": {"connectionRef": {"name": "civis"}, "writeOutputsTo": "app-outputs", "name": "App",
                 "dockerImageName": "nginx", "environmentVariables": {"LOG_LEVEL": "info"},
                 "environmentVariablesFrom": [{"name": "DB_PASSWORD", "secretKeyRef": {"name": "db", "key": "password"}}],
                 "shares": {"users": [{"id": 5, "permissionLevel": "read"}], "groups": [{"id": 9, "permissionLevel": "write"}]},
                 "projects": [1, 2], "tokens": [{"name": "ci", "machineToken": true}]}});
    api.create(&PostParams::default(), &serde_json::from_value(cr).unwrap()).await.unwrap();
    let ready = wait_until(&api, "app", "runs", |cr| {
        is_ready(cr.and_then(|c| c.status.as_ref())) && deployment_state(cr).as_deref() == Some("running")
    })
    .await
    .unwrap();
    let status = ready.status.unwrap();
    let id: i64 = status.external_id.unwrap().parse().unwrap();

    // The Secret's value is in the environment; shares, projects and the token are as declared.
    assert_eq!(environment(&platform, id).await, json!({"LOG_LEVEL": "info", "DB_PASSWORD": "s3cret"}));
    let shares = platform.shares(id).await.unwrap();
    assert_eq!(shares["readers"]["users"][0]["id"], 5);
    assert_eq!(shares["writers"]["groups"][0]["id"], 9);
    let mut projects = platform.projects(id).await.unwrap();
    projects.sort();
    assert_eq!(projects, [1, 2]);
    let tokens = platform.tokens(id).await.unwrap();
    assert_eq!(tokens.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["ci"]);
    assert_eq!(status.at_provider.unwrap().token_ids.unwrap_or_default().get("ci"), Some(&tokens[0].id));
    let outputs = secrets.get("app-outputs").await.unwrap().data.unwrap_or_default();
    let token = String::from_utf8(outputs["token-ci"].0.clone()).unwrap();
    assert!(token.starts_with("civis-sim-"), "the token's secret is in the outputs Secret");

    // A new value in the Secret reaches the service (the Secret is watched).
    let rotate = json!({"stringData": {"password": "rotated"}});
    secrets.patch("db", &PatchParams::default(), &Patch::Merge(rotate)).await.unwrap();
    wait_for("the new password is deployed", || async { environment(&platform, id).await["DB_PASSWORD"] == "rotated" })
        .await;

    // Access changes: the group goes, the user becomes a manager, project 1 is left for 3, the token is revoked.
    let change = json!({"spec": {"shares": {"users": [{"id": 5, "permissionLevel": "manage"}], "groups": []},
                                 "projects": [2, 3], "tokens": []}});
    api.patch("app", &PatchParams::default(), &Patch::Merge(change)).await.unwrap();
    wait_for("access follows the spec", || async {
        let shares = platform.shares(id).await.unwrap();
        let mut projects = platform.projects(id).await.unwrap();
        projects.sort();
        let managers: Vec<i64> =
            shares["owners"]["users"].as_array().unwrap().iter().filter_map(|u| u["id"].as_i64()).collect();
        managers.contains(&5)
            && shares["writers"]["groups"].as_array().unwrap().is_empty()
            && projects == [2, 3]
            && platform.tokens(id).await.unwrap().is_empty()
    })
    .await;

    // Redeploy on request: a deployment older than the annotation's time is replaced, once.
    let before = wait_until(&api, "app", "settles", |cr| {
        is_ready(cr.and_then(|c| c.status.as_ref()))
            && cr.and_then(|c| c.status.as_ref()?.observed_generation) == Some(2)
            && deployment_state(cr).as_deref() == Some("running")
    })
    .await
    .unwrap();
    let deployment = before.status.unwrap().at_provider.unwrap().current_deployment_id;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let ask = json!({"metadata": {"annotations": {"tether.dev/redeploy": now}}});
    api.patch("app", &PatchParams::default(), &Patch::Merge(ask)).await.unwrap();
    wait_until(&api, "app", "redeploys on request", |cr| {
        let at = cr.and_then(|c| c.status.as_ref()?.at_provider.clone());
        at.as_ref().is_some_and(|a| a.current_deployment_id != deployment && a.state.as_deref() == Some("running"))
    })
    .await;
    let count = || async { state(&sim.url).await["deployments"].as_array().map_or(0, Vec::len) };
    let deployments = count().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count().await, deployments, "one redeploy per request");

    // A time that is not RFC 3339 is refused with a message, and nothing is redeployed.
    let bad = json!({"metadata": {"annotations": {"tether.dev/redeploy": "now please"}}});
    api.patch("app", &PatchParams::default(), &Patch::Merge(bad)).await.unwrap();
    let refused = wait_until(&api, "app", "refuses the request", |cr| {
        tether_e2e::condition(cr.and_then(|c| c.status.as_ref()), "Synced").is_some_and(|(_, r, _)| r == "InvalidSpec")
    })
    .await
    .unwrap();
    let message = tether_e2e::condition(refused.status.as_ref(), "Synced").unwrap().2;
    assert!(message.contains("RFC 3339"), "{message}");
    assert_eq!(count().await, deployments);
}

#[tokio::test]
async fn several_services_with_the_marker_keep_one_and_say_so_in_an_event() {
    let World { ns, sim, api, _controller } = World::new("civis-dup", Duration::ZERO).await;
    // Paused, so its UID (the marker) is known before Tether looks for its service.
    let cr = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "CivisService",
        "metadata": {"name": "dup", "annotations": {"tether.dev/paused": "true"}},
        "spec": {"connectionRef": {"name": "civis"}, "name": "Dup", "dockerImageName": "nginx", "deployed": false}});
    let created = api.create(&PostParams::default(), &serde_json::from_value(cr).unwrap()).await.unwrap();
    let marker = format!("[tether:{}]", created.metadata.uid.unwrap());
    for _ in 0..2 {
        let seed = json!({"service": {"name": "Dup", "description": marker, "dockerImageName": "nginx"}});
        reqwest::Client::new().post(format!("{}_sim/seed", sim.url)).json(&seed).send().await.unwrap();
    }
    let ids: Vec<i64> =
        state(&sim.url).await["services"].as_array().unwrap().iter().filter_map(|s| s["id"].as_i64()).collect();
    assert_eq!(ids.len(), 2);

    api.patch(
        "dup",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"tether.dev/paused": null}}})),
    )
    .await
    .unwrap();
    let ready = wait_until(&api, "dup", "adopts one", |cr| is_ready(cr.and_then(|c| c.status.as_ref()))).await.unwrap();
    let kept: i64 = ready.status.unwrap().external_id.unwrap().parse().unwrap();
    assert_eq!(kept, *ids.iter().max().unwrap(), "the newest is kept");
    assert_eq!(state(&sim.url).await["services"].as_array().unwrap().len(), 2, "nothing created, nothing removed");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(ns.client.clone(), &ns.name);
    let reasons: Vec<String> =
        events.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect();
    assert!(reasons.iter().any(|r| r == "DuplicateRemoteObjects"), "{reasons:?}");
}

#[tokio::test]
async fn a_crashed_deployment_is_reported_not_restarted_until_the_spec_changes() {
    let World { ns: _ns, sim, api, _controller } = World::new("civis-crash", Duration::ZERO).await;
    // The simulator crashes every deployment of an image whose name contains "fail".
    let cr = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "CivisService",
        "metadata": {"name": "crashy", "annotations": {"tether.dev/poll-interval": "1s"}},
        "spec": {"connectionRef": {"name": "civis"}, "name": "Crashy", "dockerImageName": "will-fail"}});
    api.create(&PostParams::default(), &serde_json::from_value(cr).unwrap()).await.unwrap();
    let failed = wait_until(&api, "crashy", "reports the crash", |cr| {
        let ready = cr.and_then(|c| c.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready").cloned());
        ready.is_some_and(|c| c.reason == "PlatformError" && c.message.contains("CrashLoopBackOff"))
    })
    .await
    .unwrap();
    let ready = failed.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(ready.message.contains("tether.dev/redeploy"), "says what to do: {}", ready.message);

    // Several drift checks later there is still one deployment: no restart loop.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let deployments = || async { state(&sim.url).await["deployments"].as_array().map_or(0, Vec::len) };
    assert_eq!(deployments().await, 1, "the crashed deployment was restarted");

    // A fixed image is a spec change: a new deployment, Ready.
    api.patch("crashy", &PatchParams::default(), &Patch::Merge(json!({"spec": {"dockerImageName": "nginx"}})))
        .await
        .unwrap();
    wait_until(&api, "crashy", "runs the fixed image", |cr| is_ready(cr.and_then(|c| c.status.as_ref())))
        .await
        .unwrap();
    assert_eq!(deployments().await, 2);
}
