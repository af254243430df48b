//! The Iguazio client against the Iguazio simulator: handshake, manifest read-modify-write, jobs,
//! failures, errors.

use std::time::Duration;

use serde_json::json;
use tether_platforms::iguazio::{AppService, Client};
use tether_platforms::{Error, HttpConfig, Secret};
use tether_sim::{SimOptions, spawn};

async fn setup(delay: Duration) -> (Client, String) {
    let endpoint = spawn("iguazio", "127.0.0.1:0".parse().unwrap(), SimOptions { delay }).await.unwrap();
    let client =
        Client::new(HttpConfig::new(endpoint.url.parse().unwrap()), "admin", &Secret::new("test-key")).unwrap();
    (client, endpoint.url)
}

fn service(name: &str) -> AppService {
    let spec =
        json!({"name": name, "kind": "jupyter", "jupyter": {"image_name": "jupyter-all"}, "mark_as_changed": true});
    AppService { spec: spec.as_object().cloned().unwrap(), ..Default::default() }
}

const TICK: Duration = Duration::from_millis(20);
const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn handshake_and_a_read_modify_write_that_keeps_other_services() {
    let (c, url) = setup(Duration::from_millis(100)).await;
    assert_eq!(c.version().await.unwrap(), "3.6.0");
    let (user, tenant) = c.verify().await.unwrap();
    assert_eq!(user, "admin");
    assert!(!tenant.is_empty());

    let seeded = json!({"service": {"name": "other", "kind": "shell", "description": "keep me"}});
    reqwest::Client::new().post(format!("{url}/_sim/seed")).json(&seeded).send().await.unwrap();

    let mut manifest = c.manifest().await.unwrap();
    assert_eq!(manifest.running_job(), None);
    manifest.app_services.push(service("nb"));
    let job = c.put_manifest(&manifest).await.unwrap();
    assert_eq!(c.manifest().await.unwrap().running_job(), Some(job.id.as_str()));
    assert!(matches!(c.put_manifest(&manifest).await, Err(Error::Conflict(_))), "one job at a time");
    assert_eq!(c.wait_job(&job.id, TICK, LONG).await.unwrap().state, "completed");

    let manifest = c.manifest().await.unwrap();
    assert_eq!(manifest.service("nb").and_then(AppService::state), Some("ready"));
    assert_eq!(manifest.service("other").unwrap().spec["description"], "keep me");
    assert_eq!(manifest.service("nb").unwrap().spec["mark_as_changed"], false, "flags are cleared once applied");
}

#[tokio::test]
async fn a_failed_apply_is_a_platform_error_with_the_service_message() {
    let (c, url) = setup(Duration::ZERO).await;
    reqwest::Client::new().post(format!("{url}/_sim/fail")).json(&json!({"service": "nb"})).send().await.unwrap();
    let mut manifest = c.manifest().await.unwrap();
    manifest.app_services.push(service("nb"));
    let job = c.put_manifest(&manifest).await.unwrap();
    let err = c.wait_job(&job.id, TICK, LONG).await.unwrap_err();
    assert!(matches!(&err, Error::Platform(m) if m.contains("failed to deploy")), "{err}");
    let status = c.manifest().await.unwrap().service("nb").unwrap().status.clone().unwrap();
    assert_eq!(status["state"], "error");
    assert!(status["error_info"]["description"].as_str().is_some());
}

#[tokio::test]
async fn errors_are_classified() {
    let (c, url) = setup(Duration::ZERO).await;
    assert!(matches!(c.job("nope").await, Err(Error::NotFound(_))));
    let mut manifest = c.manifest().await.unwrap();
    manifest
        .app_services
        .push(AppService { spec: json!({"name": "x"}).as_object().cloned().unwrap(), ..Default::default() });
    assert!(matches!(c.put_manifest(&manifest).await, Err(Error::Invalid(m)) if m.contains("kind")));
    let wrong = Client::new(HttpConfig::new(url.parse().unwrap()), "admin", &Secret::new("wrong")).unwrap();
    assert!(matches!(wrong.verify().await, Err(Error::Unauthorized(_))));
}

#[tokio::test]
async fn password_login_gives_a_session_and_a_wrong_password_is_unauthorized() {
    let (_, url) = setup(Duration::ZERO).await;
    let config = HttpConfig::new(url.parse().unwrap());
    let c = Client::login(config.clone(), "admin", &Secret::new("test-password")).await.unwrap();
    assert_eq!(c.verify().await.unwrap().0, "admin");
    assert!(matches!(Client::login(config, "admin", &Secret::new("nope")).await, Err(Error::Unauthorized(_))));
}

