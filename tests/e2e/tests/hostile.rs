//! Hostile input: values a user or a platform sends that must never crash the operator, wedge a worker,
//! leak a remote object, reach another tenant's object or another route, or put a credential anywhere.
//! Each case asserts a clear reason on the resource, and that a healthy resource beside it still converges
//! on the same controller (which would stop with the process if a value could crash it).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tether_controller::adapters::{civis::Civis, peak::Peak, ubiops::UbiOps};
use tether_e2e::{api_for, connect_with, create, example, merged, sim_credentials, spawn_controller, test_config};
use tether_sim::{SimOptions, spawn};
use tether_testenv::TestNamespace;

/// `(status, reason, message)` of a condition.
fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    let c = obj.data["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?.clone();
    Some((c["status"].as_str()?.into(), c["reason"].as_str()?.into(), c["message"].as_str().unwrap_or("").into()))
}

fn ready(obj: Option<&DynamicObject>) -> bool {
    obj.and_then(|o| condition(o, "Ready")).is_some_and(|(s, _, _)| s == "True")
}

fn synced_reason(obj: Option<&DynamicObject>) -> Option<String> {
    obj.and_then(|o| condition(o, "Synced")).map(|(_, r, _)| r)
}

async fn wait_for(api: &Api<DynamicObject>, name: &str, what: &str, check: impl Fn(Option<&DynamicObject>) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let current = api.get_opt(name).await.unwrap();
        if check(current.as_ref()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name}: {what}: still {:?}", current.map(|c| c.data));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The message of the Synced condition, once its reason is `reason`.
async fn refused(api: &Api<DynamicObject>, name: &str, reason: &str) -> String {
    wait_for(api, name, &format!("is refused as {reason}"), |o| synced_reason(o).as_deref() == Some(reason)).await;
    condition(&api.get(name).await.unwrap(), "Synced").unwrap().2
}

async fn counters(origin: &str) -> Value {
    reqwest::get(format!("{origin}/_sim/counters")).await.unwrap().json().await.unwrap()
}

/// One platform's simulator, its Connection in `ns`, and the example resource of its kind.
struct Platform {
    url: String,
    origin: String,
    example: Value,
    api: Api<DynamicObject>,
}

async fn platform(ns: &TestNamespace, platform: &str, file: &str, kind: &str) -> Platform {
    let sim = spawn(platform, "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO }).await.unwrap();
    let origin = reqwest::Url::parse(&sim.url).unwrap().origin().ascii_serialization();
    connect_with(&ns.client, &ns.name, platform, &sim.url, sim_credentials(platform)).await;
    let example = example(file, kind);
    let api = api_for(&ns.client, &ns.name, &example).await;
    Platform { url: sim.url, origin, example, api }
}

#[tokio::test]
async fn hostile_annotations_are_refused_and_never_stop_the_controller() {
    let ns = TestNamespace::new("hostile-annotations").await;
    let ubi = platform(&ns, "ubiops", "ubiservice.yaml", "UbiService").await;
    let controller = spawn_controller::<UbiOps>(&ns.client, &ns.name);
    let hostile = [
        ("huge-seconds", "10000000000000000000s"),
        ("u64-max", "18446744073709551615s"),
        ("huge-minutes", "999999999999999999m"),
        ("huge-hours", "99999999999999999999h"),
        ("zero", "0s"),
        ("words", "whenever"),
    ];
    for (name, value) in hostile {
        let cr = merged(
            &ubi.example,
            json!({"metadata": {"name": name, "annotations": {"tether.dev/poll-interval": value}},
                   "spec": {"name": name, "writeOutputsTo": null}}),
        );
        create(&ns.client, &ns.name, &cr, false).await.unwrap();
    }
    let healthy = merged(&ubi.example, json!({"metadata": {"name": "healthy"}, "spec": {"name": "healthy"}}));
    create(&ns.client, &ns.name, &healthy, false).await.unwrap();
    for (name, value) in hostile {
        let message = refused(&ubi.api, name, "InvalidSpec").await;
        assert!(message.contains("tether.dev/poll-interval") && message.contains("between 1s and 7 days"), "{message}");
        assert!(message.len() < 300, "{name}={value}: the message quotes at most a bounded part of the value");
    }
    wait_for(&ubi.api, "healthy", "converges beside them", ready).await;
    // The hostile resources created nothing remotely.
    let creates = counters(&ubi.origin).await["POST /v2.1/projects/{project_name}/services"].as_u64().unwrap_or(0);
    assert_eq!(creates, 1, "only the healthy resource was created");
    assert!(!controller.is_finished(), "the controller is still running");
}

#[tokio::test]
async fn a_redeploy_time_in_the_future_is_refused_instead_of_redeploying_until_then() {
    let ns = TestNamespace::new("hostile-redeploy").await;
    let civis = platform(&ns, "civis", "civisservice.yaml", "CivisService").await;
    for secret in tether_e2e::manifests(&tether_testenv::repo_root().join("examples/civisservice.yaml"))
        .iter()
        .filter(|d| d["kind"] == "Secret")
    {
        create(&ns.client, &ns.name, secret, false).await.unwrap();
    }
    let _controller = spawn_controller::<Civis>(&ns.client, &ns.name);
    let name = civis.example["metadata"]["name"].as_str().unwrap().to_string();
    create(&ns.client, &ns.name, &civis.example, false).await.unwrap();
    wait_for(&civis.api, &name, "is Ready", ready).await;
    let deploys = |c: &Value| {
        ["POST /services/{id}/deployments", "POST /services/{id}/redeploy"]
            .iter()
            .filter_map(|k| c[k].as_u64())
            .sum::<u64>()
    };
    let before = deploys(&counters(&civis.origin).await);

    let hour_ahead =
        (k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(1)).to_string();
    let annotate = json!({"metadata": {"annotations": {"tether.dev/redeploy": hour_ahead}}});
    civis.api.patch(&name, &PatchParams::default(), &Patch::Merge(annotate)).await.unwrap();
    let message = refused(&civis.api, &name, "InvalidSpec").await;
    assert!(message.contains("in the future"), "{message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(deploys(&counters(&civis.origin).await), before, "no redeploy for a time ahead");

    // The current time redeploys once.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let annotate = json!({"metadata": {"annotations": {"tether.dev/redeploy": now}}});
    civis.api.patch(&name, &PatchParams::default(), &Patch::Merge(annotate)).await.unwrap();
    wait_for(&civis.api, &name, "is Ready again", |o| {
        ready(o) && synced_reason(o).as_deref() == Some("ReconcileSuccess")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(deploys(&counters(&civis.origin).await), before + 1, "exactly one redeploy");
}

#[tokio::test]
async fn a_shared_outputs_secret_is_refused_with_the_name_of_its_owner() {
    let ns = TestNamespace::new("hostile-outputs").await;
    let ubi = platform(&ns, "ubiops", "ubiservice.yaml", "UbiService").await;
    let _controller = spawn_controller::<UbiOps>(&ns.client, &ns.name);
    let first = merged(
        &ubi.example,
        json!({"metadata": {"name": "first"}, "spec": {"name": "first", "writeOutputsTo": "shared"}}),
    );
    create(&ns.client, &ns.name, &first, false).await.unwrap();
    wait_for(&ubi.api, "first", "is Ready", ready).await;
    let secrets: Api<Secret> = Api::namespaced(ns.client.clone(), &ns.name);
    let endpoint = secrets.get("shared").await.unwrap().data.unwrap()["endpoint"].clone();

    let second = merged(
        &ubi.example,
        json!({"metadata": {"name": "second"}, "spec": {"name": "second", "writeOutputsTo": "shared"}}),
    );
    create(&ns.client, &ns.name, &second, false).await.unwrap();
    let message = refused(&ubi.api, "second", "Conflict").await;
    assert!(message.contains("UbiService first") && message.contains("shared"), "{message}");
    let stalled = condition(&ubi.api.get("second").await.unwrap(), "Stalled").unwrap();
    assert_eq!(stalled.0, "True", "a human must choose another Secret");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let secret = secrets.get("shared").await.unwrap();
    assert_eq!(secret.data.unwrap()["endpoint"], endpoint, "the first resource's endpoint stays");
    let owners: Vec<String> = secret.metadata.owner_references.unwrap().into_iter().map(|o| o.name).collect();
    assert_eq!(owners, ["first"]);
}

/// A namespace deleted whole: its Connection and Secrets wait until every resource in it has dealt with
/// its remote object per deletionPolicy, then everything goes.
#[tokio::test]
async fn deleting_a_whole_namespace_deletes_its_remote_objects_and_completes() {
    let ns = TestNamespace::new("hostile-teardown").await;
    let ubi = platform(&ns, "ubiops", "ubiservice.yaml", "UbiService").await;
    let peak = platform(&ns, "peak", "peakwebapp.yaml", "PeakWebapp").await;
    let (client, name) = (ns.client.clone(), ns.name.clone());
    let _ubi_controller = spawn_controller::<UbiOps>(&client, &name);
    let _peak_controller = spawn_controller::<Peak>(&client, &name);
    let (c, n) = (client.clone(), name.clone());
    let _connections = tokio::spawn(async move {
        let sources = tether_controller::sources::Sources::start(c, Some(&n)).await;
        tether_controller::connection_status::run_connections(sources, Some(&n), test_config(), std::future::pending())
            .await
    });
    let deleted = merged(&ubi.example, json!({"metadata": {"name": "goes"}, "spec": {"name": "goes"}}));
    let kept = merged(
        &ubi.example,
        json!({"metadata": {"name": "stays"}, "spec": {"name": "stays", "deletionPolicy": "Orphan", "writeOutputsTo": null}}),
    );
    for cr in [&deleted, &kept, &peak.example] {
        create(&client, &name, cr, false).await.unwrap();
    }
    let webapp = peak.example["metadata"]["name"].as_str().unwrap().to_string();
    wait_for(&ubi.api, "goes", "is Ready", ready).await;
    wait_for(&ubi.api, "stays", "is Ready", ready).await;
    wait_for(&peak.api, &webapp, "is Ready", ready).await;
    let connections =
        api_for(&client, &name, &json!({"apiVersion": "tether.dev/v1alpha1", "kind": "Connection"})).await;
    for connection in ["ubiops", "peak"] {
        wait_for(&connections, connection, "carries the in-use finalizer", |c| {
            c.is_some_and(|c| c.finalizers().iter().any(|f| f == tether_controller::teardown::IN_USE))
        })
        .await;
    }

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &name);
    for secret in ["ubiops", "peak"] {
        tether_e2e::wait_until(&secrets, secret, "carries the in-use finalizer", |s| {
            s.is_some_and(|s| s.finalizers().iter().any(|f| f == tether_controller::teardown::IN_USE))
        })
        .await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(&name, &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while namespaces.get_opt(&name).await.unwrap().is_some() {
        let left: Vec<String> = connections.list(&Default::default()).await.map_or_else(
            |_| vec![],
            |l| l.items.iter().map(|c| format!("{} {:?}", c.name_any(), c.finalizers())).collect(),
        );
        if tokio::time::Instant::now() >= deadline {
            let mut resources = Vec::new();
            for api in [&ubi.api, &peak.api] {
                for r in api.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
                    resources.push(format!("{} {:?} {}", r.name_any(), r.finalizers(), r.data["status"]["conditions"]));
                }
            }
            panic!("namespace {name} never went; Connections left: {left:?}; resources left: {resources:#?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ubi_state: Value = reqwest::get(format!("{}/_sim/state", ubi.origin)).await.unwrap().json().await.unwrap();
    let services: Vec<String> = ubi_state["projects"]["proj"]["services"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(services, ["stays"], "Delete deleted, Orphan kept");
    let peak_counters = counters(&peak.origin).await;
    let peak_deletes: u64 = peak_counters
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("DELETE "))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    assert!(peak_deletes >= 1, "the webapp was deleted on Peak: {peak_counters}");
}

/// A Peak id with a path in it (`x/../<another team's id>`) never sends a request elsewhere: the resource
/// is refused, and deleting it deletes nothing, least of all the other team's webapp.
#[tokio::test]
async fn an_id_with_a_path_in_it_reaches_no_other_route() {
    let team_a = TestNamespace::new("hostile-team-a").await;
    let peak = platform(&team_a, "peak", "peakwebapp.yaml", "PeakWebapp").await;
    let _a = spawn_controller::<Peak>(&team_a.client, &team_a.name);
    let name = peak.example["metadata"]["name"].as_str().unwrap().to_string();
    create(&team_a.client, &team_a.name, &peak.example, false).await.unwrap();
    wait_for(&peak.api, &name, "team A's webapp is Ready", ready).await;
    let id = peak.api.get(&name).await.unwrap().data["status"]["externalId"].as_str().unwrap().to_string();

    let team_b = TestNamespace::new("hostile-team-b").await;
    connect_with(&team_b.client, &team_b.name, "peak", &peak.url, sim_credentials("peak")).await;
    let _b = spawn_controller::<Peak>(&team_b.client, &team_b.name);
    let hostile = merged(
        &peak.example,
        json!({"metadata": {"name": "sneaky", "annotations": {"tether.dev/external-id": format!("x/../{id}")}},
               "spec": {"name": "sneaky"}}),
    );
    create(&team_b.client, &team_b.name, &hostile, false).await.unwrap();
    let api_b = api_for(&team_b.client, &team_b.name, &hostile).await;
    let message = refused(&api_b, "sneaky", "InvalidSpec").await;
    assert!(message.contains("not a valid"), "{message}");
    let before = counters(&peak.origin).await;
    api_b.delete("sneaky", &DeleteParams::default()).await.unwrap();
    wait_for(&api_b, "sneaky", "is deleted without a remote call", |o| o.is_none()).await;
    let after = counters(&peak.origin).await;
    let deletes = |c: &Value| c.as_object().unwrap().iter().filter(|(k, _)| k.starts_with("DELETE ")).count();
    assert_eq!(deletes(&after), deletes(&before), "no DELETE was sent: {after}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = peak.api.get(&name).await.unwrap();
    assert!(ready(Some(&a)), "team A's webapp still serves: {}", a.data["status"]);
}

/// A Retry-After no clock can add (u64::MAX seconds) is a Throttled condition, not a panic; the other
/// resources of the controller go on.
#[tokio::test]
async fn a_retry_after_of_u64_max_is_throttled_not_a_crash() {
    let ns = TestNamespace::new("hostile-retry-after").await;
    let ubi = platform(&ns, "ubiops", "ubiservice.yaml", "UbiService").await;
    let controller = spawn_controller::<UbiOps>(&ns.client, &ns.name);
    let fault = json!({"method": "POST", "status": 429, "retryAfter": u64::MAX, "times": 1});
    let answer = reqwest::Client::new().post(format!("{}/_sim/faults", ubi.origin)).json(&fault).send().await.unwrap();
    assert!(answer.status().is_success());
    let throttled = merged(
        &ubi.example,
        json!({"metadata": {"name": "throttled"}, "spec": {"name": "throttled", "writeOutputsTo": "throttled-outputs"}}),
    );
    create(&ns.client, &ns.name, &throttled, false).await.unwrap();
    // Reported as Throttled (an Event; the condition may already have moved on: the next reconcile, woken
    // by its own status write, creates it), never a panic.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(ns.client.clone(), &ns.name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = events.list(&Default::default()).await.unwrap();
        let throttled = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("Throttled")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("throttled")
        });
        if throttled {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no Throttled Event for the resource");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The platform's word holds the whole account (an hour at most), across reconciles and resources: a
    // second resource on it sends nothing. Another account (the same simulator by another name) goes on.
    let creates = "POST /v2.1/projects/{project_name}/services";
    let sent = counters(&ubi.origin).await[creates].as_u64().unwrap_or(0);
    let held =
        merged(&ubi.example, json!({"metadata": {"name": "held"}, "spec": {"name": "held", "writeOutputsTo": null}}));
    create(&ns.client, &ns.name, &held, false).await.unwrap();
    wait_for(&ubi.api, "held", "is throttled too", |o| synced_reason(o).as_deref() == Some("Throttled")).await;
    let other_name = ubi.url.replace("127.0.0.1", "localhost");
    let other = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "ubiops-other"},
        "spec": {"platform": "ubiops", "endpoint": other_name, "credentials": {"token": {"name": "ubiops", "key": "token"}}}});
    create(&ns.client, &ns.name, &other, false).await.unwrap();
    let healthy = merged(
        &ubi.example,
        json!({"metadata": {"name": "healthy"}, "spec": {"name": "healthy", "connectionRef": {"name": "ubiops-other"}}}),
    );
    create(&ns.client, &ns.name, &healthy, false).await.unwrap();
    wait_for(&ubi.api, "healthy", "converges beside it", ready).await;
    let after = counters(&ubi.origin).await[creates].as_u64().unwrap_or(0);
    assert_eq!(after, sent + 1, "only the other account's create was sent");
    assert!(!controller.is_finished(), "the controller is still running");
}
