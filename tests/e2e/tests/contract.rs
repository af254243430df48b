//! The contract every kind keeps, checked the same way for all five from their examples/ manifests:
//! Ready with an external id; a steady state that writes nothing anywhere; a spec change reaches the
//! platform and Ready follows the new generation; drift made by another client on the platform is put back
//! within a drift period; wrong credentials show as Synced=False Unauthorized until the Secret is fixed,
//! with no restart; paused makes no remote call;
//! ObserveOnly makes no remote write; Orphan leaves the remote object; a new resource adopts it by
//! annotation (and by natural key where names are unique); the platform's failure state shows as
//! Ready=False with the platform's words; a delete while paused waits without a call; Delete removes it and
//! releases the finalizer.
//! Remote calls are counted by the simulators (`/_sim/counters`): a write is any call but a GET.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tether_controller::adapter::Adapter;
use tether_controller::adapters::{apolo::Apolo, civis::Civis, iguazio::Iguazio, peak::Peak, ubiops::UbiOps};
use tether_e2e::{api_for, connect_with, create, manifests, sim_credentials, spawn_controller};
use tether_sim::{SimOptions, spawn};
use tether_testenv::{TestNamespace, repo_root};

struct Kind {
    platform: &'static str,
    example: &'static str,
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

/// One remote field each kind's example sets, as the platform holds it now (what drift changes).
async fn probe(platform: &str, url: &str, cr: &DynamicObject) -> Value {
    use tether_platforms::{HttpConfig, Secret as Credential};
    let config = HttpConfig::new(url.parse().unwrap());
    let id = cr.data["status"]["externalId"].as_str().unwrap().to_string();
    match platform {
        "iguazio" => {
            let client = tether_platforms::iguazio::Client::new(config, "admin", &Credential::new("test-key")).unwrap();
            client.manifest().await.unwrap().service(&id).unwrap().spec["description"].clone()
        }
        "civis" => {
            let client = tether_platforms::civis::Client::new(config, &Credential::new("sim-key")).unwrap();
            // The description as declared, without the ownership marker Tether appends.
            let description = client.get(id.parse().unwrap()).await.unwrap().description.unwrap_or_default();
            Value::from(description.split(" [tether:").next().unwrap_or_default())
        }
        "apolo" => {
            let client =
                tether_platforms::apolo::Client::new(config, &Credential::new("tok"), "default", "superorg", "test3")
                    .unwrap();
            client.input(&id, None).await.unwrap()["input"]["storage_gb"].clone()
        }
        "ubiops" => {
            let client = tether_platforms::ubiops::Client::new(config, &Credential::new("test-token")).unwrap();
            client.services_get("proj", cr.data["spec"]["name"].as_str().unwrap()).await.unwrap().fields["description"]
                .clone()
        }
        "peak" => {
            let client = tether_platforms::peak::Client::new(config, &Credential::new("sim-token")).unwrap();
            client.describe(&id).await.unwrap().fields["title"].clone()
        }
        other => panic!("no probe for {other}"),
    }
}

/// Waits until [`probe`] reads `expected` on the platform.
async fn remote_becomes(platform: &str, url: &str, cr: &DynamicObject, expected: &Value, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = probe(platform, url, cr).await;
        if &now == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{platform}: {what}: the platform holds {now}, not {expected}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The one value a spec change sets (`{"input": {"storage_gb": 30}}` → `30`).
fn leaf(change: &Value) -> Value {
    match change.as_object() {
        Some(fields) if fields.len() == 1 => leaf(fields.values().next().unwrap()),
        _ => change.clone(),
    }
}

/// Another client changes that field on the platform.
async fn drift(platform: &str, url: &str, cr: &DynamicObject) {
    use tether_platforms::{HttpConfig, Secret as Credential};
    let config = HttpConfig::new(url.parse().unwrap());
    let id = cr.data["status"]["externalId"].as_str().unwrap().to_string();
    match platform {
        "iguazio" => {
            let client = tether_platforms::iguazio::Client::new(config, "admin", &Credential::new("test-key")).unwrap();
            let mut manifest = client.manifest().await.unwrap();
            let entry = manifest.app_services.iter_mut().find(|e| e.name() == id).unwrap();
            entry.spec.insert("description".into(), json!("drifted"));
            entry.spec.insert("mark_as_changed".into(), json!(true));
            client.put_manifest(&manifest).await.unwrap();
        }
        "civis" => {
            let client = tether_platforms::civis::Client::new(config, &Credential::new("sim-key")).unwrap();
            let fields = json!({"description": "drifted"}).as_object().cloned().unwrap();
            client.patch(id.parse().unwrap(), &fields).await.unwrap();
        }
        "apolo" => {
            let client =
                tether_platforms::apolo::Client::new(config, &Credential::new("tok"), "default", "superorg", "test3")
                    .unwrap();
            let input = json!({"preset": "cpu-small", "storage_gb": 99});
            client.configure(&id, Some(&input), None, None, Some("someone else")).await.unwrap();
        }
        "ubiops" => {
            let client = tether_platforms::ubiops::Client::new(config, &Credential::new("test-token")).unwrap();
            let other = json!({"description": "drifted"}).as_object().cloned().unwrap();
            let fields = tether_platforms::ubiops::ServiceFields { other, ..Default::default() };
            client.services_update("proj", cr.data["spec"]["name"].as_str().unwrap(), &fields).await.unwrap();
        }
        "peak" => {
            let client = tether_platforms::peak::Client::new(config, &Credential::new("sim-token")).unwrap();
            let fields = tether_platforms::peak::WebappFields { title: Some("drifted".into()), ..Default::default() };
            client.update(&id, &fields).await.unwrap();
        }
        other => panic!("no drift for {other}"),
    }
}

/// Forces the remote object into the platform's failure state (`/_sim/fail`); returns the Ready reason
/// that should follow.
async fn fail(platform: &str, origin: &str, api: &Api<DynamicObject>, cr: &DynamicObject) -> &'static str {
    let id = cr.data["status"]["externalId"].as_str().unwrap().to_string();
    let (body, reason) = match platform {
        "iguazio" => (json!({"service": id}), "PlatformError"),
        "civis" => (json!({"id": id.parse::<i64>().unwrap()}), "PlatformError"),
        "ubiops" => (json!({"project": "proj", "service": cr.data["spec"]["name"]}), "PlatformError"),
        _ => (json!({"id": id}), "PlatformError"),
    };
    let answer = reqwest::Client::new().post(format!("{origin}/_sim/fail")).json(&body).send().await.unwrap();
    assert!(answer.status().is_success(), "{platform}: /_sim/fail said {}", answer.status());
    if platform == "iguazio" {
        // Iguazio fails a service in its next apply: a restart is one.
        let restart = json!({"metadata": {"annotations": {"tether.dev/restart": "after-fail"}}});
        patch(api, &cr.name_any(), restart).await;
    }
    reason
}

async fn keeps_the_contract<A: Adapter>(kind: Kind) {
    let ns = TestNamespace::new(&format!("contract-{}", kind.platform)).await;
    let sim = spawn(kind.platform, "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(200) })
        .await
        .unwrap();
    let origin = reqwest::Url::parse(&sim.url).unwrap().origin().ascii_serialization();
    let client = ns.client.clone();
    connect_with(&client, &ns.name, kind.platform, &sim.url, sim_credentials(kind.platform)).await;
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

    // A spec change reaches the platform, and Ready follows the new generation; then it is taken back.
    let declared = probe(kind.platform, &sim.url, &after).await;
    patch(&api, &name, json!({"spec": kind.change.0})).await;
    wait_for(&api, &name, "is Ready for the changed spec", ready).await;
    remote_becomes(kind.platform, &sim.url, &after, &leaf(&kind.change.0), "the spec change").await;
    patch(&api, &name, json!({"spec": kind.change.1})).await;
    wait_for(&api, &name, "is Ready for the spec taken back", ready).await;
    remote_becomes(kind.platform, &sim.url, &after, &declared, "the spec taken back").await;

    // Drift: another client changes the remote object; Tether puts it back within a drift period.
    drift(kind.platform, &sim.url, &after).await;
    assert_ne!(probe(kind.platform, &sim.url, &after).await, declared, "{}: the drift did not happen", kind.platform);
    remote_becomes(kind.platform, &sim.url, &after, &declared, "the drift corrected").await;
    wait_for(&api, &name, "is Ready after the drift", ready).await;

    // Wrong credentials: Synced=False Unauthorized; fixing the Secret recovers it without a restart.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let credentials = |wrong: bool| -> serde_json::Map<String, Value> {
        let value = |k: &str, v: &str| if wrong && k != "username" { "wrong".to_string() } else { v.to_string() };
        sim_credentials(kind.platform).iter().map(|(k, v)| (k.to_string(), Value::from(value(k, v)))).collect()
    };
    let rotate = |data: serde_json::Map<String, Value>| json!({"stringData": data});
    secrets.patch(kind.platform, &PatchParams::default(), &Patch::Merge(rotate(credentials(true)))).await.unwrap();
    wait_for(&api, &name, "reports the wrong credentials", |o| {
        o.and_then(|o| condition(o, "Synced")).is_some_and(|(s, r)| s == "False" && r == "Unauthorized")
    })
    .await;
    secrets.patch(kind.platform, &PatchParams::default(), &Patch::Merge(rotate(credentials(false)))).await.unwrap();
    wait_for(&api, &name, "recovers once the Secret is fixed", ready).await;

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

    // A new resource adopts the orphan by annotation: same external id, nothing created. A Civis token is
    // the exception: its value is shown once, and the old resource's outputs Secret goes with it (garbage
    // collection, which may or may not have run yet), so adopting may mint a new one.
    let mut again = resource.clone();
    again["metadata"]["annotations"] = json!({"tether.dev/external-id": external_id});
    let creates = |c: &Value| -> std::collections::BTreeMap<String, u64> {
        c.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("POST ") && *k != "POST /services/{id}/tokens")
            .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
            .collect()
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

    // The platform's failure state: Ready=False with the platform's words, the remote object kept.
    let reason = fail(kind.platform, &origin, &api, &adopted).await;
    wait_for(&api, &name, "reports the failure", |o| {
        o.and_then(|o| condition(o, "Ready")).is_some_and(|(s, r)| s == "False" && r == reason)
    })
    .await;
    let failed = api.get(&name).await.unwrap();
    let message = failed.data["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!message.is_empty(), "{}: a failure without a message", kind.platform);

    // Delete while paused: the finalizer holds and nothing is called, until unpaused.
    patch(&api, &name, json!({"metadata": {"annotations": {"tether.dev/paused": "true"}}})).await;
    wait_for(&api, &name, "is paused", |o| o.and_then(|o| condition(o, "Synced")).is_some_and(|(_, r)| r == "Paused"))
        .await;
    let (paused_calls, _) = calls(&origin).await;
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(api.get_opt(&name).await.unwrap().is_some(), "{}: the finalizer went while paused", kind.platform);
    assert_eq!(calls(&origin).await.0, paused_calls, "{}: remote calls while paused and deleting", kind.platform);

    // Delete: the remote object goes, then the finalizer.
    patch(&api, &name, json!({"metadata": {"annotations": {"tether.dev/paused": null}}})).await;
    wait_for(&api, &name, "is deleted", |o| o.is_none()).await;
    assert!(calls(&origin).await.1 > writes, "{}: Delete wrote nothing", kind.platform);
}

#[tokio::test]
async fn appservice_keeps_the_contract() {
    let change = (json!({"description": "changed"}), json!({"description": "Shared Jupyter for the data team"}));
    keeps_the_contract::<Iguazio>(Kind { platform: "iguazio", example: "appservice.yaml", change }).await;
}

#[tokio::test]
async fn civisservice_keeps_the_contract() {
    let change = (json!({"description": "changed"}), json!({"description": "Weekly sales dashboard"}));
    keeps_the_contract::<Civis>(Kind { platform: "civis", example: "civisservice.yaml", change }).await;
}

#[tokio::test]
async fn apoloapp_keeps_the_contract() {
    let change = (json!({"input": {"storage_gb": 30}}), json!({"input": {"storage_gb": 20}}));
    keeps_the_contract::<Apolo>(Kind { platform: "apolo", example: "apoloapp.yaml", change }).await;
}

#[tokio::test]
async fn ubiservice_keeps_the_contract() {
    let change = (json!({"description": "changed"}), json!({"description": "Real-time scoring endpoint"}));
    keeps_the_contract::<UbiOps>(Kind { platform: "ubiops", example: "ubiservice.yaml", change }).await;
}

#[tokio::test]
async fn peakwebapp_keeps_the_contract() {
    let change = (json!({"title": "changed"}), json!({"title": "Forecast explorer"}));
    keeps_the_contract::<Peak>(Kind { platform: "peak", example: "peakwebapp.yaml", change }).await;
}
