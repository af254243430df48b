//! Helpers shared by the end-to-end tests: reading manifests and sending them to the API server as
//! dynamic objects, whatever their kind.

pub mod judge;

use std::path::Path;

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Client, ResourceExt};

/// Every YAML document of a file, as JSON values.
pub fn manifests(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// The document of `kind` in an example file of the repository (examples/<file>).
pub fn example(file: &str, kind: &str) -> serde_json::Value {
    let path = tether_testenv::repo_root().join("examples").join(file);
    manifests(&path)
        .into_iter()
        .find(|doc| doc["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {}", path.display()))
}

/// The example `template` as resource `i` of many: its name, its platform name and its outputs Secret
/// numbered (the benchmarks create thousands of copies).
pub fn numbered(template: &serde_json::Value, i: usize) -> serde_json::Value {
    let mut resource = template.clone();
    let name = resource["metadata"]["name"].as_str().unwrap_or_default().to_string();
    resource["metadata"]["name"] = serde_json::json!(format!("{name}-{i}"));
    for field in ["name", "writeOutputsTo"] {
        if let Some(value) = resource["spec"][field].as_str().map(str::to_string) {
            resource["spec"][field] = serde_json::json!(format!("{value}-{i}"));
        }
    }
    resource
}

/// An API handle for the object's kind, namespaced to `ns` unless the kind is cluster-scoped.
pub async fn api_for(client: &Client, ns: &str, obj: &serde_json::Value) -> Api<DynamicObject> {
    let api_version = obj["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, obj["kind"].as_str().expect("kind"));
    let (resource, caps) = pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("discovery of {gvk:?}: {e}"));
    if caps.scope == kube::discovery::Scope::Namespaced {
        Api::namespaced_with(client.clone(), ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    }
}

/// Creates the object (optionally as a server-side dry run) and returns the API server's answer.
pub async fn create(
    client: &Client,
    ns: &str,
    obj: &serde_json::Value,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let api = api_for(client, ns, obj).await;
    let mut dynamic: DynamicObject = serde_json::from_value(obj.clone()).expect("a Kubernetes object");
    if api.resource_url().contains("/namespaces/") {
        dynamic.metadata.namespace = Some(ns.to_string());
    } else {
        // Cluster-scoped test objects get the test's unique suffix, so parallel tests never collide.
        let name = format!("{}-{ns}", dynamic.name_any());
        dynamic.metadata.name = Some(name);
    }
    api.create(&PostParams { dry_run, ..Default::default() }, &dynamic).await
}

/// `base` with an RFC 7386 JSON merge patch applied.
pub fn merged(base: &serde_json::Value, patch: serde_json::Value) -> serde_json::Value {
    let mut out = base.clone();
    json_patch::merge(&mut out, &patch);
    out
}

/// Polls the named resource until `check` accepts it (`None`: it is gone); panics after 30 s with what it
/// last saw.
pub async fn wait_until<K, F>(api: &Api<K>, name: &str, what: &str, check: F) -> Option<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(Option<&K>) -> bool,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let current = api.get_opt(name).await.expect("get");
        if check(current.as_ref()) {
            return current;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: still {current:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The `(status, reason, message)` of a condition of a managed resource.
pub fn condition<O>(status: Option<&tether_api::ManagedStatus<O>>, type_: &str) -> Option<(String, String, String)> {
    let c = status?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((format!("{:?}", c.status), c.reason.clone(), c.message.clone()))
}

/// Whether a managed resource's Ready condition is True.
pub fn is_ready<O>(status: Option<&tether_api::ManagedStatus<O>>) -> bool {
    condition(status, "Ready").is_some_and(|(s, _, _)| s == "True")
}

/// Creates, in `ns`, a Secret named after the platform holding `value` under the key `credential`, and a
/// Connection of the same name for `platform` at `endpoint` whose credential `credential` reads it.
pub async fn connect(client: &Client, ns: &str, platform: &str, endpoint: &str, credential: &str, value: &str) {
    connect_with(client, ns, platform, endpoint, &[(credential, value)]).await;
}

/// [`connect`] with several credentials, each under its own key of the one Secret.
pub async fn connect_with(client: &Client, ns: &str, platform: &str, endpoint: &str, credentials: &[(&str, &str)]) {
    let data: serde_json::Map<String, serde_json::Value> =
        credentials.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
    let selectors: serde_json::Map<String, serde_json::Value> =
        credentials.iter().map(|(k, _)| (k.to_string(), serde_json::json!({"name": platform, "key": k}))).collect();
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": platform},
        "stringData": data});
    create(client, ns, &secret, false).await.expect("Secret created");
    let connection = serde_json::json!({"apiVersion": "tether.dev/v1alpha1", "kind": "Connection",
        "metadata": {"name": platform},
        "spec": {"platform": platform, "endpoint": endpoint, "credentials": selectors}});
    create(client, ns, &connection, false).await.expect("Connection created");
}

/// Reads a counter of a simulator's control API (`<origin>/_sim/counters`), e.g. `PUT /api/app_services_manifests`.
pub async fn sim_counter(origin: &str, key: &str) -> u64 {
    let counters: serde_json::Value =
        reqwest::get(format!("{origin}/_sim/counters")).await.expect("counters").json().await.expect("json");
    counters[key].as_u64().unwrap_or(0)
}

/// The loop timing of the tests: 1 s drift period, 100 ms while converging, backoff 0.5 s to 2 s.
pub fn test_config() -> tether_controller::Config {
    tether_controller::Config {
        poll_interval: std::time::Duration::from_secs(1),
        converge_interval: std::time::Duration::from_millis(100),
        backoff: std::time::Duration::from_millis(500),
        max_backoff: std::time::Duration::from_secs(2),
        ..Default::default()
    }
}

/// Runs the controller of adapter `A` over namespace `ns` with [`test_config`] until the returned handle is
/// aborted.
pub fn spawn_controller<A: tether_controller::adapter::Adapter>(
    client: &Client,
    ns: &str,
) -> tokio::task::JoinHandle<()> {
    spawn_controller_with::<A>(client, ns, test_config())
}

/// [`spawn_controller`] with other timing.
pub fn spawn_controller_with<A: tether_controller::adapter::Adapter>(
    client: &Client,
    ns: &str,
    config: tether_controller::Config,
) -> tokio::task::JoinHandle<()> {
    let (client, ns) = (client.clone(), ns.to_string());
    tokio::spawn(async move { tether_controller::run::<A>(client, Some(&ns), config, std::future::pending()).await })
}

/// One case of [`concurrently`]: its name and what makes its future (made on the case's own thread).
pub type Case = (&'static str, Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send>);

/// A [`Case`] named `name` running the future `make` returns.
pub fn case<F, M>(name: &'static str, make: M) -> Case
where
    F: std::future::Future<Output = ()> + 'static,
    M: FnOnce() -> F + Send + 'static,
{
    (name, Box::new(move || Box::pin(make())))
}

/// Runs every case at once, each on a thread of its own with its own current-thread tokio runtime (what
/// `#[tokio::test]` gives a test), then panics with each failed case's name and message. The cases of one
/// test mostly wait on the API server and the simulators, so they need not queue behind libtest's one
/// test per core.
pub fn concurrently(cases: Vec<Case>) {
    let running: Vec<_> = cases
        .into_iter()
        .map(|(name, make)| {
            let thread = std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("tokio runtime")
                        .block_on(make())
                })
                .expect("a thread for the case");
            (name, thread)
        })
        .collect();
    let failed: Vec<String> = running
        .into_iter()
        .filter_map(|(name, thread)| {
            let panic = thread.join().err()?;
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string());
            Some(format!("{name}: {message}"))
        })
        .collect();
    assert!(failed.is_empty(), "{} case(s) failed:\n{}", failed.len(), failed.join("\n"));
}

/// The credentials each simulator accepts, as a Connection's Secret holds them (`tether sim` seeds these).
pub fn sim_credentials(platform: &str) -> &'static [(&'static str, &'static str)] {
    match platform {
        "iguazio" => &[("username", "admin"), ("accessKey", "test-key")],
        "civis" => &[("apiKey", "sim-key")],
        "apolo" => &[("token", "tok")],
        "ubiops" => &[("token", "test-token")],
        "peak" => &[("apiKey", "sim-token")],
        other => panic!("no simulator credentials for {other}"),
    }
}
