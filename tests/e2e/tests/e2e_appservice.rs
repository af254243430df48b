//! AppService end to end: the reconciler against the real API server and the Iguazio simulator, whose one
//! manifest per tenant every AppService shares.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tether_api::AppService;
use tether_controller::adapters::iguazio::Iguazio;
use tether_e2e::{connect_with, example, is_ready, merged, sim_counter, spawn_controller, wait_until};
use tether_platforms::iguazio::Client;
use tether_platforms::{HttpConfig, Secret as Credential};
use tether_sim::{SimOptions, spawn};
use tether_testenv::TestNamespace;

const PUT: &str = "PUT /api/app_services_manifests";

struct Setup {
    ns: TestNamespace,
    api: Api<AppService>,
    platform: Client,
    origin: String,
    _controller: tokio::task::JoinHandle<()>,
}

async fn setup(prefix: &str) -> Setup {
    let ns = TestNamespace::new(prefix).await;
    let sim = spawn("iguazio", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(300) })
        .await
        .unwrap();
    let origin = sim.url.trim_end_matches('/').to_string();
    let credentials = [("username", "admin"), ("accessKey", "test-key")];
    connect_with(&ns.client, &ns.name, "iguazio", &sim.url, &credentials).await;
    let platform =
        Client::new(HttpConfig::new(sim.url.parse().unwrap()), "admin", &Credential::new("test-key")).unwrap();
    // Someone else's service in the same tenant: every write must keep it.
    let other = json!({"service": {"name": "someone-elses", "kind": "shell", "description": "keep me"}});
    reqwest::Client::new().post(format!("{origin}/_sim/seed")).json(&other).send().await.unwrap();
    let api = Api::namespaced(ns.client.clone(), &ns.name);
    let controller = spawn_controller::<Iguazio>(&ns.client, &ns.name);
    Setup { ns, api, platform, origin, _controller: controller }
}

async fn remote(platform: &Client, name: &str) -> Option<tether_platforms::iguazio::AppService> {
    platform.manifest().await.unwrap().service(name).cloned()
}

