//! What GitOps tools conclude from Tether's status, judged by the real judges: kstatus
//! (sigs.k8s.io/cli-utils `status.Compute`, as Flux and kpt use it) and deploy/argocd's Lua health checks
//! run under gopher-lua the way Argo CD runs them (tools/gitops-judge). One resource of every kind, and
//! both connection kinds, go through each situation of docs/gitops.md's verdict table; where a spec edit
//! is not applied, `kubectl wait --for=condition=Ready` must time out.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tether_controller::adapter::Adapter;
use tether_controller::adapters::{apolo::Apolo, civis::Civis, iguazio::Iguazio, peak::Peak, ubiops::UbiOps};
use tether_e2e::judge::{self, Verdict};
use tether_e2e::{
    api_for, case, connect_with, create, manifests, merged, sim_credentials, spawn_controller, test_config,
};
use tether_sim::{SimOptions, spawn};
use tether_testenv::{TestNamespace, control_plane, repo_root};

/// A verdict both judges must reach: any of these kstatus results and any of these Argo CD healths.
struct Want {
    kstatus: &'static [&'static str],
    argocd: &'static [&'static str],
}

const CURRENT_HEALTHY: Want = Want { kstatus: &["Current"], argocd: &["Healthy"] };
const UNOBSERVED: Want = Want { kstatus: &["InProgress"], argocd: &["Progressing"] };
const NEEDS_HUMAN: Want = Want { kstatus: &["Failed"], argocd: &["Degraded"] };
const BAD_CREDENTIALS: Want = Want { kstatus: &["InProgress", "Failed"], argocd: &["Degraded"] };
const UNREACHABLE: Want = Want { kstatus: &["InProgress"], argocd: &["Progressing", "Degraded"] };
const REMOTE_FAILED: Want = Want { kstatus: &["InProgress", "Failed"], argocd: &["Degraded"] };
const PAUSED: Want = Want { kstatus: &["Current"], argocd: &["Suspended"] };
const PAUSED_EDIT_PENDING: Want = Want { kstatus: &["InProgress"], argocd: &["Suspended"] };
const DELETING: Want = Want { kstatus: &["Terminating"], argocd: &["Progressing"] };

fn verdict_of(obj: &Value) -> Verdict {
    judge::verdict(obj)
}

fn accepts(want: &Want, verdict: &Verdict) -> bool {
    want.kstatus.contains(&verdict.kstatus.as_str()) && want.argocd.contains(&verdict.argocd.as_str())
}

