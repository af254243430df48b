//! The contract every kind keeps, checked the same way for all five from their examples/ manifests:
//! Ready with an external id; a steady state that writes nothing anywhere; paused makes no remote call;
//! ObserveOnly makes no remote write; Orphan leaves the remote object; a new resource adopts it by
//! annotation (and by natural key where names are unique); Delete removes it and releases the finalizer.
//! Remote calls are counted by the simulators (`/_sim/counters`): a write is any call but a GET.

use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tether_controller::adapter::Adapter;
use tether_controller::adapters::{apolo::Apolo, civis::Civis, iguazio::Iguazio, peak::Peak, ubiops::UbiOps};
use tether_e2e::{api_for, connect_with, create, manifests, spawn_controller};
use tether_sim::{SimOptions, spawn};
use tether_testenv::{TestNamespace, repo_root};

struct Kind {
    platform: &'static str,
    example: &'static str,
    credentials: &'static [(&'static str, &'static str)],
    /// A spec change, and the patch that takes it back.
    change: (Value, Value),
}

/// `(calls, writes)` the simulator has answered so far.
async fn calls(origin: &str) -> (u64, u64) {
    let counters: Value = reqwest::get(format!("{origin}/_sim/counters")).await.unwrap().json().await.unwrap();
    let counters = counters.as_object().cloned().unwrap_or_default();
    let count = |writes_only: bool| {
        counters.iter().filter(|(k, _)| !writes_only || !k.starts_with("GET ")).filter_map(|(_, v)| v.as_u64()).sum()
    };
    (count(false), count(true))
}

fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String)> {
    let conditions = obj.data["status"]["conditions"].as_array()?;
    let c = conditions.iter().find(|c| c["type"] == type_)?;
    Some((c["status"].as_str()?.to_string(), c["reason"].as_str()?.to_string()))
}

