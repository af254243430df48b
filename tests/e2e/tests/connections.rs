//! Connections and their Secrets are watched: a resource waiting on a missing Connection or a wrong key
//! recovers as soon as they are fixed, not at its next backoff. The controller here backs off for two
//! minutes after any failure, so only the watches can make these tests pass within their 30 s waits.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tether_api::UbiService;
use tether_controller::adapters::ubiops::UbiOps;
use tether_e2e::{condition, connect, create, is_ready, sim_counter, spawn_controller_with, test_config, wait_until};
use tether_sim::{SimOptions, spawn};
use tether_testenv::TestNamespace;

/// Retries (backoff, and the drift period at which terminal failures such as Unauthorized are retried) so
/// slow that only a watch event can explain a reconcile within a test.
fn patient() -> tether_controller::Config {
    tether_controller::Config {
        poll_interval: Duration::from_secs(120),
        backoff: Duration::from_secs(120),
        max_backoff: Duration::from_secs(120),
        ..test_config()
    }
}

fn service(name: &str) -> UbiService {
    serde_json::from_value(json!({"apiVersion": "tether.dev/v1alpha1", "kind": "UbiService",
        "metadata": {"name": name},
        "spec": {"connectionRef": {"name": "ubiops"}, "project": "proj", "name": name, "deployment": "dep-1", "port": 8080}}))
    .unwrap()
}

fn synced_reason(cr: Option<&UbiService>) -> Option<String> {
    condition(cr?.status.as_ref(), "Synced").map(|(_, reason, _)| reason)
}

#[tokio::test]
async fn a_connection_created_late_and_a_fixed_secret_take_effect_at_once() {
    let ns = TestNamespace::new("conn").await;
    let sim = spawn("ubiops", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO }).await.unwrap();
    let client = ns.client.clone();
    let _controller = spawn_controller_with::<UbiOps>(&client, &ns.name, patient());
    let api: Api<UbiService> = Api::namespaced(client.clone(), &ns.name);

    // No Connection yet: the resource says so, and waits.
    api.create(&PostParams::default(), &service("late")).await.unwrap();
    wait_until(&api, "late", "reports the missing Connection", |cr| {
        synced_reason(cr).as_deref() == Some("ConnectionNotFound")
    })
    .await;

    // The Connection arrives, with a wrong token: the Connection watch brings Unauthorized.
    connect(&client, &ns.name, "ubiops", &sim.url, "token", "wrong-token").await;
    wait_until(&api, "late", "reports bad credentials", |cr| synced_reason(cr).as_deref() == Some("Unauthorized"))
        .await;

    // The key is fixed in the Secret: the Secret watch brings Ready.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let fix = json!({"stringData": {"token": "test-token"}});
    secrets.patch("ubiops", &PatchParams::default(), &Patch::Merge(fix)).await.unwrap();
    wait_until(&api, "late", "becomes Ready", |cr| is_ready(cr.and_then(|c| c.status.as_ref()))).await;
}

#[tokio::test]
async fn an_unrelated_secret_does_not_wake_the_resource() {
    let ns = TestNamespace::new("conn2").await;
    let sim = spawn("ubiops", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO }).await.unwrap();
    let client = ns.client.clone();
    connect(&client, &ns.name, "ubiops", &sim.url, "token", "wrong-token").await;
    let _controller = spawn_controller_with::<UbiOps>(&client, &ns.name, patient());
    let api: Api<UbiService> = Api::namespaced(client.clone(), &ns.name);
    api.create(&PostParams::default(), &service("waits")).await.unwrap();
    wait_until(&api, "waits", "reports bad credentials", |cr| synced_reason(cr).as_deref() == Some("Unauthorized"))
        .await;
    let origin = sim.url.trim_end_matches("/v2.1").to_string();
    const GET: &str = "GET /v2.1/projects/{project_name}/services/{service_name}";
    // The status write of the failure wakes the resource once more (it watches itself); let that pass.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = sim_counter(&origin, GET).await;

    // Another Secret changes: nothing to do with this resource, so the platform is not called again.
    let other =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unrelated"}, "stringData": {"k": "v"}});
    create(&client, &ns.name, &other, false).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sim_counter(&origin, GET).await, calls, "an unrelated Secret woke the resource");
    assert!(calls > 0);
}