/// Waits until both judges give `want` for the object, then checks they keep saying so for 1.5 s (a
/// passing moment is not a verdict).
async fn settles_on(api: &Api<DynamicObject>, name: &str, want: &Want, situation: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut held_since: Option<tokio::time::Instant> = None;
    loop {
        let obj = serde_json::to_value(api.get(name).await.expect("get")).expect("json");
        let verdict = verdict_of(&obj);
        if accepts(want, &verdict) {
            let since = *held_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= Duration::from_millis(1500) {
                return;
            }
        } else {
            assert!(
                held_since.is_none(),
                "{name}: {situation}: the verdict moved away to {verdict:?}\nstatus: {}",
                obj["status"]
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: {situation}: wanted kstatus {:?} and Argo CD {:?}, the judges say {verdict:?}\nstatus: {}",
                want.kstatus,
                want.argocd,
                obj["status"]
            );
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// `kubectl wait --for=condition=Ready` must not return within two seconds: the generation is not applied.
fn kubectl_wait_times_out(ns: &str, kind: &str, name: &str, situation: &str) {
    let output = std::process::Command::new("kubectl")
        .args(["wait", "--for=condition=Ready", "--timeout=2s", "-n", ns, &format!("{kind}/{name}")])
        .env("KUBECONFIG", control_plane().kubeconfig())
        .output()
        .expect("kubectl runs");
    assert!(
        !output.status.success(),
        "{name}: {situation}: kubectl wait returned for a generation that was not applied: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("timed out"), "{name}: {situation}: kubectl wait failed otherwise: {stderr}");
}

async fn patch(api: &Api<DynamicObject>, name: &str, body: Value) {
    api.patch(name, &PatchParams::default(), &Patch::Merge(body)).await.expect("patch");
}

async fn fault(origin: &str, fault: Value) {
    let answer = reqwest::Client::new().post(format!("{origin}/_sim/faults")).json(&fault).send().await.unwrap();
    assert!(answer.status().is_success(), "fault {fault} refused: {}", answer.status());
}

async fn clear_faults(origin: &str) {
    reqwest::Client::new().delete(format!("{origin}/_sim/faults")).send().await.unwrap();
}

struct Kind {
    platform: &'static str,
    example: &'static str,
    /// A harmless spec edit: a value to set and to set back, under these spec keys.
    edit: fn(u32) -> Value,
    /// An id this platform does not have, for `tether.dev/external-id`.
    missing_id: &'static str,
    /// A spec for a second resource with its own natural key.
    second: Value,
    /// The methods that delete on this platform (refused with 500 in the deleting situation).
    delete_methods: &'static [&'static str],
}

/// The body of `/_sim/fail` for the resource's remote object.
fn fail_body(platform: &str, obj: &DynamicObject) -> Value {
    let id = obj.data["status"]["externalId"].as_str().unwrap_or_default().to_string();
    match platform {
        "iguazio" => json!({"service": id}),
        "civis" => json!({"id": id.parse::<i64>().unwrap()}),
        "ubiops" => json!({"project": "proj", "service": obj.data["spec"]["name"]}),
        _ => json!({"id": id}),
    }
}

async fn verdicts_tell_the_truth<A: Adapter>(kind: Kind) {
    let ns = TestNamespace::new(&format!("gitops-{}", kind.platform)).await;
    let sim = spawn(kind.platform, "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(200) })
        .await
        .unwrap();
    let origin = reqwest::Url::parse(&sim.url).unwrap().origin().ascii_serialization();
    let client = ns.client.clone();
    let credentials = |wrong: bool| -> Value {
        let value = |k: &str, v: &str| if wrong && k != "username" { "wrong".to_string() } else { v.to_string() };
        let data: serde_json::Map<String, Value> =
            sim_credentials(kind.platform).iter().map(|(k, v)| (k.to_string(), Value::from(value(k, v)))).collect();
        json!({"stringData": data})
    };
    connect_with(&client, &ns.name, kind.platform, &sim.url, sim_credentials(kind.platform)).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let rotate = |wrong: bool| {
        let secrets = secrets.clone();
        let body = credentials(wrong);
        let platform = kind.platform;
        async move { secrets.patch(platform, &PatchParams::default(), &Patch::Merge(body)).await.unwrap() }
    };
    rotate(true).await;
    let documents = manifests(&repo_root().join("examples").join(kind.example));
    for secret in documents.iter().filter(|d| d["kind"] == "Secret") {
        create(&client, &ns.name, secret, false).await.unwrap();
    }
    let resource = documents.iter().find(|d| d["kind"] != "Secret" && d["kind"] != "Connection").unwrap().clone();
    let kind_name = resource["kind"].as_str().unwrap().to_lowercase();
    let name = resource["metadata"]["name"].as_str().unwrap().to_string();
    let api = api_for(&client, &ns.name, &resource).await;

    // Just created, the operator not running: an unobserved generation, however long it takes.
    create(&client, &ns.name, &resource, false).await.unwrap();
    settles_on(&api, &name, &UNOBSERVED, "created while the operator is down").await;

    // Wrong credentials from the start.
    let mut controller = spawn_controller::<A>(&client, &ns.name);
    settles_on(&api, &name, &BAD_CREDENTIALS, "wrong credentials from the start").await;
    rotate(false).await;
    settles_on(&api, &name, &CURRENT_HEALTHY, "Ready, up to date").await;

    // A spec edit while the operator is down: not applied, whatever Ready says.
    controller.abort();
    let _ = controller.await;
    patch(&api, &name, json!({"spec": (kind.edit)(1)})).await;
    settles_on(&api, &name, &UNOBSERVED, "edited while the operator is down").await;
    kubectl_wait_times_out(&ns.name, &kind_name, &name, "edited while the operator is down");
    controller = spawn_controller::<A>(&client, &ns.name);
    settles_on(&api, &name, &CURRENT_HEALTHY, "the edit applied after a restart").await;

    // Paused: nothing pending is Current; an edit made while paused is pending.
    patch(&api, &name, json!({"metadata": {"annotations": {"tether.dev/paused": "true"}}})).await;
    settles_on(&api, &name, &PAUSED, "paused").await;
    patch(&api, &name, json!({"spec": (kind.edit)(2)})).await;
    settles_on(&api, &name, &PAUSED_EDIT_PENDING, "paused with an edit pending").await;
    kubectl_wait_times_out(&ns.name, &kind_name, &name, "paused with an edit pending");
    patch(&api, &name, json!({"metadata": {"annotations": {"tether.dev/paused": null}}})).await;
    settles_on(&api, &name, &CURRENT_HEALTHY, "unpaused, the edit applied").await;

    // The platform unreachable, then a spec edit.
    fault(&origin, json!({"status": 503})).await;
    patch(&api, &name, json!({"spec": (kind.edit)(3)})).await;
    settles_on(&api, &name, &UNREACHABLE, "the platform unreachable and the spec edited").await;
    kubectl_wait_times_out(&ns.name, &kind_name, &name, "the platform unreachable and the spec edited");
    clear_faults(&origin).await;
    settles_on(&api, &name, &CURRENT_HEALTHY, "the platform back").await;

    // The credentials go wrong, then a spec edit.
    rotate(true).await;
    patch(&api, &name, json!({"spec": (kind.edit)(4)})).await;
    settles_on(&api, &name, &BAD_CREDENTIALS, "credentials wrong and the spec edited").await;
    kubectl_wait_times_out(&ns.name, &kind_name, &name, "credentials wrong and the spec edited");
    rotate(false).await;
    settles_on(&api, &name, &CURRENT_HEALTHY, "credentials fixed").await;

    // Needs a human: adopting an id the platform does not have.
    let second_name = format!("{name}-adopt");
    let second = merged(
        &resource,
        json!({"metadata": {"name": second_name, "annotations": {"tether.dev/external-id": kind.missing_id}},
               "spec": kind.second.clone()}),
    );
    create(&client, &ns.name, &second, false).await.unwrap();
    settles_on(&api, &second_name, &NEEDS_HUMAN, "an external id the platform lacks").await;
    api.delete(&second_name, &DeleteParams::default()).await.unwrap();

    // The remote object fails on the platform.
    let current = api.get(&name).await.unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{origin}/_sim/fail"))
        .json(&fail_body(kind.platform, &current))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}: /_sim/fail said {}", kind.platform, answer.status());
    if kind.platform == "iguazio" {
        // Iguazio fails a service in its next apply: a restart is one.
        patch(&api, &name, json!({"metadata": {"annotations": {"tether.dev/restart": "after-fail"}}})).await;
    }
    settles_on(&api, &name, &REMOTE_FAILED, "the remote object failed on the platform").await;

    // Deleting while the platform refuses the delete.
    for method in kind.delete_methods {
        fault(&origin, json!({"method": method, "status": 500})).await;
    }
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    settles_on(&api, &name, &DELETING, "deleting, the platform refusing the delete").await;
    clear_faults(&origin).await;
    tether_e2e::wait_until(&api, &name, "deleted once the platform accepts", |o| o.is_none()).await;
    controller.abort();
}

/// Every kind through the verdict table, the five at once (each on its own thread and runtime, as
/// separate tests would be, without queueing behind libtest's one test per core: they mostly wait).
#[test]
fn every_kind_verdicts_tell_the_truth() {
    tether_e2e::concurrently(vec![
        case("appservice", || {
            verdicts_tell_the_truth::<Iguazio>(Kind {
                platform: "iguazio",
                example: "appservice.yaml",
                edit: |n| json!({"description": format!("edit {n}")}),
                missing_id: "no-such-service",
                second: json!({"name": "second-notebook"}),
                delete_methods: &["PUT"],
            })
        }),
        case("civisservice", || {
            verdicts_tell_the_truth::<Civis>(Kind {
                platform: "civis",
                example: "civisservice.yaml",
                edit: |n| json!({"description": format!("edit {n}")}),
                missing_id: "987654321",
                second: json!({"name": "Second dashboard", "writeOutputsTo": "second-dashboard-outputs"}),
                delete_methods: &["PUT", "DELETE"],
            })
        }),
        case("apoloapp", || {
            verdicts_tell_the_truth::<Apolo>(Kind {
                platform: "apolo",
                example: "apoloapp.yaml",
                edit: |n| json!({"input": {"storage_gb": 20 + n}}),
                missing_id: "no-such-app",
                second: json!({"displayName": "Second store", "writeOutputsTo": null}),
                delete_methods: &["DELETE"],
            })
        }),
        case("ubiservice", || {
            verdicts_tell_the_truth::<UbiOps>(Kind {
                platform: "ubiops",
                example: "ubiservice.yaml",
                edit: |n| json!({"description": format!("edit {n}")}),
                missing_id: "no-such-service",
                second: json!({"name": "second-api", "writeOutputsTo": null}),
                delete_methods: &["DELETE"],
            })
        }),
        case("peakwebapp", || {
            verdicts_tell_the_truth::<Peak>(Kind {
                platform: "peak",
                example: "peakwebapp.yaml",
                edit: |n| json!({"title": format!("edit {n}")}),
                missing_id: "no-such-webapp",
                second: json!({"name": "second-explorer"}),
                delete_methods: &["DELETE"],
            })
        }),
    ]);
}

/// Needs a human, per platform: a spec naming what the platform lacks is refused as InvalidSpec and
/// stalls (kstatus Failed, Argo CD Degraded), instead of being retried forever as Unavailable.
#[test]
fn a_spec_naming_what_the_platform_lacks_stalls() {
    async fn stalls<A: Adapter>(platform: &'static str, example: &str, wrong: Value) {
        let ns = TestNamespace::new(&format!("gitops-lacks-{platform}")).await;
        let sim = spawn(platform, "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO }).await.unwrap();
        let client = ns.client.clone();
        connect_with(&client, &ns.name, platform, &sim.url, sim_credentials(platform)).await;
        let documents = manifests(&repo_root().join("examples").join(example));
        for secret in documents.iter().filter(|d| d["kind"] == "Secret") {
            create(&client, &ns.name, secret, false).await.unwrap();
        }
        let resource = documents.iter().find(|d| d["kind"] != "Secret" && d["kind"] != "Connection").unwrap();
        let resource = merged(resource, json!({"spec": wrong}));
        let name = resource["metadata"]["name"].as_str().unwrap().to_string();
        let api = api_for(&client, &ns.name, &resource).await;
        let _controller = spawn_controller::<A>(&client, &ns.name);
        create(&client, &ns.name, &resource, false).await.unwrap();
        settles_on(&api, &name, &NEEDS_HUMAN, "a spec naming what the platform lacks").await;
        let obj = api.get(&name).await.unwrap();
        let stalled = obj.data["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Stalled");
        assert_eq!(stalled.unwrap()["reason"], "InvalidSpec", "{platform}: {}", obj.data["status"]);
    }
    // The cases at once, each on its own thread and runtime (they mostly wait for the judges' verdict).
    tether_e2e::concurrently(vec![
        case("apolo templateVersion", || {
            stalls::<Apolo>("apolo", "apoloapp.yaml", json!({"templateVersion": "v9.9.9"}))
        }),
        case("apolo templateName", || {
            stalls::<Apolo>("apolo", "apoloapp.yaml", json!({"templateName": "no-such-template"}))
        }),
        case("ubiops deployment", || {
            stalls::<UbiOps>("ubiops", "ubiservice.yaml", json!({"deployment": "no-such-deployment"}))
        }),
        case("ubiops version", || stalls::<UbiOps>("ubiops", "ubiservice.yaml", json!({"version": "v99"}))),
        case("peak imageId", || {
            stalls::<Peak>("peak", "peakwebapp.yaml", json!({"imageDetails": {"imageId": 424242}}))
        }),
        case("peak versionId", || {
            stalls::<Peak>("peak", "peakwebapp.yaml", json!({"imageDetails": {"versionId": 424242}}))
        }),
        case("civis environmentVariablesFrom", || {
            stalls::<Civis>(
                "civis",
                "civisservice.yaml",
                json!({"environmentVariablesFrom": [{"name": "MISSING", "secretKeyRef": {"name": "no-such-secret", "key": "k"}}]}),
            )
        }),
    ]);
}

/// Connections and ClusterConnections: unchecked, then wrong credentials, then right.
#[tokio::test]
async fn connection_verdicts_tell_the_truth() {
    let ns = TestNamespace::new("gitops-connection").await;
    let sim = spawn("peak", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO }).await.unwrap();
    let client = ns.client.clone();
    connect_with(&client, &ns.name, "peak", &sim.url, &[("apiKey", "wrong")]).await;
    let cluster = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "ClusterConnection",
        "metadata": {"name": "peak-shared"},
        "spec": {"platform": "peak", "endpoint": sim.url, "allowedNamespaces": [ns.name],
                 "credentials": {"apiKey": {"name": "peak", "key": "apiKey", "namespace": ns.name}}}});
    let created = create(&client, &ns.name, &cluster, false).await.unwrap();
    let cluster_name = created.name_any();
    let connections =
        api_for(&client, &ns.name, &json!({"apiVersion": "tether.dev/v1alpha1", "kind": "Connection"})).await;
    let cluster_connections = api_for(&client, &ns.name, &cluster).await;

    settles_on(&connections, "peak", &UNOBSERVED, "a Connection not checked yet").await;
    settles_on(&cluster_connections, &cluster_name, &UNOBSERVED, "a ClusterConnection not checked yet").await;

    let (c, n) = (client.clone(), ns.name.clone());
    let namespaced = tokio::spawn(async move {
        let sources = tether_controller::sources::Sources::start(c, Some(&n)).await;
        tether_controller::connection_status::run_connections(sources, Some(&n), test_config(), std::future::pending())
            .await
    });
    let c = client.clone();
    let clustered = tokio::spawn(async move {
        let sources = tether_controller::sources::Sources::start(c, None).await;
        tether_controller::connection_status::run_cluster_connections(sources, test_config(), std::future::pending())
            .await
    });
    settles_on(&connections, "peak", &BAD_CREDENTIALS, "a Connection with wrong credentials").await;
    settles_on(&cluster_connections, &cluster_name, &BAD_CREDENTIALS, "a ClusterConnection with wrong credentials")
        .await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let fixed = json!({"stringData": {"apiKey": sim_credentials("peak")[0].1}});
    secrets.patch("peak", &PatchParams::default(), &Patch::Merge(fixed)).await.unwrap();
    settles_on(&connections, "peak", &CURRENT_HEALTHY, "a Connection with the right credentials").await;
    settles_on(&cluster_connections, &cluster_name, &CURRENT_HEALTHY, "a ClusterConnection with the right credentials")
        .await;
    cluster_connections.delete(&cluster_name, &DeleteParams::default()).await.unwrap();
    namespaced.abort();
    clustered.abort();
}