#[tokio::test]
async fn reads_asked_while_one_is_under_way_share_the_next() {
    use tether_platforms::iguazio::{ManifestWriter, WriterTiming};
    let (client, url) = setup(Duration::ZERO).await;
    let origin = url.trim_end_matches('/');
    let http = reqwest::Client::new();
    // Each read takes 300 ms, so the ten below overlap.
    let fault = json!({"method": "GET", "route": "/api/app_services_manifests", "latencyMs": 300});
    assert!(http.post(format!("{origin}/_sim/faults")).json(&fault).send().await.unwrap().status().is_success());
    let writer = ManifestWriter::new(client, WriterTiming::default());
    let reads = futures::future::join_all((0..10).map(|_| writer.read())).await;
    assert!(reads.iter().all(Result::is_ok));
    let counters: serde_json::Value =
        http.get(format!("{origin}/_sim/counters")).send().await.unwrap().json().await.unwrap();
    let gets = counters["GET /api/app_services_manifests"].as_u64().unwrap();
    assert!(gets <= 2, "ten concurrent reads made {gets} GETs");

    // A read asked after a write sees the write.
    let mut after = tether_platforms::iguazio::Manifest::default();
    after.app_services = vec![service("after")];
    writer.client().put_manifest(&after).await.unwrap();
    assert!(writer.read().await.unwrap().service("after").is_some());
}

#[tokio::test]
async fn drift_reads_share_a_recent_read_but_never_one_from_before_a_write() {
    use tether_platforms::iguazio::{Change, ManifestWriter, WriterTiming};
    let (client, url) = setup(Duration::ZERO).await;
    let origin = url.trim_end_matches('/').to_string();
    let gets = || async {
        let counters: serde_json::Value =
            reqwest::get(format!("{origin}/_sim/counters")).await.unwrap().json().await.unwrap();
        counters["GET /api/app_services_manifests"].as_u64().unwrap_or(0)
    };
    let writer = ManifestWriter::new(client, WriterTiming { poll: TICK, timeout: LONG });
    writer.read().await.unwrap();
    let after_first = gets().await;
    writer.read_within(Duration::from_secs(60)).await.unwrap();
    assert_eq!(gets().await, after_first, "a read a moment old is shared");
    writer.read().await.unwrap();
    assert_eq!(gets().await, after_first + 1, "a read with no age allowed goes to the platform");

    // After a write of this writer, even a drift read goes to the platform, and sees the write.
    let spec = service("after").spec;
    writer.submit("after", Change::Upsert { spec, labels: None, restart_token: None }).await.unwrap();
    let before = gets().await;
    let manifest = writer.read_within(Duration::from_secs(60)).await.unwrap();
    assert_eq!(gets().await, before + 1);
    assert!(manifest.service("after").is_some());
}

#[tokio::test]
async fn hostile_job_ids_are_refused_before_any_request() {
    let (c, url) = setup(Duration::ZERO).await;
    for bad in ["../x", "a/b", "..", "%2e%2e", "", "x/../app_services_manifests"] {
        for outcome in [c.job(bad).await, c.wait_job(bad, TICK, LONG).await] {
            assert!(
                matches!(&outcome, Err(Error::Invalid(m)) if m.contains("is not a valid Iguazio job id")),
                "{bad:?}: {outcome:?}"
            );
        }
    }
    let counters: serde_json::Value =
        reqwest::get(format!("{}/_sim/counters", url.trim_end_matches('/'))).await.unwrap().json().await.unwrap();
    assert_eq!(counters, json!({}), "no request reached any route");
}

#[tokio::test]
async fn every_writer_of_a_tenant_writes_through_one_queue() {
    use tether_platforms::iguazio::{Change, ManifestWriter, WriterTiming};
    let (key_client, url) = setup(Duration::ZERO).await;
    let origin = url.trim_end_matches('/').to_string();
    // Another credential of the same tenant (a password session), as a second Connection would hold.
    let session =
        Client::login(HttpConfig::new(url.parse().unwrap()), "admin", &Secret::new("test-password")).await.unwrap();
    let timing = WriterTiming { poll: TICK, timeout: LONG };
    let a = ManifestWriter::new(key_client, timing);
    let b = ManifestWriter::new(session, timing);
    assert!(a.same_tenant(&b).await.unwrap(), "two credentials of one tenant share the queue");
    let (elsewhere, _) = setup(Duration::ZERO).await;
    let c = ManifestWriter::new(elsewhere, timing);
    assert!(!a.same_tenant(&c).await.unwrap(), "another tenant has its own");

    // Twenty services written at once through both writers: none lost (the platform has no precondition
    // on the PUT, so two queues would drop each other's entries), in fewer PUTs than services.
    let submits = (0..20).map(|i| {
        let writer = if i % 2 == 0 { &a } else { &b };
        let name = format!("svc-{i}");
        let spec = service(&name).spec;
        async move { writer.submit(&name, Change::Upsert { spec, labels: None, restart_token: None }).await }
    });
    let answers = futures::future::join_all(submits).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let manifest = a.read().await.unwrap();
    let missing: Vec<String> = (0..20).map(|i| format!("svc-{i}")).filter(|n| manifest.service(n).is_none()).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let counters: serde_json::Value =
        reqwest::get(format!("{origin}/_sim/counters")).await.unwrap().json().await.unwrap();
    let puts = counters["PUT /api/app_services_manifests"].as_u64().unwrap();
    assert!(puts < 20, "{puts} PUTs for 20 services");
}