async fn wait_for(api: &Api<DynamicObject>, name: &str, what: &str, check: impl Fn(Option<&DynamicObject>) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let current = api.get_opt(name).await.unwrap();
        if check(current.as_ref()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name}: {what}: still {:?}", current.map(|c| c.data));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ready and Synced for the resource's current generation.
fn ready(obj: Option<&DynamicObject>) -> bool {
    obj.is_some_and(|o| {
        condition(o, "Ready").is_some_and(|(s, _)| s == "True")
            && condition(o, "Synced").is_some_and(|(s, _)| s == "True")
            && o.metadata.generation.is_some_and(|g| o.data["status"]["observedGeneration"] == g)
    })
}

async fn patch(api: &Api<DynamicObject>, name: &str, body: Value) {
    api.patch(name, &PatchParams::default(), &Patch::Merge(body)).await.unwrap();
}

async fn keeps_the_contract<A: Adapter>(kind: Kind) {
    let ns = TestNamespace::new(&format!("contract-{}", kind.platform)).await;
    let sim = spawn(kind.platform, "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(200) })
        .await
        .unwrap();
    let origin = reqwest::Url::parse(&sim.url).unwrap().origin().ascii_serialization();
    let client = ns.client.clone();
    connect_with(&client, &ns.name, kind.platform, &sim.url, kind.credentials).await;
    let documents = manifests(&repo_root().join("examples").join(kind.example));
    for secret in documents.iter().filter(|d| d["kind"] == "Secret") {
        create(&client, &ns.name, secret, false).await.unwrap();
    }
    let resource = documents.iter().find(|d| d["kind"] != "Secret" && d["kind"] != "Connection").unwrap().clone();
    let name = resource["metadata"]["name"].as_str().unwrap().to_string();
    let api = api_for(&client, &ns.name, &resource).await;
    let _controller = spawn_controller::<A>(&client, &ns.name);

    create(&client, &ns.name, &resource, false).await.unwrap();
    wait_for(&api, &name, "becomes Ready", ready).await;
    let first = api.get(&name).await.unwrap();
    let external_id = first.data["status"]["externalId"].as_str().expect("an external id").to_string();

    // Steady state: three drift periods, no write to the API server or to the platform.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, (_, writes)) = (api.get(&name).await.unwrap(), calls(&origin).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = api.get(&name).await.unwrap();
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "{}: status rewritten",
        kind.platform
    );
    assert_eq!(calls(&origin).await.1, writes, "{}: remote writes in a steady state", kind.platform);

    // Paused: no remote call at all.
    patch(&api, &name, json!({"metadata": {"annotations": {"tether.dev/paused": "true"}}})).await;
    wait_for(&api, &name, "is paused", |o| o.and_then(|o| condition(o, "Synced")).is_some_and(|(_, r)| r == "Paused"))
        .await;
    let (paused_calls, _) = calls(&origin).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(calls(&origin).await.0, paused_calls, "{}: remote calls while paused", kind.platform);
    patch(&api, &name, json!({"metadata": {"annotations": {"tether.dev/paused": null}}})).await;

    // ObserveOnly: a spec change is observed, never written.
    patch(&api, &name, json!({"spec": {"managementPolicy": "ObserveOnly"}})).await;
    let (_, writes) = calls(&origin).await;
    patch(&api, &name, json!({"spec": kind.change.0})).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(calls(&origin).await.1, writes, "{}: remote writes under ObserveOnly", kind.platform);
    patch(&api, &name, json!({"spec": kind.change.1})).await;
    patch(&api, &name, json!({"spec": {"managementPolicy": "Full"}})).await;
    wait_for(&api, &name, "is Ready again", ready).await;

    // Orphan: the resource goes, the remote object stays untouched.
    patch(&api, &name, json!({"spec": {"deletionPolicy": "Orphan"}})).await;
    wait_for(&api, &name, "records Orphan", ready).await;
    let (_, writes) = calls(&origin).await;
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_for(&api, &name, "is deleted", |o| o.is_none()).await;
    assert_eq!(calls(&origin).await.1, writes, "{}: Orphan wrote to the platform", kind.platform);

    // A new resource adopts the orphan by annotation: same external id, nothing created.
    let mut again = resource.clone();
    again["metadata"]["annotations"] = json!({"tether.dev/external-id": external_id});
    let creates = |c: &Value| {
        c.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("POST "))
            .filter_map(|(_, v)| v.as_u64())
            .sum::<u64>()
    };
    let counters: Value = reqwest::get(format!("{origin}/_sim/counters")).await.unwrap().json().await.unwrap();
    create(&client, &ns.name, &again, false).await.unwrap();
    wait_for(&api, &name, "adopts and is Ready", ready).await;
    let adopted = api.get(&name).await.unwrap();
    assert_eq!(adopted.data["status"]["externalId"], Value::from(external_id.clone()), "{}", kind.platform);
    if kind.platform != "iguazio" {
        // Iguazio has no create call: every change, a create included, is a PUT of the manifest.
        let now: Value = reqwest::get(format!("{origin}/_sim/counters")).await.unwrap().json().await.unwrap();
        assert_eq!(creates(&now), creates(&counters), "{}: adoption created something", kind.platform);
    }

    // Delete: the remote object goes, then the finalizer.
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_for(&api, &name, "is deleted", |o| o.is_none()).await;
    assert!(calls(&origin).await.1 > writes, "{}: Delete wrote nothing", kind.platform);
}

#[tokio::test]
async fn appservice_keeps_the_contract() {
    let credentials = &[("username", "admin"), ("accessKey", "test-key")];
    let change = (json!({"description": "changed"}), json!({"description": "Shared Jupyter for the data team"}));
    keeps_the_contract::<Iguazio>(Kind { platform: "iguazio", example: "appservice.yaml", credentials, change }).await;
}

#[tokio::test]
async fn civisservice_keeps_the_contract() {
    let credentials = &[("apiKey", "sim-key")];
    let change = (json!({"description": "changed"}), json!({"description": "Weekly sales dashboard"}));
    keeps_the_contract::<Civis>(Kind { platform: "civis", example: "civisservice.yaml", credentials, change }).await;
}

#[tokio::test]
async fn apoloapp_keeps_the_contract() {
    let credentials = &[("token", "tok")];
    let change = (json!({"input": {"storage_gb": 30}}), json!({"input": {"storage_gb": 20}}));
    keeps_the_contract::<Apolo>(Kind { platform: "apolo", example: "apoloapp.yaml", credentials, change }).await;
}

#[tokio::test]
async fn ubiservice_keeps_the_contract() {
    let credentials = &[("token", "test-token")];
    let change = (json!({"description": "changed"}), json!({"description": "Real-time scoring endpoint"}));
    keeps_the_contract::<UbiOps>(Kind { platform: "ubiops", example: "ubiservice.yaml", credentials, change }).await;
}

#[tokio::test]
async fn peakwebapp_keeps_the_contract() {
    let credentials = &[("apiKey", "sim-token")];
    let change = (json!({"title": "changed"}), json!({"title": "Forecast explorer"}));
    keeps_the_contract::<Peak>(Kind { platform: "peak", example: "peakwebapp.yaml", credentials, change }).await;
}