#[tokio::test]
async fn deleting_with_its_connection_gone_says_what_to_do_and_resumes_when_it_is_back() {
    use tether_api::connection::Connection;
    let ns = TestNamespace::new("conn3").await;
    let sim = spawn("ubiops", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO }).await.unwrap();
    let client = ns.client.clone();
    connect(&client, &ns.name, "ubiops", &sim.url, "token", "test-token").await;
    let _controller = spawn_controller_with::<UbiOps>(&client, &ns.name, patient());
    let api: Api<UbiService> = Api::namespaced(client.clone(), &ns.name);
    api.create(&PostParams::default(), &service("held")).await.unwrap();
    wait_until(&api, "held", "becomes Ready", |cr| is_ready(cr.and_then(|c| c.status.as_ref()))).await;

    let connections: Api<Connection> = Api::namespaced(client.clone(), &ns.name);
    let saved = connections.get("ubiops").await.unwrap();
    connections.delete("ubiops", &Default::default()).await.unwrap();
    api.delete("held", &Default::default()).await.unwrap();
    // The Connection's deletion alone may first be reported (ConnectionNotFound, nothing about deleting):
    // wait for the deletion's own message.
    wait_until(&api, "held", "explains why it cannot delete", |cr| {
        condition(cr.and_then(|c| c.status.as_ref()), "Synced")
            .is_some_and(|(_, r, m)| r == "ConnectionNotFound" && m.contains("deletionPolicy: Orphan"))
    })
    .await;

    // The Connection is back: the delete goes through at once (the Connection is watched).
    let mut again = saved.clone();
    again.metadata = kube::api::ObjectMeta { name: Some("ubiops".into()), ..Default::default() };
    connections.create(&PostParams::default(), &again).await.unwrap();
    wait_until(&api, "held", "is deleted", |cr| cr.is_none()).await;
}

#[tokio::test]
async fn a_connection_says_whether_the_platform_accepts_its_credentials() {
    use tether_api::connection::Connection;
    use tether_controller::connection_status::run_connections;
    let ns = TestNamespace::new("conn4").await;
    let sim = spawn("ubiops", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO }).await.unwrap();
    let client = ns.client.clone();
    connect(&client, &ns.name, "ubiops", &sim.url, "token", "wrong-token").await;
    let (c, n) = (client.clone(), ns.name.clone());
    let _controller = tokio::spawn(async move {
        let sources = tether_controller::sources::Sources::start(c, Some(&n)).await;
        run_connections(sources, Some(&n), patient(), std::future::pending()).await
    });
    let connections: Api<Connection> = Api::namespaced(client.clone(), &ns.name);
    let ready = |conn: Option<&Connection>| {
        let c = conn?.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
        Some((format!("{:?}", c.status), c.reason.clone()))
    };
    wait_until(&connections, "ubiops", "reports the refused token", |c| {
        ready(c) == Some(("False".into(), "Unauthorized".into()))
    })
    .await;

    // The key is fixed: the Secret is watched, the Connection turns Ready without waiting for a period.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let fix = json!({"stringData": {"token": "test-token"}});
    secrets.patch("ubiops", &PatchParams::default(), &Patch::Merge(fix)).await.unwrap();
    let fixed =
        wait_until(&connections, "ubiops", "is Ready", |c| ready(c) == Some(("True".into(), "Available".into())))
            .await
            .unwrap();
    assert_eq!(fixed.status.unwrap().observed_generation, fixed.metadata.generation);
}

#[tokio::test]
async fn every_adapter_verifies_credentials_with_its_platform() {
    use std::collections::BTreeMap;
    use tether_controller::adapter::Adapter;
    use tether_controller::adapters::{apolo::Apolo, civis::Civis, iguazio::Iguazio, peak::Peak};
    use tether_controller::connection::Account;
    use tether_platforms::{HttpConfig, Secret as Credential};

    async fn check<A: Adapter>(platform: &str, good: &[(&'static str, &str)]) {
        let sim = spawn(platform, "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO }).await.unwrap();
        let account = |wrong: bool| {
            let credentials: BTreeMap<&'static str, Credential> = good
                .iter()
                .map(|(k, v)| (*k, Credential::new(if wrong && *k != "username" { "wrong" } else { *v })))
                .collect();
            Account {
                http: HttpConfig::new(sim.url.parse().unwrap()),
                credentials,
                connection: String::new(),
                fingerprint: 0,
            }
        };
        A::verify(&A::connect(&account(false)).unwrap()).await.unwrap_or_else(|e| panic!("{platform}: {e}"));
        let refused = A::verify(&A::connect(&account(true)).unwrap()).await;
        assert!(matches!(refused, Err(tether_platforms::Error::Unauthorized(_))), "{platform}: {refused:?}");
    }
    check::<Iguazio>("iguazio", &[("username", "admin"), ("accessKey", "test-key")]).await;
    check::<Civis>("civis", &[("apiKey", "sim-key")]).await;
    check::<Apolo>("apolo", &[("token", "tok")]).await;
    check::<UbiOps>("ubiops", &[("token", "test-token")]).await;
    check::<Peak>("peak", &[("apiKey", "sim-token")]).await;
}