async fn wait_remote(platform: &Client, what: &str, check: impl Fn(&tether_platforms::iguazio::Manifest) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let manifest = platform.manifest().await.unwrap();
        if check(&manifest) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: still {manifest:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn generation_ready(cr: Option<&AppService>, generation: i64) -> bool {
    cr.is_some_and(|c| {
        is_ready(c.status.as_ref()) && c.status.as_ref().and_then(|s| s.observed_generation) == Some(generation)
    })
}

#[tokio::test]
async fn create_update_restart_disable_drift_steady_state_and_delete() {
    let s = setup("igz").await;
    let cr = merged(&example("appservice.yaml", "AppService"), json!({"spec": {"writeOutputsTo": "notebook-urls"}}));
    s.api.create(&PostParams::default(), &serde_json::from_value(cr).unwrap()).await.unwrap();

    // Create: Ready with the name as external id, URLs in status and in the outputs Secret.
    let created = wait_until(&s.api, "team-notebook", "becomes Ready", |c| generation_ready(c, 1)).await.unwrap();
    let status = created.status.unwrap();
    assert_eq!(status.external_id.as_deref(), Some("team-notebook"));
    let at = status.at_provider.unwrap();
    assert_eq!(at.state.as_deref(), Some("ready"));
    assert_eq!(at.urls[0].url, "https://team-notebook.default-tenant.app.sim.local");
    let entry = remote(&s.platform, "team-notebook").await.expect("in the manifest");
    assert_eq!(entry.spec["jupyter"], json!({"image_name": "jupyter-all", "ssh_enabled": false}));
    assert_eq!(entry.spec["advanced"], json!({"priority_class_name": "igz-workload-medium"}));
    assert_eq!(entry.labels(), json!({"team": "data"}).as_object());
    let secrets: Api<Secret> = Api::namespaced(s.ns.client.clone(), &s.ns.name);
    let outputs = wait_until(&secrets, "notebook-urls", "outputs written", |x| x.is_some()).await.unwrap();
    assert!(outputs.data.unwrap_or_default().contains_key("url"));

    // Spec change: one write, the remote follows, the other tenant's service is kept.
    let puts = sim_counter(&s.origin, PUT).await;
    let patch = json!({"spec": {"description": "changed", "maxReplicas": 2}});
    s.api.patch("team-notebook", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    wait_until(&s.api, "team-notebook", "applies generation 2", |c| generation_ready(c, 2)).await;
    let entry = remote(&s.platform, "team-notebook").await.unwrap();
    assert_eq!((entry.spec["description"].as_str(), entry.spec["max_replicas"].as_i64()), (Some("changed"), Some(2)));
    assert_eq!(sim_counter(&s.origin, PUT).await, puts + 1, "one spec change, one write");
    let other = remote(&s.platform, "someone-elses").await.expect("the other service survives");
    assert_eq!(other.spec["description"], "keep me");

    // Restart: one write per annotation value, never repeated.
    let puts = sim_counter(&s.origin, PUT).await;
    let restart = json!({"metadata": {"annotations": {"tether.dev/restart": "2026-11-23T10:00:00Z"}}});
    s.api.patch("team-notebook", &PatchParams::default(), &Patch::Merge(restart)).await.unwrap();
    wait_remote(&s.platform, "restart recorded", |m| {
        m.service("team-notebook").and_then(|e| e.restart_token()) == Some("2026-11-23T10:00:00Z")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sim_counter(&s.origin, PUT).await, puts + 1, "the restart is sent once");

    // Disable through desiredState: Ready means "in the declared state".
    let disable = json!({"spec": {"desiredState": "disabled"}});
    s.api.patch("team-notebook", &PatchParams::default(), &Patch::Merge(disable)).await.unwrap();
    let disabled = wait_until(&s.api, "team-notebook", "disabled", |c| {
        generation_ready(c, 3)
            && c.and_then(|c| c.status.as_ref()?.at_provider.as_ref()?.state.as_deref()) == Some("disabled")
    })
    .await;
    assert!(disabled.is_some());

    // Drift: another client changes the description; Tether puts it back within a drift period.
    let mut manifest = s.platform.manifest().await.unwrap();
    let index = manifest.app_services.iter().position(|e| e.name() == "team-notebook").unwrap();
    manifest.app_services[index].spec.insert("description".into(), json!("drifted"));
    manifest.app_services[index].spec.insert("mark_as_changed".into(), json!(true));
    s.platform.put_manifest(&manifest).await.unwrap();
    wait_remote(&s.platform, "drift corrected", |m| {
        m.service("team-notebook").is_some_and(|e| e.spec["description"] == "changed")
    })
    .await;

    // Steady state: three drift periods without a write to the API server or to the platform.
    let settled = wait_until(&s.api, "team-notebook", "settled", |c| generation_ready(c, 3)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (before, puts) = (s.api.get("team-notebook").await.unwrap(), sim_counter(&s.origin, PUT).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = s.api.get("team-notebook").await.unwrap();
    assert_eq!(before.metadata.resource_version, after.metadata.resource_version, "{settled:?}");
    assert_eq!(sim_counter(&s.origin, PUT).await, puts);

    // Delete: the entry leaves the manifest, the other service stays, the finalizer goes.
    s.api.delete("team-notebook", &DeleteParams::default()).await.unwrap();
    wait_until(&s.api, "team-notebook", "is deleted", |c| c.is_none()).await;
    let manifest = s.platform.manifest().await.unwrap();
    assert!(manifest.service("team-notebook").is_none());
    assert!(manifest.service("someone-elses").is_some());
}

#[tokio::test]
async fn twenty_appservices_changed_at_once_lose_nothing() {
    let s = setup("igz20").await;
    let names: Vec<String> = (0..20).map(|i| format!("svc-{i:02}")).collect();
    let body = |name: &str| -> AppService {
        serde_json::from_value(json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AppService",
            "metadata": {"name": name},
            "spec": {"connectionRef": {"name": "iguazio"}, "name": name, "kind": "shell", "description": "v1"}}))
        .unwrap()
    };
    let creates = names.iter().map(|n| {
        let api = s.api.clone();
        let cr = body(n);
        async move { api.create(&PostParams::default(), &cr).await.unwrap() }
    });
    futures::future::join_all(creates).await;
    for name in &names {
        wait_until(&s.api, name, "becomes Ready", |c| generation_ready(c, 1)).await;
    }
    let creates_puts = sim_counter(&s.origin, PUT).await;
    let gets = sim_counter(&s.origin, "GET /api/app_services_manifests").await;
    eprintln!("20 creates took {creates_puts} manifest writes and {gets} reads until all were Ready");
    assert!(creates_puts <= 10, "concurrent creates are folded into few writes, took {creates_puts}");

    // All twenty change at once: every change lands, none overwrites another.
    let patches = names.iter().map(|n| {
        let api = s.api.clone();
        async move {
            let patch = json!({"spec": {"description": format!("v2 of {n}")}});
            api.patch(n, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap()
        }
    });
    futures::future::join_all(patches).await;
    for name in &names {
        wait_until(&s.api, name, "applies generation 2", |c| generation_ready(c, 2)).await;
    }
    let manifest = s.platform.manifest().await.unwrap();
    for name in &names {
        let entry = manifest.service(name).unwrap_or_else(|| panic!("{name} lost"));
        assert_eq!(entry.spec["description"], Value::from(format!("v2 of {name}")), "{name}");
    }
    assert_eq!(manifest.service("someone-elses").map(|e| e.spec["description"].clone()), Some(json!("keep me")));
    let update_puts = sim_counter(&s.origin, PUT).await - creates_puts;
    eprintln!("20 updates took {update_puts} manifest writes");
    assert!(update_puts <= 10, "concurrent updates are folded into few writes, took {update_puts}");
}
